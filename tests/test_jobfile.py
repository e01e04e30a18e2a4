"""``cronkeeper.toml``: jobs in a file, the environment on top, one-line errors."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from cronkeeper.config import DEFAULT_JOBS, Settings
from tests.cli.test_cli import cli

KEY = "backup-ping-key-0123456789"
FILE = """\
# jobs of the marketing team
[jobs.collect-daily]
schedule = "0 4 * * *"
failure_threshold = 3

[jobs.backup]
kind = "external"
schedule = "0 3 * * *"
window = "2d"
grace = "30m"
max_runtime = "2h"
ping_key_env = "BACKUP_PING_KEY"

[jobs.dbt-build]
kind = "external"
schedule = "*/15 * * * *"
monitored = false
"""


def write(tmp_path: Path, text: str, name: str = "cronkeeper.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(**values: object) -> str:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, **values)  # type: ignore[arg-type]
    [problem] = caught.value.errors()
    return str(problem["msg"]).removeprefix("Value error, ")


def test_without_a_file_the_four_built_in_jobs_are_exactly_as_before(tmp_path: Path) -> None:
    settings = Settings(_env_file=None)
    assert settings.jobs == DEFAULT_JOBS
    assert [s.name for s in settings.monitored] == [
        "collect-daily",
        "collect-mixpanel",
        "collect-benchmarks",
    ]
    assert settings.job_file.path is None and settings.ping_keys == {}


def test_the_file_tunes_built_in_jobs_and_declares_external_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, FILE)
    monkeypatch.setenv("BACKUP_PING_KEY", KEY)
    settings = Settings(_env_file=None)
    daily = settings.job("collect-daily")
    assert (daily.schedule, daily.kind) == ("0 4 * * *", "builtin")
    backup = settings.job("backup")
    assert backup.kind == "external"
    assert (backup.schedule, backup.window, backup.max_runtime, backup.monitored) == (
        "0 3 * * *",
        timedelta(days=2),
        timedelta(hours=2),
        True,
    )
    assert settings.job("dbt-build").monitored is False
    assert [s.name for s in settings.monitored][-1] == "backup"
    assert settings.failure_thresholds == (1, {"collect-daily": 3})
    assert settings.ping_keys == {"backup": KEY}
    assert KEY in settings.secret_values()  # redacted wherever it could appear
    table = settings.job_file.table("backup")
    assert table is not None and table.grace == timedelta(minutes=30)


def test_environment_variables_override_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, FILE)
    monkeypatch.setenv("CRONKEEPER_SCHEDULES", "collect-daily=0 5 * * *;backup=0 6 * * *")
    monkeypatch.setenv("CRONKEEPER_FAILURE_THRESHOLD", "2")
    monkeypatch.setenv("CRONKEEPER_MONITORED_JOBS", "collect-daily,dbt-build")
    settings = Settings(_env_file=None)
    assert settings.job("collect-daily").schedule == "0 5 * * *"
    assert settings.job("backup").schedule == "0 6 * * *"
    assert settings.failure_thresholds == (2, {})
    assert [s.name for s in settings.monitored] == ["collect-daily", "dbt-build"]


def test_crontab_path_comes_from_cronkeeper_config(tmp_path: Path) -> None:
    write(tmp_path, FILE, "elsewhere.toml")
    settings = Settings(_env_file=None, config_file=str(tmp_path / "elsewhere.toml"))
    assert "backup" in settings.job_names


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[jobs.backup]\nkind = "external"\nschedule = "0 3 * * *"\nshedule = "x"\n',
            "cronkeeper.toml line 4: [jobs.backup] unknown key 'shedule'; keys are kind, "
            "schedule, window, grace, max_runtime, failure_threshold, monitored, ping_key_env",
        ),
        (
            '[jobs.backup]\nkind = "external"\n\nschedule = "0 3 * 13 *"\n',
            "cronkeeper.toml line 4: [jobs.backup] schedule: backup='0 3 * 13 *' is not a valid"
            " cron expression: month 13 is outside 1-12",
        ),
        (
            '[jobs.backup]\nkind = "external"\nschedule = "0 3 * * *"\n\n'
            '[jobs.backup]\nwindow = "1d"\n',
            "cronkeeper.toml line 5: [jobs.backup] is declared twice (job names are unique)",
        ),
        (
            '[jobs.backup]\nschedule = "0 3 * * *"\n',
            "cronkeeper.toml line 1: [jobs.backup] is not a built-in job (sync-notion, "
            'collect-daily, collect-mixpanel, collect-benchmarks): add kind = "external" to '
            "watch a cron that checks in",
        ),
        (
            '[jobs.collect-daily]\nkind = "external"\n',
            "cronkeeper.toml line 2: [jobs.collect-daily] kind: collect-daily is a built-in job"
            ' (cronkeeper runs it); kind = "external" is for crons that only check in',
        ),
        (
            '[jobs.backup]\nkind = "external"\nschedule = "0 3 * * *"\nwindow = "soon"\n',
            "cronkeeper.toml line 4: [jobs.backup] window: invalid duration 'soon': use a number"
            " with an optional unit s, m, h, d or w (for example 90s, 30m, 24h, 7d)",
        ),
        (
            '[jobs.backup]\nkind = "external"\nschedule = "0 3 * * *"\nping_key_env = "s3cr3t!"\n',
            "cronkeeper.toml line 4: [jobs.backup] ping_key_env: expected the NAME of an"
            " environment variable (the key itself never goes in the file)",
        ),
        (
            '[jobs.backup]\nkind = "external"\nschedule = "0 3 * * *"\nfailure_threshold = 0\n',
            "cronkeeper.toml line 4: [jobs.backup] failure_threshold: expected a whole number of"
            " runs, 1 to 1000",
        ),
        ('timezone = "UTC"\n', "cronkeeper.toml line 1: unknown key 'timezone': the file holds"),
        (
            '[jobs."Back Up"]\nkind = "external"\nschedule = "0 3 * * *"\n',
            "cronkeeper.toml line 1: [jobs.Back Up]: job names are 1-64 lower-case letters",
        ),
        ("[jobs.backup\n", "cronkeeper.toml line 1: "),
    ],
)
def test_a_mistake_is_one_line_naming_file_line_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    write(tmp_path, text)
    found = error_of()
    assert found.startswith(message), found
    assert "\n" not in found


def test_a_short_ping_key_is_refused_without_showing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, FILE)
    monkeypatch.setenv("BACKUP_PING_KEY", "short-key")
    found = error_of()
    assert found.startswith("cronkeeper.toml line 12: [jobs.backup] ping_key_env: BACKUP_PING_KEY")
    assert "short-key" not in found


def test_an_explicit_path_that_does_not_exist_is_an_error() -> None:
    assert error_of(config_file="missing.toml") == ("CRONKEEPER_CONFIG: missing.toml: no such file")


def test_env_overrides_name_unknown_jobs_with_the_file_jobs_listed(tmp_path: Path) -> None:
    write(tmp_path, FILE)
    found = error_of(job_windows="backup=1d,nightly=2d")
    assert found == (
        "CRONKEEPER_JOB_WINDOWS: unknown job 'nightly'; jobs are sync-notion, collect-daily,"
        " collect-mixpanel, collect-benchmarks, backup, dbt-build"
    )


def test_cli_exits_2_with_one_line_for_a_bad_file(tmp_path: Path) -> None:
    write(tmp_path, '[jobs.backup]\nkind = "external"\nschedule = "0 3 * * *"\nsheduel = 1\n')
    result = cli("health", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: invalid configuration: cronkeeper.toml line 4: [jobs.backup] unknown key "
        "'sheduel'; keys are kind, schedule, window, grace, max_runtime, failure_threshold, "
        "monitored, ping_key_env"
    )
    assert "Traceback" not in result.stderr


def test_config_prints_each_value_and_where_it_came_from_without_secrets(tmp_path: Path) -> None:
    write(tmp_path, FILE)
    result = cli(
        "config",
        "--json",
        cwd=tmp_path,
        env={"BACKUP_PING_KEY": KEY, "CRONKEEPER_MAX_RUNTIME": "collect-mixpanel=3h"},
    )
    assert result.returncode == 0, result.stderr
    assert KEY not in result.stdout
    body = json.loads(result.stdout)
    assert body["file"] == "cronkeeper.toml"
    jobs = {job["name"]: job for job in body["jobs"]}
    assert list(jobs) == [
        "sync-notion",
        "collect-daily",
        "collect-mixpanel",
        "collect-benchmarks",
        "backup",
        "dbt-build",
    ]
    assert jobs["collect-daily"]["settings"]["schedule"] == {"value": "0 4 * * *", "from": "file"}
    assert jobs["collect-daily"]["settings"]["failure_threshold"] == {"value": 3, "from": "file"}
    assert jobs["collect-mixpanel"]["settings"]["max_runtime"] == {"value": "3h", "from": "env"}
    assert jobs["sync-notion"]["settings"]["monitored"] == {"value": False, "from": "default"}
    backup = jobs["backup"]
    assert backup["kind"] == "external"
    assert backup["settings"]["grace"] == {"value": "30m", "from": "file"}
    assert backup["settings"]["ping_key"] == {
        "value": "$BACKUP_PING_KEY (set; value hidden)",
        "from": "env",
    }
    table = cli("config", cwd=tmp_path, env={"BACKUP_PING_KEY": KEY, "COLUMNS": "120"})
    assert table.returncode == 0 and KEY not in table.stdout
    assert "dbt-build" in table.stdout and "external" in table.stdout
