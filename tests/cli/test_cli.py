"""The ``cronkeeper`` command as a user runs it: its output and exit codes.

Most commands run in-process through the console script's own entry point
(tests/support/cli.py); the smoke tests that run ``python -m cronkeeper`` as a real process
keep what only a process shows: exit codes as the shell sees them, no traceback, ``serve``
and its signals.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import SECRET
from tests.support.blackhole import Blackhole
from tests.support.cli import CLI, clean_env, run_cli, run_cli_process
from tests.support.pg import free_port, wait_for_port

cli = run_cli  # in-process; the smoke tests below run `python -m cronkeeper` for real
cli_process = run_cli_process


def test_db_upgrade_then_health_is_unhealthy_with_exit_1(database_url: str) -> None:
    env = {"DATABASE_URL": database_url}
    upgraded = cli_process("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "is at revision" in upgraded.stdout
    result = cli_process("health", env=env)
    assert result.returncode == 1
    body = json.loads(result.stdout)
    assert body["healthy"] is False
    assert body["missing"] == ["collect-daily", "collect-mixpanel", "collect-benchmarks"]
    assert body["warnings"] == []  # the default META_API_VERSION (v27.0) has no expiry yet


def test_health_exits_2_when_the_database_is_unreachable() -> None:
    result = cli_process(
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
    result = cli_process("health", env={"CRONKEEPER_TIMEZONE": "Mars/Base"}, cwd=tmp_path)
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
    result = cli_process("serve", "--port", str(free_port()), env=env, cwd=tmp_path, timeout=30)
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


@pytest.mark.timeout(60)  # a run that waited on the silent database without a bound hangs
def test_a_run_against_an_unreachable_database_is_delayed_about_one_timeout(
    tmp_path: Path,
) -> None:
    """SPEC: an unreachable database delays a cron by about the ledger timeout, not more.

    Each call that reaches a silent database waits out one bounded timeout; the breaker lets
    the others fail at once. So the delay is counted in connections to it, not measured.
    """
    with Blackhole() as silent:  # accepts connections, never answers
        env = {
            "DATABASE_URL": f"postgresql://u:pw@127.0.0.1:{silent.port}/db",
            "CRONKEEPER_LEDGER_TIMEOUT": "1",
        }
        result = cli("run", "collect-benchmarks", env=env, cwd=tmp_path)
        reached = silent.connections
    assert result.returncode == 1  # the job itself needs the database: it ends error
    # The run's lease claim (one timeout), then the job's own read (one more): two waits.
    assert reached == 2, result.stderr
    assert "not attempted" in result.stderr  # the rest of the bookkeeping did not wait
    assert "pw@" not in result.stdout + result.stderr


def test_a_webhook_url_that_is_not_a_url_stops_run_with_exit_2(tmp_path: Path) -> None:
    result = cli_process(
        "run", "collect-benchmarks", env={"ALERT_WEBHOOK_URL": "hooks.example"}, cwd=tmp_path
    )
    assert result.returncode == 2
    assert "ALERT_WEBHOOK_URL" in result.stderr
    assert "Traceback" not in result.stderr


# -- bad input: one line, a documented exit code, never a traceback (issue 12, items 5-9) ----


def one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 2, no traceback, and one line that names what is wrong (besides log lines)."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if not LOG_LINE.match(line)]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("error: "), errors[0]
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])


LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING) cronkeeper[.\w]*: ")
UNCREATABLE = "sqlite:////dev/null/x.db"  # its "directory" is a device file


@pytest.mark.parametrize(
    "args",
    [
        ("health",),
        ("run", "collect-benchmarks"),
        ("runs",),
        ("db", "upgrade"),
        ("prune", "--older-than", "90d"),
        ("backfill", "collect-benchmarks", "--since", "2026-11-01", "--until", "2026-11-02"),
        ("scheduler",),
        ("serve", "--port", "1"),  # never gets to bind
    ],
)
def test_a_sqlite_file_whose_directory_cannot_be_made_is_a_one_line_database_error(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    result = cli(*args, env={"DATABASE_URL": UNCREATABLE, "CRON_SECRET": SECRET}, cwd=tmp_path)
    one_line_error(result, "/dev/null", "DATABASE_URL")
    if args == ("health",):  # the contract's "database error" answer
        assert json.loads(result.stdout) == {"healthy": False, "error": "database unavailable"}


@pytest.mark.parametrize(
    ("variable", "value", "args"),
    [
        ("CRONKEEPER_SCHEDULES", "collect-daily=61 * * * *", ("scheduler",)),
        ("CRONKEEPER_SCHEDULES", "collect-daily=0 1 * * 8", ("serve", "--scheduler")),
        ("CRONKEEPER_SCHEDULES", "collect-daily=0 25 * * *", ("health",)),
        ("CRONKEEPER_SCHEDULES", "collect-daily=* * * *", ("runs",)),
        ("ALERT_WEBHOOK_URL", "hooks.example/T000/B000", ("serve",)),
        ("ALERT_WEBHOOK_URL", "ftp://hooks.example/x", ("health",)),
        ("ALERT_WEBHOOK_URL", "https://hooks example/x", ("scheduler",)),
    ],
)
def test_bad_schedules_and_webhooks_stop_every_command_naming_the_variable(
    variable: str, value: str, args: tuple[str, ...], tmp_path: Path
) -> None:
    env = {variable: value, "CRON_SECRET": SECRET, "DATABASE_URL": f"sqlite:///{tmp_path}/ck.db"}
    if args[0] == "serve":
        args = (*args, "--port", str(free_port()))
    result = cli(*args, env=env, cwd=tmp_path, timeout=30)
    one_line_error(result, variable)
    if variable == "ALERT_WEBHOOK_URL":
        assert "hooks" not in result.stderr  # the URL is a credential: never echoed


@pytest.mark.parametrize("secret", [f" {SECRET}", f"{SECRET}\n", f"{SECRET}\t"])
def test_a_cron_secret_with_surrounding_whitespace_is_refused_at_start(
    secret: str, tmp_path: Path
) -> None:
    result = cli("serve", "--port", str(free_port()), env={"CRON_SECRET": secret}, cwd=tmp_path)
    one_line_error(result, "CRON_SECRET", "whitespace")
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "day", ["1699920000", "2026-11-29T00:00:00", "20261129", "2026-W48-7", "２０２６-11-29"]
)
def test_only_yyyy_mm_dd_is_a_date_for_run_and_backfill(day: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/ck.db"}
    one_line_error(cli("run", "collect-benchmarks", "--date", day, env=env, cwd=tmp_path), "YYYY")
    backfill = cli("backfill", "collect-benchmarks", "--since", day, env=env, cwd=tmp_path)
    one_line_error(backfill, "YYYY-MM-DD")


def test_run_and_backfill_refuse_today_alike(tmp_path: Path) -> None:
    """One rule: a report date is a day that is over in CRONKEEPER_TIMEZONE (UTC here)."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/ck.db"}
    today = datetime.now(UTC).date().isoformat()
    run = cli("run", "collect-benchmarks", "--date", today, env=env, cwd=tmp_path)
    one_line_error(run, today, "is not over yet in UTC")
    backfill = cli("backfill", "collect-benchmarks", "--since", today, env=env, cwd=tmp_path)
    one_line_error(backfill, today, "is not over yet in UTC")
    assert json.loads(cli("runs", "--json", env=env, cwd=tmp_path).stdout) == []


