"""Configuration, read once at the entry point and passed down.

Environment names are part of the public contract (see the README's table); every value is
validated here so that a typo fails at start-up with a message naming the variable, instead
of at 01:00 in the middle of a cron.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cronkeeper.cron import check_cron
from cronkeeper.durations import parse_duration
from cronkeeper.jobfile import EXTERNAL_WINDOW, JobFile, load_job_file
from cronkeeper.notion_props import DEFAULT_NOTION_PROPS
from cronkeeper.redact import Redactor
from cronkeeper.storage.url import database_password, normalize_database_url
from cronkeeper.versions import meta_version_key

__all__ = ["DEFAULT_JOBS", "JobSpec", "Settings"]

JOB_NAMES = ("sync-notion", "collect-daily", "collect-mixpanel", "collect-benchmarks")


@dataclass(frozen=True)
class JobSpec:
    """What the scheduler and the health check know about one job."""

    name: str
    schedule: str
    window: timedelta
    max_runtime: timedelta
    monitored: bool
    kind: Literal["builtin", "external"] = "builtin"
    """``external``: a cron that only checks in (``cronkeeper.toml``); never fired here."""
    partial_tolerance: float = 0.05
    """``CRONKEEPER_PARTIAL_TOLERANCE``: the share of units a ``partial`` run may skip and still
    count as a success (alert recovery, failure thresholds, volume baseline)."""
    grace: timedelta = timedelta(hours=1)
    """``CRONKEEPER_GRACE``: how late after its expected fire (or its window) a run may start
    before the job is ``missing``."""
    window_set: bool = False
    """``CRONKEEPER_JOB_WINDOWS`` names this job: its window, not its schedule, says when it is
    due (for jobs run by something that does not follow ``CRONKEEPER_SCHEDULES``)."""


_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)
DEFAULT_JOBS: tuple[JobSpec, ...] = (
    JobSpec("sync-notion", "0 0 * * *", _DAY, _HOUR, monitored=False),
    JobSpec("collect-daily", "0 1 * * *", _DAY, _HOUR, monitored=True),
    JobSpec("collect-mixpanel", "30 1 * * *", _DAY, _HOUR, monitored=True),
    JobSpec("collect-benchmarks", "0 2 * * 1", timedelta(days=7), _HOUR, monitored=True),
)
DEFAULT_MONITORED = ("collect-daily", "collect-mixpanel", "collect-benchmarks")
# Ordered precedence lists: the first type present in a row is its number, never a sum. Meta
# reports one purchase under several nested types with the same value: omni_purchase (website,
# app and offline together), purchase, offsite_conversion.fb_pixel_purchase (the pixel's share);
# likewise lead / onsite_conversion.lead_grouped / offsite_conversion.fb_pixel_lead.
# Source: Meta Marketing API, Ads Action Stats reference (action_type values),
# https://developers.facebook.com/docs/marketing-api/reference/ads-action-stats/ .
DEFAULT_CONVERSION_TYPES = ("omni_purchase", "purchase", "offsite_conversion.fb_pixel_purchase")
DEFAULT_LEAD_TYPES = ("lead", "onsite_conversion.lead_grouped", "offsite_conversion.fb_pixel_lead")

CommaList = Annotated[tuple[str, ...], NoDecode]


def _split(value: Any, sep: str = ",") -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(sep) if part.strip())
    return value


def _pairs(
    value: str, sep: str, what: str, names: tuple[str, ...] | None = JOB_NAMES
) -> dict[str, str]:
    """``"a=1,b=2"`` → ``{"a": "1", "b": "2"}``, naming the job names it does not know
    (``names=None``: any name; the jobs of ``cronkeeper.toml`` are checked once it is read)."""
    out: dict[str, str] = {}
    for item in (p.strip() for p in value.split(sep)):
        if not item:
            continue
        name, eq, raw = item.partition("=")
        if not eq or not raw.strip():
            raise ValueError(f"{what}: expected NAME=VALUE, got {item!r}")
        name = name.strip()
        if names is not None and name not in names:
            raise ValueError(f"{what}: unknown job {name!r}; jobs are {', '.join(names)}")
        out[name] = raw.strip()
    return out


def check_schedule(name: str, expr: str) -> None:
    """A 5-field cron expression the scheduler can fire (:func:`cronkeeper.cron.check_cron`:
    Debian cron's syntax, cronsim's semantics), or ``ValueError``."""
    if len(expr.split()) != 5:
        raise ValueError(f"{name}={expr!r} is not a 5-field cron expression")
    try:
        check_cron(expr)
    except ValueError as exc:
        raise ValueError(f"{name}={expr!r} is not a valid cron expression: {exc}") from None


def split_alert_urls(value: str) -> tuple[str, ...]:
    """``ALERT_URLS``'s entries: comma-separated, blanks dropped."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def check_webhook_url(value: str) -> None:
    """An absolute http(s) URL with a host; the message never echoes it (it is a secret)."""
    try:
        parsed: httpx.URL | None = httpx.URL(value)
    except (httpx.InvalidURL, TypeError):
        parsed = None
    if (
        parsed is None
        or parsed.scheme not in ("http", "https")
        or not parsed.host
        or any(ch.isspace() for ch in value)
    ):
        raise ValueError("must be an absolute http:// or https:// URL (the value is not shown)")


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ``ValueError`` with an example otherwise."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as UTC or Asia/Seoul"
        ) from None


