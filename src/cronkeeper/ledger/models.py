"""Plain data about runs, and the pure rule that turns a run's units into its status."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cronkeeper.records import INACTIVE_WORDING, SKIPPED_HEADER, RunRow

__all__ = [
    "ABANDONED",
    "FinalStatus",
    "RunRow",
    "RunSummary",
    "Skipped",
    "grouped_reasons",
    "summarize",
]

FinalStatus = Literal["success", "error", "partial"]
FINAL_STATUSES: tuple[FinalStatus, ...] = ("success", "error", "partial")
ABANDONED = (
    "abandoned: its end was never recorded (the process stopped, or the database was"
    " unreachable when it finished) and its lease expired"
)
"""The message of a ``running`` row closed by the next holder of the job's lease: a guess,
which the run's own end, replayed from a spool, corrects (:mod:`.spool`)."""


@dataclass(frozen=True)
class Skipped:
    """A unit of work (account, project, page) that could not be stored, and why."""

    unit: str
    reason: str
    inactive: bool = False
    """The unit is known to be inactive at the source (a disabled or closed ad account): its
    failure is reported, but is not a failure of the run."""


@dataclass(frozen=True)
class RunSummary:
    status: FinalStatus
    records_count: int
    error_message: str | None


GROUP_NAMES = 5
"""How many units a group of skips with the same reason names before ``…``."""


def _without_unit(skip: Skipped) -> str:
    """The reason with the unit it names taken out: ``act_123`` and its bare id ``123`` (a
    parser says "Meta ad account 123"), when the id is long enough not to be anything else."""
    if not skip.unit:
        return skip.reason
    key = skip.reason.replace(skip.unit, "\0")
    ident = re.split(r"[_ ]", skip.unit)[-1]
    return key.replace(ident, "\0") if len(ident) >= 4 and ident != skip.unit else key


def grouped_reasons(skipped: Sequence[Skipped], *, unit_label: str = "units") -> list[str]:
    """One line per distinct reason, most frequent first: ``- 497 accounts: (#190) token
    expired — act_1, act_2, …`` (a reason shared by one unit reads ``- act_1: reason``).

    Reasons that differ only by the unit they name (a URL with ``act_1`` in it) are the same
    cause: the unit is replaced by ``…`` before grouping. Pure; the order is stable.
    """
    groups: dict[str, list[Skipped]] = {}
    for skip in skipped:
        groups.setdefault(_without_unit(skip), []).append(skip)
    lines = []
    for key, members in sorted(groups.items(), key=lambda item: -len(item[1])):
        if len(members) == 1:
            lines.append(f"- {members[0].unit}: {members[0].reason}")
            continue
        units = [m.unit for m in members]
        named = ", ".join(units[:GROUP_NAMES]) + (", …" if len(units) > GROUP_NAMES else "")
        lines.append(f"- {len(units)} {unit_label}: {key.replace(chr(0), '…')} — {named}")
    return lines


def summarize(
    *,
    records_count: int,
    units_stored: int,
    skipped: Sequence[Skipped],
    unit_label: str = "units",
    notes: Sequence[str] = (),
    unit_notes: Sequence[Skipped] = (),
) -> RunSummary:
    """``success`` when nothing was skipped; ``partial`` when some units were stored and some
    skipped; ``error`` when units were skipped and none stored. Units skipped because they are
    inactive at the source (:attr:`Skipped.inactive`) are named but never make a run partial.
    The message groups the skipped units by reason (:func:`grouped_reasons`), then the notes
    about units (``unit_notes``, grouped the same way, e.g. stored details used instead of
    fresh ones), then the run's ``notes`` (a success with notes has them as its message:
    stored figures it rewrote, accounts it kept active)."""
    failed = [s for s in skipped if not s.inactive]
    inactive = [s for s in skipped if s.inactive]
    total = units_stored + len(skipped)
    lines: list[str] = []
    if failed:
        lines.append(SKIPPED_HEADER.format(skipped=len(failed), total=total, label=unit_label))
        lines += grouped_reasons(failed, unit_label=unit_label)
    if inactive:
        lines.append(f"{len(inactive)} of {total} {unit_label} {INACTIVE_WORDING}")
        lines += grouped_reasons(inactive, unit_label=unit_label)
    if unit_notes:
        lines.append("notes:")
        lines += grouped_reasons(unit_notes, unit_label=unit_label)
    lines += list(notes)
    message = "\n".join(lines) or None
    if not failed:
        return RunSummary("success", records_count, message)
    status: FinalStatus = "partial" if units_stored > 0 else "error"
    return RunSummary(status, records_count, message)
