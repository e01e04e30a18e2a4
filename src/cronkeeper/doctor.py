"""``cronkeeper doctor``: a preflight of the whole configuration, like airbyte's *check
connection*: run it after configuring, and the watchdog repeats its token check once a day.

Checks, in order: the configuration; the database (reachable, at the migration head, the
lease's own schema check :func:`~cronkeeper.storage.engine.schema_lag`); Meta (the token via
``GET /debug_token``: valid, ``ads_read`` among its scopes, ``expires_at`` and
``data_access_expires_at``; each ad account's status, zone and currency; the pinned version's
expiry); Mixpanel (credentials, each project's region, every ``MIXPANEL_EVENTS`` name among
the project's event names); Notion (the data source readable, its configured properties
present); the alert webhook, only with ``--send-test``.

The verdicts are pure functions over fetched facts (:func:`token_checks`,
:func:`event_checks`, …); :func:`run_doctor` fetches them with the source clients over the
one HTTP client and hands them over. Exit: 0 all good, 1 a warning (an expiry within
:data:`EXPIRY_WARNING`, an unknown event name), 2 an error.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from sqlalchemy import select

from cronkeeper.errors import ConfigError, CronkeeperError, first_line
from cronkeeper.sources.meta import AccountDetails, MetaClient, TokenInfo
from cronkeeper.sources.mixpanel import MixpanelClient
from cronkeeper.sources.notion import DataSourceInfo, NotionClient, NotionProps
from cronkeeper.versions import PinnedVersion, pinned_versions, today_utc

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from cronkeeper.config import Settings
    from cronkeeper.http import HttpContext

__all__ = [
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_WARNING",
    "EXPIRY_WARNING",
    "REQUIRED_SCOPE",
    "Check",
    "account_check",
    "database_check",
    "event_checks",
    "exit_code",
    "expiry_check",
    "property_checks",
    "run_doctor",
    "token_checks",
    "token_warnings",
    "version_check",
]

log = logging.getLogger("cronkeeper.doctor")

Level = Literal["ok", "warning", "error", "skipped"]
EXIT_OK, EXIT_WARNING, EXIT_ERROR = 0, 1, 2
EXPIRY_WARNING = timedelta(days=14)
"""An expiry closer than this is a warning (doctor exit 1, health ``warnings``, an alert)."""
REQUIRED_SCOPE = "ads_read"
"""The permission the Insights API needs to read an ad account's insights (Meta's
Marketing API authorization: ``ads_read`` for reading ads reporting)."""


@dataclass(frozen=True)
class Check:
    """One line of the doctor's verdict."""

    area: str
    name: str
    level: Level
    detail: str

    def as_json(self) -> dict[str, str]:
        return {"area": self.area, "name": self.name, "level": self.level, "detail": self.detail}


def exit_code(checks: Sequence[Check]) -> int:
    """2 when a check failed, 1 when one warns, else 0 (skipped checks count for nothing)."""
    levels = {c.level for c in checks}
    if "error" in levels:
        return EXIT_ERROR
    return EXIT_WARNING if "warning" in levels else EXIT_OK


# -- pure verdicts ----------------------------------------------------------------------------


def _when(at: datetime, now: datetime) -> str:
    days = (at - now).total_seconds() / 86_400
    stamp = at.strftime("%Y-%m-%d %H:%M UTC")
    if days < 0:
        return f"expired on {stamp}"
    return f"expires on {stamp} (in {int(days)} day{'s' if int(days) != 1 else ''})"


def expiry_check(area: str, name: str, at: datetime | None, now: datetime, fix: str) -> Check:
    """``at`` passed: error; within :data:`EXPIRY_WARNING`: warning; later or never: ok."""
    if at is None:
        return Check(area, name, "ok", "does not expire")
    if at <= now:
        return Check(area, name, "error", f"{_when(at, now)}: {fix}")
    if at - now <= EXPIRY_WARNING:
        return Check(area, name, "warning", f"{_when(at, now)}: {fix}")
    return Check(area, name, "ok", _when(at, now))