def project_zones(value: str) -> dict[str, ZoneInfo]:
    """``"123=America/Los_Angeles,456=Asia/Seoul"`` → ``{"123": ZoneInfo(...), ...}``."""
    out: dict[str, ZoneInfo] = {}
    for item in (p.strip() for p in value.split(",")):
        if not item:
            continue
        project, eq, name = item.partition("=")
        if not eq or not project.strip() or not name.strip():
            raise ValueError(
                f"MIXPANEL_PROJECT_TIMEZONES: expected PROJECT_ID=Area/City, got {item!r}"
            )
        try:
            out[project.strip()] = zone(name.strip())
        except ValueError as exc:
            raise ValueError(
                f"MIXPANEL_PROJECT_TIMEZONES: project {project.strip()}: {exc}"
            ) from None
    return out


def _duration(text: str, what: str) -> timedelta:
    """A duration, or a ValueError that names the setting (``what``) it came from."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None


MIXPANEL_REGIONS = ("us", "eu", "in")
"""Mixpanel's data residencies: US (the default), EU and India."""


def project_regions(value: str) -> dict[str, str]:
    """``"123=eu,456=in"`` → ``{"123": "eu", "456": "in"}``; a clear ``ValueError`` otherwise."""
    out: dict[str, str] = {}
    for item in (p.strip() for p in value.split(",")):
        if not item:
            continue
        project, eq, region = item.partition("=")
        region = region.strip().lower()
        if not eq or not project.strip() or region not in MIXPANEL_REGIONS:
            raise ValueError(
                f"MIXPANEL_PROJECT_REGIONS: expected PROJECT_ID=us|eu|in, got {item[:60]!r}"
            )
        out[project.strip()] = region
    return out


