"""Health evaluation is a pure function: the seed's JSON for every situation a job can be in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cronkeeper.config import DEFAULT_JOBS, Settings
from cronkeeper.health import evaluate_health
from cronkeeper.ledger import RunRow

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SPECS = Settings(_env_file=None).monitored


def run(name: str, *, ago: timedelta, status: str = "success", took: float = 30.0) -> RunRow:
    started = NOW - ago
    finished = None if status == "running" else started + timedelta(seconds=took)
    return RunRow("id-" + name, name, started, finished, status, 10, None)


def test_monitored_jobs_default_to_the_seeds_three_in_order() -> None:
    assert [s.name for s in SPECS] == ["collect-daily", "collect-mixpanel", "collect-benchmarks"]
    assert [s.window for s in SPECS] == [timedelta(days=1), timedelta(days=1), timedelta(days=7)]
    assert not next(s for s in DEFAULT_JOBS if s.name == "sync-notion").monitored


def test_all_jobs_ran_recently_is_healthy_with_the_seeds_keys() -> None:
    latest = {
        "collect-daily": run("collect-daily", ago=timedelta(hours=2)),
        "collect-mixpanel": run("collect-mixpanel", ago=timedelta(hours=1), status="partial"),
        # its Monday 02:00 fire (NOW is Friday 12:00)
        "collect-benchmarks": run("collect-benchmarks", ago=timedelta(days=4, hours=10)),
    }
    report = evaluate_health(SPECS, latest, NOW).as_json()
    assert report["healthy"] is True
    assert report["missing"] == []
    daily = report["checks"]["collect-daily"]
    assert daily["lastRun"] == "2026-11-27T10:00:00+00:00"
    assert (daily["status"], daily["ok"]) == ("success", True)
    assert daily["durationSeconds"] == 30.0
    assert report["checks"]["collect-mixpanel"]["ok"] is True  # partial still counts as ran


def test_a_failed_latest_run_is_not_ok_but_not_missing() -> None:
    latest = {"collect-daily": run("collect-daily", ago=timedelta(hours=1), status="error")}
    report = evaluate_health(SPECS, latest, NOW)
    check = report.as_json()["checks"]["collect-daily"]
    assert (check["ok"], check["status"], check["reason"]) == (False, "error", "failed")
    assert "collect-daily" not in report.missing
    assert report.healthy is False


def test_a_running_job_younger_than_max_runtime_is_ok() -> None:
    latest = {"collect-daily": run("collect-daily", ago=timedelta(minutes=10), status="running")}
    check = evaluate_health(SPECS, latest, NOW).as_json()["checks"]["collect-daily"]
    assert (check["status"], check["ok"], check["stuck"], check["finishedAt"]) == (
        "running",
        True,
        False,
        None,
    )


def test_a_running_job_past_max_runtime_is_stuck() -> None:
    latest = {"collect-daily": run("collect-daily", ago=timedelta(hours=2), status="running")}
    check = evaluate_health(SPECS, latest, NOW).as_json()["checks"]["collect-daily"]
    assert (check["ok"], check["stuck"], check["reason"]) == (False, True, "stuck")


def test_jobs_that_never_ran_are_missing_in_configuration_order() -> None:
    report = evaluate_health(SPECS, {}, NOW).as_json()
    assert report["missing"] == ["collect-daily", "collect-mixpanel", "collect-benchmarks"]
    assert report["checks"]["collect-daily"] == {
        "lastRun": None,
        "status": None,
        "ok": False,
        "finishedAt": None,
        "recordsCount": None,
        "durationSeconds": None,
        "skippedShare": None,
        "stuck": False,
        "reason": "never-ran",
        "anomaly": None,
        "expectedRecords": None,
        "paused": False,
        "pausedUntil": None,
        "inactiveUnits": 0,
        "pauseReason": None,
        "pausedBy": None,
    }
    reordered = Settings(
        _env_file=None, monitored_jobs="collect-benchmarks,collect-daily"
    ).monitored
    assert evaluate_health(reordered, {}, NOW).missing == ("collect-benchmarks", "collect-daily")


@pytest.mark.parametrize(
    ("job", "started", "now", "ok"),
    [
        # daily at 01:00 UTC: the run of Friday 01:00 is due by 02:00 (the grace)
        ("collect-daily", "2026-11-26T01:00", "2026-11-27T02:00", True),
        ("collect-daily", "2026-11-26T01:00", "2026-11-27T02:00:01", False),
        ("collect-daily", "2026-11-27T00:59:30", "2026-11-28T01:59", True),  # 30 s early
        ("collect-daily", "2026-11-26T23:00", "2026-11-27T02:00:01", False),  # off schedule
        # weekly, Mondays 02:00: a whole week, and the grace
        ("collect-benchmarks", "2026-11-23T02:00", "2026-11-30T03:00", True),
        ("collect-benchmarks", "2026-11-23T02:00", "2026-11-30T03:00:01", False),
    ],
)
def test_a_job_is_missing_once_a_fire_came_after_its_run_and_the_grace_passed(
    job: str, started: str, now: str, ok: bool
) -> None:
    at = datetime.fromisoformat(now).replace(tzinfo=UTC)
    begun = datetime.fromisoformat(started).replace(tzinfo=UTC)
    latest = {job: RunRow("r", job, begun, begun + timedelta(minutes=1), "success", 1, None)}
    report = evaluate_health(SPECS, latest, at)
    check = report.as_json()["checks"][job]
    assert check["ok"] is ok
    assert (job in report.missing) is (not ok)
    if not ok:
        assert check["reason"] == "missing"


def test_windows_and_max_runtime_are_configurable() -> None:
    specs = Settings(
        _env_file=None,
        job_windows="collect-daily=2h",
        max_runtime="collect-daily=5m",
    ).monitored
    # A window set for a job replaces its schedule: due within the window plus the grace (1 h).
    old = {"collect-daily": run("collect-daily", ago=timedelta(hours=3, seconds=1))}
    assert evaluate_health(specs, old, NOW).missing[0] == "collect-daily"
    fine = {"collect-daily": run("collect-daily", ago=timedelta(hours=3))}
    assert "collect-daily" not in evaluate_health(specs, fine, NOW).missing
    slow = {"collect-daily": run("collect-daily", ago=timedelta(minutes=6), status="running")}
    assert evaluate_health(specs, slow, NOW).checks[0].stuck is True


def test_a_paused_job_is_ok_not_missing_and_says_until_when() -> None:
    from cronkeeper.ledger.job_state import JobState

    until = NOW + timedelta(hours=2)
    states = {"collect-daily": JobState("collect-daily", paused=True, paused_until=until)}
    report = evaluate_health(SPECS, {}, NOW, states).as_json()
    daily = report["checks"]["collect-daily"]
    assert (daily["ok"], daily["paused"], daily["pausedUntil"]) == (
        True,
        True,
        "2026-11-27T14:00:00+00:00",
    )
    assert report["missing"] == ["collect-mixpanel", "collect-benchmarks"]
    ended = evaluate_health(SPECS, {}, until, states).as_json()["checks"]["collect-daily"]
    assert (ended["ok"], ended["paused"], ended["pausedUntil"]) == (False, False, None)


@pytest.mark.parametrize("affects", [False, True])
def test_a_volume_anomaly_shows_and_changes_ok_only_when_asked(affects: bool) -> None:
    from cronkeeper.ledger.job_state import JobState

    latest = {"collect-daily": run("collect-daily", ago=timedelta(hours=2))}
    state = JobState(
        "collect-daily",
        evaluated_run_id="id-collect-daily",
        anomaly="low-volume",
        expected_low=165.0,
        expected_high=235.0,
    )
    report = evaluate_health(
        SPECS, latest, NOW, {"collect-daily": state}, volume_affects_health=affects
    )
    daily = report.as_json()["checks"]["collect-daily"]
    assert daily["anomaly"] == "low-volume"
    assert daily["expectedRecords"] == {"low": 165.0, "high": 235.0}
    assert daily["ok"] is not affects
    assert daily["reason"] == ("anomalous" if affects else None)
    stale = evaluate_health(
        SPECS,
        latest,
        NOW,
        {"collect-daily": JobState("collect-daily", evaluated_run_id="old", anomaly="low-volume")},
    ).as_json()["checks"]["collect-daily"]
    assert (stale["anomaly"], stale["expectedRecords"]) == (None, None), "a verdict on another run"


@pytest.mark.parametrize("affects", [False, True])
def test_the_status_page_gives_the_apis_verdict_on_a_volume_anomaly(affects: bool) -> None:
    """It used to evaluate without ``CRONKEEPER_VOLUME_AFFECTS_HEALTH``: the page said OK
    while the API said not ok. Both now ask :mod:`cronkeeper.health` with the same rules."""
    from cronkeeper.health import HealthRules
    from cronkeeper.records import JobState
    from cronkeeper.web.view import Clockface, build_jobs

    latest = run("collect-daily", ago=timedelta(hours=2))
    states = {
        "collect-daily": JobState("collect-daily", evaluated_run_id=latest.id, anomaly="low-volume")
    }
    rules = HealthRules(volume_affects_health=affects)
    api = evaluate_health(SPECS, {"collect-daily": latest}, NOW, states, rules=rules)
    [page] = [
        v
        for v in build_jobs(
            SPECS, {"collect-daily": [latest]}, Clockface("UTC", NOW), states, rules
        )
        if v.name == "collect-daily"
    ]
    assert api.checks[0].ok is not affects
    assert (page.badge == "ok") is api.checks[0].ok


def test_health_and_the_status_page_show_the_skipped_share_of_a_partial_run() -> None:
    from cronkeeper.web.view import Clockface, build_jobs

    partial = RunRow(
        "p1",
        "collect-daily",
        NOW - timedelta(hours=1),
        NOW - timedelta(minutes=50),
        "partial",
        970,
        "skipped 12 of 1000 ad accounts:\n- act_1: (#200) permission denied",
    )
    check = evaluate_health(SPECS, {"collect-daily": partial}, NOW).as_json()["checks"]
    assert check["collect-daily"]["skippedShare"] == 0.012
    assert check["collect-mixpanel"]["skippedShare"] is None, "never ran"
    [view] = [
        v
        for v in build_jobs(SPECS, {"collect-daily": [partial]}, Clockface("UTC", NOW))
        if v.name == "collect-daily"
    ]
    assert view.skipped == "skipped 1.2% of its units (within the 5% tolerance)"
