"""The same answer to bad input everywhere (issue 22 point 5): one line naming the variable or
option, exit 2, before anything is touched; `--version`; help that says what the code does."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cronkeeper import __version__
from cronkeeper.cli import app

runner = CliRunner()


def test_version_prints_the_version_and_exits_0() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"cronkeeper {__version__}"


def test_help_shows_flags_without_a_type_column() -> None:
    for argv in (["--help"], ["backfill", "--help"], ["prune", "--help"]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.stdout, argv


def test_backfill_help_says_runs_follow_the_lookback_not_one_per_date() -> None:
    text = " ".join(runner.invoke(app, ["backfill", "--help"]).stdout.split())
    assert "one run per date" not in text
    assert "META_LOOKBACK_DAYS" in text


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("CRONKEEPER_MAX_RUNTIME", "banana", "CRONKEEPER_MAX_RUNTIME: invalid duration 'banana'"),
        (
            "CRONKEEPER_MAX_RUNTIME",
            "collect-daily=banana",
            "CRONKEEPER_MAX_RUNTIME collect-daily: invalid duration 'banana'",
        ),
        (
            "CRONKEEPER_JOB_WINDOWS",
            "collect-daily=soon",
            "CRONKEEPER_JOB_WINDOWS collect-daily: invalid duration 'soon'",
        ),
        ("CRONKEEPER_JOB_WINDOWS", "foo", "CRONKEEPER_JOB_WINDOWS: expected NAME=VALUE"),
        ("CRONKEEPER_WATCH_INTERVAL", "zz", "CRONKEEPER_WATCH_INTERVAL: invalid duration 'zz'"),
    ],
)
def test_a_configuration_error_names_its_variable_once(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    result = runner.invoke(app, ["runs"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: invalid configuration: {expected}"), lines[0]
    assert "CONFIGURATION:" not in lines[0]
    assert lines[0].count(name) == 1


def test_a_database_error_is_one_line_not_a_log_line_and_a_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A SQLite file in a directory that cannot be created: the database is unusable.
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{blocker}/sub/ck.db")
    result = subprocess.run(
        [sys.executable, "-m", "cronkeeper", "runs"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")


def test_serve_on_a_busy_port_is_exit_2_before_the_schema_is_created(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    database = tmp_path / "ck.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{database}")
    monkeypatch.setenv("CRON_SECRET", "0123456789abcdefghij")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "cronkeeper", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use; choose another --port"
    )
    assert not database.exists()


@pytest.mark.parametrize("dry_run", [True, False])
async def test_a_failed_prune_says_to_run_again_only_when_it_deleted(
    tmp_path: Path, dry_run: bool
) -> None:
    from datetime import UTC, datetime, timedelta

    from cronkeeper.errors import StorageError
    from cronkeeper.ledger.prune import prune
    from cronkeeper.storage.engine import create_engine

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")  # no schema
    try:
        with pytest.raises(StorageError) as caught:
            await prune(
                engine,
                older_than=timedelta(days=90),
                now=datetime(2026, 12, 4, tzinfo=UTC),
                dry_run=dry_run,
            )
    finally:
        await engine.dispose()
    message = str(caught.value)
    assert ("run it again to continue" in message) is not dry_run
    assert message.startswith("prune --dry-run stopped" if dry_run else "prune stopped")
