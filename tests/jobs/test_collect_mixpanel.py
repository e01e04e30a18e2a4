"""collect-mixpanel against the Mixpanel simulator over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cronkeeper.sandbox import Fault, MixpanelProject, MixpanelSimulator
from cronkeeper.storage.schema import accounts, mixpanel_daily_events
from tests.jobs.conftest import Sandbox
from tests.jobs.helpers import DAY, MIXPANEL_ACCOUNT, MIXPANEL_SECRET, Harness

EVENTS = ("signup", "purchase", "trial_started")


def simulator(*projects: MixpanelProject | str, **kwargs: Any) -> MixpanelSimulator:
    return MixpanelSimulator(
        projects or ("31", "32"),
        service_account=MIXPANEL_ACCOUNT,
        service_secret=MIXPANEL_SECRET,
        **kwargs,
    )


def mixpanel(sandbox: Sandbox, harness: Harness, sim: MixpanelSimulator, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "mixpanel_service_account": MIXPANEL_ACCOUNT,
        "mixpanel_service_secret": MIXPANEL_SECRET,
        "mixpanel_api_base": sandbox.mixpanel(sim),
        "mixpanel_project_id": ("31", "32"),
        "mixpanel_events": EVENTS,
        # One day per run here, so each count is pinned; the window has its own tests.
        "mixpanel_lookback_days": 1,
    }
    values.update(overrides)
    return harness.settings(**values)


async def counts(harness: Harness) -> dict[tuple[str, str], int]:
    rows = await harness.rows(mixpanel_daily_events, "project_id", "event")
    assert all(r["date"] == DAY for r in rows)
    return {(r["project_id"], r["event"]): r["count"] for r in rows}


async def test_stores_the_count_of_every_event_absent_ones_as_zero(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator(MixpanelProject("31"), MixpanelProject("32", frozenset({"trial_started"})))
    outcome = await harness.run("collect-mixpanel", mixpanel(sandbox, harness, sim))

    assert (outcome.status, outcome.summary.records_count, outcome.message) == ("success", 6, "")
    expected = {(p, e): sim.expected_count(p, e, DAY) for p in ("31", "32") for e in EVENTS}
    assert expected[("32", "trial_started")] == 0
    assert await counts(harness) == expected
    # one query per project, every event in it
    assert sorted(r.key or "" for r in sim.log.records) == ["31", "32"]
    query = sim.log.records[0].query
    assert json.loads(query["event"]) == list(EVENTS)
    assert (query["type"], query["unit"], query["from_date"], query["to_date"]) == (
        "general",
        "day",
        DAY.isoformat(),
        DAY.isoformat(),
    )


async def test_a_failing_project_is_skipped_and_the_others_stored(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator("31", "32", "33", always={"32": Fault.status(503)})
    settings = mixpanel(sandbox, harness, sim, mixpanel_project_id=("31", "32", "33"))
    outcome = await harness.run("collect-mixpanel", settings)

    assert (outcome.status, outcome.summary.records_count) == ("partial", 6)
    assert outcome.message.startswith("skipped 1 of 3 projects:\n- project 32: ")
    assert "HTTP 503" in outcome.message
    assert MIXPANEL_SECRET not in outcome.message
    assert {p for p, _ in await counts(harness)} == {"31", "33"}
    assert harness.sleep.waits == [3.0, 6.0]


async def test_a_malformed_answer_fails_its_project_only(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator(scripts={"31": [Fault.malformed("shape")]})
    outcome = await harness.run("collect-mixpanel", mixpanel(sandbox, harness, sim))

    assert (outcome.status, outcome.summary.records_count) == ("partial", 3)
    assert "- project 31: Mixpanel project 31: field 'data'" in outcome.message


async def test_every_project_failing_is_an_error(sandbox: Sandbox, harness: Harness) -> None:
    sim = simulator(always={"31": Fault.status(401), "32": Fault.status(500)})
    outcome = await harness.run("collect-mixpanel", mixpanel(sandbox, harness, sim))

    assert (outcome.status, outcome.summary.records_count) == ("error", 0)
    assert len(sim.records_for("31")) == 1  # a 401 is not retried
    assert await harness.count(mixpanel_daily_events) == 0


async def test_rerunning_the_same_date_changes_no_row_count(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator()
    settings = mixpanel(sandbox, harness, sim)
    await harness.run("collect-mixpanel", settings)
    first = await counts(harness)
    outcome = await harness.run("collect-mixpanel", settings)

    assert outcome.status == "success"
    assert await counts(harness) == first
    assert len(first) == 6


async def test_projects_come_from_the_active_accounts_when_not_configured(
    sandbox: Sandbox, harness: Harness
) -> None:
    now = datetime(2026, 11, 1, tzinfo=UTC)
    rows = [
        ("p1", "1", "31", True),
        ("p2", "2", "31", True),
        ("p3", "3", None, True),
        ("p4", "4", "33", False),
        ("p5", "5", "32", True),
    ]
    await harness.insert(
        accounts,
        [
            {
                "id": p,
                "name": p,
                "meta_ad_account_id": ad,
                "mixpanel_project_id": project,
                "active": active,
                "updated_at": now,
            }
            for p, ad, project, active in rows
        ],
    )
    sim = simulator("31", "32", "33")
    outcome = await harness.run(
        "collect-mixpanel", mixpanel(sandbox, harness, sim, mixpanel_project_id=())
    )

    assert (outcome.status, outcome.summary.records_count) == ("success", 6)
    assert sorted(r.key or "" for r in sim.log.records) == ["31", "32"]


async def test_no_project_or_no_event_is_an_error_without_any_request(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator()
    no_project = await harness.run(
        "collect-mixpanel", mixpanel(sandbox, harness, sim, mixpanel_project_id=())
    )
    no_event = await harness.run(
        "collect-mixpanel", mixpanel(sandbox, harness, sim, mixpanel_events=())
    )

    assert no_project.status == no_event.status == "error"
    assert "no Mixpanel project to query" in no_project.message
    assert "MIXPANEL_EVENTS is empty" in no_event.message
    assert len(sim.log) == 0


# --- each project's own day, and the restatement window -------------------------------------


async def test_projects_at_both_ends_of_the_clock_each_get_their_own_yesterday(
    sandbox: Sandbox, harness: Harness
) -> None:
    """2026-11-20 12:00 UTC: 2026-11-21 in Kiritimati (UTC+14), still 2026-11-20 01:00 in
    Pago Pago (UTC-11). Without a date each project gets its own yesterday; with
    --date 2026-11-20 Pago Pago's open day is not stored as if it were complete."""
    sim = simulator(
        MixpanelProject("31", timezone_name="Pacific/Kiritimati"),
        MixpanelProject("32", timezone_name="Pacific/Pago_Pago"),
        clock=harness.clock,
    )
    zones = "31=Pacific/Kiritimati, 32=Pacific/Pago_Pago"
    settings = mixpanel(sandbox, harness, sim, mixpanel_project_timezones=zones)

    default = await harness.run("collect-mixpanel", settings, explicit=False)
    assert default.status == "success"
    rows = await harness.rows(mixpanel_daily_events, "project_id", "event")
    assert {(r["project_id"], r["date"]) for r in rows} == {
        ("31", date(2026, 11, 20)),
        ("32", DAY),
    }
    assert all(
        r["count"] == sim.expected_count(r["project_id"], r["event"], r["date"]) for r in rows
    )

    explicit = await harness.run("collect-mixpanel", settings, date(2026, 11, 20))
    assert explicit.status == "success"
    assert {r.query["to_date"] for r in sim.records_for("32")} == {DAY.isoformat()}


async def test_the_last_7_days_come_in_one_range_query_per_project(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator()
    settings = mixpanel(sandbox, harness, sim, mixpanel_lookback_days=7)

    outcome = await harness.run("collect-mixpanel", settings)
    again = await harness.run("collect-mixpanel", settings)

    assert (outcome.summary.records_count, again.summary.records_count) == (42, 42)
    assert await harness.count(mixpanel_daily_events) == 42
    assert len(sim.log.records) == 4  # one query per project per run
    query = sim.records_for("31")[0].query
    first = DAY - timedelta(days=6)
    assert (query["from_date"], query["to_date"]) == (first.isoformat(), DAY.isoformat())
    rows = await harness.rows(mixpanel_daily_events, "project_id", "event", "date")
    assert {r["date"] for r in rows} == {first + timedelta(days=i) for i in range(7)}
    assert all(
        r["count"] == sim.expected_count(r["project_id"], r["event"], r["date"]) for r in rows
    )
