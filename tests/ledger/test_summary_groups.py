"""The run's message at scale (issue 17): skips grouped by cause, inactive units apart."""

from __future__ import annotations

from datetime import UTC, datetime

from cronkeeper.ledger.models import RunRow, Skipped, grouped_reasons, summarize


def test_reasons_that_differ_only_by_their_unit_are_one_group_with_a_count() -> None:
    skipped = [
        Skipped(f"act_{i}", f"GET /v24.0/act_{i}/insights failed: (#190) token expired")
        for i in range(1, 498)
    ] + [Skipped("act_900", "HTTP 500")]
    lines = grouped_reasons(skipped, unit_label="accounts")
    assert lines == [
        "- 497 accounts: GET /v24.0/…/insights failed: (#190) token expired"
        " — act_1, act_2, act_3, act_4, act_5, …",
        "- act_900: HTTP 500",
    ]


def test_only_inactive_gaps_make_a_success_that_names_them() -> None:
    summary = summarize(
        records_count=10,
        units_stored=2,
        skipped=[Skipped("act_1", "closed", inactive=True)],
        unit_label="accounts",
        unit_notes=[Skipped("act_2", "stored details used")],
    )
    assert summary.status == "success"
    assert summary.error_message == (
        "1 of 3 accounts inactive at the source, not counted as failures:\n"
        "- act_1: closed\nnotes:\n- act_2: stored details used"
    )
    row = RunRow(
        "x", "collect-daily", datetime.now(UTC), None, "success", 10, summary.error_message
    )
    assert row.inactive_units == 1


def test_a_run_of_inactive_units_only_is_a_success_and_failures_still_count() -> None:
    only = summarize(records_count=0, units_stored=0, skipped=[Skipped("a", "x", inactive=True)])
    assert only.status == "success"
    mixed = summarize(
        records_count=0,
        units_stored=0,
        skipped=[Skipped("a", "x", inactive=True), Skipped("b", "y")],
    )
    assert mixed.status == "error"
    assert summarize(records_count=1, units_stored=1, skipped=[]).error_message is None


def test_the_bare_id_a_parser_names_is_taken_out_too() -> None:
    skipped = [
        Skipped(f"act_{i}", f"Meta ad account {i}: field 'data': expected a list")
        for i in (1001, 1002)
    ]
    assert grouped_reasons(skipped, unit_label="accounts") == [
        "- 2 accounts: Meta ad account …: field 'data': expected a list — act_1001, act_1002"
    ]