def token_checks(info: TokenInfo, now: datetime) -> list[Check]:
    """The token's validity, its ``ads_read`` scope and its two expiries."""
    renew = "renew META_ACCESS_TOKEN"
    checks = [
        Check("meta", "token", "ok", f"valid ({info.token_type or 'token'})")
        if info.is_valid
        else Check("meta", "token", "error", f"Meta says the token is not valid: {renew}")
    ]
    if REQUIRED_SCOPE in info.scopes:
        checks.append(Check("meta", "scopes", "ok", ", ".join(info.scopes)))
    else:
        have = ", ".join(info.scopes) or "none"
        checks.append(
            Check(
                "meta",
                "scopes",
                "error",
                f"{REQUIRED_SCOPE} missing (has: {have}): grant it and renew META_ACCESS_TOKEN",
            )
        )
    checks.append(expiry_check("meta", "token expiry", info.expires_at, now, renew))
    checks.append(
        expiry_check(
            "meta",
            "data access expiry",
            info.data_access_expires_at,
            now,
            "the user must use the app again (data access lasts 90 days): renew META_ACCESS_TOKEN",
        )
    )
    return checks


def token_warnings(info: TokenInfo, now: datetime) -> list[str]:
    """The health ``warnings`` lines of a token check: its expiries within 14 days (or past)
    and an invalid token."""
    return [
        warning_line(c)
        for c in token_checks(info, now)
        if c.level != "ok" and c.name in ("token", "token expiry", "data access expiry")
    ]


def version_check(pin: PinnedVersion, today: datetime) -> Check:
    """The pinned version's state (:mod:`cronkeeper.versions`): expired is an error, the
    last :data:`EXPIRY_WARNING` a warning, the 90-day notice of ``versions`` a note."""
    day = today_utc(today)
    area = pin.source
    state = pin.state(day)
    message = pin.message(day)
    if state == "expired":
        return Check(area, "api version", "error", message or f"{pin.version} expired")
    if pin.expires is not None and pin.expires - day <= EXPIRY_WARNING:
        return Check(area, "api version", "warning", message or pin.version)
    if message is not None:
        return Check(area, "api version", "ok", message)
    when = f"expires {pin.expires.isoformat()}" if pin.expires else "no expiry announced"
    return Check(area, "api version", "ok", f"{pin.version} ({when})")


def account_check(account_id: str, details: AccountDetails) -> Check:
    """One readable ad account: its name, status, zone and currency. An inactive account
    (disabled, closed: :data:`~cronkeeper.sources.meta.INACTIVE_ACCOUNT_STATUSES`) is still
    ok: collect-daily reports it ``inactive``, not failed."""
    name = f"{details.name} " if details.name else ""
    code = details.account_status
    status = "status ?" if code is None else f"status {code}"
    if details.inactive:
        status += " (inactive: no delivery expected)"
    elif code is not None:
        status += " (active)"
    return Check(
        "meta",
        f"act_{account_id}",
        "ok",
        f"{name}readable; {status}; zone {details.timezone_name},"
        f" currency {details.currency or '?'}",
    )


def event_checks(project: str, configured: Sequence[str], names: Sequence[str]) -> list[Check]:
    """Each configured event among the project's event names; one missing is a warning (a
    typo collects zeros for ever, but a rare event can be outside Mixpanel's top list)."""
    known = set(names)
    return [
        Check("mixpanel", f"project {project} event", "ok", f"{event!r} known")
        if event in known
        else Check(
            "mixpanel",
            f"project {project} event",
            "warning",
            f"{event!r} is not among the project's event names of the last 31 days:"
            " a typo in MIXPANEL_EVENTS?",
        )
        for event in dict.fromkeys(configured)
    ]


def property_checks(props: NotionProps, info: DataSourceInfo) -> list[Check]:
    """Each configured property name present in the data source's schema. The ad account
    id is required (an error); ``Active`` missing means all active and the others are
    optional (warnings), as :mod:`cronkeeper.sources.notion` reads them."""
    wanted = [
        ("NOTION_PROP_AD_ACCOUNT", props.ad_account, "error"),
        ("NOTION_PROP_NAME", props.name, "warning"),
        ("NOTION_PROP_ACTIVE", props.active, "warning"),
        ("NOTION_PROP_INDUSTRY", props.industry, "warning"),
        ("NOTION_PROP_MIXPANEL_PROJECT", props.mixpanel_project, "warning"),
    ]
    checks = []
    for setting, name, level in wanted:
        if name in info.properties:
            checks.append(
                Check("notion", f"property {name!r}", "ok", f"present ({info.properties[name]})")
            )
        else:
            checks.append(
                Check(
                    "notion",
                    f"property {name!r}",
                    "error" if level == "error" else "warning",
                    f"not in the data source: rename the column or set {setting}",
                )
            )
    return checks


