"""The alert state machine of issue 13, over plain data: states, thresholds, reminders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cronkeeper.alerting.state import (
    Observation,
    Thresholds,
    alert_kind,
    leading,
    next_state,
    reminder_due,
)
from cronkeeper.ledger import RunRow
from tests.conftest import make_settings

T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)


def runs(statuses: str) -> list[RunRow]:
    """Runs newest first from a string like ``"SEEP"`` (Success, Error, Partial, Running)."""
    names = {"S": "success", "E": "error", "P": "partial", "R": "running"}
    return [
        RunRow(f"r{i}", "collect-daily", T0 - timedelta(days=i), None, names[c], 5, None)
        for i, c in enumerate(statuses)
    ]


def seen(statuses: str, **kw: object) -> Observation:
    values: dict[str, object] = {"missing": False, "stuck": False, "paused": False}
    values.update(kw)
    return Observation("collect-daily", runs(statuses), **values)  # type: ignore[arg-type]


def walk(history: str, thresholds: Thresholds) -> list[str]:
    """Feed runs one by one (oldest first); the state after each."""
    state, states = "ok", []
    for i in range(1, len(history) + 1):
        state = next_state(state, seen(history[:i][::-1]), thresholds)
        states.append(state)
    return states


def test_leading_counts_finished_runs_from_the_newest() -> None:
    assert leading(runs("REES"), "error") == 2
    assert leading(runs("SEE"), "error") == 0
    assert leading(runs("SSP"), "success") == 2


def test_thresholds_3_and_2_fail_on_the_third_error_and_recover_on_the_second_success() -> None:
    states = walk("EEESS", Thresholds(failure=3, recovery=2))
    assert states == ["ok", "ok", "failed", "failed", "ok"]
    kinds = [alert_kind(a, b) for a, b in zip(["ok", *states], states, strict=False)]
    assert kinds == [None, None, "down", None, "recovered"]


def test_an_error_between_successes_below_the_recovery_threshold_keeps_it_failed() -> None:
    assert walk("EEESESS", Thresholds(failure=3, recovery=2))[-3:] == ["failed", "failed", "ok"]


def test_defaults_alert_on_the_first_error_and_recover_on_the_first_success() -> None:
    assert walk("SESS", Thresholds()) == ["ok", "failed", "ok", "ok"]


def test_a_partial_run_is_neither_a_failure_nor_a_recovery() -> None:
    assert walk("PPP", Thresholds()) == ["ok", "ok", "ok"]
    assert walk("EPS", Thresholds()) == ["failed", "failed", "ok"]
    assert walk("EEPE", Thresholds(failure=3)) == ["ok", "ok", "ok", "ok"]


def test_per_job_failure_thresholds() -> None:
    t = Thresholds(failure=1, failure_by_job={"collect-daily": 2})
    assert t.failure_for("collect-daily") == 2 and t.failure_for("collect-mixpanel") == 1
    assert walk("EE", t) == ["ok", "failed"]


def test_pause_wins_then_stuck_then_missing() -> None:
    assert next_state("failed", seen("E", paused=True, stuck=True), Thresholds()) == "paused"
    assert next_state("ok", seen("R", stuck=True, missing=True), Thresholds()) == "stuck"
    assert next_state("ok", seen("", missing=True), Thresholds()) == "missing"
    assert alert_kind("failed", "paused") is None and alert_kind("paused", "ok") is None
    assert alert_kind("paused", "missing") == "down"
    assert alert_kind("missing", "failed") == "down"


def test_missing_recovers_with_the_recovery_threshold() -> None:
    t = Thresholds(failure=3, recovery=2)
    assert next_state("missing", seen("S"), t) == "missing"
    assert next_state("missing", seen("SS"), t) == "ok"


def test_low_volume_makes_a_successful_job_anomalous() -> None:
    assert next_state("ok", seen("S", anomaly="low-volume"), Thresholds()) == "anomalous"
    assert next_state("ok", seen("S", anomaly="high-volume"), Thresholds()) == "ok"
    assert next_state("anomalous", seen("SS"), Thresholds(recovery=2)) == "ok"
    assert alert_kind("ok", "anomalous") == "down" and alert_kind("anomalous", "ok") == "recovered"


@pytest.mark.parametrize(
    ("state", "alerted_ago", "repeat", "due"),
    [
        ("failed", timedelta(hours=24), timedelta(hours=24), True),
        ("failed", timedelta(hours=23), timedelta(hours=24), False),
        ("failed", timedelta(days=9), None, False),
        ("ok", timedelta(days=9), timedelta(hours=1), False),
        ("paused", timedelta(days=9), timedelta(hours=1), False),
    ],
)
def test_reminders_only_while_down_and_only_when_asked(
    state: str, alerted_ago: timedelta, repeat: timedelta | None, due: bool
) -> None:
    assert reminder_due(state, T0 - alerted_ago, T0, repeat) is due


def test_alert_settings_parse_and_refuse_bad_values(tmp_path: object) -> None:
    url = "sqlite:///x.db"
    s = make_settings(url)
    assert s.failure_thresholds == (1, {}) and s.recovery_threshold == 1
    assert s.alert_repeat_every is None and s.watch_every == timedelta(seconds=60)
    s = make_settings(
        url,
        failure_threshold="collect-daily=3,sync-notion=2",
        alert_repeat="24h",
        watch_interval="5m",
    )
    assert s.failure_thresholds == (1, {"collect-daily": 3, "sync-notion": 2})
    assert s.alert_repeat_every == timedelta(hours=24) and s.watch_every == timedelta(minutes=5)
    assert make_settings(url, failure_threshold="3").failure_thresholds == (3, {})
    for bad in (
        {"failure_threshold": "0"},
        {"failure_threshold": "nope=2"},
        {"alert_repeat": "soon"},
        {"watch_interval": "-1"},
        {"recovery_threshold": 0},
    ):
        with pytest.raises(ValueError):
            make_settings(url, **bad)


# -- CRONKEEPER_PARTIAL_TOLERANCE (issue 17, point 3) ------------------------------------------


def agency(statuses: str, skipped: int, total: int = 1000) -> list[RunRow]:
    """Runs newest first whose ``P`` runs skipped ``skipped`` of ``total`` accounts, recorded
    as :func:`cronkeeper.ledger.summarize` records them."""
    message = f"skipped {skipped} of {total} accounts:\n- act_1: (#200) permission denied"
    return [
        RunRow(
            f"r{i}",
            "collect-daily",
            T0 - timedelta(days=i),
            None,
            {"S": "success", "E": "error", "P": "partial"}[c],
            5,
            message if c == "P" else None,
        )
        for i, c in enumerate(statuses)
    ]


@pytest.mark.parametrize("down", ["missing", "failed", "stuck"])
def test_an_agency_job_whose_runs_are_always_partial_within_tolerance_recovers(down: str) -> None:
    """Issue 17: at 1,000 accounts a few always fail, so every run is ``partial``; leaving a
    down state needed consecutive ``success`` runs, and the job stayed down for ever."""
    normal = Observation("collect-daily", agency("PPP", skipped=12), False, False, False)
    assert next_state(down, normal, Thresholds(recovery=2)) == "ok"
    assert leading(normal.recent, "success") == 3


def test_a_partial_above_the_tolerance_counts_as_a_failure_for_the_thresholds() -> None:
    bad = Observation("collect-daily", agency("PPS", skipped=300), False, False, False)
    assert leading(bad.recent, "error") == 2
    assert next_state("ok", bad, Thresholds(failure=2)) == "failed"
    assert next_state("ok", bad, Thresholds(failure=3)) == "ok"
    # ... and it is no recovery either
    assert next_state("failed", bad, Thresholds(failure=3)) == "failed"


def test_the_tolerance_is_the_jobs_own_and_5_percent_by_default() -> None:
    runs_ = agency("PP", skipped=80)  # 8 %: above the default 5 %, a failure
    narrow = Observation("collect-daily", runs_, False, False, False)
    assert next_state("missing", narrow, Thresholds()) == "failed"
    wide = Observation("collect-daily", runs_, False, False, False, tolerance=0.10)
    assert next_state("missing", wide, Thresholds()) == "ok"
    settings = make_settings("sqlite:///x.db", partial_tolerance="collect-daily=10%")
    assert settings.job("collect-daily").partial_tolerance == 0.10
    assert settings.job("collect-mixpanel").partial_tolerance == 0.05
    assert (
        make_settings("sqlite:///x.db", partial_tolerance="0").job("sync-notion").partial_tolerance
        == 0.0
    )
    with pytest.raises(ValueError, match="CRONKEEPER_PARTIAL_TOLERANCE"):
        make_settings("sqlite:///x.db", partial_tolerance="five")


def test_a_partial_whose_skipped_share_is_unknown_still_counts_neither_way() -> None:
    unknown = runs("PPP")  # no "skipped N of M" line (e.g. a check-in's own message)
    assert [r.skipped_share for r in unknown] == [None] * 3
    assert (
        next_state(
            "failed", Observation("collect-daily", unknown, False, False, False), Thresholds()
        )
        == "failed"
    )
    assert walk("PPP", Thresholds(failure=1)) == ["ok", "ok", "ok"]


def test_the_skipped_share_is_read_back_from_what_summarize_writes() -> None:
    """The format (``summarize``) and its reader (``RunRow.skipped_share``) stay together."""
    from cronkeeper.ledger import Skipped, summarize

    summary = summarize(
        records_count=9,
        units_stored=97,
        skipped=[Skipped(f"act_{i}", "boom") for i in range(3)],
        unit_label="ad accounts",
    )
    run = RunRow("r", "collect-daily", T0, T0, summary.status, 9, summary.error_message)
    assert run.skipped_share == pytest.approx(0.03)
