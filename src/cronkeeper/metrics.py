"""Prometheus metrics: ``GET /metrics``, bearer-protected like every other cron endpoint.

Two sources, because they answer different questions:

* **The ledger, read at scrape time** (last run's start, status, duration and records, last
  success, health per monitored job). Every replica reports every job, whichever process
  ran it, and the figures survive restarts. A custom collector's ``collect()`` is
  synchronous, so the route reads the ledger first (two index-only statements, run
  concurrently and bounded by the ledger timeout) and renders that snapshot. When the
  database cannot answer, ``cronkeeper_database_up`` is 0, the ledger series are left out,
  and the scrape still answers 200: a scrape that fails would hide the process metrics too.
* **This process's events** (:class:`MetricsObserver`): runs by status, retries by reason
  and abandoned runs, as counters, which is what ``rate()`` and ``increase()`` need.

Each app gets its own :class:`~prometheus_client.CollectorRegistry` (with the process,
platform and GC collectors), never the global one, so several apps in one process (tests,
the demo) do not collide.
"""

from __future__ import annotations

import asyncio
import logging
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from fastapi import FastAPI, Response
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from cronkeeper.alerting.state import ALERT_STATES
from cronkeeper.auth import AUTH_RESPONSES, Authorized
from cronkeeper.config import JobSpec
from cronkeeper.errors import first_line
from cronkeeper.health import HealthReport, evaluate_health, outcome
from cronkeeper.http import Reason, RetryEvent
from cronkeeper.ledger import RunRow
from cronkeeper.ledger.models import FINAL_STATUSES
from cronkeeper.ledger.presence import Presence, presence
from cronkeeper.records import JobState
from cronkeeper.redact import truncate
from cronkeeper.service import RunObserver, Service
from cronkeeper.storage.schema import RUN_STATUSES
from cronkeeper.versions import PinnedVersion, expiry_samples, pinned_versions

__all__ = [
    "CONTENT_TYPE",
    "LedgerCollector",
    "LedgerSnapshot",
    "MetricsObserver",
    "VersionExpiryCollector",
    "install_metrics",
    "read_snapshot",
]

