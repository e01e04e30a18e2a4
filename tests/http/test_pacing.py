"""Pacing rules, pure: usage headers in, waits out (no I/O, no sleeping)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from cronkeeper.http.pacing import SOURCE, Pacer, PacingPolicy, Usage, read_usage

T0 = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def buc(account: str, **entry: float) -> dict[str, str]:
    return {"X-Business-Use-Case-Usage": json.dumps({account: [{"type": "ads_insights", **entry}]})}


def test_reads_the_largest_percentage_of_each_header() -> None:
    headers = {
        "x-app-usage": json.dumps({"call_count": 12, "total_cputime": 40, "total_time": 7}),
        **buc("123", call_count=30, total_cputime=81, total_time=2),
    }
    assert read_usage(headers) == Usage(app=40.0, account=81.0, regain_seconds=None)


def test_insights_throttle_counts_for_app_and_account() -> None:
    headers = {"X-FB-Ads-Insights-Throttle": '{"app_id_util_pct": 91.5, "acc_id_util_pct": 3}'}
    assert read_usage(headers) == Usage(app=91.5, account=3.0)


def test_regain_time_is_minutes() -> None:
    usage = read_usage(buc("9", call_count=100, estimated_time_to_regain_access=7))
    assert usage.regain_seconds == 420.0
    assert usage.account == 100.0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-App-Usage": "not json"},
        {"X-App-Usage": '{"call_count": "lots"}'},
        {"X-Business-Use-Case-Usage": '{"1": [{"call_count": -5}]}'},
        {"X-Business-Use-Case-Usage": '["x"]'},
        {"X-FB-Ads-Insights-Throttle": '{"app_id_util_pct": true}'},
    ],
)
def test_unreadable_usage_is_not_reported(headers: dict[str, str]) -> None:
    usage = read_usage(headers)
    assert usage.app is None
    assert usage.account is None


def test_a_scope_at_or_above_the_high_water_mark_pauses() -> None:
    policy = PacingPolicy(high_water=80, pause=60)
    assert policy.gap(None) == 0
    assert policy.gap(79.9) == 0
    assert policy.gap(80) == 60
    assert policy.gap(100) == 60
    assert policy.gap(250) == 60


def test_busy_account_is_slowed_and_others_are_not() -> None:
    clock = FakeClock()
    pacer = Pacer(PacingPolicy(high_water=75, pause=60), clock)
    pacer.observe("act_1", Usage(account=95))
    pacer.observe("act_2", Usage(account=10))
    assert pacer.delay("act_1") == 60
    assert pacer.delay("act_2") == 0
    clock.advance(60)
    assert pacer.delay("act_1") == 0


def test_app_usage_slows_every_account() -> None:
    clock = FakeClock()
    pacer = Pacer(PacingPolicy(high_water=50, pause=10), clock)
    pacer.observe("act_1", Usage(app=100))
    assert pacer.delay("act_1") == 10
    assert pacer.delay("act_2") == 10
    assert pacer.delay(SOURCE) == 10


def test_a_named_wait_is_never_shortened() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    pacer.hold("act_1", 600)
    pacer.hold("act_1", 5)  # a later, shorter ask does not bring the time forward
    pacer.observe("act_1", Usage(account=1))
    clock.advance(599)
    assert pacer.delay("act_1") == pytest.approx(1)
    assert pacer.not_before("act_1") == T0 + timedelta(seconds=600)
    clock.advance(1)
    assert pacer.not_before("act_1") is None


def test_regain_time_holds_the_account() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    pacer.observe("act_1", read_usage(buc("1", call_count=100, estimated_time_to_regain_access=3)))
    assert pacer.delay("act_1") == 180
    assert pacer.delay("act_2") == 0


def test_source_hold_pauses_every_unit_once() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    pacer.hold(SOURCE, 120)
    assert [pacer.delay(f"act_{i}") for i in range(3)] == [120, 120, 120]
