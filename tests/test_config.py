"""Configuration: the contract's env names, .env support and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from cronkeeper.config import Settings
from cronkeeper.notion_props import DEFAULT_NOTION_PROPS, NotionProps
from cronkeeper.sandbox import NotionSimulator
from cronkeeper.storage.url import normalize_database_url, safe_url


def test_defaults_use_sqlite_in_the_working_directory_and_utc() -> None:
    settings = Settings(_env_file=None)
    assert settings.async_database_url == "sqlite+aiosqlite:///cronkeeper.db"
    assert settings.timezone == "UTC"
    assert settings.cron_secret is None


def test_env_names_of_the_contract_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "DATABASE_URL": "postgres://u:p@db.example.supabase.co:5432/postgres?sslmode=require",
        "CRON_SECRET": "0123456789abcdef",
        "CRONKEEPER_TIMEZONE": "Asia/Seoul",
        "META_ACCESS_TOKEN": "EAAB-token",
        "META_API_BASE": "http://127.0.0.1:1",
        "META_API_VERSION": "v23.0",
        "META_AD_ACCOUNT_IDS": "act_111, 222",
        "MIXPANEL_SERVICE_ACCOUNT": "svc.user",
        "MIXPANEL_SERVICE_SECRET": "mp-secret",
        "MIXPANEL_PROJECT_ID": "1,2",
        "MIXPANEL_EVENTS": "signup, purchase",
        "MIXPANEL_API_BASE": "http://127.0.0.1:2/api/query",
        "NOTION_TOKEN": "ntn_x",
        "NOTION_DATA_SOURCE_ID": "ds-1",
        "NOTION_API_BASE": "http://127.0.0.1:3",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = Settings(_env_file=None)
    assert s.async_database_url.startswith("postgresql+psycopg://u:p@db.example.supabase.co")
    assert "sslmode=require" in s.async_database_url
    assert s.cron_secret is not None and s.cron_secret.get_secret_value() == "0123456789abcdef"
    assert s.timezone == "Asia/Seoul"
    assert s.meta_ad_account_ids == ("111", "222")
    assert s.mixpanel_project_id == ("1", "2")
    assert s.mixpanel_events == ("signup", "purchase")
    assert (s.meta_api_version, s.notion_data_source_id) == ("v23.0", "ds-1")
    assert set(s.secret_values()) >= {"0123456789abcdef", "EAAB-token", "mp-secret", "ntn_x", "p"}


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "CRON_SECRET=from-dotenv-0123456789\nCRONKEEPER_TIMEZONE=Europe/Paris\n"
    )
    s = Settings(_env_file=tmp_path / ".env")
    assert s.cron_secret is not None
    assert s.cron_secret.get_secret_value() == "from-dotenv-0123456789"
    assert s.timezone == "Europe/Paris"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///relative.db", "sqlite+aiosqlite:///relative.db"),
        ("sqlite:////abs/path.db", "sqlite+aiosqlite:////abs/path.db"),
        ("postgres://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
        ("postgresql://u:p@h/d?sslmode=require", "postgresql+psycopg://u:p@h/d?sslmode=require"),
        (
            "postgresql://postgres.ref:pw@aws-0-eu.pooler.supabase.com:6543/postgres?pgbouncer=true",
            "postgresql+psycopg://postgres.ref:pw@aws-0-eu.pooler.supabase.com:6543/postgres",
        ),
    ],
)
def test_database_urls_users_paste_are_accepted(url: str, expected: str) -> None:
    assert normalize_database_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:secretpw@h/d", "not supported"),
        ("not a url", "not a valid URL"),
        ("sqlite://", "names no SQLite file"),
    ],
)
def test_a_bad_database_url_fails_with_a_clear_message(url: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(_env_file=None, database_url=url)
    text = str(info.value)
    assert "database_url" in text.lower() or "DATABASE_URL" in text
    assert message in text
    assert "secretpw" not in text.split("input_value")[0]


def test_safe_url_hides_the_password() -> None:
    assert "pw" not in safe_url("postgresql://user:pw@host/db").replace("***", "")


def test_a_bad_time_zone_fails_with_a_clear_message() -> None:
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Base'"):
        Settings(_env_file=None, timezone="Mars/Base")


def test_unknown_job_names_in_overrides_are_rejected() -> None:
    with pytest.raises(ValidationError, match="unknown job 'collect-weekly'"):
        Settings(_env_file=None, job_windows="collect-weekly=2d")
    with pytest.raises(ValidationError, match="invalid duration"):
        Settings(_env_file=None, job_windows="collect-daily=soon")
    with pytest.raises(ValidationError, match="not a 5-field cron expression"):
        Settings(_env_file=None, schedules="collect-daily=0 1 * *")


def test_account_ids_must_be_digits() -> None:
    with pytest.raises(ValidationError, match="must be digits"):
        Settings(_env_file=None, meta_ad_account_ids="act_12x")


def test_notion_property_defaults_are_the_same_for_config_client_and_sandbox() -> None:
    from_config = NotionProps.from_settings(Settings(_env_file=None))

    assert from_config == DEFAULT_NOTION_PROPS == NotionProps()
    assert NotionSimulator([]).names == DEFAULT_NOTION_PROPS
    assert DEFAULT_NOTION_PROPS.ad_account == "Meta Ad Account ID"  # the README's table


def refused_from_env(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> str:
    """Loading with ``variable=value`` fails with one problem naming the variable (never
    showing the value); its message."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)
    (problem,) = caught.value.errors()
    assert problem["loc"] == (variable,)
    assert value.strip() not in str(caught.value).replace(problem["msg"], "")
    return problem["msg"]