def share(text: str, what: str) -> float:
    """``5%`` or ``0.05`` → 0.05; ``ValueError`` naming ``what`` outside 0–100 %."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{what}: expected a share such as 5% or 0.05 (0-100%), got {text!r}")
    return value


def _durations(
    text: str, what: str, default: timedelta, names: tuple[str, ...] | None = JOB_NAMES
) -> tuple[timedelta, dict[str, timedelta]]:
    """``1h`` for every job, or ``job=2h,…`` (the others ``default``); ``ValueError`` naming
    ``what``."""
    text = text.strip()
    try:
        if not text:
            return default, {}
        if "=" not in text:
            return parse_duration(text), {}
        return default, {k: parse_duration(v) for k, v in _pairs(text, ",", what, names).items()}
    except ValueError as exc:
        message = str(exc)
        raise ValueError(message if message.startswith(what) else f"{what}: {message}") from None


def _positive(text: str, what: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError(f"{what}: expected a whole number of runs, 1 or more, got {text!r}")
    return int(text)


class Settings(BaseSettings):
    """Every setting of cronkeeper. Field docs double as the README's configuration table."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        frozen=True,
        hide_input_in_errors=True,  # a refused CRON_SECRET or webhook URL is still a secret
    )

    database_url: str = Field(
        default="sqlite:///cronkeeper.db", validation_alias=AliasChoices("DATABASE_URL")
    )
    cron_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("CRON_SECRET")
    )
    timezone: str = Field(default="UTC", validation_alias=AliasChoices("CRONKEEPER_TIMEZONE"))

    meta_access_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("META_ACCESS_TOKEN")
    )
    meta_api_base: str = Field(
        default="https://graph.facebook.com", validation_alias=AliasChoices("META_API_BASE")
    )
    # Meta retires each version on a published date (cronkeeper.versions keeps the table).
    meta_api_version: str = Field(
        default="v27.0", validation_alias=AliasChoices("META_API_VERSION")
    )
    meta_ad_account_ids: CommaList = Field(
        default=(), validation_alias=AliasChoices("META_AD_ACCOUNT_IDS")
    )
    meta_conversion_action_types: CommaList = Field(
        default=DEFAULT_CONVERSION_TYPES,
        validation_alias=AliasChoices("META_CONVERSION_ACTION_TYPES"),
    )
    meta_lead_action_types: CommaList = Field(
        default=DEFAULT_LEAD_TYPES, validation_alias=AliasChoices("META_LEAD_ACTION_TYPES")
    )
    # Meta keeps revising a day's figures for 28 days ("do not change after 28 days of being
    # reported": Meta's Insights API best practices; airbyte source-facebook-marketing re-reads
    # the same 28 days, ``insights_lookback_window``). 37 months is all Meta keeps.
    meta_lookback_days: int = Field(
        default=28, ge=1, le=90, validation_alias=AliasChoices("META_LOOKBACK_DAYS")
    )

    mixpanel_service_account: str | None = Field(
        default=None, validation_alias=AliasChoices("MIXPANEL_SERVICE_ACCOUNT")
    )
    mixpanel_service_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("MIXPANEL_SERVICE_SECRET")
    )
    mixpanel_project_id: CommaList = Field(
        default=(), validation_alias=AliasChoices("MIXPANEL_PROJECT_ID")
    )
    mixpanel_events: CommaList = Field(default=(), validation_alias=AliasChoices("MIXPANEL_EVENTS"))
    mixpanel_project_timezones: str = Field(
        default="", validation_alias=AliasChoices("MIXPANEL_PROJECT_TIMEZONES")
    )
    mixpanel_lookback_days: int = Field(
        default=7, ge=1, le=90, validation_alias=AliasChoices("MIXPANEL_LOOKBACK_DAYS")
    )
    mixpanel_api_base: str = Field(
        default="https://mixpanel.com/api/query",
        validation_alias=AliasChoices("MIXPANEL_API_BASE"),
    )
    """Set explicitly, it is the Query API base of every project (regions are then ignored)."""
    mixpanel_project_regions: str = Field(
        default="", validation_alias=AliasChoices("MIXPANEL_PROJECT_REGIONS")
    )
    """``id=us|eu|in,…``: each project's data residency, which picks its Query API host."""

    notion_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("NOTION_TOKEN")
    )
    notion_data_source_id: str | None = Field(
        default=None, validation_alias=AliasChoices("NOTION_DATA_SOURCE_ID")
    )
    notion_api_base: str = Field(
        default="https://api.notion.com", validation_alias=AliasChoices("NOTION_API_BASE")
    )
    notion_version: str = Field(
        default="2025-09-03", validation_alias=AliasChoices("NOTION_VERSION")
    )
    notion_prop_name: str = Field(
        default=DEFAULT_NOTION_PROPS.name, validation_alias=AliasChoices("NOTION_PROP_NAME")
    )
    notion_prop_ad_account: str = Field(
        default=DEFAULT_NOTION_PROPS.ad_account,
        validation_alias=AliasChoices("NOTION_PROP_AD_ACCOUNT"),
    )
    notion_prop_industry: str = Field(
        default=DEFAULT_NOTION_PROPS.industry,
        validation_alias=AliasChoices("NOTION_PROP_INDUSTRY"),
    )
    notion_prop_active: str = Field(
        default=DEFAULT_NOTION_PROPS.active, validation_alias=AliasChoices("NOTION_PROP_ACTIVE")
    )
    notion_prop_mixpanel_project: str = Field(
        default=DEFAULT_NOTION_PROPS.mixpanel_project,
        validation_alias=AliasChoices("NOTION_PROP_MIXPANEL_PROJECT"),
    )

    notion_max_deactivate: float = Field(
        default=0.2, ge=0, le=1, validation_alias=AliasChoices("NOTION_MAX_DEACTIVATE")
    )
    """The largest share of active accounts one sync may deactivate (``20%`` or ``0.2``);
    above it the sync is refused unless ``cronkeeper run sync-notion --force``."""

    # Operations (not in the seed; prefixed so they cannot collide with anything else).
    monitored_jobs: CommaList = Field(
        default=DEFAULT_MONITORED, validation_alias=AliasChoices("CRONKEEPER_MONITORED_JOBS")
    )
    job_windows: str = Field(default="", validation_alias=AliasChoices("CRONKEEPER_JOB_WINDOWS"))
    max_runtime: str = Field(default="", validation_alias=AliasChoices("CRONKEEPER_MAX_RUNTIME"))
    schedules: str = Field(default="", validation_alias=AliasChoices("CRONKEEPER_SCHEDULES"))
    ledger_timeout: float = Field(
        default=5.0, gt=0, le=60, validation_alias=AliasChoices("CRONKEEPER_LEDGER_TIMEOUT")
    )
    concurrency: int = Field(
        default=4, ge=1, le=64, validation_alias=AliasChoices("CRONKEEPER_CONCURRENCY")
    )
    max_retries: int = Field(
        default=2, ge=0, le=10, validation_alias=AliasChoices("CRONKEEPER_MAX_RETRIES")
    )
    http_timeout: float = Field(
        default=30.0, gt=0, le=600, validation_alias=AliasChoices("CRONKEEPER_HTTP_TIMEOUT")
    )
    max_wait: float = Field(
        default=60.0, ge=0, le=3600, validation_alias=AliasChoices("CRONKEEPER_MAX_WAIT")
    )
    lease_ttl: float = Field(
        default=60.0, ge=5, le=3600, validation_alias=AliasChoices("CRONKEEPER_LEASE_TTL")
    )
    alert_webhook_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ALERT_WEBHOOK_URL")
    )
    trigger_wait: str = Field("10s", validation_alias=AliasChoices("CRONKEEPER_TRIGGER_WAIT"))
    """How long ``/api/cron/{job}`` waits for its run before answering ``202`` (issue 20)."""
    alert_urls: SecretStr | None = Field(default=None, validation_alias=AliasChoices("ALERT_URLS"))
    """Apprise URLs, comma-separated (``mailto://…,slack://…``): see alerting/channels.py."""
    system_cron: bool = Field(False, validation_alias=AliasChoices("CRONKEEPER_SYSTEM_CRON"))
    """The built-in jobs run from system cron (``cronkeeper run``): without a live scheduler
    the status page shows their next run as *expected*, not "not scheduled here"."""
    public_url: str = Field("", validation_alias=AliasChoices("CRONKEEPER_PUBLIC_URL"))
    """Where people open the status page (``https://cron.example.com``): alerts link runs."""
    # Respecting the APIs' limits (pacing and deferral; see http/pacing.py).
    run_budget: str = Field(default="45m", validation_alias=AliasChoices("CRONKEEPER_RUN_BUDGET"))
    pacing_high_water: float = Field(
        default=90.0, gt=0, le=100, validation_alias=AliasChoices("CRONKEEPER_PACING_HIGH_WATER")
    )
    pacing_pause: float = Field(
        default=60.0, ge=0, le=3600, validation_alias=AliasChoices("CRONKEEPER_PACING_PAUSE")
    )
    # Meta blocks a throttled account or app "for 300 seconds" on the development tier and 60
    # on the standard tier (Marketing API rate-limiting page); waited when Meta names no wait.
    meta_throttle_block: float = Field(
        default=300.0, ge=0, le=3600, validation_alias=AliasChoices("META_THROTTLE_BLOCK")
    )
    spool_dir: Path | None = Field(
        default=None, validation_alias=AliasChoices("CRONKEEPER_SPOOL_DIR")
    )
    """Where run ends wait while the database is down (default: beside the SQLite file, or
    ``./cronkeeper-spool`` for PostgreSQL)."""
    # Alert states (issue 13): parsed by the properties below, validated at load time.
    watch_interval: str = Field("60s", validation_alias=AliasChoices("CRONKEEPER_WATCH_INTERVAL"))
    failure_threshold: str = Field(
        "1", validation_alias=AliasChoices("CRONKEEPER_FAILURE_THRESHOLD")
    )
    recovery_threshold: int = Field(
        1, ge=1, le=1000, validation_alias=AliasChoices("CRONKEEPER_RECOVERY_THRESHOLD")
    )
    alert_repeat: str = Field("off", validation_alias=AliasChoices("CRONKEEPER_ALERT_REPEAT"))
    volume_affects_health: bool = Field(
        False, validation_alias=AliasChoices("CRONKEEPER_VOLUME_AFFECTS_HEALTH")
    )
    config_file: str = Field("", validation_alias=AliasChoices("CRONKEEPER_CONFIG"))
    """``cronkeeper.toml``'s path (default ``./cronkeeper.toml``, optional): see jobfile.py."""
    max_response_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        validation_alias=AliasChoices("CRONKEEPER_MAX_RESPONSE_BYTES"),
    )
    """The largest answer body read from any API, once decoded (a gzip bomb stops here)."""
    partial_tolerance: str = Field(
        "5%", validation_alias=AliasChoices("CRONKEEPER_PARTIAL_TOLERANCE")
    )
    grace: str = Field("1h", validation_alias=AliasChoices("CRONKEEPER_GRACE"))

    @field_validator(
        "meta_ad_account_ids",
        "meta_conversion_action_types",
        "meta_lead_action_types",
        "mixpanel_project_id",
        "mixpanel_events",
        "monitored_jobs",
        mode="before",
    )
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("notion_max_deactivate", mode="before")
    @classmethod
    def _share(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().endswith("%"):
            number = value.strip()[:-1].strip()
            try:
                return float(number) / 100
            except ValueError:
                raise ValueError(f"expected a share like 20% or 0.2, got {value!r}") from None
        return value

    @field_validator("meta_ad_account_ids")
    @classmethod
    def _account_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        ids = tuple(v.removeprefix("act_") for v in value)
        bad = [v for v in ids if not (v.isascii() and v.isdigit())]
        if bad:
            raise ValueError(f"ad account ids must be digits, with or without act_: {bad}")
        return ids

    @field_validator("meta_api_version")
    @classmethod
    def _meta_version(cls, value: str) -> str:
        key = meta_version_key(value)
        if key is None:
            raise ValueError(f"expected a Graph API version such as v27.0, got {value[:20]!r}")
        return key

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        normalize_database_url(value or "sqlite:///cronkeeper.db")  # raises a clear ValueError
        return value or "sqlite:///cronkeeper.db"

    @field_validator("run_budget")
    @classmethod
    def _run_budget(cls, value: str) -> str:
        parse_duration(value)  # raises a clear ValueError
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        zone(value)
        return value

    @field_validator("mixpanel_project_timezones")
    @classmethod
    def _project_timezones(cls, value: str) -> str:
        project_zones(value)
        return value

    @field_validator("mixpanel_project_regions")
    @classmethod
    def _project_regions(cls, value: str) -> str:
        project_regions(value)
        return value

    @field_validator("cron_secret")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        # A secret with a stray space or newline (a Kubernetes secret file, a quoted .env
        # value) passes a length check, and then no bearer header can ever match it.
        if value is not None and value.get_secret_value() != value.get_secret_value().strip():
            raise ValueError(
                "has leading or trailing whitespace (a newline from a secret file?): "
                "no Authorization header could ever match it; remove it"
            )
        return value

    @field_validator("alert_webhook_url")
    @classmethod
    def _webhook(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip():  # blank: no alerts
            check_webhook_url(value.get_secret_value())
        return value

    @field_validator("alert_urls")
    @classmethod
    def _alert_urls(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            for index, url in enumerate(split_alert_urls(value.get_secret_value()), 1):
                if "://" not in url:  # the URL is a secret: name its place, never its text
                    raise ValueError(f"entry {index} is not an Apprise URL (scheme://…)")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an absolute http:// or https:// URL")
        return value

    @property
    def alert_url_list(self) -> tuple[str, ...]:
        """``ALERT_URLS`` split; never log this (each URL carries its channel's secret)."""
        if self.alert_urls is None:
            return ()
        return split_alert_urls(self.alert_urls.get_secret_value())

    @field_validator("schedules")
    @classmethod
    def _schedules(cls, value: str) -> str:
        for name, expr in _pairs(value, ";", "CRONKEEPER_SCHEDULES", None).items():
            check_schedule(name, expr)
        return value

    @field_validator("monitored_jobs")
    @classmethod
    def _monitored(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return value  # names checked with the file's jobs (_jobs_parse)

    @model_validator(mode="after")
    def _jobs_parse(self) -> Settings:
        self.jobs  # noqa: B018 - validates the per-job overrides at load time
        unknown = [v for v in self.monitored_jobs if v not in self.job_names]
        if unknown:
            raise ValueError(
                f"CRONKEEPER_MONITORED_JOBS: unknown job(s) {unknown}; jobs are "
                f"{', '.join(self.job_names)}"
            )
        self.watch_every, self.failure_thresholds, self.alert_repeat_every  # noqa: B018
        self.trigger_wait_seconds  # noqa: B018
        return self

    @cached_property
    def partial_tolerances(self) -> tuple[float, dict[str, float]]:
        """``CRONKEEPER_PARTIAL_TOLERANCE``: ``5%`` for every job, or ``job=10%,…`` (others 5%)."""
        text = self.partial_tolerance.strip() or "5%"
        what = "CRONKEEPER_PARTIAL_TOLERANCE"
        if "=" not in text:
            return share(text, what), {}
        pairs = _pairs(text, ",", what, self.job_names)
        return 0.05, {k: share(v, f"{what} {k}") for k, v in pairs.items()}

    @cached_property
    def watch_every(self) -> timedelta:
        """``CRONKEEPER_WATCH_INTERVAL``: how often the watchdog evaluates every job."""
        try:
            return parse_duration(self.watch_interval)
        except ValueError as exc:
            raise ValueError(f"CRONKEEPER_WATCH_INTERVAL: {exc}") from None

    @cached_property
    def failure_thresholds(self) -> tuple[int, dict[str, int]]:
        """``CRONKEEPER_FAILURE_THRESHOLD``: ``N`` for every job, or ``job=N,…`` (others 1)."""
        text = self.failure_threshold.strip() or "1"
        what = "CRONKEEPER_FAILURE_THRESHOLD"
        from_file = {
            t.name: t.failure_threshold
            for t in self.job_file.tables
            if t.failure_threshold is not None
        }
        if "=" not in text:
            # The environment wins over the file; without it, the file's per-job values.
            if "failure_threshold" in self.model_fields_set:
                return _positive(text, what), {}
            return _positive(text, what), from_file
        pairs = _pairs(text, ",", what, self.job_names)
        return 1, from_file | {k: _positive(v, f"{what} {k}") for k, v in pairs.items()}

    @cached_property
    def alert_repeat_every(self) -> timedelta | None:
        """``CRONKEEPER_ALERT_REPEAT``: remind this often while a job is down; ``off``: never."""
        text = self.alert_repeat.strip().lower()
        if text in ("", "off", "0", "never", "false", "no"):
            return None
        try:
            return parse_duration(text)
        except ValueError as exc:
            raise ValueError(f"CRONKEEPER_ALERT_REPEAT: {exc} (or off)") from None

    @cached_property
    def trigger_wait_seconds(self) -> float:
        """``CRONKEEPER_TRIGGER_WAIT``: how long a trigger waits for its run's end."""
        return _duration(self.trigger_wait, "CRONKEEPER_TRIGGER_WAIT").total_seconds()

    @cached_property
    def run_budget_seconds(self) -> float:
        """How long a run may keep deferred units waiting (``CRONKEEPER_RUN_BUDGET``)."""
        return parse_duration(self.run_budget).total_seconds()

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def mixpanel_zone(self, project_id: str) -> ZoneInfo:
        """The project's time zone (``MIXPANEL_PROJECT_TIMEZONES``, else ``CRONKEEPER_TIMEZONE``):
        Mixpanel counts a day in the project's own zone."""
        return self.project_timezones.get(project_id, self.tz)

    @cached_property
    def mixpanel_regions(self) -> dict[str, str]:
        """``MIXPANEL_PROJECT_REGIONS`` parsed once: project id → ``us``, ``eu`` or ``in``."""
        return project_regions(self.mixpanel_project_regions)

    @property
    def mixpanel_base_override(self) -> str | None:
        """``MIXPANEL_API_BASE`` when it was set (then it serves every project), else ``None``."""
        return self.mixpanel_api_base if "mixpanel_api_base" in self.model_fields_set else None

    @cached_property
    def project_timezones(self) -> dict[str, ZoneInfo]:
        """``MIXPANEL_PROJECT_TIMEZONES`` parsed once (it is asked per project and page)."""
        return project_zones(self.mixpanel_project_timezones)

    @cached_property
    def jobs(self) -> tuple[JobSpec, ...]:
        """The four jobs with this configuration's schedules, windows and runtimes applied."""
        windows = {
            k: _duration(v, f"CRONKEEPER_JOB_WINDOWS {k}")
            for k, v in _pairs(
                self.job_windows, ",", "CRONKEEPER_JOB_WINDOWS", self.job_names
            ).items()
        }
        schedules = _pairs(self.schedules, ";", "CRONKEEPER_SCHEDULES", self.job_names)
        tolerance, tolerances = self.partial_tolerances
        grace_default, graces = _durations(
            self.grace, "CRONKEEPER_GRACE", timedelta(hours=1), self.job_names
        )
        runtime_default: timedelta | None = None
        runtimes: dict[str, timedelta] = {}
        if self.max_runtime.strip() and "=" not in self.max_runtime:
            runtime_default = _duration(self.max_runtime, "CRONKEEPER_MAX_RUNTIME")
        else:
            runtimes = {
                k: _duration(v, f"CRONKEEPER_MAX_RUNTIME {k}")
                for k, v in _pairs(
                    self.max_runtime, ",", "CRONKEEPER_MAX_RUNTIME", self.job_names
                ).items()
            }
        return tuple(
            JobSpec(
                name=spec.name,
                schedule=schedules.get(spec.name, spec.schedule),
                window=windows.get(spec.name, spec.window),
                max_runtime=runtimes.get(spec.name, runtime_default or spec.max_runtime),
                monitored=(
                    spec.name in self.monitored_jobs
                    if "monitored_jobs" in self.model_fields_set
                    else spec.monitored
                ),
                kind=spec.kind,
                partial_tolerance=tolerances.get(spec.name, tolerance),
                grace=graces.get(spec.name) or self._file_grace(spec.name) or grace_default,
                window_set=spec.name in windows or spec.window_set,
            )
            for spec in self.file_jobs
        )

    def _file_grace(self, name: str) -> timedelta | None:
        """The ``grace`` of the job's ``[jobs.NAME]`` table, if it gives one."""
        table = self.job_file.table(name)
        return table.grace if table is not None else None

    @cached_property
    def job_file(self) -> JobFile:
        """``cronkeeper.toml`` (``CRONKEEPER_CONFIG``), checked; empty when there is none."""
        return load_job_file(self.config_file, JOB_NAMES, check_schedule=check_schedule)

    @cached_property
    def file_jobs(self) -> tuple[JobSpec, ...]:
        """The built-in jobs with the file's values, then its external jobs (the base that
        the environment's per-job variables override in :attr:`jobs`)."""
        specs = []
        for spec in DEFAULT_JOBS:
            table = self.job_file.table(spec.name)
            if table is not None:
                spec = JobSpec(
                    name=spec.name,
                    schedule=table.schedule or spec.schedule,
                    window=table.window or spec.window,
                    max_runtime=table.max_runtime or spec.max_runtime,
                    monitored=spec.monitored if table.monitored is None else table.monitored,
                    window_set=table.window is not None,
                )
            specs.append(spec)
        for table in self.job_file.external:
            specs.append(
                JobSpec(
                    name=table.name,
                    schedule=table.schedule or "",
                    window=table.window or EXTERNAL_WINDOW,
                    max_runtime=table.max_runtime or _HOUR,
                    monitored=True if table.monitored is None else table.monitored,
                    kind="external",
                    window_set=table.window is not None,
                )
            )
        return tuple(specs)

    @cached_property
    def job_names(self) -> tuple[str, ...]:
        """Every job: the four built-in ones, then the external ones of ``cronkeeper.toml``."""
        return tuple(spec.name for spec in self.file_jobs)

    @property
    def ping_keys(self) -> dict[str, str]:
        """External job → its ping key (from the variable its ``ping_key_env`` names)."""
        return self.job_file.ping_keys

    def job(self, name: str) -> JobSpec:
        for spec in self.jobs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @cached_property
    def monitored(self) -> tuple[JobSpec, ...]:
        """Monitored jobs in configuration order (the order of ``missing`` in health):
        ``CRONKEEPER_MONITORED_JOBS``'s, else the jobs' order (file jobs last)."""
        by_name = {spec.name: spec for spec in self.jobs}
        if "monitored_jobs" in self.model_fields_set:
            return tuple(by_name[name] for name in self.monitored_jobs)
        return tuple(spec for spec in self.jobs if spec.monitored)

    @property
    def async_database_url(self) -> str:
        return normalize_database_url(self.database_url)

    def secret_values(self) -> tuple[str, ...]:
        """Every secret value, for redaction. Never log or return this."""
        values: list[str] = []
        for secret in (
            self.cron_secret,
            self.meta_access_token,
            self.mixpanel_service_secret,
            self.notion_token,
            self.alert_webhook_url,
        ):
            if secret is not None and secret.get_secret_value():
                values.append(secret.get_secret_value())
        values.extend(self.ping_keys.values())
        values.extend(self.alert_url_list)
        password = database_password(self.database_url)
        if password:
            values.append(password)
        return tuple(values)

    @property
    def redactor(self) -> Redactor:
        return Redactor(self.secret_values())
