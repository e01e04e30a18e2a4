"""The Meta insights simulator over real HTTP: shapes, auth, paging and every fault kind."""

from __future__ import annotations

import email.utils
import json
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest

from cronkeeper.sandbox import Fault, MetaAccount, MetaSimulator, meta_day
from tests.sandbox.helpers import DAY, Serve, meta_params

TOKEN = "meta-token"


def _sim(**kwargs: Any) -> MetaSimulator:
    accounts = [
        MetaAccount("111"),
        MetaAccount("222", pages=3),
        MetaAccount("333", currency="EUR", no_delivery=True),
    ]
    return MetaSimulator(accounts, access_token=TOKEN, **kwargs)


def _get(base: str, account: str, *, token: str | None = TOKEN, **params: str) -> httpx.Response:
    url = f"{base}/v27.0/act_{account}/insights"
    return httpx.get(url, params=meta_params(token=token, extra=params))


def test_success_has_metas_shape_with_numbers_as_strings(serve: Serve) -> None:
    sim = _sim()
    response = _get(serve(sim), "111")

    assert response.status_code == 200
    body = response.json()
    (row,) = body["data"]
    expected = sim.expected("111", DAY)
    assert row == {
        "account_id": "111",
        "account_currency": "USD",
        "date_start": "2025-03-14",
        "date_stop": "2025-03-14",
        "spend": f"{expected.spend:.2f}",
        "impressions": str(expected.impressions),
        "clicks": str(expected.clicks),
        "reach": str(expected.reach),
        "actions": [{"action_type": t, "value": str(v)} for t, v in expected.actions],
    }
    assert {a["action_type"] for a in row["actions"]} <= {
        "link_click",
        "omni_purchase",
        "purchase",
        "offsite_conversion.fb_pixel_purchase",
        "lead",
        "offsite_conversion.fb_pixel_lead",
    }
    assert "next" not in body["paging"]
    usage = json.loads(response.headers["x-business-use-case-usage"])
    assert usage["111"][0]["estimated_time_to_regain_access"] == 0


def test_overlapping_action_types_carry_equal_values_as_meta_sends_them() -> None:
    """Ads Action Stats: omni_purchase, purchase and offsite_conversion.fb_pixel_purchase are
    one purchase seen through nested scopes, so a day lists them with the same value."""
    kinds = {"omni_purchase": 0, "pixel": 0}
    for n in range(60):
        day = meta_day(str(1000 + n), DAY)
        purchases = {v for t, v in day.actions if t.endswith("purchase")}
        leads = {v for t, v in day.actions if t.endswith("lead")}
        assert len(purchases) <= 1
        assert len(leads) <= 1
        kinds["omni_purchase"] += day.action("omni_purchase") > 0
        kinds["pixel"] += day.action("offsite_conversion.fb_pixel_purchase") > 0
        assert day.conversions() == day.action("purchase")
    # some days lack the omni_ or the pixel type, so the precedence list is exercised
    assert 0 < kinds["omni_purchase"] < 60
    assert 0 < kinds["pixel"] < 60


def test_any_version_and_act_prefix_in_fault_keys(serve: Serve) -> None:
    sim = _sim(scripts={"act_111": [Fault.status(503)]})
    base = serve(sim)

    assert httpx.get(f"{base}/v19.0/act_111/insights", params=meta_params()).status_code == 503
    assert httpx.get(f"{base}/v25.0/act_111/insights", params=meta_params()).status_code == 200


@pytest.mark.parametrize("token", [None, "wrong-token", ""])
def test_wrong_or_missing_token_is_oauth_190(serve: Serve, token: str | None) -> None:
    response = _get(serve(_sim()), "111", token=token)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == "Error validating access token: Session has expired"
    assert (error["type"], error["code"], error["error_subcode"]) == ("OAuthException", 190, 463)
    assert error["fbtrace_id"]


def test_bearer_header_is_accepted_like_access_token(serve: Serve) -> None:
    base = serve(_sim())
    response = httpx.get(
        f"{base}/v27.0/act_111/insights",
        params=meta_params(token=None),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )

    assert response.status_code == 200


def test_unknown_account_is_code_100(serve: Serve) -> None:
    response = _get(serve(_sim()), "999")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 100
    assert error["message"].startswith("Unsupported get request.")


