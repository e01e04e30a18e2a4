"""parse_event_counts: the Query API's /events answer in, one count per requested event out."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from cronkeeper.errors import PayloadError
from cronkeeper.sources import MixpanelCount, parse_event_counts

DAY = date(2025, 1, 14)
D = DAY.isoformat()


def answer(values: dict[str, Any], series: Any = (D,)) -> dict[str, Any]:
    """The shape Mixpanel sends for ``type=general&unit=day``."""
    return {"data": {"series": list(series), "values": values}, "legend_size": len(values)}


def parse(payload: object, events: tuple[str, ...] = ("Sign Up", "Purchase")) -> list[Any]:
    return parse_event_counts(payload, project_id="3141592", events=events, day=DAY)


def test_one_record_per_requested_event_in_request_order() -> None:
    payload = answer({"Purchase": {D: 17}, "Sign Up": {D: 420}})
    assert parse(payload) == [
        MixpanelCount("3141592", "Sign Up", DAY, 420),
        MixpanelCount("3141592", "Purchase", DAY, 17),
    ]


def test_an_event_absent_from_values_has_no_record_rather_than_a_zero() -> None:
    # Issue 19: an absent event is not "0" for the parser; collect-mixpanel decides.
    assert parse(answer({"Sign Up": {D: 5}})) == [MixpanelCount("3141592", "Sign Up", DAY, 5)]


def test_a_day_absent_from_an_event_counts_zero() -> None:
    payload = answer({"Sign Up": {"2025-01-13": 9}, "Purchase": {D: 1}})
    assert [c.count for c in parse(payload)] == [0, 1]


def test_empty_values_give_no_record() -> None:
    assert parse(answer({}, series=())) == []


def test_other_days_and_unrequested_events_are_ignored() -> None:
    payload = answer({"Sign Up": {D: 3, "2025-01-15": 99}, "Other": {D: 1000}})
    assert parse(payload, events=("Sign Up",)) == [MixpanelCount("3141592", "Sign Up", DAY, 3)]


def test_a_repeated_event_is_counted_once() -> None:
    result = parse(answer({"a": {D: 2}}), events=("a", "a"))
    assert result == [MixpanelCount("3141592", "a", DAY, 2)]


def test_a_missing_series_is_tolerated() -> None:
    assert parse({"data": {"values": {"Purchase": {D: 4}}}})[0].count == 4


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ([], "expected a JSON object, got a list of 0"),
        ({}, "field 'data': expected an object, got null"),
        ({"data": []}, "field 'data': expected an object"),
        ({"data": {"series": [D]}}, "field 'data.values': expected an object of events"),
        ({"data": {"series": D, "values": {}}}, "field 'data.series': expected a list of dates"),
        ({"data": {"series": [1], "values": {}}}, "field 'data.series'"),
        (answer({"Sign Up": [420]}), "event 'Sign Up': field 'data.values': expected an object"),
        (answer({"Sign Up": {D: 1.5}}), f"event 'Sign Up' on {D}: expected a non-negative integer"),
        (answer({"Sign Up": {D: -1}}), "event 'Sign Up' on"),
        (answer({"Sign Up": {D: "12"}}), "expected an integer count, got '12'"),
        (answer({"Purchase": {D: True}}), "event 'Purchase' on"),
        (answer({"Purchase": {D: {"n": 1}}}), "got an object"),
    ],
)
def test_malformed_answers_are_rejected_naming_the_project_and_field(
    payload: object, expected: str
) -> None:
    with pytest.raises(PayloadError) as info:
        parse(payload)
    assert str(info.value).startswith("Mixpanel project 3141592: ")
    assert expected in str(info.value)


def test_a_range_answer_gives_every_present_event_on_every_day_missing_days_as_zero() -> None:
    payload = {
        "data": {
            "series": ["2025-01-01", "2025-01-02", "2025-01-03"],
            "values": {"signup": {"2025-01-01": 4, "2025-01-03": 7}},
        }
    }
    records = parse_event_counts(
        payload,
        project_id="9",
        events=["signup", "buy"],
        day=date(2025, 1, 1),
        until=date(2025, 1, 3),
    )
    assert [(r.event, r.date.day, r.count) for r in records] == [
        ("signup", 1, 4),
        ("signup", 2, 0),
        ("signup", 3, 7),
    ]
