"""The one helper that cuts an exception to its first line (SQLAlchemy appends SQL and data)."""

from __future__ import annotations

import pytest

from cronkeeper.errors import first_line


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ValueError("boom"), "boom"),
        (
            RuntimeError("(psycopg.errors.X) no\n[SQL: INSERT …]\n[parameters: {'t': 'x'}]"),
            "(psycopg.errors.X) no",
        ),
        (ValueError("\n  padded line  \nsecond"), "padded line"),
        (ValueError(""), ""),
        (ValueError("  \n "), ""),
        (TimeoutError(), ""),
    ],
)
def test_first_line_keeps_only_the_first_non_blank_line(exc: Exception, expected: str) -> None:
    assert first_line(exc) == expected


def test_first_line_falls_back_to_a_default_when_there_is_no_text() -> None:
    assert first_line(TimeoutError(), "TimeoutError") == "TimeoutError"
    assert first_line(ValueError("x"), "ValueError") == "x"