log = logging.getLogger("cronkeeper.metrics")

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""``text/plain; version=0.0.4``: what every Prometheus server and agent reads."""

RECENT = timedelta(hours=1)
"""The window of ``cronkeeper_runs_last_hour`` and ``cronkeeper_retries_last_hour``."""

CRON = "cron"
"""The label naming the job in every ``cronkeeper_*`` series. Not ``job``: Prometheus sets
``job`` on every target (the scrape job's name) and renames a scraped ``job`` label to
``exported_job``, so ``{job="collect-daily"}`` would match nothing and ``$labels.job`` would
name the scrape job (Prometheus docs, configuration: ``honor_labels``)."""


# -- ledger figures, read at scrape time ------------------------------------------------


@dataclass(frozen=True)
class LedgerSnapshot:
    """What the ledger said at one scrape; ``database_up`` False means nothing else is known."""

    jobs: tuple[JobSpec, ...]
    database_up: bool
    latest: Mapping[str, RunRow | None] = field(default_factory=dict)
    last_success: Mapping[str, datetime | None] = field(default_factory=dict)
    health: HealthReport | None = None
    states: Mapping[str, JobState] = field(default_factory=dict)
    """Alert states and pauses (``job_state``); empty when that table could not be read."""
    now: datetime | None = None
    last_ok: Mapping[str, datetime | None] = field(default_factory=dict)
    """Each job's latest ``success`` or ``partial`` end; empty when it could not be read."""
    recent: Sequence[tuple[str, str, Mapping[str, int]]] | None = None
    """``(job, status, retries by reason)`` of the runs started in the last hour (any
    process: ``cronkeeper run`` from system cron too); ``None`` when it could not be read."""
    scheduler: Presence | None = None


async def read_snapshot(service: Service) -> LedgerSnapshot:
    """Read the ledger for one scrape; never raises for the database."""
    jobs = service.settings.jobs
    names = [spec.name for spec in jobs]
    start = service.clock()
    # All reads at once: a scrape waits one ledger timeout at most, not one per read.
    latest, successes, states, oks, recent, beats = await asyncio.gather(
        service.ledger.latest_runs(names),
        service.ledger.last_successes(names),
        service.job_states.read(names),
        service.ledger.last_oks(names),
        service.ledger.started_since(names, start - RECENT),
        service.heartbeats.newest(),
        return_exceptions=True,
    )
    if isinstance(latest, BaseException) or isinstance(successes, BaseException):
        failed = latest if isinstance(latest, BaseException) else successes
        assert isinstance(failed, BaseException)
        log.warning("metrics: the ledger could not be read: %s", _describe(service, failed))
        return LedgerSnapshot(jobs, database_up=False)
    if isinstance(states, BaseException):
        log.warning("metrics: alert states could not be read: %s", _describe(service, states))
        states = {}
    # Each of these may fail alone (a schema not yet at 0012): its series are left out.
    for label, value in (("last ok runs", oks), ("recent runs", recent), ("heartbeats", beats)):
        if isinstance(value, BaseException):
            log.warning("metrics: %s could not be read: %s", label, _describe(service, value))
    now = service.clock()
    scheduler = None
    if not isinstance(beats, BaseException):
        scheduler = presence(beats, now, service.settings.watch_every)
    health = evaluate_health(
        service.settings.monitored,
        latest,
        now,
        states,
        rules=service.health_rules,
    )
    return LedgerSnapshot(
        jobs,
        True,
        latest,
        successes,
        health,
        states,
        now,
        last_ok={} if isinstance(oks, BaseException) else last_ok(jobs, oks, successes),
        recent=None if isinstance(recent, BaseException) else recent,
        scheduler=scheduler,
    )


def last_ok(
    jobs: Sequence[JobSpec],
    oks: Mapping[str, Sequence[RunRow]],
    successes: Mapping[str, datetime | None],
) -> dict[str, datetime | None]:
    """Each job's last ok end: its newest ``success``, or ``partial`` within the job's
    ``CRONKEEPER_PARTIAL_TOLERANCE`` (or of an unknown share: health counts it ok too), among
    its newest ok-ish runs; else its last success (older than those), else ``None``."""
    found: dict[str, datetime | None] = {}
    for spec in jobs:
        newest = next(
            (r for r in oks.get(spec.name, ()) if outcome(r, spec.partial_tolerance) != "failure"),
            None,
        )
        moment = (newest.finished_at or newest.started_at) if newest is not None else None
        success = successes.get(spec.name)
        if success is not None and (moment is None or success > moment):
            moment = success
        found[spec.name] = moment
    return found


def _describe(service: Service, exc: BaseException) -> str:
    first = first_line(exc)
    return truncate(service.settings.redactor(f"{type(exc).__name__}: {first}"), 300)


class LedgerCollector(Collector):
    """Renders one :class:`LedgerSnapshot` as gauges (a fresh one per scrape, so no race)."""

    def __init__(self, snapshot: LedgerSnapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        up = GaugeMetricFamily("cronkeeper_up", "1: the cronkeeper process answers scrapes.")
        up.add_metric([], 1)
        yield up
        db = GaugeMetricFamily(
            "cronkeeper_database_up",
            "1 when the run ledger answered this scrape; 0 leaves out every ledger series.",
        )
        db.add_metric([], 1 if snap.database_up else 0)
        yield db
        if not snap.database_up:
            return
        start = GaugeMetricFamily(
            "cronkeeper_last_run_start_timestamp_seconds",
            "Unix time the job's latest run started (absent if it never ran).",
            labels=[CRON],
        )
        duration = GaugeMetricFamily(
            "cronkeeper_last_run_duration_seconds",
            "Duration of the job's latest run (absent while it is still running).",
            labels=[CRON],
        )
        records = GaugeMetricFamily(
            "cronkeeper_last_run_records",
            "Rows the job's latest run wrote (records_count).",
            labels=[CRON],
        )
        status = GaugeMetricFamily(
            "cronkeeper_last_run_status",
            "1 for the status of the job's latest run, 0 for the others (all 0: never ran).",
            labels=[CRON, "status"],
        )
        success = GaugeMetricFamily(
            "cronkeeper_last_success_timestamp_seconds",
            "Unix time the job's latest successful run finished; 0 if it never succeeded.",
            labels=[CRON],
        )
        for spec in snap.jobs:
            job = spec.name
            run = snap.latest.get(job)
            if run is not None:
                start.add_metric([job], run.started_at.timestamp())
                if run.duration_seconds is not None:
                    duration.add_metric([job], run.duration_seconds)
                records.add_metric([job], run.records_count)
            for name in RUN_STATUSES:
                status.add_metric([job, name], 1 if run is not None and run.status == name else 0)
            # Every job, so that ``time() - …{cron="x"} > 26 * 3600`` also fires for a job
            # that never succeeded (only ever ``partial``): 0 is "a very long time ago".
            succeeded = snap.last_success.get(job)
            success.add_metric([job], succeeded.timestamp() if succeeded is not None else 0)
        yield from (start, duration, records, status, success)
        yield from ledger_counts(snap)
        if snap.health is not None:
            healthy = GaugeMetricFamily(
                "cronkeeper_job_healthy",
                "1 when the monitored job passes the health check of GET /api/cron/health.",
                labels=[CRON],
            )
            for check in snap.health.checks:
                healthy.add_metric([check.name], 1 if check.ok else 0)
            yield healthy
        if snap.states and snap.now is not None:
            yield from alert_gauges(snap.jobs, snap.states, snap.latest, snap.now)


def ledger_counts(snap: LedgerSnapshot) -> Iterator[Metric]:
    """What the ledger knows whichever process ran the job (issue 22): the last ok run, the
    last hour's runs and retries, and the schedulers' heartbeat."""
    if snap.last_ok:
        ok = GaugeMetricFamily(
            "cronkeeper_last_ok_timestamp_seconds",
            "Unix time the job's latest success, or partial within CRONKEEPER_PARTIAL_TOLERANCE,"
            " finished; 0 if none ever did.",
            labels=[CRON],
        )
        for spec in snap.jobs:
            moment = snap.last_ok.get(spec.name)
            ok.add_metric([spec.name], moment.timestamp() if moment is not None else 0)
        yield ok
    if snap.recent is not None:
        runs = GaugeMetricFamily(
            "cronkeeper_runs_last_hour",
            "Runs started in the last hour, by job and status, from the ledger (whichever"
            " process ran them: cronkeeper run, a trigger, a scheduler).",
            labels=[CRON, "status"],
        )
        retries = GaugeMetricFamily(
            "cronkeeper_retries_last_hour",
            "HTTP retries of the runs started in the last hour, by job and reason, from the"
            " ledger (recorded when each run ends, whichever process ran it).",
            labels=[CRON, "reason"],
        )
        by_status: dict[tuple[str, str], int] = {}
        by_reason: dict[tuple[str, str], int] = {}
        for job, state, counts in snap.recent:
            by_status[job, state] = by_status.get((job, state), 0) + 1
            for reason, n in counts.items():
                by_reason[job, reason] = by_reason.get((job, reason), 0) + n
        reasons = sorted({*typing.get_args(Reason), *(r for _, r in by_reason)})
        for spec in snap.jobs:
            for name in RUN_STATUSES:
                runs.add_metric([spec.name, name], by_status.get((spec.name, name), 0))
            for reason in reasons:
                retries.add_metric([spec.name, reason], by_reason.get((spec.name, reason), 0))
        yield from (runs, retries)
    seen = snap.scheduler
    if seen is not None and seen.age_seconds is not None:  # absent: no scheduler ever ran
        alive = GaugeMetricFamily(
            "cronkeeper_scheduler_alive",
            "1 while a scheduler's heartbeat is at most 3 watch intervals old.",
        )
        alive.add_metric([], 1 if seen.alive else 0)
        age = GaugeMetricFamily(
            "cronkeeper_scheduler_heartbeat_age_seconds",
            "Seconds since the newest scheduler heartbeat (absent if no scheduler ever ran).",
        )
        age.add_metric([], seen.age_seconds)
        yield from (alive, age)


def alert_gauges(
    jobs: Sequence[JobSpec],
    states: Mapping[str, JobState],
    latest: Mapping[str, RunRow | None],
    now: datetime,
) -> Iterator[Metric]:
    """The watchdog's view (issue 13), labelled ``cron`` (``job`` is Prometheus's own)."""
    alert = GaugeMetricFamily(
        "cronkeeper_alert_state",
        "1 for the job's alert state as the watchdog last recorded it, 0 for the others.",
        labels=["cron", "state"],
    )
    paused = GaugeMetricFamily(
        "cronkeeper_job_paused", "1 while the job is paused (cronkeeper pause).", labels=["cron"]
    )
    anomaly = GaugeMetricFamily(
        "cronkeeper_volume_anomaly",
        "1 when the job's latest run wrote unusually few (low-volume) or many (high-volume)"
        " records against its baseline, 0 otherwise.",
        labels=["cron", "anomaly"],
    )
    for spec in jobs:
        state = states.get(spec.name)
        if state is None:
            continue
        is_paused = state.is_paused(now)
        current = "paused" if is_paused else state.state
        for name in ALERT_STATES:
            alert.add_metric([spec.name, name], 1 if current == name else 0)
        paused.add_metric([spec.name], 1 if is_paused else 0)
        run = latest.get(spec.name)
        verdict = state.anomaly if run is not None and state.evaluated_run_id == run.id else None
        for kind in ("low-volume", "high-volume"):
            anomaly.add_metric([spec.name, kind], 1 if verdict == kind else 0)
    yield from (alert, paused, anomaly)


class VersionExpiryCollector(Collector):
    """``cronkeeper_api_version_expiry_timestamp_seconds{source,version}``: when each pinned
    API version stops working (:mod:`cronkeeper.versions`); no series while no date is known.
    Alert on ``… - time() < 90 * 86400``."""

    def __init__(self, pins: tuple[PinnedVersion, ...]) -> None:
        self.samples = expiry_samples(pins)

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "cronkeeper_api_version_expiry_timestamp_seconds",
            "When the pinned API version expires (Unix time, midnight UTC of its expiration date).",
            labels=["source", "version"],
        )
        for source, version, timestamp in self.samples:
            gauge.add_metric([source, version], timestamp)
        yield gauge


class _Scrape(Collector):
    """The app's registry plus one scrape's ledger figures, rendered as one exposition."""

    def __init__(self, *collectors: Collector) -> None:
        self.collectors = collectors

    def collect(self) -> Iterable[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


# -- this process's events ---------------------------------------------------------------


class MetricsObserver(RunObserver):
    """Counts what happens around runs in this process, on its own registry.

    Every known label combination starts at 0, so ``rate()`` and ``increase()`` see the
    first event instead of a series that appears out of nowhere.
    """

    def __init__(
        self, job_names: Sequence[str], *, registry: CollectorRegistry | None = None
    ) -> None:
        self.registry = registry or new_registry()
        self.runs = Counter(
            "cronkeeper_runs",
            "Runs this process finished, by job and final status.",
            [CRON, "status"],
            registry=self.registry,
        )
        self.retries = Counter(
            "cronkeeper_retries",
            "HTTP calls to source APIs retried by this process, by job and reason.",
            [CRON, "reason"],
            registry=self.registry,
        )
        self.abandoned = Counter(
            "cronkeeper_abandoned_runs",
            "Runs of dead processes this process closed as error, by job.",
            [CRON],
            registry=self.registry,
        )
        self.alert_failures = Counter(
            "cronkeeper_alert_delivery_failures",
            "Alert deliveries the webhook did not take (each retried from the outbox), by job.",
            [CRON],
            registry=self.registry,
        )
        for job in job_names:
            self.alert_failures.labels(job)
            for status in FINAL_STATUSES:
                self.runs.labels(job, status)
            for reason in typing.get_args(Reason):
                self.retries.labels(job, reason)
            self.abandoned.labels(job)

    async def run_finished(self, run: RunRow, previous: RunRow | None) -> None:
        self.runs.labels(run.cron_name, run.status).inc()

    async def run_abandoned(self, cron_name: str, run_ids: list[str]) -> None:
        if run_ids:
            self.abandoned.labels(cron_name).inc(len(run_ids))

    def retry(self, cron_name: str, event: RetryEvent) -> None:
        self.retries.labels(cron_name, event.reason).inc()

    def alert_delivery_failed(self, cron_name: str) -> None:
        self.alert_failures.labels(cron_name).inc()


def new_registry() -> CollectorRegistry:
    """A registry of its own, with the process, platform and garbage-collector metrics."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def install_metrics(app: FastAPI, service: Service) -> MetricsObserver:
    """Add ``GET /metrics`` (bearer-protected) to ``app`` and observe ``service``'s runs.

    ``app`` is normally ``create_app(service)``; the bearer check reads
    ``app.state.service``, which is set here when the app has none yet.
    """
    installed: MetricsObserver | None = getattr(app.state, "metrics_observer", None)
    if installed is not None:  # create_app already did it: one route, one observer
        return installed
    if getattr(app.state, "service", None) is None:
        app.state.service = service
    observer = MetricsObserver([spec.name for spec in service.settings.jobs])
    observer.registry.register(VersionExpiryCollector(pinned_versions(service.settings)))
    app.state.metrics_observer = observer

    @app.get(
        "/metrics",
        dependencies=[Authorized],
        summary="Prometheus metrics (text format 0.0.4)",
        response_class=Response,
        responses=AUTH_RESPONSES,
    )
    async def metrics() -> Response:
        snapshot = await read_snapshot(service)
        body = generate_latest(_Scrape(observer.registry, LedgerCollector(snapshot)))
        return Response(body, media_type=CONTENT_TYPE)

    service.observers.append(observer)
    return observer
