"""The watchdog as it runs in production: real ``cronkeeper`` processes, a real webhook
receiver on loopback, the real database (two replicas share one PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from cronkeeper.ledger import Ledger
from cronkeeper.sandbox import MetaSimulator
from cronkeeper.sandbox.server import serve_app
from cronkeeper.storage.engine import create_engine
from tests.alerting.test_alerts import HOOK_PATH, Receiver
from tests.cli.test_cli import CLI, clean_env, cli
from tests.conftest import SECRET, FakeClock
from tests.support.pg import free_port, wait_for_port

AUTH = {"Authorization": f"Bearer {SECRET}"}
TICK = 0.2
"""The replicas' watchdog interval (CRONKEEPER_WATCH_INTERVAL), in seconds."""
TICKS_MORE = 0.5
"""A real wait worth a few more ticks: what must not happen would have happened by then."""
NEVER = "0 0 1 1 *"  # midnight on January 1st: no fire or catch-up during a test
QUIET = ";".join(
    f"{job}={NEVER}"
    for job in ("sync-notion", "collect-daily", "collect-mixpanel", "collect-benchmarks")
)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    app = Starlette(routes=[Route(HOOK_PATH, rec.hook, methods=["POST"])])
    with serve_app(app) as base:
        rec.url = base + HOOK_PATH
        yield rec


