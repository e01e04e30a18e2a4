"""Meta's four usage headers and its throttle codes, as its pages document them (issue 18.2).

- ``X-Ad-Account-Usage`` (``acc_id_util_pct``, ``reset_time_duration`` in seconds): read by
  airbyte's source-facebook-marketing (``api.py``, ``_parse_call_rate_header``); main never
  read it.
- Scopes: Meta's Marketing API rate-limiting page ties 17/2446079 and 613/1487742 to the ad
  account, 4/1504022 and 4/1504039 (also on the Ads Insights API error-code page) to the app.
- A throttle with no estimate waits the documented blocking period (300 s on the development
  tier, 60 s on the standard tier), not 3 s then 6 s.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from cronkeeper.http import classify
from cronkeeper.http.classify import BLOCK_SETTING
from cronkeeper.http.pacing import SOURCE_WIDE_META_CODES, Pacer, PacingPolicy, read_usage

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _meta(code: int, subcode: int | None = None) -> bytes:
    error: dict[str, object] = {"message": "throttled", "type": "OAuthException", "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    return json.dumps({"error": error}).encode()


def _ad_account(pct: float, reset: float) -> dict[str, str]:
    value = {"acc_id_util_pct": pct, "reset_time_duration": reset, "ads_api_access_tier": "x"}
    return {"X-Ad-Account-Usage": json.dumps(value)}


def test_x_ad_account_usage_is_read_into_the_accounts_usage() -> None:
    usage = read_usage(_ad_account(93.5, 120))
    assert (usage.account, usage.account_reset, usage.app) == (93.5, 120.0, None)


def test_the_largest_account_figure_of_all_headers_wins() -> None:
    headers = _ad_account(40, 10) | {
        "x-fb-ads-insights-throttle": json.dumps({"app_id_util_pct": 5, "acc_id_util_pct": 70})
    }
    assert read_usage(headers).account == 70


@pytest.mark.parametrize("bad", ["", "not json", "[]", '{"acc_id_util_pct": "x"}'])
def test_an_unreadable_x_ad_account_usage_counts_as_not_reported(bad: str) -> None:
    assert read_usage({"X-Ad-Account-Usage": bad}).account is None


def test_an_account_at_the_mark_waits_its_reset_when_that_is_sooner_than_the_pause() -> None:
    clock = lambda: NOW  # noqa: E731
    pacer = Pacer(PacingPolicy(high_water=90, pause=60), clock=clock)
    pacer.observe("act_1", read_usage(_ad_account(95, 20)))
    pacer.observe("act_2", read_usage(_ad_account(95, 600)))
    pacer.observe("act_3", read_usage(_ad_account(50, 600)))  # below the mark: no hold
    assert (pacer.delay("act_1"), pacer.delay("act_2"), pacer.delay("act_3")) == (20, 60, 0)


def test_only_app_codes_hold_the_whole_source() -> None:
    assert {4, 341} == set(SOURCE_WIDE_META_CODES)
    assert 17 not in SOURCE_WIDE_META_CODES  # main held the whole source on 17


@pytest.mark.parametrize(
    ("code", "subcode"), [(17, 2446079), (613, 1487742), (4, 1504022), (4, 1504039)]
)
def test_a_throttle_without_estimate_waits_the_blocking_period(code: int, subcode: int) -> None:
    verdict = classify(400, {}, _meta(code, subcode), NOW, throttle_block=300)
    assert (verdict.kind, verdict.reason) == ("retry", "meta_throttle")
    assert (verdict.server_wait, verdict.wait_source) == (300, BLOCK_SETTING)


def test_without_a_configured_block_the_default_schedule_applies() -> None:
    assert classify(400, {}, _meta(17, 2446079), NOW).server_wait is None


def test_an_account_throttle_waits_metas_reset_time_duration_when_given() -> None:
    verdict = classify(400, _ad_account(100, 120), _meta(17, 2446079), NOW, throttle_block=300)
    assert (verdict.server_wait, verdict.wait_source) == (120, "X-Ad-Account-Usage")


def test_an_app_throttle_does_not_take_the_accounts_reset_for_its_own() -> None:
    verdict = classify(400, _ad_account(10, 5), _meta(4, 1504022), NOW, throttle_block=300)
    assert (verdict.server_wait, verdict.wait_source) == (300, BLOCK_SETTING)


def test_a_non_throttle_failure_gets_no_block() -> None:
    assert classify(503, {}, b"", NOW, throttle_block=300).server_wait is None
