"""The status page on a phone (issue 22 point 4): with ad accounts and Mixpanel projects whose
labels are long, nothing sticks out sideways at 390 px and the coverage labels do not overlap
their strips. Real uvicorn, Debian's Chromium (see test_status_browser.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser
from sqlalchemy.pool import NullPool

from cronkeeper.config import Settings
from cronkeeper.ledger.presence import Heartbeat, Heartbeats
from cronkeeper.sandbox.server import serve_app
from cronkeeper.service import Service
from cronkeeper.storage.engine import create_engine, upgrade
from cronkeeper.web import install_status_page
from tests.conftest import SECRET, FakeClock
from tests.web.ledger_data import NOW, insert_rows, realistic_month
from tests.web.test_status_browser import CHROMIUM, browser, sign_in

__all__ = ["browser"]  # the module-scoped Chromium fixture, shared

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (scripts/ensure-system-deps.sh installs it)",
)

ACCOUNTS = ("120000000000001", "120000000000002", "987654321098765")
PROJECTS = ("3141592", "2718281")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('phone')}/ledger.db"

    async def seed() -> None:
        engine = create_engine(url)
        try:
            await upgrade(engine)
            await insert_rows(engine, realistic_month())
            # A scheduler that beat moments ago (issue 22: the page says it is alive).
            beat = Heartbeat("phone", "scheduler-host-with-a-long-name-01", 4242, NOW, NOW)
            await Heartbeats(engine).beat(beat)
        finally:
            await engine.dispose()

    asyncio.run(seed())
    settings = Settings(
        _env_file=None,
        database_url=url,
        cron_secret=SECRET,
        timezone="America/Argentina/Buenos_Aires",
        meta_ad_account_ids=",".join(ACCOUNTS),
        mixpanel_project_id=",".join(PROJECTS),
        mixpanel_project_timezones=f"{PROJECTS[0]}=America/Argentina/ComodRivadavia",
    )
    engine = create_engine(url, poolclass=NullPool)
    service = Service.from_settings(settings, clock=FakeClock(NOW), engine=engine)
    app = FastAPI()
    install_status_page(app, service)
    with serve_app(app) as base:
        yield base


@pytest.mark.parametrize("width", [1280, 390])
def test_coverage_rows_fit_the_screen_and_their_labels_do_not_overlap(
    site: str, browser: Browser, width: int
) -> None:
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": width, "height": 844}
    )
    try:
        page = context.new_page()
        sign_in(page, site)
        assert page.url == f"{site}/status"
        rows = page.locator(".coverage-row")
        assert rows.count() == len(ACCOUNTS) + len(PROJECTS)
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        for i in range(rows.count()):
            row = rows.nth(i)
            label = row.locator("> span").first.bounding_box()
            strip = row.locator(".strip").bounding_box()
            counts = row.locator(".counts").bounding_box()
            assert label and strip and counts
            for box in (label, strip, counts):
                assert box["x"] >= 0 and box["x"] + box["width"] <= width, (i, box)
            # Side by side or stacked, never on top of each other.
            beside = label["x"] + label["width"] <= strip["x"] + 0.5
            above = label["y"] + label["height"] <= strip["y"] + 0.5
            assert beside or above, (i, label, strip)
            assert counts["y"] >= strip["y"] + strip["height"] - 0.5, (i, counts, strip)
            assert strip["width"] >= 0.5 * min(width, 360), (i, strip)
    finally:
        context.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_the_scheduler_state_is_shown_and_fits_the_screen(
    site: str, browser: Browser, width: int
) -> None:
    """Issue 22: whether a scheduler is alive is on the page at desktop and phone width, and
    "Next run" is a promise only then."""
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": width, "height": 844}
    )
    try:
        page = context.new_page()
        sign_in(page, site)
        scheduler = page.locator("#scheduler")
        assert scheduler.get_attribute("data-scheduler") == "alive"
        assert "alive on scheduler-host-with-a-long-name-01 (pid 4242)" in scheduler.inner_text()
        box = scheduler.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, box
        nexts = page.locator("[data-next]")
        assert nexts.count() >= 4
        for i in range(nexts.count()):
            assert nexts.nth(i).get_attribute("data-next") == "scheduled"
        assert page.evaluate("document.documentElement.scrollWidth") <= width
    finally:
        context.close()