def wait_until(condition: Callable[[], bool], timeout: float = 45.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


@contextmanager
def replicas(count: int, env: dict[str, str], cwd: Path) -> Iterator[list[str]]:
    """``count`` × ``cronkeeper serve --scheduler``; their output is appended to ``logs``."""
    ports = [free_port() for _ in range(count)]
    processes = [
        subprocess.Popen(
            [*CLI, "serve", "--scheduler", "--port", str(port)],
            env=clean_env({"CRON_SECRET": SECRET, **env}),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for port in ports
    ]
    logs: list[str] = []
    try:
        for port in ports:
            wait_for_port("127.0.0.1", port, timeout=60)
        yield [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                output, _ = process.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                output, _ = process.communicate()
            logs.append(output)
        env["_logs"] = "\n=====\n".join(logs)


def record_history(
    url: str, runs: list[tuple[datetime, str, int]], job: str = "collect-daily"
) -> None:
    """Write finished runs (start, status, records) as the ledger does, each for yesterday."""

    async def write() -> None:
        engine = create_engine(url)
        clock = FakeClock()
        ledger = Ledger(engine, clock=clock)
        try:
            for started, status, records in runs:
                clock.now = started
                run_id = await ledger.start_cron_run(
                    job, report_date=started.date() - timedelta(days=1)
                )
                clock.advance(minutes=2)
                await ledger.complete_cron_run(run_id, status, records)
        finally:
            await engine.dispose()

    asyncio.run(write())


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_two_replicas_on_one_postgresql_send_one_message_for_one_missed_job(
    database_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    record_history(database_url, [(now - timedelta(days=2), "success", 200)])
    env = {
        "DATABASE_URL": database_url,
        "ALERT_WEBHOOK_URL": receiver.url,
        "CRONKEEPER_MONITORED_JOBS": "collect-daily",
        "CRONKEEPER_WATCH_INTERVAL": f"{TICK}s",
        "CRONKEEPER_SCHEDULES": QUIET,
        # A quiet schedule expects no run: the window says when one was due (issue 17).
        "CRONKEEPER_JOB_WINDOWS": "collect-daily=1d",
    }
    with replicas(2, env, tmp_path) as bases:
        assert wait_until(lambda: len(receiver.texts) >= 1), env.get("_logs")
        # Both replicas keep evaluating every 0.2 s; none sends it again.
        for base in bases:
            health = httpx.get(f"{base}/api/cron/health", headers=AUTH, timeout=10).json()
            assert health["missing"] == ["collect-daily"]
        time.sleep(TICKS_MORE)  # a few more ticks of each replica (a load only makes it fewer)
    assert len(receiver.texts) == 1, receiver.texts
    assert receiver.texts[0].startswith(":red_circle: collect-daily is missing")
    assert env["_logs"].count("alert: :red_circle: collect-daily is missing") == 1


def test_a_paused_job_is_skipped_by_the_scheduler_and_silent(
    database_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    """collect-daily and collect-mixpanel share a slot two minutes ago; collect-daily is
    paused. The scheduler's catch-up fires collect-mixpanel only; collect-daily, missing
    as it is (it never ran), sends nothing."""
    slot = datetime.now(UTC) - timedelta(minutes=2)
    cron = f"{slot.minute} {slot.hour} * * *"
    env = {
        "DATABASE_URL": database_url,
        "ALERT_WEBHOOK_URL": receiver.url,
        "CRONKEEPER_MONITORED_JOBS": "collect-daily",
        "CRONKEEPER_WATCH_INTERVAL": f"{TICK}s",
        "CRONKEEPER_SCHEDULES": (
            f"sync-notion={NEVER};collect-benchmarks={NEVER};"
            f"collect-daily={cron};collect-mixpanel={cron}"
        ),
    }
    paused = cli("pause", "collect-daily", "--reason", "Meta outage", env=env, cwd=tmp_path)
    assert paused.returncode == 0, paused.stderr
    assert json.loads(paused.stdout)["paused"] is True

    def ran() -> list[str]:
        listed = cli("runs", "--json", env=env, cwd=tmp_path)
        return [r["cronName"] for r in json.loads(listed.stdout)]

    with replicas(1, env, tmp_path) as [base]:
        assert wait_until(
            lambda: (
                ran() == ["collect-mixpanel"]
                and any("collect-mixpanel" in t for t in receiver.texts)
            )
        ), env.get("_logs")
        health = httpx.get(f"{base}/api/cron/health", headers=AUTH, timeout=10).json()
        time.sleep(TICKS_MORE)  # a few more watchdog ticks
    daily = health["checks"]["collect-daily"]
    assert (daily["ok"], daily["paused"], health["healthy"]) == (True, True, True)
    assert ran() == ["collect-mixpanel"], "collect-daily was not fired"
    assert "collect-daily is paused" in env["_logs"]
    assert not [t for t in receiver.texts if "collect-daily" in t], receiver.texts
    check = cli("check", env=env, cwd=tmp_path)
    assert json.loads(check.stdout)["jobs"]["collect-daily"]["state"] == "paused"


def test_thresholds_3_and_2_over_real_runs(receiver: Receiver, tmp_path: Path) -> None:
    """`cronkeeper run collect-daily` five times against the Meta simulator: three runs with
    a revoked token (error 190), then two good ones. The third failure alerts, the second
    success recovers; nothing else is said."""
    token = "meta-token-0123456789abcdef"
    sim = MetaSimulator(["1001"], access_token=token)
    with serve_app(sim.app) as meta:
        env = {
            "DATABASE_URL": f"sqlite:///{tmp_path}/ck.db",
            "ALERT_WEBHOOK_URL": receiver.url,
            "CRONKEEPER_FAILURE_THRESHOLD": "3",
            "CRONKEEPER_RECOVERY_THRESHOLD": "2",
            "META_API_BASE": meta,
            "META_AD_ACCOUNT_IDS": "1001",
            "META_LOOKBACK_DAYS": "1",
        }
        counts = []
        for good in (False, False, False, True, True):
            run_env = {**env, "META_ACCESS_TOKEN": token if good else "revoked-token-000000"}
            result = cli("run", "collect-daily", env=run_env, cwd=tmp_path)
            assert result.returncode == (0 if good else 1), result.stderr
            counts.append(len(receiver.texts))
    assert counts == [0, 0, 1, 1, 2], receiver.texts
    assert receiver.texts[0].startswith(":red_circle: collect-daily failed")
    assert "3 runs in a row ended error" in receiver.texts[0]
    assert receiver.texts[1].startswith(":large_green_circle: collect-daily recovered")
    assert token not in "".join(receiver.texts)


def test_check_finds_a_drop_from_200_to_20_records_after_8_weeks(
    database_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    today = datetime.now(UTC).replace(hour=1, minute=0, second=0, microsecond=0)
    if today > datetime.now(UTC):
        today -= timedelta(days=1)
    history = [(today - timedelta(days=d), "success", 196 + d % 9) for d in range(56, 0, -1)]
    record_history(database_url, [*history, (today, "success", 20)])
    env = {
        "DATABASE_URL": database_url,
        "ALERT_WEBHOOK_URL": receiver.url,
        "CRONKEEPER_MONITORED_JOBS": "collect-daily",
    }
    check = cli("check", env=env, cwd=tmp_path)
    assert check.returncode == 1, check.stderr
    assert json.loads(check.stdout)["jobs"]["collect-daily"]["state"] == "anomalous"
    assert cli("check", env=env, cwd=tmp_path).returncode == 1
    [text] = receiver.texts
    assert text.startswith(":large_orange_circle: collect-daily wrote unusually few records")
    health = json.loads(cli("health", env=env, cwd=tmp_path).stdout)
    daily = health["checks"]["collect-daily"]
    assert daily["anomaly"] == "low-volume" and daily["ok"] is True
    assert daily["expectedRecords"]["low"] > 20
    strict = cli("health", env={**env, "CRONKEEPER_VOLUME_AFFECTS_HEALTH": "true"}, cwd=tmp_path)
    assert strict.returncode == 1