def test_bad_time_range_is_code_100(serve: Serve) -> None:
    base = serve(_sim())
    response = httpx.get(
        f"{base}/v27.0/act_111/insights",
        params={**meta_params(), "time_range": '{"since":"2025-03-14"}'},
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == 100


def test_following_next_links_gives_the_row_repeated_on_every_page(serve: Serve) -> None:
    sim = _sim()
    base = serve(sim)
    rows = []
    response = _get(base, "222")
    while True:
        body = response.json()
        rows.extend(body["data"])
        next_url = body["paging"].get("next")
        if next_url is None:
            break
        assert next_url.startswith(base)
        assert f"access_token={TOKEN}" in next_url
        response = httpx.get(next_url)

    expected = sim.expected("222", DAY)
    assert len(rows) == 3
    assert {r["date_start"] for r in rows} == {"2025-03-14"}
    # The day's one row, repeated on every page (never parts that sum to it: issue 19).
    assert all(r == rows[0] for r in rows)
    assert int(rows[0]["impressions"]) == expected.impressions
    assert round(float(rows[0]["spend"]) * 100) == expected.spend_cents
    assert int(rows[0]["clicks"]) == expected.clicks
    assert len(sim.records_for("222")) == 3


def test_fields_limit_the_row(serve: Serve) -> None:
    response = _get(serve(_sim()), "111", fields="spend,impressions")

    assert set(response.json()["data"][0]) == {"spend", "impressions", "date_start", "date_stop"}


def test_time_increment_gives_one_row_per_day(serve: Serve) -> None:
    sim = _sim()
    time_range = json.dumps({"since": "2025-03-01", "until": "2025-03-02"})
    response = _get(serve(sim), "111", time_range=time_range, time_increment="1", limit="1")
    body = response.json()
    second = httpx.get(body["paging"]["next"]).json()

    assert [r["date_start"] for r in body["data"] + second["data"]] == [
        "2025-03-01",
        "2025-03-02",
    ]
    assert second["data"][0]["impressions"] == str(
        sim.expected("111", date(2025, 3, 2)).impressions
    )


def test_a_28_day_range_comes_in_pages_of_25_rows(serve: Serve) -> None:
    """Graph API cursor paging: ``limit`` rows a page (25 without one), ``paging.next`` on
    every page but the last."""
    sim = _sim()
    time_range = json.dumps({"since": "2025-02-01", "until": "2025-02-28"})
    first = _get(serve(sim), "111", time_range=time_range, time_increment="1").json()
    second = httpx.get(first["paging"]["next"]).json()

    assert (len(first["data"]), len(second["data"])) == (25, 3)
    assert "next" not in second["paging"]
    dates = [r["date_start"] for r in first["data"] + second["data"]]
    assert dates == [date(2025, 2, d).isoformat() for d in range(1, 29)]
    assert all(r["date_start"] == r["date_stop"] for r in first["data"])


def test_details_answer_the_accounts_zone_and_currency(serve: Serve) -> None:
    sim = MetaSimulator(
        [MetaAccount("777", currency="KRW", timezone_name="Asia/Seoul", name="Shop")],
        access_token=TOKEN,
    )
    base = serve(sim)
    fields = "name,timezone_name,currency"
    body = httpx.get(f"{base}/v27.0/act_777", params={"fields": fields, "access_token": TOKEN})

    assert body.json() == {
        "id": "act_777",
        "name": "Shop",
        "timezone_name": "Asia/Seoul",
        "currency": "KRW",
    }
    assert [r.key for r in sim.log.records] == ["details:777"]
    denied = httpx.get(f"{base}/v27.0/act_777", params={"fields": fields, "access_token": "x"})
    assert denied.json()["error"]["code"] == 190


def test_with_a_clock_figures_follow_the_accounts_day_and_late_conversions(serve: Serve) -> None:
    """No row for a day not begun in the account's zone, a partial row for its today, and
    conversions that keep growing for 28 days (Meta: insights do not change after 28 days)."""
    now = datetime(2025, 3, 10, 10, 0, tzinfo=UTC)
    sim = MetaSimulator(
        [MetaAccount("1", timezone_name="Pacific/Kiritimati")],  # UTC+14: 2025-03-11 00:00
        access_token=TOKEN,
        clock=lambda: now,
    )
    final = sim.expected("1", date(2025, 3, 1))
    assert sim.served("1", date(2025, 3, 12)) is None
    today = sim.served("1", date(2025, 3, 11))
    assert today is not None and today.impressions == 0
    young = sim.served("1", date(2025, 3, 1))
    assert young is not None
    assert young.impressions == final.impressions
    assert young.conversions() < final.conversions() or final.conversions() < 2
    assert sim.served("1", date(2025, 2, 1)) == sim.expected("1", date(2025, 2, 1))

    time_range = json.dumps({"since": "2025-03-10", "until": "2025-03-12"})
    body = _get(serve(sim), "1", time_range=time_range, time_increment="1").json()
    assert [r["date_start"] for r in body["data"]] == ["2025-03-10", "2025-03-11"]


def test_account_without_delivery_answers_empty_data(serve: Serve) -> None:
    response = _get(serve(_sim()), "333")

    assert response.status_code == 200
    assert response.json()["data"] == []


def test_429_with_retry_after_seconds(serve: Serve) -> None:
    base = serve(_sim(scripts={"111": [Fault.status(429, retry_after="2")]}))
    response = _get(base, "111")

    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert "error" in response.json()


def test_429_without_retry_after_sends_no_header(serve: Serve) -> None:
    response = _get(serve(_sim(scripts={"111": [Fault.status(429)]})), "111")

    assert response.status_code == 429
    assert "retry-after" not in response.headers


def test_429_with_an_http_date_never_earlier_than_asked(serve: Serve) -> None:
    base = serve(_sim(scripts={"111": [Fault.retry_after_date(seconds=3)]}))
    before = datetime.now(UTC).timestamp()
    response = _get(base, "111")

    assert response.status_code == 429
    when = email.utils.parsedate_to_datetime(response.headers["retry-after"])
    assert response.headers["retry-after"].endswith(" GMT")
    assert before + 3 <= when.timestamp() <= before + 5


def test_meta_throttle_sends_the_business_use_case_header(serve: Serve) -> None:
    fault = Fault.meta_error(80000, regain_minutes=4)
    response = _get(serve(_sim(scripts={"111": [fault]})), "111")

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["error_subcode"]) == (80000, 2446079)
    usage = json.loads(response.headers["x-business-use-case-usage"])
    assert usage["111"][0]["estimated_time_to_regain_access"] == 4
    assert usage["111"][0]["type"] == "ads_insights"


