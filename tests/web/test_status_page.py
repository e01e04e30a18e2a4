"""The status page over ASGI: access control, what it shows, filters, escaping, outages."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from http.cookies import SimpleCookie

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.auth import SESSION_COOKIE, Sessions
from cronkeeper.ledger.presence import Heartbeat
from cronkeeper.service import Service
from tests.conftest import SECRET, FakeClock, make_settings
from tests.web.conftest import client_for, login
from tests.web.ledger_data import NOW, Row, insert_rows, realistic_month

JOB_ORDER = ["collect-daily", "collect-mixpanel", "collect-benchmarks", "sync-notion"]


def articles(html: str) -> dict[str, str]:
    """Each job card's HTML, by job name, in page order."""
    found = re.findall(r'<article class="card job" id="job-([\w-]+)".*?</article>', html, re.S)
    blocks = re.findall(r'<article class="card job".*?</article>', html, re.S)
    return dict(zip(found, blocks, strict=True))


def table_rows(html: str) -> list[tuple[str, str]]:
    """(job, state) of every row of the recent runs table."""
    return re.findall(r'<tr data-job="([\w-]+)" data-status="(\w+)">', html)


def set_cookie(response: httpx.Response) -> SimpleCookie:
    cookie = SimpleCookie()
    cookie.load(response.headers["set-cookie"])
    return cookie


@pytest.fixture
async def month(engine: AsyncEngine) -> list[Row]:
    rows = realistic_month()
    ids = await insert_rows(engine, rows)
    return [Row(**{**r.__dict__, "id": i}) for r, i in zip(rows, ids, strict=True)]


# -- access ---------------------------------------------------------------------------------


async def test_every_page_redirects_to_the_login_form_and_shows_nothing_when_logged_out(
    client: httpx.AsyncClient, month: list[Row]
) -> None:
    run_id = month[0].id
    for path, location in [
        ("/status", "/status/login"),
        ("/status?job=collect-daily", "/status/login?next=%2Fstatus%3Fjob%3Dcollect-daily"),
        (f"/status/runs/{run_id}", f"/status/login?next=%2Fstatus%2Fruns%2F{run_id}"),
        ("/status/runs/not-a-uuid", "/status/login?next=%2Fstatus%2Fruns%2Fnot-a-uuid"),
    ]:
        response = await client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == location
        assert response.content == b""
    form = await client.get("/status/login")
    assert form.status_code == 200
    assert 'name="secret"' in form.text
    for name in JOB_ORDER:
        assert name not in form.text
    assert run_id not in form.text


async def test_a_wrong_secret_is_refused_without_a_cookie(client: httpx.AsyncClient) -> None:
    response = await login(client, "wrong-secret-0123456789")
    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    assert "That is not the secret." in response.text
    assert (await client.get("/status")).status_code == 303


async def test_the_right_secret_sets_a_strict_httponly_signed_cookie_for_12_hours(
    client: httpx.AsyncClient,
) -> None:
    response = await login(client)
    assert response.status_code == 303
    assert response.headers["location"] == "/status"
    cookie = set_cookie(response)[SESSION_COOKIE]
    raw = response.headers["set-cookie"].lower()
    assert "httponly" in raw
    assert "samesite=strict" in raw
    assert "secure" not in raw  # plain http: a Secure cookie would never come back
    assert cookie["max-age"] == "43200"
    assert cookie["path"] == "/status"
    assert SECRET not in cookie.value
    page = await client.get("/status")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"


async def test_the_cookie_is_secure_over_https(service: Service) -> None:
    async with client_for(service, base_url="https://status.example") as client:
        response = await login(client)
    assert response.status_code == 303
    assert "secure" in response.headers["set-cookie"].lower()


