"""The status page in a real headless Chromium (Debian's), against a real uvicorn.

JavaScript is switched off in the browser for the flows: the page must work without it.
No browser is downloaded: Playwright drives the system's ``chromium`` (installed by
``scripts/ensure-system-deps.sh``); the tests skip only when that binary is absent.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy.pool import NullPool

from cronkeeper.config import Settings
from cronkeeper.sandbox.server import serve_app
from cronkeeper.service import Service
from cronkeeper.storage.engine import create_engine, upgrade
from cronkeeper.web import install_status_page
from tests.conftest import SECRET, FakeClock
from tests.web.ledger_data import NOW, Row, insert_rows, realistic_month

CHROMIUM = os.environ.get("CRONKEEPER_CHROMIUM") or shutil.which("chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
JOBS = {
    "collect-daily": "✕ failed",
    "collect-mixpanel": "✕ stuck",
    "collect-benchmarks": "✓ OK",
    "sync-notion": "not monitored",
}

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (scripts/ensure-system-deps.sh installs it)",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[Row]]]:
    """A real uvicorn serving the status page over a month of realistic runs."""
    url = f"sqlite:///{tmp_path_factory.mktemp('browser')}/ledger.db"
    rows = realistic_month()

    async def seed() -> list[str]:
        engine = create_engine(url)
        try:
            await upgrade(engine)
            return await insert_rows(engine, rows)
        finally:
            await engine.dispose()

    ids = asyncio.run(seed())
    seeded = [Row(**{**r.__dict__, "id": i}) for r, i in zip(rows, ids, strict=True)]
    settings = Settings(_env_file=None, database_url=url, cron_secret=SECRET, timezone="Asia/Seoul")
    # NullPool: the server's event loop runs in its own thread; no connection outlives it.
    engine = create_engine(url, poolclass=NullPool)
    service = Service.from_settings(settings, clock=FakeClock(NOW), engine=engine)
    app = FastAPI()
    install_status_page(app, service)
    with serve_app(app) as base:
        yield base, seeded


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 1280, "height": 900}
    )
    yield context.new_page()
    context.close()


def sign_in(page: Page, base: str, secret: str = SECRET) -> None:
    page.goto(f"{base}/status")
    assert page.url == f"{base}/status/login"
    page.fill("#secret", secret)
    page.click("#login button[type=submit]")


def test_log_in_see_every_job_open_a_run_filter_and_log_out(
    site: tuple[str, list[Row]], page: Page
) -> None:
    base, rows = site
    page.goto(f"{base}/status")
    assert page.url == f"{base}/status/login"
    assert page.locator("article.job").count() == 0
    sign_in(page, base)
    assert page.url == f"{base}/status"
    cookies = page.context.cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [
        ("cronkeeper_status", True, "Strict")
    ]

    # Every job: its badge, and a strip of 30 squares.
    cards = page.locator("article.job")
    assert cards.count() == 4
    for name, badge in JOBS.items():
        card = page.locator(f"#job-{name}")
        assert card.locator(".badge").inner_text().strip().lower() == badge.lower()
        assert card.locator(".strip .cell").count() == 30
        assert card.locator(".strip").is_visible()
        assert card.locator("svg.spark").count() == 2
    assert "2 of 3 monitored jobs need attention" in page.locator("#summary").inner_text()
    assert "stuck: running for 10h 29m" in page.locator("#job-collect-mixpanel").inner_text()

    # Hovering a square names the run; clicking (or tapping) it opens the run.
    newest = page.locator("#job-collect-daily .strip a.cell").last
    title = newest.get_attribute("title") or ""
    assert title.startswith("2026-11-27 01:00 KST · error · 41 s · 0 records")
    newest.hover()
    newest.click()
    failed = next(r for r in rows if r.cron_name == "collect-daily" and r.status == "error")
    assert page.url == f"{base}/status/runs/{failed.id}"
    assert page.locator("#run").get_attribute("data-status") == "error"
    assert "skipped 118 of 118 ad accounts" in page.locator("#message").inner_text()
    assert "KST (Asia/Seoul)" in page.locator("#run").inner_text()
    page.click("text=← All jobs")
    assert page.url == f"{base}/status"

    # Filter the table with the plain GET form.
    page.select_option("#filter-job", "collect-daily")
    page.select_option("#filter-status", "partial")
    with page.expect_navigation(wait_until="load"):  # count() does not wait for the new page
        page.click("#filters button[type=submit]")
    assert page.url == f"{base}/status?job=collect-daily&status=partial#runs"
    table_rows = page.locator("table.runs tbody tr")
    assert table_rows.count() == 1, page.content()[:3000]
    assert table_rows.first.get_attribute("data-status") == "partial"
    assert "skipped 9 of 118 ad accounts" in table_rows.first.inner_text()
    page.select_option("#filter-job", "")
    page.select_option("#filter-status", "error")
    with page.expect_navigation(wait_until="load"):
        page.click("#filters button[type=submit]")
    states = page.locator("table.runs tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.status)"
    )
    assert states == ["error", "error", "error"]

    # Log out: the cookie is gone and the page is refused.
    page.click("#logout")
    assert page.url == f"{base}/status/login"
    assert page.context.cookies() == []
    for path in ("/status", f"/status/runs/{failed.id}"):
        page.goto(f"{base}{path}")
        assert page.url.startswith(f"{base}/status/login")
        assert page.locator("article").count() == 0
        assert "collect-daily" not in page.content()


def test_a_wrong_secret_gets_nothing(site: tuple[str, list[Row]], page: Page) -> None:
    base, _ = site
    sign_in(page, base, "not-the-secret-0123456789")
    assert page.url == f"{base}/status/login"
    assert page.locator("#login-error").inner_text() == "That is not the secret."
    assert page.context.cookies() == []
    page.goto(f"{base}/status")
    assert page.url == f"{base}/status/login"
    assert page.locator("article").count() == 0
    assert "collect-daily" not in page.content()


def test_screenshots_of_a_realistic_ledger(site: tuple[str, list[Row]], browser: Browser) -> None:
    """The page as people see it, on a desktop and on a phone (saved under test-artifacts/)."""
    base, _ = site
    ARTIFACTS.mkdir(exist_ok=True)
    for name, viewport in [
        ("status-page.png", {"width": 1280, "height": 900}),
        ("status-page-phone.png", {"width": 390, "height": 844}),
    ]:
        context = browser.new_context(viewport=viewport, device_scale_factor=1)
        page = context.new_page()
        sign_in(page, base)
        assert page.url == f"{base}/status"
        # The stylesheet applied (the CSP allows it by hash, and nothing else)...
        ok_badge = page.locator("#job-collect-benchmarks .badge")
        assert ok_badge.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(26, 127, 55)"
        # ...and nothing sticks out sideways: the layout fits the screen, phone included.
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        # Issue 22: no scheduler ever beat here, and the page says so instead of a next run.
        scheduler = page.locator("#scheduler")
        assert scheduler.get_attribute("data-scheduler") == "none"
        box = scheduler.bounding_box()
        assert box is not None and box["x"] + box["width"] <= viewport["width"], box
        assert page.locator('[data-next="unscheduled"]').count() == len(JOBS)
        for job in JOBS:
            box = page.locator(f"#job-{job} .strip").bounding_box()
            assert box is not None and box["width"] >= 0.7 * min(viewport["width"], 360)
        path = ARTIFACTS / name
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 20_000
        context.close()
