"""The clients of ``examples/`` run as people will paste them, against a real uvicorn:
``cron-logger.mjs`` with Debian's ``node``, the curl one-liner with ``sh``, the crontab line
through ``cronkeeper exec``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cronkeeper.api.app import create_app
from cronkeeper.cron import check_cron
from cronkeeper.sandbox.server import serve_app
from cronkeeper.service import Service
from tests.cli.test_cli import clean_env
from tests.conftest import SECRET, make_settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
README = (EXAMPLES / "README.md").read_text()
KEY = "backup-ping-key-0123456789"
JOBS = (
    '[jobs.backup]\nkind = "external"\nschedule = "0 3 * * *"\nping_key_env = "BACKUP_PING_KEY"\n'
)
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(
    NODE is None and not os.environ.get("CI"),
    reason="node is not installed: scripts/ensure-system-deps.sh installs Debian's nodejs",
)


@pytest.fixture
def server(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / "cronkeeper.toml").write_text(JOBS)
    monkeypatch.setenv("BACKUP_PING_KEY", KEY)
    service = Service.from_settings(make_settings(database_url))
    with serve_app(create_app(service)) as base:
        yield base


def backup_runs(base: str) -> list[dict[str, object]]:
    answer = httpx.get(
        f"{base}/api/cron/runs",
        params={"job": "backup"},
        headers={"Authorization": f"Bearer {SECRET}"},
    )
    assert answer.status_code == 200, answer.text
    runs: list[dict[str, object]] = answer.json()["runs"]
    return runs


def block(language: str) -> str:
    [found] = re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)
    return str(found).strip()


@needs_node
def test_cron_logger_mjs_records_a_run_and_never_throws(server: str, tmp_path: Path) -> None:
    assert NODE is not None
    script = tmp_path / "job.mjs"
    script.write_text(
        f"import {{ startCronRun, completeCronRun, createCronLogger }} from "
        f"{json.dumps((EXAMPLES / 'cron-logger.mjs').as_uri())};\n"
        "const id = await startCronRun('backup', { reportDate: '2026-11-19' });\n"
        "await completeCronRun(id, 'partial', 12, 'one table skipped');\n"
        "await completeCronRun(id, 'partial', 12, 'one table skipped');\n"
        "const unknown = await startCronRun('nightly');\n"
        "await completeCronRun(unknown, 'success', 1);\n"
        "const away = createCronLogger({ url: 'http://127.0.0.1:9', key: 'k', timeoutMs: 2000 });\n"
        "const lost = await away.startCronRun('backup');\n"
        "console.log(JSON.stringify({ id, unknown, lost }));\n"
    )
    done = subprocess.run(
        [NODE, str(script)],
        env=clean_env({"CRONKEEPER_URL": server, "CRONKEEPER_PING_KEY": KEY}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["unknown"] is None and answer["lost"] is None
    assert "start of nightly not recorded (HTTP 404: unknown job 'nightly'" in done.stderr
    [run] = backup_runs(server)
    assert run["id"] == answer["id"]
    assert (run["status"], run["recordsCount"], run["errorMessage"], run["reportDate"]) == (
        "partial",
        12,
        "one table skipped",
        "2026-11-19",
    )


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_curl_one_liner_pings_with_the_exit_status(server: str, tmp_path: Path) -> None:
    line = block("sh")
    for code, status in ((0, "success"), (1, "error")):
        job = tmp_path / "backup.sh"
        job.write_text(f"#!/bin/sh\nexit {code}\n")
        job.chmod(0o755)
        done = subprocess.run(
            ["sh", "-c", line.replace("/usr/local/bin/backup.sh", str(job))],
            env=clean_env({"CRONKEEPER_URL": server, "BACKUP_PING_KEY": KEY}),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert backup_runs(server)[0]["status"] == status


def test_the_crontab_line_runs_through_exec(server: str, tmp_path: Path) -> None:
    line = block("crontab")
    fields = line.split()
    check_cron(" ".join(fields[:5]))
    command = " ".join(fields[5:])
    assert command.startswith("cronkeeper exec backup -- ")
    job = tmp_path / "backup.sh"
    job.write_text('#!/bin/sh\necho 7 > "$CRONKEEPER_RECORDS_FILE"\n')
    job.chmod(0o755)
    command = command.replace("/usr/local/bin/backup.sh", str(job)).replace(
        "cronkeeper ", f"{sys.executable} -m cronkeeper ", 1
    )
    done = subprocess.run(
        ["sh", "-c", command],  # as cron runs a line
        env=clean_env(
            {
                "CRONKEEPER_URL": server,
                "BACKUP_PING_KEY": KEY,
                "CRONKEEPER_SPOOL_DIR": str(tmp_path / "spool"),
            }
        ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")  # nothing for cron to mail
    [run] = backup_runs(server)
    assert (run["status"], run["recordsCount"]) == ("success", 7)