def test_meta_transient_error_flag(serve: Serve) -> None:
    fault = Fault.meta_error(2, http_status=500, is_transient=True)
    response = _get(serve(_sim(scripts={"111": [fault]})), "111")

    assert response.status_code == 500
    assert response.json()["error"]["is_transient"] is True


def test_expired_token_fault_even_with_a_good_token(serve: Serve) -> None:
    response = _get(serve(_sim(scripts={"111": [Fault.expired_token()]})), "111")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == 190


@pytest.mark.parametrize("status", [408, 500, 502, 503])
def test_plain_error_statuses(serve: Serve, status: int) -> None:
    response = _get(serve(_sim(scripts={"111": [Fault.status(status)]})), "111")

    assert response.status_code == status
    assert "code" not in response.json()["error"]  # not mistaken for a Meta error code


def test_malformed_shape_and_invalid_json(serve: Serve) -> None:
    base = serve(_sim(scripts={"111": [Fault.malformed("shape"), Fault.malformed("json")]}))

    shape = _get(base, "111")
    broken = _get(base, "111")

    assert (shape.status_code, shape.json()) == (200, {"data": "oops"})
    assert broken.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        broken.json()


def test_script_runs_in_order_then_normal_answers(serve: Serve) -> None:
    sim = _sim(scripts={"111": [Fault.status(429, "1"), Fault.meta_throttle(17)]})
    base = serve(sim)

    statuses = [_get(base, "111").status_code for _ in range(4)]

    assert statuses == [429, 400, 200, 200]
    assert [r.fault for r in sim.records_for("111")] == ["status:429", "meta:17", None, None]


def test_always_fails_one_account_and_leaves_the_others_alone(serve: Serve) -> None:
    sim = _sim(always={"111": Fault.status(500)})
    base = serve(sim)

    assert [_get(base, "111").status_code for _ in range(3)] == [500, 500, 500]
    assert _get(base, "222").status_code == 200


def test_same_seed_same_data_other_seed_other_data(serve: Serve) -> None:
    base = serve(_sim(seed=5))
    first = _get(base, "111").json()
    second = _get(base, "111").json()
    base = serve(_sim(seed=5))
    third = _get(base, "111").json()
    base = serve(_sim(seed=6))
    other = _get(base, "111").json()

    assert first == second == third
    assert other["data"] != first["data"]


def test_log_records_query_key_status_and_arrival(serve: Serve) -> None:
    sim = _sim(scripts={"111": [Fault.status(503)]})
    base = serve(sim)
    _get(base, "111")
    _get(base, "111")

    first, second = sim.records_for("111")
    assert first.at <= second.at
    assert (first.status, second.status) == (503, 200)
    assert first.query["level"] == "account"
    assert first.path == "/v27.0/act_111/insights"
    assert first.wall.tzinfo is UTC
