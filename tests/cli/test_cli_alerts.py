"""`cronkeeper check`, `pause` and `resume` as a user runs them: real processes, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_cli import cli


def test_pause_and_resume_print_the_pause_and_refuse_bad_input(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/ck.db"}
    paused = cli("pause", "collect-daily", "--for", "2h", "--reason", "Meta outage", env=env)
    assert paused.returncode == 0, paused.stderr
    body = json.loads(paused.stdout)
    assert body["paused"] is True and body["pausedUntil"] and body["pauseReason"] == "Meta outage"
    health = json.loads(cli("health", env=env).stdout)
    assert health["checks"]["collect-daily"]["paused"] is True
    # issue 22: the reason and who paused (the CLI here), in health
    assert health["checks"]["collect-daily"]["pauseReason"] == "Meta outage"
    assert health["checks"]["collect-daily"]["pausedBy"] == "cli"
    resumed = cli("resume", "collect-daily", env=env)
    assert resumed.returncode == 0 and json.loads(resumed.stdout)["paused"] is False
    unknown = cli("pause", "collect-weekly", env=env)
    assert unknown.returncode == 2 and "collect-weekly" in unknown.stderr
    bad = cli("pause", "collect-daily", "--for", "soon", env=env)
    assert bad.returncode == 2 and "--for" in bad.stderr and "Traceback" not in bad.stderr


def test_check_exits_1_for_a_job_down_and_2_when_the_database_is_unreachable(
    tmp_path: Path,
) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/ck.db"}
    check = cli("check", env=env, cwd=tmp_path)
    assert check.returncode == 1, check.stderr  # nothing ever ran: missing
    states = json.loads(check.stdout)["jobs"]
    assert states["collect-daily"]["state"] == "missing"
    assert states["sync-notion"]["state"] == "ok", "not monitored: never missing"
    assert "alert: :red_circle: collect-daily is missing" in check.stderr
    again = cli("check", env=env, cwd=tmp_path)
    assert "alert:" not in again.stderr, "one alert per change"
    down = cli(
        "check",
        env={
            "DATABASE_URL": "postgresql://u:hunter2hunter2@127.0.0.1:1/x",
            "CRONKEEPER_LEDGER_TIMEOUT": "1",
        },
    )
    assert down.returncode == 2
    assert "hunter2hunter2" not in down.stdout + down.stderr
    assert "Traceback" not in down.stderr


def test_resume_of_a_job_still_missing_alerts_once(tmp_path: Path) -> None:
    """Issue 17: ``cronkeeper resume`` re-evaluates; a job missing before its pause (here: it
    never ran) is missing again at once, and says so once (logged without a webhook)."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/ck.db"}
    first = cli("check", env=env, cwd=tmp_path)
    assert "alert: :red_circle: collect-daily is missing" in first.stderr
    assert cli("pause", "collect-daily", env=env).returncode == 0
    paused = cli("check", env=env, cwd=tmp_path)
    assert "alert:" not in paused.stderr
    resumed = cli("resume", "collect-daily", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "alert: :red_circle: collect-daily is missing" in resumed.stderr
    again = cli("check", env=env, cwd=tmp_path)
    assert again.returncode == 1 and "alert:" not in again.stderr, "once"
