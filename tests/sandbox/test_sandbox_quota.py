"""The simulated Meta quotas, pure: rolling windows per ad account and per app."""

from __future__ import annotations

import json

from cronkeeper.http.pacing import read_usage
from cronkeeper.sandbox.quota import MetaQuota, QuotaPolicy


class Tick:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_usage_is_reported_on_every_answer_and_read_back_by_the_client() -> None:
    quota = MetaQuota(QuotaPolicy(account_calls=4, app_calls=10, window=60), Tick())
    admission = quota.admit("1")
    assert admission.admitted
    usage = read_usage(dict(admission.headers))
    assert (usage.account, usage.app, usage.account_reset) == (25.0, 10.0, 60.0)


def test_every_answer_carries_all_four_of_metas_usage_headers() -> None:
    """X-App-Usage, X-Ad-Account-Usage, X-Business-Use-Case-Usage, x-fb-ads-insights-throttle
    (Meta's rate-limiting pages; airbyte's api.py reads the same four)."""
    tick = Tick()
    quota = MetaQuota(QuotaPolicy(account_calls=4, app_calls=10, window=60), tick)
    quota.admit("1")
    tick.now += 15
    headers = dict(quota.admit("1").headers)
    assert set(headers) == {
        "X-App-Usage",
        "X-Ad-Account-Usage",
        "X-Business-Use-Case-Usage",
        "x-fb-ads-insights-throttle",
    }
    assert json.loads(headers["X-Ad-Account-Usage"]) == {
        "acc_id_util_pct": 50,
        "reset_time_duration": 60,  # until the newest call leaves the window: usage back to 0
        "ads_api_access_tier": "standard_access",
    }


def test_an_account_over_its_limit_gets_17_2446079_until_its_oldest_call_leaves_the_window() -> (
    None
):
    tick = Tick()
    quota = MetaQuota(QuotaPolicy(account_calls=2, app_calls=100, window=60), tick)
    assert quota.admit("1").admitted
    tick.now += 10
    assert quota.admit("1").admitted
    refused = quota.admit("1")
    assert (refused.admitted, refused.refusal_code) == (False, 17)
    assert refused.regain_seconds == 50
    buc = json.loads(dict(refused.headers)["X-Business-Use-Case-Usage"])
    assert buc["1"][0]["estimated_time_to_regain_access"] == 1  # minutes, rounded up
    assert quota.admit("2").admitted  # other accounts are not affected
    tick.now += 50
    assert quota.admit("1").admitted
    assert [(acc, code) for _, acc, code in quota.refusals] == [("1", 17)]


def test_the_app_limit_refuses_every_account_with_code_4() -> None:
    tick = Tick()
    quota = MetaQuota(QuotaPolicy(account_calls=100, app_calls=3, window=60), tick)
    for account in ("1", "2", "3"):
        assert quota.admit(account).admitted
    for account in ("4", "1"):
        refused = quota.admit(account)
        assert refused.refusal_code == 4
        assert read_usage(dict(refused.headers)).app == 100.0


def test_refused_calls_are_not_counted() -> None:
    tick = Tick()
    quota = MetaQuota(QuotaPolicy(account_calls=1, app_calls=100, window=60), tick)
    assert quota.admit("1").admitted
    for _ in range(5):
        assert not quota.admit("1").admitted
    tick.now += 60
    assert quota.admit("1").admitted


def test_an_account_can_be_refused_with_613_instead() -> None:
    quota = MetaQuota(QuotaPolicy(account_calls=1, app_calls=100, window=60, account_code=613))
    assert quota.admit("1").admitted
    assert quota.admit("1").refusal_code == 613
