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
from cronkeeper.sandbox.server import serve_app
from cronkeeper.service import Service
from tests.conftest import SECRET, FakeClock, make_settings
from tests.ops.test_metrics import record_run

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
    collect-benchmarks never ran, sync-notion (not monitored) failed.
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
    never_succeeded = "collect-daily has not succeeded for 26 h"
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": as_stored(scrape),
                "alert_rule_test": [
                    # Only ever partial: its last-success series exists (0), so the rule fires
                    # once 26 h have passed since the epoch, not never.
                    alert("CronkeeperNoRecentSuccess", "25h"),
                    alert(
                        "CronkeeperNoRecentSuccess",
                        "27h",
                        firing("collect-daily", never_succeeded),
                    ),
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
                    alert("CronkeeperRetryStorm", "2h"),
                ],
            }
        ],
    }
    # JSON is YAML: promtool reads it as it is.
    (tmp_path / "tests.yml").write_text(json.dumps(tests, indent=1), encoding="utf-8")
    output = promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert "SUCCESS" in output
