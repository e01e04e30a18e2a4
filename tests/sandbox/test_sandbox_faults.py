"""The fault plan and the deterministic data, without any I/O (except one subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date

import pytest

from cronkeeper.sandbox import Fault, FaultMix, FaultPlan, MetaDay, meta_day, mixpanel_count


def test_script_is_consumed_in_order_then_answers_normally() -> None:
    first, second = Fault.status(503), Fault.meta_throttle(17)
    plan = FaultPlan.build(scripts={"1": [first, second]})

    assert [plan.next_fault("1") for _ in range(4)] == [first, second, None, None]
    assert plan.pending("1") == 0


def test_none_in_a_script_means_one_normal_answer() -> None:
    fault = Fault.status(500)
    plan = FaultPlan.build(scripts={"k": [None, fault]})

    assert [plan.next_fault("k") for _ in range(3)] == [None, fault, None]


def test_always_serves_every_request_after_the_script() -> None:
    scripted, forever = Fault.status(429, "1"), Fault.status(500)
    plan = FaultPlan.build(scripts={"k": [scripted]}, always={"k": forever})

    assert [plan.next_fault("k") for _ in range(4)] == [scripted, forever, forever, forever]
    assert plan.next_fault("other") is None


def test_always_can_be_lifted() -> None:
    plan = FaultPlan.build(always={"k": Fault.status(500)})
    plan.set_always("k", None)

    assert plan.next_fault("k") is None


def test_same_seed_gives_the_same_fault_sequence_per_key() -> None:
    mix = FaultMix(p429=0.2, p5xx=0.2, pdrop=0.05, seed=7)
    again = FaultMix(p429=0.2, p5xx=0.2, pdrop=0.05, seed=7)
    other = FaultMix(p429=0.2, p5xx=0.2, pdrop=0.05, seed=8)

    def sequence(m: FaultMix) -> list[str | None]:
        plan = FaultPlan.build(mix=m)
        return [f.describe() if (f := plan.next_fault("acct")) else None for _ in range(200)]

    assert sequence(mix) == sequence(again)
    assert sequence(mix) != sequence(other)


def test_mix_follows_its_probabilities() -> None:
    mix = FaultMix(p429=0.3, retry_after="2", p5xx=0.1, seed=1)
    faults = [mix.pick(f"k{i % 10}", i // 10) for i in range(2000)]
    n429 = sum(1 for f in faults if f is not None and f.http_status == 429)
    n5xx = sum(1 for f in faults if f is not None and f.http_status >= 500)

    assert 500 < n429 < 700
    assert 130 < n5xx < 270
    assert all(f.retry_after == "2" for f in faults if f is not None and f.http_status == 429)


def test_mix_rejects_probabilities_above_one() -> None:
    with pytest.raises(ValueError, match="at most 1"):
        FaultMix(p429=0.6, p5xx=0.6)


def test_status_fault_needs_an_error_code() -> None:
    with pytest.raises(ValueError, match="4xx or 5xx"):
        Fault.status(200)


def test_expired_token_is_meta_190_subcode_463() -> None:
    fault = Fault.expired_token()

    assert (fault.meta_code, fault.meta_subcode, fault.http_status) == (190, 463, 400)
    assert "Session has expired" in fault.meta_message


def test_split_rows_sum_exactly_to_the_day() -> None:
    day = meta_day("123", date(2025, 1, 2))
    parts = day.split(4)

    assert sum(p.spend_cents for p in parts) == day.spend_cents
    assert sum(p.impressions for p in parts) == day.impressions
    assert sum(p.clicks for p in parts) == day.clicks
    assert sum(p.reach for p in parts) == day.reach
    assert sum(p.conversions() for p in parts) == day.conversions()
    assert {p.date_start for p in parts} == {day.date_start}


def test_total_adds_up_a_range() -> None:
    days = [meta_day("9", date(2025, 1, d)) for d in (1, 2, 3)]
    total = MetaDay.total(days)

    assert total.impressions == sum(d.impressions for d in days)
    assert (total.date_start, total.date_stop) == (date(2025, 1, 1), date(2025, 1, 3))


def test_data_is_the_same_in_another_process_with_another_hash_seed() -> None:
    code = (
        "from datetime import date; from cronkeeper.sandbox import meta_day, mixpanel_count;"
        "d = meta_day('123', date(2025, 1, 2), seed=3);"
        "print(d.spend_cents, d.impressions, d.clicks, mixpanel_count('42', 'Sign Up', "
        "date(2025, 1, 2), seed=3))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    here = meta_day("123", date(2025, 1, 2), seed=3)

    assert [int(x) for x in out] == [
        here.spend_cents,
        here.impressions,
        here.clicks,
        mixpanel_count("42", "Sign Up", date(2025, 1, 2), seed=3),
    ]


def test_seed_changes_the_data() -> None:
    assert meta_day("1", date(2025, 1, 1), seed=1) != meta_day("1", date(2025, 1, 1), seed=2)
