"""Pure parts of the status page: sessions, the failure limiter, schedules, charts, views."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr

from cronkeeper.auth import FailureLimiter, Sessions, safe_next, secret_matches, session_key
from cronkeeper.config import DEFAULT_JOBS, JobSpec
from cronkeeper.ledger import RunRow
from cronkeeper.web.charts import sparkline
from cronkeeper.web.schedule import next_run
from cronkeeper.web.view import Clockface, build_jobs, format_seconds, run_state
from tests.conftest import FakeClock

SECRET = SecretStr("test-secret-0123456789")
SEOUL = ZoneInfo("Asia/Seoul")
NOW = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


# -- secret and sessions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("submitted", "secret", "expected"),
    [
        ("test-secret-0123456789", SECRET, True),
        ("test-secret-012345678", SECRET, False),
        ("test-secret-0123456789 ", SECRET, False),
        ("", SECRET, False),
        ("", SecretStr(""), False),
        ("None", None, False),
        ("", None, False),
        ("비밀-secret", SecretStr("비밀-secret"), True),
    ],
)
def test_secret_matches_only_the_configured_non_empty_secret(
    submitted: str, secret: SecretStr | None, expected: bool
) -> None:
    assert secret_matches(submitted, secret) is expected


def test_the_session_key_depends_on_the_secret_and_hides_it() -> None:
    key = session_key("test-secret-0123456789")
    assert len(key) == 32
    assert key != session_key("test-secret-0123456780")
    assert b"test-secret" not in key


def test_a_session_lasts_exactly_12_hours() -> None:
    clock = FakeClock(NOW)
    sessions = Sessions(SECRET, clock)
    token = sessions.issue()
    assert "test-secret" not in token
    assert sessions.valid(token)
    clock.advance(hours=12)
    assert sessions.valid(token)
    clock.advance(seconds=1)
    assert not sessions.valid(token)


def test_a_session_from_the_future_or_another_secret_is_refused() -> None:
    clock = FakeClock(NOW)
    sessions = Sessions(SECRET, clock)
    clock.advance(minutes=5)
    early = sessions.issue()
    clock.advance(minutes=-10)
    assert not sessions.valid(early)  # clock moved back: signed "in the future"
    other = Sessions(SecretStr("another-secret-0123456789"), clock)
    assert not sessions.valid(other.issue())
    assert not other.valid(sessions.issue())
    for junk in (None, "", ".", "a.b.c", "x" * 5000, "é.é.é"):
        assert not sessions.valid(junk)


def test_without_a_secret_sessions_are_disabled() -> None:
    sessions = Sessions(None, FakeClock(NOW))
    assert not sessions.enabled
    with pytest.raises(RuntimeError):
        sessions.issue()
    token = Sessions(SECRET, FakeClock(NOW)).issue()
    assert not sessions.valid(token)
    assert not Sessions(SecretStr(""), FakeClock(NOW)).enabled


# -- the failure limiter ----------------------------------------------------------------------


def test_the_limiter_blocks_the_fifth_failure_until_the_window_slides_past_it() -> None:
    clock = FakeClock(NOW)
    limiter = FailureLimiter(clock, max_failures=5, window=timedelta(minutes=5))
    for _ in range(4):
        assert limiter.retry_after("a") is None
        limiter.failed("a")
        clock.advance(seconds=30)
    assert limiter.retry_after("a") is None
    limiter.failed("a")  # the fifth, at +120 s
    assert limiter.retry_after("a") == 180  # the oldest failure (at 0 s) leaves at +300 s
    assert limiter.retry_after("b") is None
    clock.advance(seconds=179)
    assert limiter.retry_after("a") == 1
    clock.advance(seconds=1)
    assert limiter.retry_after("a") is None  # one failure left the window: one more try
    limiter.failed("a")
    assert limiter.retry_after("a") == 30  # blocked until the second-oldest leaves


def test_a_success_forgets_the_clients_failures() -> None:
    clock = FakeClock(NOW)
    limiter = FailureLimiter(clock, max_failures=2)
    limiter.failed("a")
    limiter.succeeded("a")
    limiter.failed("a")
    assert limiter.retry_after("a") is None


def test_the_limiter_remembers_a_bounded_number_of_clients() -> None:
    clock = FakeClock(NOW)
    limiter = FailureLimiter(clock, max_failures=1, max_clients=100)
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter) <= 100
    assert limiter.retry_after("10.0.3.231") is not None  # the newest are kept
    clock.advance(minutes=6)
    limiter.failed("fresh")
    assert len(limiter) == 1  # expired entries go first


def test_the_limiter_needs_a_positive_limit() -> None:
    with pytest.raises(ValueError):
        FailureLimiter(FakeClock(NOW), max_failures=0)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (None, "/status"),
        ("", "/status"),
        ("/status", "/status"),
        ("/status/runs/abc", "/status/runs/abc"),
        ("/status?job=collect-daily&status=error", "/status?job=collect-daily&status=error"),
        ("/statusx", "/status"),
        ("/api/cron/health", "/status"),
        ("https://evil.example/status", "/status"),
        ("//evil.example/status", "/status"),
        ("/\\evil.example", "/status"),
        ("/status\r\nSet-Cookie: x=1", "/status"),
        ("javascript:alert(1)", "/status"),
    ],
)
def test_safe_next_only_returns_status_page_paths(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


# -- schedules --------------------------------------------------------------------------------


def test_next_run_follows_crontab_in_the_configured_zone() -> None:
    # Friday 2026-11-27 12:00 in Seoul.
    assert next_run("0 1 * * *", SEOUL, NOW) == datetime(2026, 11, 28, 1, 0, tzinfo=SEOUL)
    assert next_run("0 2 * * 1", SEOUL, NOW) == datetime(2026, 11, 30, 2, 0, tzinfo=SEOUL)
    assert next_run("0 2 * * 0", SEOUL, NOW) == datetime(2026, 11, 29, 2, 0, tzinfo=SEOUL)
    at_one = datetime(2026, 11, 27, 1, 0, tzinfo=SEOUL)
    assert next_run("0 1 * * *", SEOUL, at_one) == at_one + timedelta(days=1)
    assert next_run("not a cron", SEOUL, NOW) is None
    assert next_run("61 * * * *", SEOUL, NOW) is None
    # Day of month *or* day of week, as cron reads it: the 1st, or any Monday.
    assert next_run("0 9 1 * 1", SEOUL, NOW) == datetime(2026, 11, 30, 9, 0, tzinfo=SEOUL)
    # Across a DST change the wall-clock time stays: 01:00 New York, EDT then EST.
    new_york = ZoneInfo("America/New_York")
    before = datetime(2026, 10, 31, 12, 0, tzinfo=new_york)
    first = next_run("0 1 * * *", new_york, before)
    assert first is not None and (first.hour, first.utcoffset()) == (1, timedelta(hours=-4))
    second = next_run("0 1 * * *", new_york, first + timedelta(minutes=1))
    assert second is not None and (second.hour, second.utcoffset()) == (1, timedelta(hours=-5))


# -- charts -----------------------------------------------------------------------------------


def test_a_sparkline_scales_from_zero_so_a_drop_looks_like_one() -> None:
    line = sparkline([100, 50, 100], width=104, height=24, pad=2)
    assert line.path == "M2 2 L52 12 L102 2"
    assert line.last == (102.0, 2.0)
    assert (line.latest, line.high, line.points) == (100, 100, 3)


def test_a_missing_value_breaks_the_line() -> None:
    line = sparkline([1, None, 1, 2], width=64, height=12, pad=2)
    assert line.path == "M2 6 M42 6 L62 2"
    assert line.points == 3
    assert sparkline([1, None]).last is None


def test_sparkline_edge_cases() -> None:
    assert sparkline([]).empty
    assert sparkline([None, None]).path == ""
    flat = sparkline([0, 0], width=20, height=10, pad=2)
    assert flat.path == "M2 8 L18 8"
    assert sparkline([5], width=20, height=10, pad=2).path == "M10 2"
    padded = sparkline([1, 1], slots=5, width=42, height=10, pad=1)
    assert padded.path == "M31 1 L41 1"  # right-aligned in five slots


# -- formatting and views ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "—"),
        (0.0, "0.0 s"),
        (4.24, "4.2 s"),
        (42.4, "42 s"),
        (125, "2m 05s"),
        (3725, "1h 02m"),
        (90000, "1d 01h"),
    ],
)
def test_format_seconds(seconds: float | None, text: str) -> None:
    assert format_seconds(seconds) == text


def test_the_clockface_names_the_zone() -> None:
    seoul = Clockface("Asia/Seoul", NOW)
    assert seoul.short(NOW) == "2026-11-27 12:00 KST"
    assert seoul.full(NOW) == "2026-11-27 12:00:00 KST (Asia/Seoul)"
    assert seoul.zone_label() == "KST (Asia/Seoul)"
    utc = Clockface("UTC", NOW)
    assert utc.full(NOW) == "2026-11-27 03:00:00 UTC"
    assert utc.zone_label() == "UTC"
    assert seoul.short(None) == "—"
    assert seoul.relative(NOW - timedelta(hours=3, minutes=5)) == "3 h ago"
    assert seoul.relative(NOW + timedelta(minutes=40)) == "in 40 min"
    assert seoul.relative(NOW - timedelta(days=4)) == "4 d ago"
    assert seoul.relative(NOW) == "just now"


def run(name: str, hours_ago: float, status: str, records: int = 10, took: float = 60) -> RunRow:
    started = NOW - timedelta(hours=hours_ago)
    finished = None if status == "running" else started + timedelta(seconds=took)
    return RunRow(f"id-{name}-{hours_ago}", name, started, finished, status, records, None)


def test_a_running_run_past_its_max_runtime_is_stuck() -> None:
    spec = JobSpec("j", "0 1 * * *", timedelta(days=1), timedelta(hours=1), monitored=True)
    assert run_state(run("j", 0.5, "running"), spec, NOW) == "running"
    assert run_state(run("j", 1.5, "running"), spec, NOW) == "stuck"
    assert run_state(run("j", 1.5, "error"), spec, NOW) == "error"
    assert run_state(run("j", 1.5, "running"), None, NOW) == "running"


def test_views_judge_monitored_jobs_like_health_and_leave_the_others_unjudged() -> None:
    runs = {
        "sync-notion": [run("sync-notion", 2, "error")],
        "collect-daily": [run("collect-daily", 30, "success")],
        "collect-mixpanel": [
            run("collect-mixpanel", 3, "running"),
            run("collect-mixpanel", 27, "partial"),
        ],
    }
    views = build_jobs(DEFAULT_JOBS, runs, Clockface("UTC", NOW))
    assert [v.name for v in views] == [
        "collect-daily",
        "collect-mixpanel",
        "collect-benchmarks",
        "sync-notion",
    ]
    by_name = {v.name: v for v in views}
    assert (by_name["collect-daily"].badge, by_name["collect-daily"].reason) == (
        "not-ok",
        "missing: no run since its 2026-11-26 01:00 UTC fire (1h grace)",
    )
    assert by_name["collect-mixpanel"].badge_text == "stuck"
    assert by_name["collect-mixpanel"].reason == "stuck: running for 3h 00m (limit 1h)"
    assert by_name["collect-mixpanel"].latest_state == "stuck"
    assert [c.state for c in by_name["collect-mixpanel"].cells[-2:]] == ["partial", "stuck"]
    assert by_name["collect-mixpanel"].records.last is None  # no records yet: a gap, not a 0
    assert (by_name["collect-benchmarks"].badge_text, by_name["collect-benchmarks"].reason) == (
        "never ran",
        "never ran",
    )
    notion = by_name["sync-notion"]
    assert (notion.badge, notion.latest_state) == ("unmonitored", "error")
    assert len(notion.cells) == 30 and notion.cells[0].state == "empty"
    assert notion.cells[-1].title.startswith("2026-11-27 01:00 UTC · error · 1m 00s · 10 records")


def test_a_paused_job_shows_an_ok_paused_badge_with_its_end() -> None:
    from cronkeeper.ledger.job_state import JobState

    until = NOW + timedelta(hours=2)
    states = {
        "collect-daily": JobState("collect-daily", paused=True, paused_until=until),
        "collect-mixpanel": JobState("collect-mixpanel", paused=True),
    }
    views = {v.name: v for v in build_jobs(DEFAULT_JOBS, {}, Clockface("UTC", NOW), states)}
    daily, mixpanel = views["collect-daily"], views["collect-mixpanel"]
    assert (daily.badge, daily.badge_text) == ("ok", "paused")
    assert daily.reason.startswith("paused until ") and "05:00" in daily.reason
    assert (mixpanel.badge, mixpanel.reason) == ("ok", "paused until resumed")
    assert views["collect-benchmarks"].badge == "not-ok", "never ran, not paused"


def test_the_records_chart_draws_the_expected_range_on_the_same_scale() -> None:
    line = sparkline([200.0, 200.0, 20.0], width=120, height=28, pad=2.0, band=(160.0, 240.0))
    assert line.band is not None
    top, bottom = line.band
    # The scale runs to the band's top (240), not the highest run (200): 24 px for 240.
    assert top == 2.0 and bottom == pytest.approx(28 - 2 - 160 * 24 / 240, abs=0.1)
    assert line.high == 200.0
    assert sparkline([200.0]).band is None