@pytest.mark.parametrize(
    "schedule",
    [
        "61 * * * *",
        "0 24 * * *",
        "0 1 32 * *",
        "0 1 * * 8",
        "*/0 * * * *",
        "a * * * *",
        "0 0 L * *",  # cronsim extensions that Debian cron does not read
        "0 0 * * mon#2",
        "0 0 31 2 *",  # never fires
    ],
)
def test_a_schedule_cron_cannot_read_fails_at_load_naming_the_variable(
    schedule: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12: a 5-field but invalid schedule crashed `scheduler` with a traceback."""
    message = refused_from_env(monkeypatch, "CRONKEEPER_SCHEDULES", f"collect-daily={schedule}")
    assert "not a valid cron expression" in message


def test_valid_schedules_in_cron_syntax_are_kept() -> None:
    settings = Settings(
        _env_file=None, schedules="collect-daily=*/15 1-3 * * 1-5; sync-notion=0 0 1,15 * 0"
    )
    assert settings.job("collect-daily").schedule == "*/15 1-3 * * 1-5"
    assert settings.job("sync-notion").schedule == "0 0 1,15 * 0"


@pytest.mark.parametrize(
    "url", ["hooks.example/T0/B0", "ftp://hooks.example/x", "https:///path", "https://a b/x", "x"]
)
def test_an_alert_webhook_that_is_not_an_http_url_fails_at_load_without_echoing_it(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert url not in refused_from_env(monkeypatch, "ALERT_WEBHOOK_URL", url)


@pytest.mark.parametrize("secret", [" s3cret-s3cret-s3cret", "s3cret-s3cret-s3cret\n", "\ta" * 9])
def test_a_cron_secret_with_surrounding_whitespace_is_refused(
    secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No bearer header can carry a leading/trailing space: such a secret never matches."""
    message = refused_from_env(monkeypatch, "CRON_SECRET", secret)
    assert "whitespace" in message
    assert secret.strip() not in message
    monkeypatch.setenv("CRON_SECRET", "inner space-is-fine")
    assert Settings(_env_file=None).cron_secret is not None


def test_defaults_follow_metas_precedence_and_restatement_window() -> None:
    settings = Settings(_env_file=None)
    assert settings.meta_conversion_action_types == (
        "omni_purchase",
        "purchase",
        "offsite_conversion.fb_pixel_purchase",
    )
    assert settings.meta_lead_action_types[0] == "lead"
    assert (settings.meta_lookback_days, settings.mixpanel_lookback_days) == (28, 7)


def test_project_time_zones_fall_back_to_the_configured_zone() -> None:
    settings = Settings(
        _env_file=None,
        CRONKEEPER_TIMEZONE="Asia/Seoul",
        MIXPANEL_PROJECT_TIMEZONES="31=Pacific/Pago_Pago, 32 = America/Los_Angeles",
    )
    assert str(settings.mixpanel_zone("31")) == "Pacific/Pago_Pago"
    assert str(settings.mixpanel_zone("32")) == "America/Los_Angeles"
    assert str(settings.mixpanel_zone("99")) == "Asia/Seoul"


@pytest.mark.parametrize(
    ("value", "message"),
    [("31=Mars/Base", "project 31: unknown time zone"), ("31", "expected PROJECT_ID=Area/City")],
)
def test_a_bad_project_time_zone_fails_at_start_up_naming_the_variable(
    value: str, message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(_env_file=None, MIXPANEL_PROJECT_TIMEZONES=value)
    assert "MIXPANEL_PROJECT_TIMEZONES" in str(info.value)
    assert message in str(info.value)