async def test_a_tampered_or_foreign_cookie_is_refused(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    token = set_cookie(await login(client))[SESSION_COOKIE].value
    client.cookies.clear()
    value, timestamp, signature = token.split(".")
    forged_signature = ("A" if signature[0] != "A" else "B") + signature[1:]
    rotated = Sessions(SecretStr("another-secret-987654321"), clock)
    for bad in [
        f"{value}.{timestamp}.{forged_signature}",
        f"x{value}.{timestamp}.{signature}",
        rotated.issue(),  # signed with another CRON_SECRET (as after a rotation)
        "",
        "garbage",
    ]:
        response = await client.get("/status", headers={"Cookie": f"{SESSION_COOKIE}={bad}"})
        assert response.status_code == 303, bad
    response = await client.get("/status", headers={"Cookie": f"{SESSION_COOKIE}={token}"})
    assert response.status_code == 200


async def test_a_session_expires_after_12_hours(
    signed_in: httpx.AsyncClient, clock: FakeClock
) -> None:
    clock.advance(hours=12)
    assert (await signed_in.get("/status")).status_code == 200
    clock.advance(seconds=1)
    response = await signed_in.get("/status")
    assert response.status_code == 303
    assert response.headers["location"] == "/status/login"


async def test_logout_deletes_the_cookie_and_the_page_is_refused_again(
    signed_in: httpx.AsyncClient,
) -> None:
    response = await signed_in.post("/status/logout")
    assert response.status_code == 303
    assert response.headers["location"] == "/status/login"
    raw = response.headers["set-cookie"].lower()
    assert f"{SESSION_COOKIE}=" in raw
    assert "max-age=0" in raw
    assert "path=/status" in raw
    assert (await signed_in.get("/status")).status_code == 303


async def test_wrong_secrets_are_rate_limited_per_client(
    service: Service, clock: FakeClock
) -> None:
    async with (
        client_for(service, client=("203.0.113.7", 5000)) as guesser,
        client_for(service, client=("198.51.100.2", 5000)) as colleague,
    ):
        for attempt in range(5):
            response = await login(guesser, f"guess-{attempt}")
            assert response.status_code == 401, attempt
            clock.advance(seconds=10)
        limited = await login(guesser, "guess-5")
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == str(300 - 50)
        assert "Too many wrong secrets" in limited.text
        # Blocked means blocked: even the right secret waits, so guessing gains nothing.
        right = await login(guesser)
        assert right.status_code == 429
        assert "set-cookie" not in right.headers
        # Other clients are not affected.
        assert (await login(colleague)).status_code == 303
        # The window slides: once the first failure is 5 minutes old, one more try is allowed.
        clock.advance(seconds=250)
        assert (await login(guesser)).status_code == 303


async def test_nobody_logs_in_when_cron_secret_is_unset(
    database_url: str, clock: FakeClock
) -> None:
    service = Service.from_settings(make_settings(database_url, cron_secret=None), clock=clock)
    async with client_for(service) as client:
        assert "Sign-in is disabled" in (await client.get("/status/login")).text
        for secret in ("", "None", "null", SECRET):
            response = await login(client, secret)
            assert response.status_code == 401
            assert "set-cookie" not in response.headers
        assert (await client.get("/status")).status_code == 303
    await service.aclose()


async def test_login_returns_to_the_page_asked_for_but_never_to_another_site(
    client: httpx.AsyncClient,
) -> None:
    response = await login(client, next="/status/runs/abc?x=1")
    assert response.headers["location"] == "/status/runs/abc?x=1"
    for evil in ("https://evil.example/status", "//evil.example/status", "/elsewhere"):
        client.cookies.clear()
        response = await login(client, next=evil)
        assert response.headers["location"] == "/status", evil


async def test_a_form_post_from_another_site_is_refused(client: httpx.AsyncClient) -> None:
    headers = {"Sec-Fetch-Site": "cross-site"}
    response = await client.post("/status/login", data={"secret": SECRET}, headers=headers)
    assert response.status_code == 403
    assert "set-cookie" not in response.headers


# -- the page ---------------------------------------------------------------------------------


async def test_every_job_has_a_badge_with_its_reason_a_strip_and_the_next_run(
    service: Service, signed_in: httpx.AsyncClient, month: list[Row], clock: FakeClock
) -> None:
    await service.heartbeats.beat(Heartbeat("s", "host-a", 7, clock.now, clock.now))
    response = await signed_in.get("/status")
    assert response.status_code == 200
    html = response.text
    cards = articles(html)
    assert list(cards) == JOB_ORDER  # monitored first, in configuration order
    badges = {name: re.findall(r'data-badge="([\w-]+)"', card)[0] for name, card in cards.items()}
    assert badges == {
        "collect-daily": "not-ok",
        "collect-mixpanel": "not-ok",
        "collect-benchmarks": "ok",
        "sync-notion": "unmonitored",
    }
    assert "failed: the last run ended in error" in cards["collect-daily"]
    assert "stuck: running for 10h 29m (limit 1h)" in cards["collect-mixpanel"]
    assert "2 of 3 monitored jobs need attention" in html
    for name, card in cards.items():
        assert card.count('class="cell s-') == 30, name
    assert cards["collect-daily"].count('<a role="listitem" class="cell') == 30
    assert cards["collect-benchmarks"].count('<a role="listitem" class="cell') == 4
    assert cards["collect-benchmarks"].count("cell s-empty") == 26
    assert "cell s-stuck" in cards["collect-mixpanel"]
    assert "cell s-partial" in cards["collect-daily"]
    # Next runs in the configured zone; the weekly job's "* * 1" is a Monday, as in crontab.
    assert "2026-11-28 01:00 KST" in cards["collect-daily"]
    assert "2026-11-28 01:30 KST" in cards["collect-mixpanel"]
    assert "2026-11-30 02:00 KST" in cards["collect-benchmarks"]
    assert 'data-scheduler="alive"' in html and "alive on host-a (pid 7)" in html
    assert "Times in KST (Asia/Seoul)" in html
    assert "As of 2026-11-27 12:00:00 KST (Asia/Seoul)" in html
    # Hover titles carry time, status, duration, records and the message's first line.
    partial = next(r for r in month if r.cron_name == "collect-daily" and r.status == "partial")
    title = re.search(rf'href="/status/runs/{partial.id}" title="([^"]*)"', html)
    assert title is not None
    assert title[1].startswith("2026-11-22 01:00 KST · partial · ")
    assert "109 records" in title[1]
    assert "skipped 9 of 118 ad accounts:" in title[1]
    # Two charts per job, drawn as SVG paths.
    assert html.count('<svg class="spark"') == 8
    assert len(re.findall(r'<path d="M[\d. ML]+"', html)) == 8


async def test_the_recent_runs_table_lists_the_newest_50_newest_first(
    signed_in: httpx.AsyncClient, month: list[Row]
) -> None:
    html = (await signed_in.get("/status")).text
    rows = table_rows(html)
    assert len(rows) == 50
    newest = sorted(month, key=lambda r: r.started_at, reverse=True)[:50]
    assert [job for job, _ in rows] == [r.cron_name for r in newest]
    assert rows[0] == ("collect-mixpanel", "stuck")
    assert rows[1] == ("collect-daily", "error")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("job=collect-daily&status=partial", [("collect-daily", "partial")]),
        ("status=stuck", [("collect-mixpanel", "stuck")]),
        (
            "status=error",
            [("collect-daily", "error"), ("sync-notion", "error"), ("collect-benchmarks", "error")],
        ),
        (
            "job=collect-benchmarks",
            [("collect-benchmarks", s) for s in ("success", "success", "error", "success")],
        ),
        ("job=sync-notion&status=running", []),
    ],
)
async def test_the_table_filters_by_job_and_status(
    signed_in: httpx.AsyncClient, month: list[Row], query: str, expected: list[tuple[str, str]]
) -> None:
    html = (await signed_in.get(f"/status?{query}")).text
    rows = table_rows(html)
    assert rows == expected
    if not expected:
        assert "No runs match these filters." in html
    for part in query.split("&"):
        value = part.split("=")[1]
        assert f'<option value="{value}" selected>' in html