def failed(area: str, name: str, exc: BaseException, redact: Callable[[str], str]) -> Check:
    """A check whose call failed: an error naming why, redacted, on one line."""
    return Check(area, name, "error", redact(first_line(exc, type(exc).__name__)))


# -- fetching ---------------------------------------------------------------------------------


async def database_check(settings: Settings, engine: AsyncEngine) -> Check:
    """Reachable and at the migration head (the lease's own check, in one bounded call)."""
    from cronkeeper.storage.bounded import BoundedCall
    from cronkeeper.storage.engine import schema_lag

    call = BoundedCall(seconds=settings.ledger_timeout, redact=settings.redactor)

    async def lag() -> str | None:
        async with engine.connect() as conn:
            return await conn.run_sync(schema_lag)

    try:
        behind = await call(lag)
    except CronkeeperError as exc:
        return failed("database", "reachable", exc, settings.redactor)
    if behind is not None:
        return Check("database", "schema", "error", behind)
    return Check("database", "schema", "ok", "reachable, at the migration head")


async def _meta(settings: Settings, http: HttpContext, ids: Sequence[str]) -> list[Check]:
    now = http.now()
    checks = [version_check(pinned_versions(settings)[0], now)]
    token = settings.meta_access_token
    if token is None or not token.get_secret_value():
        return [*checks, Check("meta", "token", "skipped", "META_ACCESS_TOKEN is not set")]
    client = MetaClient.from_settings(http, settings, current_only=False)
    try:
        checks += token_checks(await client.debug_token(), now)
    except CronkeeperError as exc:
        checks.append(failed("meta", "token", exc, settings.redactor))
        return checks  # every account call would fail the same way
    if not ids:
        checks.append(Check("meta", "accounts", "warning", "no ad account to check"))
    for account in ids:
        try:
            checks.append(account_check(account, await client.account_details(account)))
        except CronkeeperError as exc:
            checks.append(failed("meta", f"act_{account}", exc, settings.redactor))
    return checks


async def _mixpanel(settings: Settings, http: HttpContext) -> list[Check]:
    if not settings.mixpanel_project_id:
        return [Check("mixpanel", "projects", "skipped", "MIXPANEL_PROJECT_ID is not set")]
    try:
        client = MixpanelClient.from_settings(http, settings)
    except ConfigError as exc:
        return [Check("mixpanel", "credentials", "error", str(exc))]
    checks: list[Check] = []
    for project in settings.mixpanel_project_id:
        base = client.base_for(project)
        try:
            names = await client.event_names(project)
        except CronkeeperError as exc:
            checks.append(failed("mixpanel", f"project {project}", exc, settings.redactor))
            continue
        region = settings.mixpanel_regions.get(project, "us")
        where = base if settings.mixpanel_base_override else f"region {region} ({base})"
        checks.append(
            Check("mixpanel", f"project {project}", "ok", f"credentials accepted at {where}")
        )
        checks += event_checks(project, settings.mixpanel_events, names)
    return checks


async def _notion(settings: Settings, http: HttpContext) -> list[Check]:
    checks = [version_check(pinned_versions(settings)[1], http.now())]
    token = settings.notion_token
    if token is None or not token.get_secret_value() or not settings.notion_data_source_id:
        reason = "NOTION_TOKEN or NOTION_DATA_SOURCE_ID is not set"
        return [*checks, Check("notion", "data source", "skipped", reason)]
    client = NotionClient.from_settings(http, settings, current_only=False)
    try:
        info = await client.retrieve()
    except CronkeeperError as exc:
        return [*checks, failed("notion", "data source", exc, settings.redactor)]
    title = f"{info.title!r} " if info.title else ""
    checks.append(Check("notion", "data source", "ok", f"{title}readable"))
    return checks + property_checks(client.props, info)


