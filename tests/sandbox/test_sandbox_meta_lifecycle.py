"""The Meta simulator's outside-world behaviour (issue 18), over real HTTP.

Each behaviour follows a page of Meta's, cited in ``cronkeeper.sandbox.meta``: versions expire
(Marketing API versions page) and are refused with #2635; every answer carries Meta's four
usage headers, and a quota refusal has the code and subcode of its scope (Marketing API
rate-limiting page).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from cronkeeper.http.pacing import read_usage
from cronkeeper.sandbox import MetaAccount, MetaQuota, MetaSimulator, QuotaPolicy
from tests.sandbox.helpers import DAY, Serve, meta_params

TOKEN = "meta-token"


def _sim(**kwargs: Any) -> MetaSimulator:
    return MetaSimulator([MetaAccount("111")], access_token=TOKEN, **kwargs)


def _get(base: str, version: str, path: str = "/act_111/insights") -> httpx.Response:
    return httpx.get(f"{base}/{version}{path}", params=meta_params())


def test_an_expired_version_is_answered_2635_and_a_current_one_is_served(serve: Serve) -> None:
    base = serve(_sim(clock=lambda: datetime(2026, 12, 4, tzinfo=UTC)))

    refused = _get(base, "v24.0")
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert (error["code"], error["type"]) == (2635, "OAuthException")
    assert error["message"].startswith(
        "(#2635) You are calling a deprecated version of the Ads API"
    )
    assert _get(base, "v25.0").status_code == 200
    assert _get(base, "v27.0").status_code == 200
    assert _get(base, "v24.0", "/act_111").status_code == 400  # the details call too


def test_a_version_is_served_until_the_day_it_expires(serve: Serve) -> None:
    now = datetime(2026, 11, 9, 23, 0, tzinfo=UTC)
    base = serve(_sim(clock=lambda: now))
    assert _get(base, "v24.0").status_code == 200


def test_versions_older_than_the_table_are_refused_and_newer_ones_served(serve: Serve) -> None:
    base = serve(_sim(clock=lambda: datetime(2026, 12, 4, tzinfo=UTC)))
    assert _get(base, "v12.0").json()["error"]["code"] == 2635
    assert _get(base, "v28.0").status_code == 200


def test_the_version_table_is_the_simulators_to_set(serve: Serve) -> None:
    sim = _sim(versions={"v27.0": datetime(2026, 12, 1).date()})
    base = serve(sim)
    assert _get(base, "v27.0").json()["error"]["code"] == 2635


USAGE_HEADERS = {
    "x-app-usage",
    "x-ad-account-usage",
    "x-business-use-case-usage",
    "x-fb-ads-insights-throttle",
}


def test_every_insights_answer_carries_the_four_usage_headers(serve: Serve) -> None:
    response = _get(serve(_sim()), "v27.0")
    assert response.status_code == 200
    assert set(response.headers) >= USAGE_HEADERS
    assert read_usage(response.headers).account is not None


def _quota_sim(**policy: Any) -> MetaSimulator:
    tick = [1000.0]
    quota = MetaQuota(QuotaPolicy(window=60, **policy), clock=lambda: tick[0])
    return _sim(quota=quota)


def test_an_account_over_its_quota_is_refused_17_2446079(serve: Serve) -> None:
    base = serve(_quota_sim(account_calls=1, app_calls=100))
    assert _get(base, "v27.0").status_code == 200
    refused = _get(base, "v27.0")
    error = refused.json()["error"]
    assert (refused.status_code, error["code"], error["error_subcode"]) == (400, 17, 2446079)
    assert set(refused.headers) >= USAGE_HEADERS


def test_an_account_can_be_refused_613_1487742(serve: Serve) -> None:
    base = serve(_quota_sim(account_calls=1, app_calls=100, account_code=613))
    _get(base, "v27.0")
    error = _get(base, "v27.0").json()["error"]
    assert (error["code"], error["error_subcode"]) == (613, 1487742)
    assert "too many calls from this ad-account" in error["message"]


def test_the_app_over_its_quota_is_refused_4_1504022(serve: Serve) -> None:
    base = serve(_quota_sim(account_calls=100, app_calls=1))
    _get(base, "v27.0")
    error = _get(base, "v27.0").json()["error"]
    assert (error["code"], error["error_subcode"]) == (4, 1504022)
    assert "too many calls from this app" in error["message"]


def test_a_range_longer_than_max_range_days_times_out_as_meta_documents(serve: Serve) -> None:
    sim = MetaSimulator([MetaAccount("111", max_range_days=7)], access_token=TOKEN)
    base = serve(sim)
    url = f"{base}/v27.0/act_111/insights"

    def ask(days: int) -> httpx.Response:
        since = DAY - timedelta(days=days - 1)
        span = json.dumps({"since": since.isoformat(), "until": DAY.isoformat()})
        return httpx.get(url, params=meta_params(extra={"time_range": span}))

    error = ask(8).json()["error"]
    assert (error["code"], error["error_subcode"]) == (100, 1504018)
    assert "Try a smaller date range" in error["message"]
    assert ask(7).status_code == 200


def test_the_timeout_can_be_metas_code_2_variant(serve: Serve) -> None:
    sim = MetaSimulator([MetaAccount("111", max_range_days=0, timeout_code=2)], access_token=TOKEN)
    error = _get(serve(sim), "v27.0").json()["error"]
    assert (error["code"], error["error_subcode"]) == (2, 1504038)
