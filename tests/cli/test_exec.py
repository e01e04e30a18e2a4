"""``cronkeeper exec NAME -- COMMAND``: real processes, real signals, a real ledger."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cronkeeper.api.app import create_app
from cronkeeper.redact import Redactor
from cronkeeper.sandbox.server import serve_app
from cronkeeper.service import Service
from cronkeeper.wrapper import outcome_of
from tests.conftest import SECRET, make_settings
from tests.support.cli import CLI, clean_env
from tests.support.cli import run_cli_process as cli  # exec forwards signals: a real process
from tests.support.waiting import eventually_sync

PING_KEY = "backup-ping-key-0123456789"
JOBS = """\
[jobs.backup]
kind = "external"
schedule = "0 3 * * *"
ping_key_env = "BACKUP_PING_KEY"
"""
PY = sys.executable


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    (tmp_path / "cronkeeper.toml").write_text(JOBS)
    return {
        "DATABASE_URL": database_url,
        "CRON_SECRET": SECRET,
        "BACKUP_PING_KEY": PING_KEY,
        "CRONKEEPER_SPOOL_DIR": str(tmp_path / "spool"),
    }


def runs(env: dict[str, str], cwd: Path) -> list[dict[str, object]]:
    listed = cli("runs", "--job", "backup", "--json", env=env, cwd=cwd)
    assert listed.returncode == 0, listed.stderr
    found: list[dict[str, object]] = json.loads(listed.stdout)
    return found


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(body)
    return str(path)


# -- the pure rule ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "exit_code", "head"),
    [
        (0, "success", 0, None),
        (3, "partial", 3, "exit status 3"),
        (1, "error", 1, "exit status 1"),
        (2, "error", 2, "exit status 2"),
        (-9, "error", 137, "killed by SIGKILL"),
        (-15, "error", 143, "killed by SIGTERM"),
    ],
)
def test_exit_status_maps_to_the_run_status_and_exec_exit_code(
    code: int, status: str, exit_code: int, head: str | None
) -> None:
    outcome = outcome_of(code, ["boom"], "12\n", Redactor())
    assert (outcome.status, outcome.exit_code, outcome.records_count) == (status, exit_code, 12)
    if head is None:
        assert outcome.error_message is None
    else:
        assert outcome.error_message == f"{head}\nboom"


def test_a_records_file_that_is_not_a_count_is_said_and_counts_zero() -> None:
    outcome = outcome_of(0, [], "lots", Redactor())
    assert outcome.records_count == 0
    assert outcome.error_message == (
        "CRONKEEPER_RECORDS_FILE held 'lots', not a whole number (0 recorded)"
    )


# -- real processes ------------------------------------------------------------------------


def test_a_command_that_succeeds_is_recorded_with_its_records(
    env: dict[str, str], tmp_path: Path
) -> None:
    cmd = script(
        tmp_path,
        "ok.py",
        "import os, sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)\n"
        "open(os.environ['CRONKEEPER_RECORDS_FILE'], 'w').write('42\\n')\n",
    )
    done = cli("exec", "backup", "--", PY, cmd, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "to stdout\n"
    assert done.stderr == "to stderr\n"  # passed through, and nothing of cronkeeper's own
    [run] = runs(env, tmp_path)
    assert (run["status"], run["recordsCount"], run["errorMessage"]) == ("success", 42, None)


def test_a_command_that_fails_is_recorded_with_its_last_stderr_lines_redacted(
    env: dict[str, str], tmp_path: Path
) -> None:
    lines = "".join(f"print('line {n}', file=sys.stderr)\n" for n in range(30))
    cmd = script(
        tmp_path,
        "fail.py",
        f"import sys\n{lines}print('token was {PING_KEY}', file=sys.stderr)\nsys.exit(1)\n",
    )
    done = cli("exec", "backup", "--", PY, cmd, env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert "line 0\n" in done.stderr  # all of it passed through
    [run] = runs(env, tmp_path)
    message = str(run["errorMessage"])
    assert run["status"] == "error"
    assert message.startswith("exit status 1\nline 11\n")  # the last 20 lines
    assert message.endswith("token was [REDACTED]")
    assert PING_KEY not in message


def test_exit_3_is_partial_and_exec_exits_3(env: dict[str, str], tmp_path: Path) -> None:
    done = cli("exec", "backup", "--", PY, "-c", "import sys; sys.exit(3)", env=env, cwd=tmp_path)
    assert done.returncode == 3
    assert runs(env, tmp_path)[0]["status"] == "partial"


def wait_for(path: Path, process: subprocess.Popen[str]) -> None:
    """Until ``path`` exists (the child says it is ready); no timing is asserted."""

    def ready() -> bool:
        assert process.poll() is None, process.communicate()
        return path.exists()

    eventually_sync(ready, what="the command never started", within=60, poll=0.02)


def test_sigterm_is_forwarded_and_the_killed_command_is_recorded_as_error(
    env: dict[str, str], tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    cmd = script(
        tmp_path,
        "wait.py",
        f"import pathlib, time\npathlib.Path({str(ready)!r}).touch()\ntime.sleep(600)\n",
    )
    process = subprocess.Popen(
        [*CLI, "exec", "backup", "--", PY, cmd],
        env=clean_env(env),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(ready, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    [run] = runs(env, tmp_path)
    assert (run["status"], run["errorMessage"]) == ("error", "killed by SIGTERM")


def test_an_overlapping_exec_exits_75_without_starting_its_command(
    env: dict[str, str], tmp_path: Path
) -> None:
    ready, release, second = tmp_path / "ready", tmp_path / "release", tmp_path / "second-ran"
    cmd = script(
        tmp_path,
        "hold.py",
        "import pathlib, time\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        f"while not pathlib.Path({str(release)!r}).exists(): time.sleep(0.02)\n",
    )
    first = subprocess.Popen(
        [*CLI, "exec", "backup", "--", PY, cmd],
        env=clean_env(env),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(ready, first)
    overlap = cli("exec", "backup", "--", "touch", str(second), env=env, cwd=tmp_path)
    release.touch()
    first.communicate(timeout=60)
    assert overlap.returncode == 75, overlap.stderr
    assert "already running" in overlap.stderr
    assert not second.exists()
    assert first.returncode == 0
    assert [r["status"] for r in runs(env, tmp_path)] == ["success"]


def test_a_command_runs_while_the_database_is_down_and_its_run_is_recorded_later(
    tmp_path: Path,
) -> None:
    (tmp_path / "cronkeeper.toml").write_text(JOBS)
    home = tmp_path / "db-home"
    home.write_text("a file where the database's directory should be: it cannot be opened")
    env = {
        "DATABASE_URL": f"sqlite:///{home}/ck.db",
        "CRONKEEPER_SPOOL_DIR": str(tmp_path / "spool"),
        "CRONKEEPER_LEDGER_TIMEOUT": "2",
    }
    out = tmp_path / "out.txt"
    done = cli(
        "exec",
        "backup",
        "--",
        PY,
        "-c",
        f"open({str(out)!r}, 'w').write('done')",
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0  # recording failed; the command did not
    assert out.read_text() == "done"
    assert "kept in" in done.stderr and "Traceback" not in done.stderr
    assert len(list((tmp_path / "spool").glob("exec-*.json"))) == 1
    home.unlink()  # the database is back
    home.mkdir()
    again = cli("exec", "backup", "--", PY, "-c", "import sys; sys.exit(1)", env=env, cwd=tmp_path)
    assert again.returncode == 1
    assert [r["status"] for r in runs(env, tmp_path)] == ["error", "success"]
    assert list((tmp_path / "spool").glob("exec-*.json")) == []


@pytest.fixture
def server(
    database_url: str, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    monkeypatch.setenv("BACKUP_PING_KEY", PING_KEY)
    service = Service.from_settings(make_settings(database_url))
    with serve_app(create_app(service)) as base:
        yield base


def test_over_http_with_the_ping_key_and_a_spool_while_the_server_is_away(
    server: str, env: dict[str, str], tmp_path: Path
) -> None:
    http = {k: v for k, v in env.items() if k not in ("DATABASE_URL", "CRON_SECRET")}
    done = cli(
        "exec",
        "backup",
        "--",
        PY,
        "-c",
        "import sys; print('x', file=sys.stderr); sys.exit(3)",
        env=http | {"CRONKEEPER_URL": server},
        cwd=tmp_path,
    )
    assert done.returncode == 3, done.stderr
    away = cli(
        "exec",
        "backup",
        "--",
        PY,
        "-c",
        "pass",
        env=http | {"CRONKEEPER_URL": "http://127.0.0.1:9", "CRONKEEPER_LEDGER_TIMEOUT": "1"},
        cwd=tmp_path,
    )
    assert away.returncode == 0 and "kept in" in away.stderr
    # The next exec against the real server sends the spooled run first (a ping with its
    # startedAt), then its own.
    last = cli("exec", "backup", "--", "true", env=http | {"CRONKEEPER_URL": server}, cwd=tmp_path)
    assert last.returncode == 0, last.stderr
    listed = httpx.get(
        f"{server}/api/cron/runs",
        params={"job": "backup"},
        headers={"Authorization": f"Bearer {SECRET}"},
    ).json()["runs"]
    assert [(r["status"], r["errorMessage"]) for r in listed] == [
        ("success", None),
        ("success", None),
        ("partial", "exit status 3\nx"),
    ]


def test_exec_refuses_unknown_and_built_in_jobs_with_exit_2(
    env: dict[str, str], tmp_path: Path
) -> None:
    unknown = cli("exec", "nightly", "--", "true", env=env, cwd=tmp_path)
    assert unknown.returncode == 2
    assert "unknown job 'nightly'" in unknown.stderr
    builtin = cli("exec", "collect-daily", "--", "true", env=env, cwd=tmp_path)
    assert builtin.returncode == 2
    assert "cronkeeper run collect-daily" in builtin.stderr


def test_an_unreachable_postgresql_delays_nothing_but_the_record(tmp_path: Path) -> None:
    (tmp_path / "cronkeeper.toml").write_text(JOBS)
    env = {
        "DATABASE_URL": "postgresql://u:hunter2hunter2@127.0.0.1:1/none",
        "CRONKEEPER_SPOOL_DIR": str(tmp_path / "spool"),
        "CRONKEEPER_LEDGER_TIMEOUT": "1",
    }
    done = cli("exec", "backup", "--", PY, "-c", "print('work done')", env=env, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, "work done\n")
    assert "hunter2hunter2" not in done.stderr and "Traceback" not in done.stderr
    [spooled] = (tmp_path / "spool").glob("exec-*.json")
    assert json.loads(spooled.read_text())["status"] == "success"
