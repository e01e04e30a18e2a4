"""The effective job table (``cronkeeper config``): every job's values after the defaults,
``cronkeeper.toml`` and the environment, each with where it came from."""

from __future__ import annotations

from typing import Any, Literal

from cronkeeper.config import Settings, _pairs
from cronkeeper.durations import format_duration

__all__ = ["Source", "effective_jobs"]


Source = Literal["default", "file", "env"]


def effective_jobs(settings: Settings) -> list[dict[str, Any]]:
    """Every job as ``cronkeeper config`` shows it: each value with where it came from
    (``default``, ``file`` or ``env``). Ping keys are never shown, only whether they are set."""
    names = settings.job_names
    fields = settings.model_fields_set
    schedules = _pairs(settings.schedules, ";", "CRONKEEPER_SCHEDULES", names)
    windows = _pairs(settings.job_windows, ",", "CRONKEEPER_JOB_WINDOWS", names)
    runtime = settings.max_runtime.strip()
    runtimes = _pairs(runtime, ",", "CRONKEEPER_MAX_RUNTIME", names) if "=" in runtime else {}
    threshold_text = settings.failure_threshold.strip()
    thresholds = (
        _pairs(threshold_text, ",", "CRONKEEPER_FAILURE_THRESHOLD", names)
        if "=" in threshold_text
        else {}
    )
    default_threshold, per_job = settings.failure_thresholds
    grace = settings.grace
    graces = {p.partition("=")[0].strip() for p in grace.split(",") if "=" in p}
    out = []
    for spec in settings.jobs:
        table = settings.job_file.table(spec.name)
        given = table.given() if table is not None else frozenset()

        def source(key: str, from_env: bool, given: frozenset[str] = given) -> Source:
            return "env" if from_env else "file" if key in given else "default"

        values: dict[str, tuple[Any, Source]] = {
            "schedule": (spec.schedule, source("schedule", spec.name in schedules)),
            "window": (format_duration(spec.window), source("window", spec.name in windows)),
            "grace": (
                format_duration(spec.grace),
                source("grace", "grace" in fields and ("=" not in grace or spec.name in graces)),
            ),
            "max_runtime": (
                format_duration(spec.max_runtime),
                source(
                    "max_runtime", bool(runtime and "=" not in runtime) or spec.name in runtimes
                ),
            ),
            "failure_threshold": (
                per_job.get(spec.name, default_threshold),
                source(
                    "failure_threshold",
                    "failure_threshold" in fields
                    and ("=" not in threshold_text or spec.name in thresholds),
                ),
            ),
            "monitored": (spec.monitored, source("monitored", "monitored_jobs" in fields)),
        }
        if table is not None and table.ping_key_env:
            state = "set" if spec.name in settings.ping_keys else "not set"
            values["ping_key"] = (f"${table.ping_key_env} ({state}; value hidden)", "env")
        out.append(
            {
                "name": spec.name,
                "kind": spec.kind,
                "settings": {k: {"value": v, "from": f} for k, (v, f) in values.items()},
            }
        )
    return out