def test_db_upgrade_on_an_unreachable_database_exits_2_like_every_database_error() -> None:
    result = cli("db", "upgrade", env={"DATABASE_URL": "postgresql://u:pw1234567@127.0.0.1:1/x"})
    one_line_error(result, "migration failed")
    assert "pw1234567" not in result.stderr


def test_runs_of_an_unknown_job_is_an_error_like_run(tmp_path: Path) -> None:
    result = cli("runs", "--job", "nope", cwd=tmp_path)
    one_line_error(result, "unknown job 'nope'", "collect-daily")


def test_commands_do_not_print_alembic_plugin_lines(tmp_path: Path) -> None:
    """The first use of the SQLite default migrates it; alembic's INFO chatter stays out."""
    result = cli_process("runs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "alembic" not in result.stderr
    assert (tmp_path / "cronkeeper.db").exists()


# -- no one in: forwarded headers (issue 12, item 11) --------------------------------------


def login_attempts(base: str, secret: str, count: int, *, rotate: bool) -> list[httpx.Response]:
    with httpx.Client(base_url=base) as http:
        return [
            http.post(
                "/status/login",
                data={"secret": secret},
                headers={"X-Forwarded-For": f"203.0.113.{i}"} if rotate else {},
            )
            for i in range(count)
        ]


def test_a_local_client_rotating_x_forwarded_for_does_not_escape_the_limiter(
    tmp_path: Path,
) -> None:
    """uvicorn trusts forwarded headers from 127.0.0.1 unless told otherwise."""
    with serving(tmp_path) as served:
        with httpx.Client(base_url=served.base) as http:
            # X-Forwarded-Proto from an untrusted peer does not make the session cookie Secure.
            right = http.post(
                "/status/login",
                data={"secret": SECRET},
                headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.7"},
            )
        codes = [r.status_code for r in login_attempts(served.base, "wrong" * 4, 7, rotate=True)]
        with httpx.Client(base_url=served.base) as http:
            wrong = {"Authorization": "Bearer wrong-wrong-wrong", "X-Forwarded-For": "198.51.100.1"}
            bearer = http.get("/api/cron/health", headers=wrong)
    assert right.status_code == 303
    assert "secure" not in right.headers["set-cookie"].lower()
    assert codes == [401] * 5 + [429] * 2
    assert bearer.status_code == 429  # the same client, 127.0.0.1, at another door
    assert "wrong secret from 127.0.0.1" in served.output
    assert "203.0.113" not in served.output


def test_forwarded_headers_are_honoured_from_the_proxies_given(tmp_path: Path) -> None:
    with serving(tmp_path, "--forwarded-allow-ips", "127.0.0.1") as served:
        codes = [r.status_code for r in login_attempts(served.base, "wrong" * 4, 7, rotate=True)]
        with httpx.Client(base_url=served.base) as http:
            right = http.post(
                "/status/login",
                data={"secret": SECRET},
                headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.7"},
            )
    assert codes == [401] * 7  # seven clients behind the proxy, one failure each
    assert right.status_code == 303
    assert "secure" in right.headers["set-cookie"].lower()
    assert "wrong secret from 203.0.113.6" in served.output