async def test_unknown_filter_values_are_ignored(
    signed_in: httpx.AsyncClient, month: list[Row]
) -> None:
    response = await signed_in.get("/status", params={"job": "nope", "status": "'; DROP TABLE"})
    assert response.status_code == 200
    assert len(table_rows(response.text)) == 50


async def test_a_run_page_shows_the_whole_run(
    signed_in: httpx.AsyncClient, month: list[Row]
) -> None:
    run = next(r for r in month if r.cron_name == "collect-daily" and r.status == "partial")
    response = await signed_in.get(f"/status/runs/{run.id}")
    assert response.status_code == 200
    html = response.text
    assert 'data-status="partial"' in html
    assert "2026-11-22 01:00:0" in html and "KST (Asia/Seoul)" in html
    assert "109" in html
    assert "2026-11-21" in html  # report date
    assert run.id in html
    assert "renew META_ACCESS_TOKEN" in html
    stuck = next(r for r in month if r.status == "running")
    stuck_page = (await signed_in.get(f"/status/runs/{stuck.id}")).text
    assert 'data-status="stuck"' in stuck_page
    assert "not yet" in stuck_page


async def test_a_run_page_finds_its_run_by_an_upper_case_or_braced_id(
    signed_in: httpx.AsyncClient, month: list[Row]
) -> None:
    """Issue 12: SQLite stores ids as lower-case text; an upper-case UUID was a 404 there."""
    run = month[0]
    for given in (run.id.upper(), "{" + run.id + "}", run.id.replace("-", "")):
        response = await signed_in.get(f"/status/runs/{given}")
        assert response.status_code == 200, given
        assert run.id in response.text


