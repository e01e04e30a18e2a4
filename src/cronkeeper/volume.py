"""Volume anomalies: is a run's ``records_count`` far from what the job usually writes?

A pure function of plain data (past runs, the run in question, the job's schedule and time
zone). The baseline is robust, so one odd night does not move it:

* **which runs**: for a daily job the same weekday over the last 8 weeks (Mondays are not
  Sundays for ad spend), otherwise the last 14 runs. Runs that count as a success
  (:func:`cronkeeper.health.outcome`: ``success``, or ``partial`` within the job's
  ``CRONKEEPER_PARTIAL_TOLERANCE``) are kept; errors, other partials, runs that were themselves
  anomalous, and backfills (a run whose report date is not the date the job would have
  collected when it started) are left out;
* **the band**: median ± 3.5 × σ, σ = 1.4826 × MAD (the median absolute deviation scaled to a
  normal's standard deviation: Iglewicz and Hoaglin's modified z-score above 3.5), σ floored
  at max(1, 5 % of the median) so a perfectly flat history does not flag a change of one
  record;
* **and** the change must exceed 30 % of the median: a band alone would flag harmless moves
  of a very regular job;
* **zero** records after a non-zero history is always an anomaly, even before the baseline
  has enough samples: it is the usual sign of an expired token or a renamed event;
* **cold**: no learned check before 4 same-weekday samples (daily jobs) or 7 trailing runs.

:func:`classify_history` judges a whole history in one pass over it sorted (O(n log n)): the
baseline of each run is kept up to date as the runs go by (a window of the last 14, or the
latest run of each day), instead of being rebuilt from the whole history for every run. The
watchdog runs it in a worker thread, off the event loop.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta, tzinfo
from typing import Literal

from cronkeeper import reportday
from cronkeeper.health import outcome
from cronkeeper.records import RunRow

__all__ = [
    "Anomaly",
    "Band",
    "VolumeVerdict",
    "baseline_samples",
    "classify_history",
    "evaluate_volume",
    "is_backfill",
    "is_daily",
]

Anomaly = Literal["low-volume", "high-volume"]

MAD_SCALE = 1.4826
Z_LIMIT = 3.5
MIN_CHANGE = 0.30
SPREAD_FLOOR_SHARE = 0.05
WEEKS = 8
TRAILING_RUNS = 14
MIN_WEEKDAY_SAMPLES = 4
MIN_TRAILING_SAMPLES = 7


@dataclass(frozen=True)
class Band:
    """The expected number of records: ``low`` ≤ records ≤ ``high`` is normal."""

    low: float
    high: float
    median: float


@dataclass(frozen=True)
class VolumeVerdict:
    anomaly: Anomaly | None
    band: Band | None
    """``None`` while the baseline is cold."""


NO_VERDICT = VolumeVerdict(None, None)


def is_daily(schedule: str) -> bool:
    """Fires once a day, every day: a single minute and hour, and ``* * *`` for the rest."""
    fields = schedule.split()
    if len(fields) != 5:
        return False
    minute, hour, *rest = fields
    return minute.isdigit() and hour.isdigit() and rest == ["*", "*", "*"]


def is_backfill(run: RunRow, tz: tzinfo) -> bool:
    """A run for another date than the one its job collects by default (yesterday, locally,
    when it started): a backfill or a re-run, whose volume says nothing about today."""
    return reportday.is_backfill(run.report_date, run.started_at, tz)


def _day(run: RunRow, tz: tzinfo) -> date:
    """The day a run stands for: its report date, or the day before it started."""
    return reportday.run_day(run.report_date, run.started_at, tz)


def _eligible(run: RunRow, tz: tzinfo, tolerance: float = 0.0) -> bool:
    return outcome(run, tolerance) == "success" and not is_backfill(run, tz)


def baseline_samples(
    run: RunRow,
    history: Iterable[RunRow],
    *,
    daily: bool,
    tz: tzinfo,
    anomalous: frozenset[str] = frozenset(),
    tolerance: float = 0.0,
) -> list[int]:
    """The record counts ``run`` is compared with (oldest first).

    ``history`` is any runs of the job (any order, ``run`` itself may be among them);
    ``anomalous`` are ids of runs that were anomalies themselves.
    """
    earlier = sorted(
        (
            r
            for r in history
            if r.id != run.id
            and r.started_at < run.started_at
            and r.id not in anomalous
            and _eligible(r, tz, tolerance)
        ),
        key=lambda r: r.started_at,
    )
    if not daily:
        return [r.records_count for r in earlier[-TRAILING_RUNS:]]
    by_day: dict[date, int] = {}
    for r in earlier:  # oldest first: the latest run of a date wins
        by_day[_day(r, tz)] = r.records_count
    return _same_weekdays(by_day, _day(run, tz))


def _same_weekdays(by_day: dict[date, int], day: date) -> list[int]:
    """The counts of the same weekday over the :data:`WEEKS` weeks before ``day``, oldest first."""
    weeks = (day - timedelta(weeks=k) for k in range(WEEKS, 0, -1))
    return [by_day[d] for d in weeks if d in by_day]


def band_of(samples: Sequence[int]) -> Band:
    median = float(statistics.median(samples))
    mad = float(statistics.median(abs(x - median) for x in samples))
    sigma = max(MAD_SCALE * mad, 1.0, SPREAD_FLOOR_SHARE * median)
    return Band(max(0.0, median - Z_LIMIT * sigma), median + Z_LIMIT * sigma, median)


def evaluate_volume(
    run: RunRow,
    history: Iterable[RunRow],
    *,
    daily: bool,
    tz: tzinfo,
    anomalous: frozenset[str] = frozenset(),
    tolerance: float = 0.0,
) -> VolumeVerdict:
    """Whether ``run`` wrote an unusual number of records. Only runs that count as a success
    and are not backfills are judged (an ``error`` is already a failure, a ``partial`` above the
    tolerance a warning)."""
    if not _eligible(run, tz, tolerance):
        return NO_VERDICT
    samples = baseline_samples(
        run, history, daily=daily, tz=tz, anomalous=anomalous, tolerance=tolerance
    )
    return _judge(run, samples, daily=daily)


def _judge(run: RunRow, samples: Sequence[int], *, daily: bool) -> VolumeVerdict:
    needed = MIN_WEEKDAY_SAMPLES if daily else MIN_TRAILING_SAMPLES
    if len(samples) < needed:
        if run.records_count == 0 and samples and statistics.median(samples) > 0:
            return VolumeVerdict("low-volume", None)
        return NO_VERDICT
    band = band_of(samples)
    count = run.records_count
    if count == 0 and band.median > 0:
        return VolumeVerdict("low-volume", band)
    changed = abs(count - band.median) > MIN_CHANGE * band.median
    if count < band.low and changed:
        return VolumeVerdict("low-volume", band)
    if count > band.high and changed:
        return VolumeVerdict("high-volume", band)
    return VolumeVerdict(None, band)


def classify_history(
    runs: Iterable[RunRow], *, daily: bool, tz: tzinfo, tolerance: float = 0.0
) -> dict[str, VolumeVerdict]:
    """Every run's verdict, oldest first, each judged against a baseline without the earlier
    anomalies: so one anomaly never becomes part of what the next run is compared with.

    The same verdicts as :func:`evaluate_volume` run by run, in one sorted pass: the baseline
    (the last :data:`TRAILING_RUNS` counts, or the latest count of each day) grows as the runs
    go by; runs that started at the same instant join it together, after each was judged.
    """
    ordered = sorted(runs, key=lambda r: r.started_at)
    verdicts: dict[str, VolumeVerdict] = {}
    trailing: deque[int] = deque(maxlen=TRAILING_RUNS)
    by_day: dict[date, int] = {}
    waiting: list[RunRow] = []  # judged normal, started at the instant being processed
    for run in ordered:
        if waiting and waiting[0].started_at != run.started_at:
            _learn(waiting, trailing, by_day, tz)
        if not _eligible(run, tz, tolerance):
            verdicts[run.id] = NO_VERDICT
            continue
        samples = list(trailing) if not daily else _same_weekdays(by_day, _day(run, tz))
        verdict = _judge(run, samples, daily=daily)
        verdicts[run.id] = verdict
        if verdict.anomaly is None:
            waiting.append(run)
    return verdicts


def _learn(runs: list[RunRow], trailing: deque[int], by_day: dict[date, int], tz: tzinfo) -> None:
    for run in runs:
        trailing.append(run.records_count)
        by_day[_day(run, tz)] = run.records_count
    runs.clear()
