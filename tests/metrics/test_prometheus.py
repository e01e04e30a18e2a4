"""The metrics as a real Prometheus sees them, checked with Prometheus's own ``promtool``.

``promtool check metrics`` lints a real scrape (uvicorn, bearer, the route's bytes).
``promtool test rules`` runs the README's rule group, cut out of README.md so the README stays
true, against series made from a real scrape the way Prometheus stores them: with the
target's ``job`` and ``instance`` labels, and a scraped label that collides with one of those
renamed ``exported_<name>`` (Prometheus configuration docs, ``honor_labels``: "If
honor_labels is set to "false", label conflicts are resolved by renaming conflicting labels
in the scraped data to "exported_<original-label>""). That renaming is why the per-job label
is ``cron``: a ``job`` label arrives as ``exported_job`` and ``{job="collect-daily"}``
matches nothing.

promtool's unit tests start their clock at the Unix epoch, so the ledger here lives in
January 1970: ``time()`` in a rule and the timestamps in the scrape share one timeline.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cronkeeper.api.app import create_app
from cronkeeper.ledger.presence import Heartbeat
from cronkeeper.sandbox.server import serve_app
from cronkeeper.service import Service
from tests.conftest import SECRET, FakeClock, make_settings
from tests.metrics.test_metrics import record_run

README = Path(__file__).resolve().parents[2] / "README.md"
PROMTOOL = shutil.which("promtool")
TARGET = {"job": "cronkeeper", "instance": "cronkeeper:8000"}
"""The labels Prometheus puts on every series of the target (``job`` = the scrape job)."""

pytestmark = pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("CI"),
    reason="promtool is not installed: scripts/ensure-system-deps.sh installs Debian's "
    "prometheus package, which ships it",
)


def promtool(*args: str, stdin: str | None = None, cwd: Path | None = None) -> str:
    assert PROMTOOL is not None, "CI must have promtool (scripts/ensure-system-deps.sh)"
    done = subprocess.run(
        [PROMTOOL, *args], input=stdin, capture_output=True, text=True, cwd=cwd, timeout=60
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def readme_rules() -> str:
    """The README's Prometheus rule group, exactly as a reader would copy it."""
    blocks = re.findall(r"```yaml\n(groups:\n.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, "README.md should have one ```yaml block of Prometheus rules"
    return str(blocks[0])


async def real_scrape(database_url: str) -> str:
    """A ledger in January 1970, scraped over HTTP from a real uvicorn with the bearer.

    collect-daily was only ever ``partial`` (a dead account), collect-mixpanel succeeded,
    collect-benchmarks never ran, sync-notion (not monitored) failed; in the last hour a
    collect-mixpanel run recorded by another process (``cronkeeper run`` from system cron:
    the ledger's run tracker, as the runner drives it) retried 150 times on HTTP 429, and a
    scheduler beat 10 minutes ago (silent: 3 watch intervals are 3 minutes).
    """
    # collect-mixpanel runs at its fire (30 1 * * *): health expects a run per fire (issue 17).
    clock = FakeClock(datetime(1970, 1, 1, 1, 30, tzinfo=UTC))
    writer = Service.from_settings(make_settings(database_url), clock=clock)
    try:
        await record_run(writer, clock, "collect-mixpanel", "success", records=40)
        clock.advance(hours=1)
        await record_run(writer, clock, "sync-notion", "error", message="HTTP 401")
        for _ in range(3):
            clock.advance(hours=6, minutes=40)
            await record_run(writer, clock, "collect-daily", "partial", records=9)
        clock.now = datetime(1970, 1, 1, 23, 30, tzinfo=UTC)
        async with writer.ledger.track("collect-mixpanel") as tracker:
            for _ in range(150):
                tracker.retried("status_429")
            tracker.stored(40)
        clock.now = datetime(1970, 1, 1, 23, 50, tzinfo=UTC)
        await writer.heartbeats.beat(Heartbeat("s", "sched-1", 7, clock.now, clock.now))
    finally:
        await writer.aclose()
    clock.now = datetime(1970, 1, 2, 0, 0, tzinfo=UTC)
    service = Service.from_settings(make_settings(database_url), clock=clock)
    with serve_app(create_app(service)) as base:
        response = await asyncio.to_thread(
            httpx.get, f"{base}/metrics", headers={"Authorization": f"Bearer {SECRET}"}
        )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


def as_stored(scrape: str) -> list[dict[str, str]]:
    """promtool input series: each cronkeeper sample as Prometheus would store it, constant
    over the test's 30 hours (one sample a minute)."""
    series = []
    for family in text_string_to_metric_families(scrape):
        for sample in family.samples:
            if not sample.name.startswith("cronkeeper_") or sample.name.endswith("_created"):
                continue
            labels = {(f"exported_{k}" if k in TARGET else k): v for k, v in sample.labels.items()}
            labels.update(TARGET)
            selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            series.append(
                {"series": f"{sample.name}{{{selector}}}", "values": f"{sample.value:.3f}+0x1800"}
            )
    return series


def alert(name: str, at: str, *expected: dict[str, Any]) -> dict[str, Any]:
    return {"alertname": name, "eval_time": at, "exp_alerts": list(expected)}


def firing(cron: str, summary: str) -> dict[str, Any]:
    return {"exp_labels": {"cron": cron, **TARGET}, "exp_annotations": {"summary": summary}}


async def test_a_real_scrape_passes_promtool_check_metrics(database_url: str) -> None:
    scrape = await real_scrape(database_url)
    promtool("check", "metrics", stdin=scrape)
    assert 'cronkeeper_last_run_records{cron="collect-daily"} 9.0' in scrape
    assert not re.search(r"^cronkeeper_\w+\{[^}]*\bjob=", scrape, re.M), "no `job` label"


async def test_the_readme_rules_fire_on_what_prometheus_stores(
    database_url: str, tmp_path: Path
) -> None:
    scrape = await real_scrape(database_url)
    (tmp_path / "rules.yml").write_text(readme_rules(), encoding="utf-8")
    promtool("check", "rules", str(tmp_path / "rules.yml"))
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": as_stored(scrape),
                "alert_rule_test": [
                    # Issue 22: collect-daily is only ever partial and healthy (its last
                    # partial ended at 22:10): the rule reads the last ok run and stays
                    # silent, where the last success (none) made it fire at 26 h.
                    alert("CronkeeperNoRecentSuccess", "27h"),
                    # Every rule has a `for:`; a target that answers is not dead.
                    alert("CronkeeperDown", "1h"),
                    alert("CronkeeperAbsent", "1h"),
                    # Never ran: unhealthy; `for: 15m` holds it back until then.
                    alert("CronkeeperJobUnhealthy", "10m"),
                    alert(
                        "CronkeeperJobUnhealthy",
                        "20m",
                        firing(
                            "collect-benchmarks", "collect-benchmarks is failing, missing or stuck"
                        ),
                    ),
                    alert("CronkeeperDatabaseDown", "20m"),
                    # 150 retries recorded by a run of another process: `for: 5m`, then fires.
                    alert("CronkeeperRetryStorm", "3m"),
                    alert(
                        "CronkeeperRetryStorm",
                        "10m",
                        {
                            "exp_labels": {"reason": "status_429"},
                            "exp_annotations": {
                                "summary": "many status_429 retries: the API is throttling"
                            },
                        },
                    ),
                    alert(
                        "CronkeeperSchedulerSilent",
                        "10m",
                        {
                            "exp_labels": {},
                            "exp_annotations": {
                                "summary": "no scheduler heartbeat for 3 watch intervals:"
                                " nothing runs on schedule"
                            },
                        },
                    ),
                ],
            },
            {
                # A dead target: Prometheus records up == 0 and no cronkeeper series at all.
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'up{job="cronkeeper",instance="cronkeeper:8000"}',
                        "values": "0+0x60",
                    }
                ],
                "alert_rule_test": [
                    alert("CronkeeperDown", "3m"),
                    alert(
                        "CronkeeperDown",
                        "6m",
                        {
                            "exp_labels": TARGET,
                            "exp_annotations": {
                                "summary": "cronkeeper at cronkeeper:8000 does not answer scrapes"
                            },
                        },
                    ),
                    alert("CronkeeperAbsent", "5m"),
                    alert(
                        "CronkeeperAbsent",
                        "11m",
                        {
                            "exp_labels": {},
                            "exp_annotations": {
                                "summary": "no cronkeeper_up series: cronkeeper is gone or not"
                                " scraped"
                            },
                        },
                    ),
                    alert("CronkeeperRetryStorm", "11m"),
                    alert("CronkeeperNoRecentSuccess", "11m"),
                ],
            },
        ],
    }
    # JSON is YAML: promtool reads it as it is.
    (tmp_path / "tests.yml").write_text(json.dumps(tests, indent=1), encoding="utf-8")
    output = promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert "SUCCESS" in output


def test_every_rule_has_a_for_clause() -> None:
    """Issue 22: a rule without ``for:`` fires on one odd scrape."""
    rules = readme_rules().split("- alert: ")[1:]
    assert len(rules) >= 7
    for body in rules:
        name = body.split()[0]
        assert re.search(r"^\s+for: \d+[smh]$", body, re.M), name


async def test_every_exported_metric_family_is_documented_in_the_readme(
    database_url: str,
) -> None:
    """Issue 22: ``cronkeeper_up`` was exported and documented nowhere."""
    scrape = await real_scrape(database_url)
    readme = README.read_text(encoding="utf-8")
    families = {f.name for f in text_string_to_metric_families(scrape)}
    # A counter's ``_created`` series is prometheus-client's standard companion (README says).
    ours = sorted(
        name
        for name in families
        if name.startswith("cronkeeper_") and not name.endswith("_created")
    )
    assert "cronkeeper_scheduler_heartbeat_age_seconds" in ours
    assert "cronkeeper_retries_last_hour" in ours and "cronkeeper_last_ok_timestamp_seconds" in ours
    # prometheus-client's parser names counters without their _total suffix.
    missing = [
        name for name in ours if f"`{name}`" not in readme and f"`{name}_total`" not in readme
    ]
    assert missing == [], f"exported but not in README.md: {missing}"
    for prefix in ("process_", "python_gc_", "python_info"):
        assert any(name.startswith(prefix) for name in families), prefix
        assert f"`{prefix}" in readme, prefix
