"""The ``cronkeeper`` command as a user runs it: a real process, real exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import SECRET
from tests.support.pg import free_port, wait_for_port

CLI = [sys.executable, "-m", "cronkeeper"]


def clean_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without cronkeeper's settings, plus ``env``."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("CRON", "DATABASE"))}
    full.update(env or {})
    return full


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        env=clean_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_db_upgrade_then_health_is_unhealthy_with_exit_1(database_url: str) -> None:
    env = {"DATABASE_URL": database_url}
    upgraded = cli("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "is at revision" in upgraded.stdout
    result = cli("health", env=env)
    assert result.returncode == 1
    body = json.loads(result.stdout)
    assert body["healthy"] is False
    assert body["missing"] == ["collect-daily", "collect-mixpanel", "collect-benchmarks"]


def test_health_exits_2_when_the_database_is_unreachable() -> None:
    result = cli(
        "health",
        env={
            "DATABASE_URL": "postgresql://u:hunter2hunter2@127.0.0.1:1/x",
            "CRONKEEPER_LEDGER_TIMEOUT": "1",
        },
    )
    assert result.returncode == 2
    assert json.loads(result.stdout) == {"healthy": False, "error": "database unavailable"}
    assert "hunter2hunter2" not in result.stdout + result.stderr


def test_bad_configuration_exits_2_naming_the_variable(tmp_path: Path) -> None:
    result = cli("health", env={"CRONKEEPER_TIMEZONE": "Mars/Base"}, cwd=tmp_path)
    assert result.returncode == 2
    assert "CRONKEEPER_TIMEZONE" in result.stderr
    assert "unknown time zone" in result.stderr


def test_run_rejects_unknown_jobs_and_bad_dates(tmp_path: Path) -> None:
    unknown = cli("run", "collect-weekly", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "collect-weekly" in unknown.stderr
    bad_date = cli("run", "collect-daily", "--date", "2026-13-01", cwd=tmp_path)
    assert bad_date.returncode == 2
    assert "YYYY-MM-DD" in bad_date.stderr


@pytest.mark.parametrize("secret", [None, "short"])
def test_serve_refuses_to_start_without_a_long_enough_secret(
    secret: str | None, tmp_path: Path
) -> None:
    env = {"CRON_SECRET": secret} if secret else {}
    result = cli("serve", "--port", str(free_port()), env=env, cwd=tmp_path, timeout=30)
    assert result.returncode == 2
    assert "CRON_SECRET must be set to at least 16 characters" in result.stderr


@dataclass
class Served:
    base: str
    output: str = ""


@contextmanager
def serving(tmp_path: Path, *args: str) -> Iterator[Served]:
    """`cronkeeper serve` as a real process on a free port; its output once it stopped."""
    port = free_port()
    process = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), *args],
        env=clean_env({"CRON_SECRET": SECRET}),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    served = Served(f"http://127.0.0.1:{port}")
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        yield served
    finally:
        process.terminate()
        try:
            served.output, _ = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            served.output, _ = process.communicate()


def test_serve_on_the_sqlite_default_answers_health_like_the_readme_says(tmp_path: Path) -> None:
    """The newcomer path: no DATABASE_URL, a secret, `cronkeeper serve`, then curl."""
    with serving(tmp_path) as served:
        assert httpx.get(f"{served.base}/healthz").json() == {"status": "ok"}
        denied = httpx.get(f"{served.base}/api/cron/health")
        assert denied.status_code == 401
        answer = httpx.get(
            f"{served.base}/api/cron/health", headers={"Authorization": f"Bearer {SECRET}"}
        )
        assert answer.status_code == 200
        assert answer.json()["missing"] == [
            "collect-daily",
            "collect-mixpanel",
            "collect-benchmarks",
        ]
        assert (tmp_path / "cronkeeper.db").exists()
    assert SECRET not in served.output


def test_backfill_runs_once_per_window_and_skips_done_runs(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/ck.db"}
    args = ("backfill", "sync-notion", "--since", "2026-11-01", "--until", "2026-11-03")
    first = cli(*args, env=env, cwd=tmp_path)
    assert first.returncode == 1  # no Notion configured: the one run is an error
    assert "2026-11-01…2026-11-03 sync-notion error" in first.stdout  # plain lines, one run
    weeks = ("backfill", "collect-benchmarks", "--since", "2026-11-01", "--until", "2026-11-10")
    second = cli(*weeks, env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    for week in ("2026-10-26…2026-11-01", "2026-11-02…2026-11-08"):  # the Sunday-ended weeks
        assert f"{week} collect-benchmarks success" in second.stdout
    runs = json.loads(cli("runs", "--json", env=env, cwd=tmp_path).stdout)
    assert len(runs) == 3
    forced = cli(*weeks, "--force", env=env, cwd=tmp_path)
    assert forced.returncode == 0
    assert len(json.loads(cli("runs", "--json", env=env, cwd=tmp_path).stdout)) == 5


def test_prune_keeps_the_latest_run_and_validates_its_argument(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/ck.db"}
    assert cli("run", "collect-benchmarks", env=env, cwd=tmp_path).returncode == 0
    pruned = cli("prune", "--older-than", "0.001s", env=env, cwd=tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    assert "deleted 0 runs" in pruned.stdout
    bad = cli("prune", "--older-than", "soon", env=env, cwd=tmp_path)
    assert bad.returncode == 2
    assert "invalid duration" in bad.stderr


def test_serve_with_the_scheduler_starts_and_answers(tmp_path: Path) -> None:
    with serving(tmp_path, "--scheduler") as served:
        assert httpx.get(f"{served.base}/healthz").status_code == 200
    assert "Traceback" not in served.output


def test_a_run_against_an_unreachable_database_is_delayed_about_one_timeout(
    tmp_path: Path,
) -> None:
    """SPEC: an unreachable database delays a cron by about the ledger timeout, not more."""
    import socket

    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        env = {
            "DATABASE_URL": f"postgresql://u:pw@127.0.0.1:{port}/db",
            "CRONKEEPER_LEDGER_TIMEOUT": "1",
        }
        started = time.monotonic()
        result = cli("run", "collect-benchmarks", env=env, cwd=tmp_path)
        elapsed = time.monotonic() - started
    assert result.returncode == 1  # the job itself needs the database: it ends error
    # start-up (~1 s) + one ledger timeout (1 s) + the job's own read (1 s) + interpreter.
    assert elapsed < 8, elapsed
    assert "pw@" not in result.stdout + result.stderr


def test_a_webhook_url_that_is_not_a_url_stops_run_with_exit_2(tmp_path: Path) -> None:
    result = cli(
        "run", "collect-benchmarks", env={"ALERT_WEBHOOK_URL": "hooks.example"}, cwd=tmp_path
    )
    assert result.returncode == 2
    assert "ALERT_WEBHOOK_URL" in result.stderr
    assert "Traceback" not in result.stderr