async def _account_ids(settings: Settings, engine: AsyncEngine | None) -> list[str]:
    """``META_AD_ACCOUNT_IDS``, else the registry's active accounts (when readable)."""
    if settings.meta_ad_account_ids or engine is None:
        return sorted(settings.meta_ad_account_ids)
    from cronkeeper.storage.bounded import BoundedCall
    from cronkeeper.storage.schema import accounts

    async def read() -> list[str]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(accounts.c.meta_ad_account_id).where(accounts.c.active.is_(True))
            )
            return sorted({str(r[0]) for r in rows})

    try:
        return await BoundedCall(seconds=settings.ledger_timeout)(read)
    except CronkeeperError:
        return []


async def run_doctor(
    settings: Settings,
    http: HttpContext,
    *,
    engine: AsyncEngine | None,
    engine_error: Exception | None = None,
    send_test: Callable[[], Awaitable[bool]] | None = None,
) -> list[Check]:
    """Every check, in the order of the module's docstring."""
    sources = [
        name
        for name, on in (
            ("Meta", settings.meta_access_token is not None),
            ("Mixpanel", bool(settings.mixpanel_project_id)),
            ("Notion", settings.notion_token is not None),
        )
        if on
    ]
    checks = [
        Check(
            "config",
            "settings",
            "ok" if sources else "warning",
            f"valid; sources configured: {', '.join(sources)}" if sources else "no source set",
        )
    ]
    database_ok = False
    if engine_error is not None:
        checks.append(failed("database", "reachable", engine_error, settings.redactor))
    elif engine is not None:
        db = await database_check(settings, engine)
        database_ok = db.level == "ok"
        checks.append(db)
    ids = await _account_ids(settings, engine if database_ok else None)
    checks += await _meta(settings, http, ids)
    checks += await _mixpanel(settings, http)
    checks += await _notion(settings, http)
    if send_test is None:
        checks.append(Check("alerts", "webhook", "skipped", "not sent (use --send-test)"))
    elif await send_test():
        checks.append(Check("alerts", "webhook", "ok", "test message delivered"))
    else:
        checks.append(
            Check("alerts", "webhook", "error", "test message not delivered (see the log)")
        )
    return checks


async def meta_token_warnings(settings: Settings, http: HttpContext) -> list[str]:
    """The token part of the doctor alone, as health warnings (the watchdog's daily check)."""
    return [warning_line(c) for c in await meta_token_findings(settings, http)]


def warning_line(check: Check) -> str:
    """A token finding as one health warning / status page line."""
    return f"Meta access token: {check.name}: {check.detail}"


async def meta_token_findings(settings: Settings, http: HttpContext) -> list[Check]:
    """The token checks that are not ok: invalid, or an expiry within 14 days or past. A
    call that fails is itself one finding; no token configured, none."""
    token = settings.meta_access_token
    if token is None or not token.get_secret_value():
        return []
    client = MetaClient.from_settings(http, settings, current_only=False)
    try:
        info = await client.debug_token()
    except CronkeeperError as exc:
        return [failed("meta", "token check", exc, settings.redactor)]
    now = http.now()
    return [
        c
        for c in token_checks(info, now)
        if c.level != "ok" and c.name in ("token", "token expiry", "data access expiry")
    ]


_STYLES = {"ok": "green", "warning": "yellow", "error": "bold red", "skipped": "dim"}


def render_table(checks: Sequence[Check]) -> object:
    """A Rich table of the checks; every cell is plain :class:`rich.text.Text` made inert
    (:func:`cronkeeper.inert.printable`): API texts and names never act as markup."""
    from rich.table import Table
    from rich.text import Text

    from cronkeeper.inert import printable

    table = Table(title="cronkeeper doctor", title_justify="left")
    for column in ("area", "check", "result", "detail"):
        table.add_column(column, overflow="fold")
    for c in checks:
        table.add_row(
            Text(c.area),
            Text(printable(c.name)),
            Text(c.level, style=_STYLES[c.level]),
            Text(printable(c.detail)),
        )
    return table