@pytest.mark.parametrize(
    "run_id", ["0f3c5a2e-8d1b-4c6e-9a7f-2b4d6e8f0a1c", "not-a-uuid", "1 OR 1=1"]
)
async def test_an_unknown_or_invalid_run_id_is_a_404_page(
    signed_in: httpx.AsyncClient, month: list[Row], run_id: str
) -> None:
    response = await signed_in.get(f"/status/runs/{run_id}")
    assert response.status_code == 404
    assert "Run not found" in response.text


async def test_error_messages_are_shown_as_text_never_as_markup(
    signed_in: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)> & "quoted"'
    [run_id] = await insert_rows(
        engine,
        [
            Row(
                "collect-daily",
                NOW - timedelta(hours=2),
                NOW - timedelta(hours=1),
                "error",
                0,
                evil,
            )
        ],
    )
    for path in ("/status", f"/status/runs/{run_id}"):
        response = await signed_in.get(path)
        assert response.status_code == 200
        assert "<script" not in response.text
        assert "<img" not in response.text
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in response.text
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "script-src" not in csp


async def test_times_are_shown_in_the_configured_zone_and_named(
    database_url: str, engine: AsyncEngine, clock: FakeClock
) -> None:
    await insert_rows(
        engine,
        [Row("collect-daily", NOW - timedelta(hours=1), NOW - timedelta(minutes=58), "success", 5)],
    )
    for zone, expected in [
        ("Asia/Seoul", "2026-11-27 11:00 KST"),
        ("UTC", "2026-11-27 02:00 UTC"),
        ("America/New_York", "2026-11-26 21:00 EST"),
    ]:
        service = Service.from_settings(make_settings(database_url, timezone=zone), clock=clock)
        async with client_for(service) as client:
            await login(client)
            html = (await client.get("/status")).text
        await service.aclose()
        assert expected in html, zone
        label = "UTC" if zone == "UTC" else f"{expected.split()[-1]} ({zone})"
        assert f"Times in {label}<" in html, zone


async def test_an_empty_ledger_shows_every_job_as_never_run(signed_in: httpx.AsyncClient) -> None:
    html = (await signed_in.get("/status")).text
    cards = articles(html)
    assert list(cards) == JOB_ORDER
    for name in JOB_ORDER[:3]:
        assert "never ran" in cards[name]
        assert cards[name].count("cell s-empty") == 30
    assert "No runs match these filters." in html


