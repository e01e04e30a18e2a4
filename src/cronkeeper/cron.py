"""Crontab expressions: Debian cron's syntax, checked with a message that says what is wrong,
and their fires from `cronsim <https://github.com/cuu508/cronsim>`_ (see
:mod:`cronkeeper.scheduler` for the DST rules it follows).

Pure, and free of the rest of cronkeeper, so that the settings refuse a schedule with the very
rules the scheduler fires by.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from cronsim import CronSim, CronSimError

__all__ = ["CronExpression", "check_cron"]

_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    (
        "month",
        1,
        12,
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
    ),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_CRONSIM_FIELDS = {"minute": 0, "hour": 1, "day-of-month": 2, "month": 3, "day-of-week": 4}


def _check_field(text: str, name: str, lo: int, hi: int, names: tuple[str, ...]) -> None:
    """Debian cron's field syntax, with a message that says what is wrong (cronsim's says
    only "Bad minute", and it accepts extensions cron does not: ``L``, ``W``, ``#``)."""

    def number(token: str) -> int:
        if token.lower() in names:
            return names.index(token.lower()) + (1 if name == "month" else 0)
        if not token.isdigit():
            raise ValueError(f"{name} {token!r} is not a number")
        if not lo <= int(token) <= hi:
            raise ValueError(f"{name} {int(token)} is outside {lo}-{hi}")
        return int(token)

    for item in text.split(","):
        base, slash, step = item.partition("/")
        if slash and not (step.isdigit() and int(step) > 0):
            raise ValueError(f"{name} step {step!r} must be a positive number")
        if base == "*":
            continue
        first, dash, last = base.partition("-")
        start = number(first)
        if dash and start > number(last):
            raise ValueError(f"{name} range {base!r} runs backwards")


def check_cron(expr: str) -> None:
    """``ValueError`` saying what is wrong unless ``expr`` is a crontab expression Debian cron
    reads (five fields) and that can fire."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(
            f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}"
        )
    for text, spec in zip(fields, _FIELDS, strict=True):
        _check_field(text, *spec)
    try:
        CronSim(expr, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:  # e.g. ``0 0 31 2 *``: syntax fine, never fires
        which = str(exc).removeprefix("Bad ")
        position = _CRONSIM_FIELDS.get(which)
        where = f" {fields[position]!r}" if position is not None else ""
        raise ValueError(f"{which}{where} can never match") from None


@dataclass(frozen=True)
class CronExpression:
    """A 5-field crontab expression, validated; its fires come from cronsim."""

    expr: str

    @classmethod
    def parse(cls, expr: str) -> CronExpression:
        try:
            check_cron(expr)
        except ValueError as exc:
            raise ValueError(f"invalid cron expression {expr!r}: {exc}") from None
        return cls(expr)

    def _iterate(self, start: datetime, tz: tzinfo, *, reverse: bool = False) -> Iterable[datetime]:
        """cronsim's fires from ``start`` (exclusive forward, inclusive of ``start`` backward
        when it has microseconds), as UTC instants.

        cronsim walks a fixed-time job's wall clock (that is how it fires once in a repeated
        hour), so its order is the wall clock's, not real time's: callers filter by instant.
        """
        # The loop ends if cronsim finds nothing within 50 years (its StopIteration).
        for fire in CronSim(self.expr, start.astimezone(tz), reverse=reverse):
            yield fire.astimezone(UTC)

    def next_after(self, moment: datetime, tz: tzinfo) -> datetime | None:
        """The first fire strictly after ``moment``, in ``tz``; ``None`` if it never fires."""
        for fire in self._iterate(moment, tz):
            if fire > moment:  # a wall time repeated by a fall-back can lie before ``moment``
                return fire.astimezone(tz)
        return None

    def previous(self, moment: datetime, tz: tzinfo) -> datetime | None:
        """The last fire at or before ``moment``, in ``tz``; ``None`` if none in 50 years."""
        # One microsecond later, with microseconds: cronsim counts ``moment`` itself.
        start = moment + timedelta(microseconds=1)
        found = next((f for f in self._iterate(start, tz, reverse=True) if f <= moment), None)
        if found is None:
            return None
        # Walking back from the second pass of a repeated hour, cronsim's wall clock passes
        # over the first pass's fires; walk forward from what it found to the true latest.
        while (later := self.next_after(found, tz)) is not None and later <= moment:
            found = later
        return found.astimezone(tz)
