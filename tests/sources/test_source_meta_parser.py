"""parse_insights_page: Meta's insights page in, MetaInsight records out, or a precise error."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from cronkeeper.errors import PayloadError
from cronkeeper.sources import (
    AccountDetails,
    MetaInsight,
    normalize_ad_account_id,
    parse_account_details,
    parse_insights_page,
)

CONVERSIONS = ("omni_purchase", "purchase", "offsite_conversion.fb_pixel_purchase")
LEADS = ("lead", "onsite_conversion.lead_grouped", "offsite_conversion.fb_pixel_lead")
TOKEN = "EAAGm0PX4ZCpsBAKZCsecretTOKEN123"


def row(**overrides: Any) -> dict[str, Any]:
    """An account-level row as the Graph API sends it: every number a string."""
    base: dict[str, Any] = {
        "spend": "123.45",
        "impressions": "10000",
        "clicks": "250",
        "reach": "8000",
        "actions": [
            # As Meta sends them: one purchase under three nested types, equal values.
            {"action_type": "link_click", "value": "240"},
            {"action_type": "offsite_conversion.fb_pixel_purchase", "value": "3"},
            {"action_type": "omni_purchase", "value": "3"},
            {"action_type": "purchase", "value": "3"},
            {"action_type": "lead", "value": "1.5"},
            {"action_type": "offsite_conversion.fb_pixel_lead", "value": "1.5"},
            {"action_type": "page_engagement", "value": "300"},
        ],
        "account_currency": "KRW",
        "date_start": "2025-01-14",
        "date_stop": "2025-01-14",
    }
    base.update(overrides)
    return base


def page(*rows: Any, next_url: str | None = None) -> dict[str, Any]:
    paging: dict[str, Any] = {"cursors": {"before": "MAZDZD", "after": "MAZDZD"}}
    if next_url is not None:
        paging["next"] = next_url
    return {"data": list(rows), "paging": paging}


def parse(payload: object) -> tuple[list[MetaInsight], str | None]:
    return parse_insights_page(
        payload,
        ad_account_id="1234567890",
        conversion_action_types=CONVERSIONS,
        lead_action_types=LEADS,
    )


def test_a_full_row_becomes_one_record_with_strings_converted() -> None:
    records, nxt = parse(page(row()))

    assert nxt is None
    assert records == [
        MetaInsight(
            ad_account_id="1234567890",
            date=date(2025, 1, 14),
            spend=Decimal("123.45"),
            impressions=10000,
            clicks=250,
            reach=8000,
            conversions=Decimal("3"),
            currency="KRW",
            leads=Decimal("1.5"),
        )
    ]


def test_conversions_are_the_first_listed_type_present_never_a_sum() -> None:
    """Meta repeats one purchase under omni_purchase, purchase and the pixel's type (Ads
    Action Stats reference): adding them would count it three times."""
    records, _ = parse(page(row()))
    assert (records[0].conversions, records[0].leads) == (Decimal(3), Decimal("1.5"))


@pytest.mark.parametrize(
    ("precedence", "expected"),
    [
        (("omni_purchase", "purchase"), Decimal(7)),
        (("purchase", "omni_purchase"), Decimal(5)),
        (("onsite_conversion.purchase", "purchase"), Decimal(5)),
        (("onsite_conversion.purchase",), Decimal(0)),
    ],
)
def test_the_order_of_the_precedence_list_decides(
    precedence: tuple[str, ...], expected: Decimal
) -> None:
    actions = [
        {"action_type": "purchase", "value": "5"},
        {"action_type": "omni_purchase", "value": "7"},
    ]
    records, _ = parse_insights_page(
        page(row(actions=actions)), ad_account_id="1", conversion_action_types=precedence
    )
    assert records[0].conversions == expected


def test_conversions_count_only_the_configured_action_types() -> None:
    records, _ = parse_insights_page(
        page(row()), ad_account_id="1", conversion_action_types=["lead"]
    )
    assert records[0].conversions == Decimal("1.5")


def test_missing_reach_and_actions_count_as_zero_and_currency_as_none() -> None:
    bare = {"date_start": "2025-01-14", "date_stop": "2025-01-14"}
    bare |= {"spend": "0", "impressions": "0", "clicks": "0"}
    records, _ = parse(page(bare))
    assert records[0] == MetaInsight(
        "1234567890", date(2025, 1, 14), Decimal(0), 0, 0, 0, Decimal(0), None
    )


def test_the_next_url_is_returned_as_is() -> None:
    url = f"https://graph.facebook.com/v24.0/act_1/insights?access_token={TOKEN}&after=MAZDZD"
    _, nxt = parse(page(row(), next_url=url))
    assert nxt == url


def test_an_empty_page_has_no_rows_and_no_next() -> None:
    assert parse({"data": []}) == ([], None)


def test_the_act_prefix_is_dropped_from_the_account_id() -> None:
    records, _ = parse_insights_page(
        page(row()), ad_account_id="act_42", conversion_action_types=CONVERSIONS
    )
    assert records[0].ad_account_id == "42"


def test_json_numbers_are_accepted_as_well_as_strings() -> None:
    records, _ = parse(page(row(spend=12.5, impressions=7, clicks=0, reach=None)))
    assert (records[0].spend, records[0].impressions, records[0].reach) == (Decimal("12.5"), 7, 0)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ([], "expected a JSON object, got a list of 0"),
        ("oops", "expected a JSON object"),
        ({}, "field 'data': expected a list of rows, got null"),
        ({"data": {"spend": "1"}}, "field 'data': expected a list of rows, got an object"),
        ({"data": ["row"]}, "data[0]: expected an object, got 'row'"),
        (page(row(), row(spend="12,34")), "data[1]: field 'spend'"),
        (page(row(spend="NaN")), "'spend': expected a non-negative decimal number, got 'NaN'"),
        (page(row(spend="-1.00")), "field 'spend'"),
        (page(row(impressions="1e3")), "field 'impressions': expected a non-negative integer"),
        (page(row(clicks="-3")), "field 'clicks'"),
        (page(row(reach="12.5")), "field 'reach'"),
        (page(row(impressions=True)), "field 'impressions'"),
        (page(row(date_start="14/01/2025")), "field 'date_start': expected a date YYYY-MM-DD"),
        (page(row(date_start="2025-02-30")), "field 'date_start'"),
        (page(row(date_start=None)), "field 'date_start'"),
        (page(row(actions="purchase")), "field 'actions': expected a list of actions"),
        (page(row(actions=[1])), "field 'actions'[0]: expected an object"),
        (page(row(actions=[{"value": "1"}])), "'action_type': expected a string"),
        (page(row(actions=[{"action_type": "lead", "value": "x"}])), "(lead): 'value'"),
        (page(row(account_currency=410)), "field 'account_currency'"),
        ({"data": [], "paging": []}, "field 'paging': expected an object"),
        ({"data": [], "paging": {"next": 3}}, "field 'paging.next': expected an absolute URL"),
    ],
)
def test_malformed_pages_are_rejected_naming_the_account_and_field(
    payload: object, expected: str
) -> None:
    with pytest.raises(PayloadError) as info:
        parse(payload)
    message = str(info.value)
    assert message.startswith("Meta ad account 1234567890: ")
    assert expected in message


def test_a_bad_next_url_is_rejected_without_quoting_it() -> None:
    with pytest.raises(PayloadError, match=r"paging\.next") as info:
        parse({"data": [], "paging": {"next": f"/v24.0/act_1/insights?access_token={TOKEN}"}})
    assert TOKEN not in str(info.value)


def test_a_long_bad_value_is_shortened_in_the_message() -> None:
    with pytest.raises(PayloadError) as info:
        parse(page(row(spend="x" * 500)))
    assert len(str(info.value)) < 200


def test_huge_numbers_are_rejected_rather_than_overflowing_a_column() -> None:
    with pytest.raises(PayloadError, match="impressions"):
        parse(page(row(impressions="9" * 5000)))


def test_an_identical_duplicate_row_is_kept_once() -> None:
    one = parse(page(row()))[0][0]
    again = parse(page(row(account_currency=None)))[0][0]
    assert one + again == one
    assert again + one == one


def test_conflicting_rows_for_one_day_fail_instead_of_being_added() -> None:
    # Issue 19: two rows for one day were added together, doubling the stored values.
    one = parse(page(row()))[0][0]
    other = parse(page(row(spend="99.00", reach="2000")))[0][0]
    with pytest.raises(PayloadError, match=r"two different rows for 2025-01-14 \(spend, reach"):
        _ = one + other
    other_currency = parse(page(row(account_currency="USD")))[0][0]
    with pytest.raises(PayloadError, match="account_currency differ"):
        _ = one + other_currency


@pytest.mark.parametrize("missing", ["spend", "impressions", "clicks"])
def test_a_row_missing_a_metric_meta_always_sends_is_an_error_not_a_zero(missing: str) -> None:
    # Issue 19: rows holding only date_start zeroed 28 days of stored figures.
    bare = row()
    del bare[missing]
    with pytest.raises(PayloadError, match=f"data\\[0\\]: missing '{missing}'"):
        parse(page(bare))
    with pytest.raises(PayloadError, match="missing 'spend', 'impressions', 'clicks'"):
        parse(page({"date_start": "2025-01-14", "date_stop": "2025-01-14"}))


def test_a_row_without_actions_or_reach_has_zero_conversions_leads_and_reach() -> None:
    bare = row()
    del bare["actions"], bare["reach"]
    (record,), _ = parse(page(bare))
    assert (record.conversions, record.leads, record.reach) == (Decimal(0), Decimal(0), 0)


def test_rows_of_different_days_cannot_be_added() -> None:
    one = parse(page(row()))[0][0]
    other = parse(page(row(date_start="2025-01-15")))[0][0]
    with pytest.raises(ValueError, match="same ad account and date"):
        _ = one + other


@pytest.mark.parametrize(("raw", "digits"), [("act_123", "123"), ("123", "123"), (" 9 ", "9")])
def test_ad_account_ids_are_normalised_to_digits(raw: str, digits: str) -> None:
    assert normalize_ad_account_id(raw) == digits


@pytest.mark.parametrize("raw", ["", "act_", "abc", "act_12a", "١٢٣"])
def test_ad_account_ids_that_are_not_digits_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="digits"):
        normalize_ad_account_id(raw)


def test_account_details_give_the_accounts_zone_and_currency() -> None:
    payload = {"id": "act_9", "name": "Shop", "timezone_name": "Asia/Seoul", "currency": "KRW"}
    details = parse_account_details(payload, ad_account_id="act_9")
    assert details == AccountDetails("9", "Shop", "Asia/Seoul", "KRW")
    assert str(details.zone) == "Asia/Seoul"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ([], "expected a JSON object"),
        ({"currency": "USD"}, "field 'timezone_name': expected an IANA time zone, got null"),
        ({"timezone_name": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"timezone_name": 9}, "field 'timezone_name'"),
        ({"timezone_name": "UTC", "currency": 840}, "field 'currency'"),
    ],
)
def test_account_details_without_a_usable_zone_are_rejected(payload: object, expected: str) -> None:
    with pytest.raises(PayloadError) as info:
        parse_account_details(payload, ad_account_id="9")
    assert str(info.value).startswith("Meta ad account 9: details: ")
    assert expected in str(info.value)


def test_details_carry_the_account_status_and_whether_it_is_inactive() -> None:
    """Meta's AdAccount reference: 1 ACTIVE, 2 DISABLED, 101 CLOSED, 9 IN_GRACE_PERIOD (still
    delivering), …; an unknown value is not taken for inactive."""
    base = {"timezone_name": "UTC"}
    for status, inactive in [(1, False), (2, True), (101, True), (9, False), (777, False)]:
        details = parse_account_details(base | {"account_status": status}, ad_account_id="1")
        assert (details.account_status, details.inactive) == (status, inactive)
    assert parse_account_details(base, ad_account_id="1").account_status is None
    with pytest.raises(PayloadError, match="account_status"):
        parse_account_details(base | {"account_status": "2"}, ad_account_id="1")
