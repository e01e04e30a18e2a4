"""``cronkeeper doctor``: pure verdicts, and the whole preflight against the simulators over
real HTTP (Meta ``/debug_token`` and ``act_{id}``, Mixpanel ``/events/names``, Notion's data
source retrieve), each with its documented failure."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from cronkeeper.cli import app
from cronkeeper.config import Settings
from cronkeeper.doctor import (
    Check,
    event_checks,
    exit_code,
    expiry_check,
    meta_token_warnings,
    property_checks,
    run_doctor,
    token_checks,
)
from cronkeeper.http import HttpContext, RetryPolicy
from cronkeeper.sandbox import (
    MetaAccount,
    MetaSimulator,
    MixpanelProject,
    MixpanelSimulator,
    NotionAccountPage,
    NotionSimulator,
    serve_apps,
)
from cronkeeper.sources.meta import TokenInfo
from cronkeeper.sources.notion import DataSourceInfo, NotionProps
from cronkeeper.storage.engine import create_engine
from tests.conftest import make_settings

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
META_TOKEN = "sandbox-meta-token-doctor-0123"
MP_ACCOUNT = "doctor.sandbox.mp-service-account"
MP_SECRET = "sandbox-mixpanel-secret-doctor"
NOTION_TOKEN = "ntn_sandbox_token_doctor_0123"


def _levels(checks: list[Check]) -> dict[str, str]:
    return {f"{c.area}:{c.name}": c.level for c in checks}


# --- pure verdicts --------------------------------------------------------------------------


def test_an_expiry_within_14_days_warns_past_errs_later_is_ok() -> None:
    assert expiry_check("meta", "x", None, NOW, "fix").level == "ok"
    assert expiry_check("meta", "x", NOW + timedelta(days=30), NOW, "fix").level == "ok"
    soon = expiry_check("meta", "x", NOW + timedelta(days=13), NOW, "renew it")
    assert soon.level == "warning"
    assert "in 13 days" in soon.detail and "renew it" in soon.detail
    assert expiry_check("meta", "x", NOW - timedelta(seconds=1), NOW, "fix").level == "error"


def test_a_token_without_ads_read_is_an_error() -> None:
    info = TokenInfo(True, ("business_management",), None, None)
    levels = _levels(token_checks(info, NOW))
    assert levels["meta:scopes"] == "error"
    assert levels["meta:token"] == "ok"


def test_an_invalid_token_is_an_error() -> None:
    info = TokenInfo(False, ("ads_read",), None, None)
    assert _levels(token_checks(info, NOW))["meta:token"] == "error"


def test_an_unknown_event_name_is_a_warning() -> None:
    checks = event_checks("42", ["Signup", "Purchse"], ["Purchase", "Signup"])
    assert [c.level for c in checks] == ["ok", "warning"]
    assert "Purchse" in checks[1].detail


def test_a_missing_ad_account_property_is_an_error_others_warn() -> None:
    props = NotionProps()
    info = DataSourceInfo("Accounts", {"Name": "title", "Active": "checkbox"})
    levels = {c.name: c.level for c in property_checks(props, info)}
    assert levels["property 'Meta Ad Account ID'"] == "error"
    assert levels["property 'Industry'"] == "warning"
    assert levels["property 'Name'"] == "ok"


def test_exit_code_is_the_worst_level() -> None:
    ok = Check("a", "b", "ok", "")
    skipped = Check("a", "b", "skipped", "")
    warn = Check("a", "b", "warning", "")
    err = Check("a", "b", "error", "")
    assert exit_code([ok, skipped]) == 0
    assert exit_code([ok, warn]) == 1
    assert exit_code([warn, err]) == 2


# --- against the simulators -----------------------------------------------------------------


class World:
    def __init__(self) -> None:
        self.meta = MetaSimulator(
            [MetaAccount("111", timezone_name="Europe/Berlin", currency="EUR", name="Acme")],
            access_token=META_TOKEN,
            clock=lambda: NOW,
            token_expires_at=NOW + timedelta(days=50),
            data_access_expires_at=NOW + timedelta(days=80),
        )
        self.mixpanel = MixpanelSimulator(
            [MixpanelProject("42", event_names=("Purchase", "Signup"))],
            service_account=MP_ACCOUNT,
            service_secret=MP_SECRET,
        )
        self.notion = NotionSimulator([NotionAccountPage("Acme", "act_111")], token=NOTION_TOKEN)
        self.urls: list[str] = []

    def settings(self, database_url: str, **overrides: Any) -> Settings:
        meta, mixpanel, notion = self.urls
        values: dict[str, Any] = {
            "meta_access_token": META_TOKEN,
            "meta_api_base": meta,
            "meta_ad_account_ids": "111",
            "mixpanel_service_account": MP_ACCOUNT,
            "mixpanel_service_secret": MP_SECRET,
            "mixpanel_project_id": "42",
            "mixpanel_events": "Signup,Purchase",
            "mixpanel_api_base": f"{mixpanel}/api/query",
            "notion_token": NOTION_TOKEN,
            "notion_data_source_id": self.notion.data_source_id,
            "notion_api_base": notion,
        }
        values.update(overrides)
        return make_settings(database_url, **values)


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    with serve_apps(w.meta.app, w.mixpanel.app, w.notion.app) as urls:
        w.urls = urls
        yield w


@pytest.fixture
async def http() -> AsyncIterator[HttpContext]:
    async def no_sleep(_: float) -> None:
        return None

    async with httpx.AsyncClient() as client:
        yield HttpContext(
            client=client, sleep=no_sleep, now=lambda: NOW, policy=RetryPolicy(max_retries=0)
        )


async def _doctor(settings: Settings, http: HttpContext) -> list[Check]:
    engine = create_engine(settings.database_url)
    try:
        return await run_doctor(settings, http, engine=engine)
    finally:
        await engine.dispose()


@pytest.mark.sql  # the database check on every backend
async def test_all_good_exits_0(world: World, http: HttpContext, database_url: str) -> None:
    checks = await _doctor(world.settings(database_url), http)
    assert exit_code(checks) == 0, [c for c in checks if c.level not in ("ok", "skipped")]
    by_name = {c.name: c for c in checks}
    assert "status 1 (active); zone Europe/Berlin, currency EUR" in by_name["act_111"].detail
    assert by_name["schema"].level == "ok"
    assert "in 50 days" in by_name["token expiry"].detail
    assert [r.path for r in world.meta.log.records if "debug_token" in r.path]


async def test_an_invalid_token_is_meta_error_190(
    world: World, http: HttpContext, database_url: str
) -> None:
    checks = await _doctor(world.settings(database_url, meta_access_token="wrong-token"), http)
    token = next(c for c in checks if c.area == "meta" and c.name == "token")
    assert token.level == "error"
    assert "190" in token.detail
    assert "wrong-token" not in token.detail
    assert exit_code(checks) == 2


async def test_a_token_without_ads_read_and_expiring_soon(
    world: World, http: HttpContext, database_url: str
) -> None:
    world.meta.token_scopes = ("business_management",)
    world.meta.token_expires_at = NOW + timedelta(days=3)
    levels = _levels(await _doctor(world.settings(database_url), http))
    assert levels["meta:scopes"] == "error"
    assert levels["meta:token expiry"] == "warning"


async def test_a_token_expiring_soon_alone_exits_1_and_is_a_health_warning(
    world: World, http: HttpContext, database_url: str
) -> None:
    world.meta.token_expires_at = NOW + timedelta(days=3)
    settings = world.settings(database_url)
    assert exit_code(await _doctor(settings, http)) == 1
    warnings = await meta_token_warnings(settings, http)
    assert len(warnings) == 1 and "in 3 days" in warnings[0]


async def test_a_closed_account_is_readable_and_named_inactive(
    world: World, http: HttpContext, database_url: str
) -> None:
    world.meta.accounts["222"] = MetaAccount("222", account_status=101)
    checks = await _doctor(world.settings(database_url, meta_ad_account_ids="111,222"), http)
    closed = next(c for c in checks if c.name == "act_222")
    assert closed.level == "ok" and "status 101 (inactive" in closed.detail


async def test_an_unknown_account_is_an_error(
    world: World, http: HttpContext, database_url: str
) -> None:
    checks = await _doctor(world.settings(database_url, meta_ad_account_ids="111,999"), http)
    assert _levels(checks)["meta:act_999"] == "error"


async def test_mixpanel_bad_credentials_are_401(
    world: World, http: HttpContext, database_url: str
) -> None:
    checks = await _doctor(world.settings(database_url, mixpanel_service_secret="nope"), http)
    project = next(c for c in checks if c.name == "project 42")
    assert project.level == "error" and "401" in project.detail
    assert "nope" not in project.detail


async def test_mixpanel_unknown_event_warns(
    world: World, http: HttpContext, database_url: str
) -> None:
    checks = await _doctor(world.settings(database_url, mixpanel_events="Signup,Sign up"), http)
    events = [c for c in checks if c.name == "project 42 event"]
    assert [c.level for c in events] == ["ok", "warning"]
    assert exit_code(checks) == 1


async def test_notion_unshared_data_source_is_404(
    world: World, http: HttpContext, database_url: str
) -> None:
    other = "00000000-0000-4000-8000-000000000000"
    checks = await _doctor(world.settings(database_url, notion_data_source_id=other), http)
    source = next(c for c in checks if c.name == "data source" and c.area == "notion")
    assert source.level == "error"
    assert "HTTP 404" in source.detail and "Could not find" in source.detail


async def test_notion_missing_property(world: World, http: HttpContext, database_url: str) -> None:
    world.notion.missing_properties.add("Meta Ad Account ID")
    levels = _levels(await _doctor(world.settings(database_url), http))
    assert levels["notion:property 'Meta Ad Account ID'"] == "error"


async def test_a_database_behind_the_head_is_an_error(
    world: World, http: HttpContext, tmp_path: Any
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    checks = await _doctor(world.settings(url), http)
    schema = next(c for c in checks if c.area == "database")
    assert schema.level == "error" and "cronkeeper db upgrade" in schema.detail


def test_the_command_prints_json_and_exits_with_the_verdict(
    world: World, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = world.settings(database_url, mixpanel_events="Signup,Sign up")
    env = {
        "DATABASE_URL": database_url,
        "META_ACCESS_TOKEN": META_TOKEN,
        "META_API_BASE": settings.meta_api_base,
        "META_AD_ACCOUNT_IDS": "111",
        "MIXPANEL_SERVICE_ACCOUNT": MP_ACCOUNT,
        "MIXPANEL_SERVICE_SECRET": MP_SECRET,
        "MIXPANEL_PROJECT_ID": "42",
        "MIXPANEL_EVENTS": "Signup,Sign up",
        "MIXPANEL_API_BASE": settings.mixpanel_api_base,
        "NOTION_TOKEN": NOTION_TOKEN,
        "NOTION_DATA_SOURCE_ID": world.notion.data_source_id,
        "NOTION_API_BASE": settings.notion_api_base,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    result = CliRunner().invoke(app, ["doctor", "--json"])
    assert result.exit_code == 1, result.output
    assert '"Sign up"' in result.output or "'Sign up'" in result.output
    table = CliRunner().invoke(app, ["doctor"])
    assert table.exit_code == 1
    assert "cronkeeper doctor" in table.output
    assert META_TOKEN not in table.output + result.output


async def test_send_test_posts_one_message_to_the_webhook(
    world: World, http: HttpContext, database_url: str
) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from cronkeeper.alerting.probe import TEST_MESSAGE, probe_sender
    from cronkeeper.sandbox import serve_app

    received: list[object] = []

    async def hook(request: Request) -> Response:
        received.append(await request.json())
        return Response("ok")

    sink = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    with serve_app(sink) as base:
        settings = world.settings(database_url, alert_webhook_url=f"{base}/hook")
        engine = create_engine(settings.database_url)
        try:
            checks = await run_doctor(
                settings, http, engine=engine, send_test=probe_sender(settings)
            )
        finally:
            await engine.dispose()
    assert received == [{"text": TEST_MESSAGE}]
    assert _levels(checks)["alerts:webhook"] == "ok"


def test_without_send_test_the_webhook_is_not_called(
    world: World, http: HttpContext, database_url: str
) -> None:
    checks = [Check("alerts", "webhook", "skipped", "")]
    assert exit_code(checks) == 0


async def test_the_watchdog_repeats_the_token_check_warns_in_health_and_alerts_once(
    world: World, database_url: str
) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from cronkeeper.alerting.watchdog import install_watchdog
    from cronkeeper.sandbox import serve_app
    from cronkeeper.service import Service

    received: list[object] = []

    async def hook(request: Request) -> Response:
        received.append(await request.json())
        return Response("ok")

    world.meta.token_expires_at = NOW + timedelta(days=3)
    clock = {"now": NOW}
    sink = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    with serve_app(sink) as base:
        settings = world.settings(database_url, alert_webhook_url=f"{base}/hook")
        service = Service.from_settings(settings, clock=lambda: clock["now"])
        try:
            watchdog = install_watchdog(service)
            assert service.warnings() == []
            await watchdog._token_due()
            assert any("in 3 days" in w for w in service.warnings())
            clock["now"] = NOW + timedelta(hours=2)
            await watchdog._token_due()  # not due again within the day
            clock["now"] = NOW + timedelta(days=1, hours=1)
            await watchdog._token_due()  # due: same finding, no second alert
            assert any("in 1 day" in w for w in service.warnings())
        finally:
            await service.aclose()
    debug_calls = [r for r in world.meta.log.records if "debug_token" in r.path]
    assert len(debug_calls) == 2
    assert len(received) == 1
    assert "Meta access token" in str(received[0])


# --- the parsers of the three new calls ------------------------------------------------------


def test_debug_token_parses_unix_seconds_and_zero_as_never() -> None:
    from cronkeeper.sources.meta import parse_debug_token

    info = parse_debug_token(
        {
            "data": {
                "is_valid": True,
                "scopes": ["ads_read"],
                "expires_at": 0,
                "data_access_expires_at": 1_800_000_000,
                "type": "SYSTEM_USER",
            }
        }
    )
    assert info.expires_at is None
    assert info.data_access_expires_at == datetime.fromtimestamp(1_800_000_000, UTC)
    assert info.token_type == "SYSTEM_USER"


@pytest.mark.parametrize(
    "payload",
    [[], {"data": {}}, {"data": {"is_valid": "yes"}}, {"data": {"is_valid": True, "scopes": "x"}}],
)
def test_debug_token_refuses_another_shape(payload: object) -> None:
    from cronkeeper.errors import PayloadError
    from cronkeeper.sources.meta import parse_debug_token

    with pytest.raises(PayloadError, match="Meta debug_token"):
        parse_debug_token(payload)


def test_event_names_and_data_source_parsers() -> None:
    from cronkeeper.errors import PayloadError
    from cronkeeper.sources.mixpanel import parse_event_names
    from cronkeeper.sources.notion import parse_data_source

    assert parse_event_names(["a", "b"], project_id="1") == ("a", "b")
    with pytest.raises(PayloadError, match="event names"):
        parse_event_names({"a": 1}, project_id="1")
    info = parse_data_source(
        {"title": [{"plain_text": "Acc"}], "properties": {"Name": {"type": "title"}}}
    )
    assert info == DataSourceInfo("Acc", {"Name": "title"})
    with pytest.raises(PayloadError, match="properties"):
        parse_data_source({"object": "data_source"})