async def test_a_database_outage_answers_503_with_a_plain_message(clock: FakeClock) -> None:
    settings = make_settings(
        "postgresql://cronkeeper:hunter2-db-password@127.0.0.1:1/none",
        timezone="Asia/Seoul",
        ledger_timeout=2,
    )
    service = Service.from_settings(settings, clock=clock)
    async with client_for(service) as client:
        assert (await login(client)).status_code == 303  # signing in needs no database
        for path in ("/status", f"/status/runs/{uuid.uuid4()}"):
            response = await client.get(path)
            assert response.status_code == 503, path
            assert "Database unavailable" in response.text
            assert response.headers["retry-after"] == "30"
            for leak in ("Traceback", "hunter2", "psycopg", "OperationalError", "127.0.0.1"):
                assert leak not in response.text
    await service.aclose()


async def test_the_login_form_sends_a_signed_in_person_on(signed_in: httpx.AsyncClient) -> None:
    response = await signed_in.get("/status/login", params={"next": "/status?job=sync-notion"})
    assert response.status_code == 303
    assert response.headers["location"] == "/status?job=sync-notion"


async def test_the_coverage_section_shows_each_account_day_by_day(
    database_url: str, clock: FakeClock
) -> None:
    settings = make_settings(database_url, meta_ad_account_ids="42", mixpanel_project_id="7")
    service = Service.from_settings(settings, clock=clock)
    try:
        async with client_for(service) as client:
            await login(client)
            page = (await client.get("/status")).text
    finally:
        await service.aclose()
    section = page[page.index('id="coverage"') : page.index('id="runs"')]
    assert 'data-unit="42"' in section
    assert 'data-source="mixpanel"' in section
    assert section.count("c-missing") >= 2 * 28
    assert "28 missing" in section


async def test_a_paused_job_reads_ok_and_the_records_chart_shows_the_expected_range(
    service: Service, signed_in: httpx.AsyncClient, month: list[Row], clock: FakeClock
) -> None:
    latest = (await service.ledger.latest_runs(["collect-daily"]))["collect-daily"]
    assert latest is not None
    await service.job_states.ensure(["collect-daily"], clock.now)
    await service.job_states.record_volume(
        "collect-daily", latest.id, None, (100.0, 130.0), clock.now
    )
    await service.job_states.pause(
        "collect-mixpanel", clock.now, until=None, reason="Meta <outage>", by="cli"
    )
    cards = articles((await signed_in.get("/status")).text)
    assert 'data-badge="ok"' in cards["collect-mixpanel"]
    # issue 22: the reason and who paused, shown (as text, never markup)
    assert "paused until resumed (by CLI): Meta &lt;outage&gt;" in cards["collect-mixpanel"]
    assert '<rect class="band"' in cards["collect-daily"]
    assert '<rect class="band"' not in cards["collect-mixpanel"]


async def test_without_a_live_scheduler_no_next_run_is_promised(
    service: Service, signed_in: httpx.AsyncClient, month: list[Row], clock: FakeClock
) -> None:
    """Issue 22: ``serve`` without ``--scheduler`` showed "next run in 4 h" for jobs nothing
    would run (the silent-cron trap)."""
    html = (await signed_in.get("/status")).text
    cards = articles(html)
    assert 'data-scheduler="none"' in html
    assert "not scheduled here — runs only when triggered" in cards["collect-daily"]
    assert "2026-11-28 01:00 KST" not in cards["collect-daily"]
    # A scheduler that fell silent: the page says so, and still promises nothing.
    await service.heartbeats.beat(Heartbeat("s", "host-a", 7, clock.now, clock.now))
    clock.advance(minutes=4)
    html = (await signed_in.get("/status")).text
    assert 'data-scheduler="silent"' in html and "host-a (pid 7) silent since" in html
    assert 'data-next="unscheduled"' in articles(html)["collect-daily"]


async def test_with_system_cron_the_next_run_is_labelled_expected(
    database_url: str, engine: AsyncEngine, month: list[Row], clock: FakeClock
) -> None:
    settings = make_settings(database_url, timezone="Asia/Seoul", system_cron=True)
    service = Service.from_settings(settings, clock=clock, engine=engine)
    async with client_for(service) as client:
        await login(client)
        cards = articles((await client.get("/status")).text)
    assert "expected 2026-11-28 01:00 KST" in cards["collect-daily"]
    assert "(system cron)" in cards["collect-daily"]
