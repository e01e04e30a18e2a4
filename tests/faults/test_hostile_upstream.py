"""Issue 19: a broken or hostile answer never damages good data.

Each case stores good data from a stand-in (:mod:`tests.faults.hostile`, real HTTP on
127.0.0.1), then makes the same stand-in answer well-formed and wrong, and proves that what is
stored did not change by a single byte (every column's ``repr``, ``collected_at`` included) and
that the run's status and message tell the truth. SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.alerting.delivery import WebhookAlerter
from cronkeeper.alerting.messages import finished_text
from cronkeeper.http import RetryPolicy
from cronkeeper.http.body import CHUNK
from cronkeeper.logs import OneLineFormatter
from cronkeeper.redact import Redactor
from cronkeeper.runs_table import print_runs
from cronkeeper.sandbox import serve_apps
from cronkeeper.storage.schema import accounts, meta_daily_insights, mixpanel_daily_events
from tests.conftest import FakeClock
from tests.faults.hostile import (
    Asked,
    Reply,
    StandIn,
    as_json,
    meta,
    meta_good_row,
    mixpanel,
    notion,
    notion_page,
)
from tests.http.test_body import gzip_bomb
from tests.jobs.helpers import (
    DATA_SOURCE,
    DAY,
    META_TOKEN,
    MIXPANEL_ACCOUNT,
    MIXPANEL_SECRET,
    NOTION_TOKEN,
    POLICY,
    FakeSleep,
    Harness,
)

# The subject is what is stored: SQLite, PostgreSQL and PgBouncer alike.
pytestmark = pytest.mark.sql

ACCOUNT = "4242"
PROJECT = "77"
EVENTS = ("signup", "purchase", "trial_started")


def _nothing(request: Asked) -> Reply:
    return as_json({})


@pytest.fixture(scope="module")
def stands() -> Iterator[tuple[list[StandIn], list[str]]]:
    apps = [StandIn(_nothing) for _ in range(4)]  # Meta, Mixpanel, Notion, webhook
    with serve_apps(*apps) as urls:
        yield apps, urls


@pytest.fixture
def upstream(stands: tuple[list[StandIn], list[str]]) -> Upstream:
    apps, urls = stands
    for app in apps:
        app.respond, app.asked = _nothing, []
    return Upstream(*apps, *urls)


class Upstream:
    def __init__(
        self,
        meta: StandIn,
        mixpanel: StandIn,
        notion: StandIn,
        webhook: StandIn,
        meta_url: str,
        mixpanel_url: str,
        notion_url: str,
        webhook_url: str,
    ) -> None:
        self.meta, self.mixpanel, self.notion, self.webhook = meta, mixpanel, notion, webhook
        self.meta_url, self.mixpanel_url = meta_url, mixpanel_url
        self.notion_url, self.webhook_url = notion_url, webhook_url


@pytest.fixture
async def harness(
    engine: AsyncEngine, database_url: str, clock: FakeClock
) -> AsyncIterator[Harness]:
    async with Harness.open(engine, database_url, FakeSleep(), clock) as h:
        yield h


def settings(harness: Harness, up: Upstream, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "meta_access_token": META_TOKEN,
        "meta_api_base": up.meta_url,
        "meta_ad_account_ids": (ACCOUNT,),
        "meta_lookback_days": 28,
        "mixpanel_service_account": MIXPANEL_ACCOUNT,
        "mixpanel_service_secret": MIXPANEL_SECRET,
        "mixpanel_api_base": up.mixpanel_url,
        "mixpanel_project_id": (PROJECT,),
        "mixpanel_events": EVENTS,
        "mixpanel_lookback_days": 7,
        "notion_token": NOTION_TOKEN,
        "notion_data_source_id": DATA_SOURCE,
        "notion_api_base": up.notion_url,
    }
    values.update(overrides)
    return harness.settings(**values)


async def snapshot(harness: Harness, table: Table) -> list[str]:
    """Every stored row, every column, as ``repr``: byte-for-byte, not merely equal numbers."""
    keys = [c.name for c in table.primary_key.columns]
    return [repr(sorted(r.items())) for r in await harness.rows(table, *keys)]


# -- 1. the registry never empties by accident ------------------------------------------------


async def test_notion_one_unusable_page_deactivates_nothing(
    upstream: Upstream, harness: Harness
) -> None:
    pages = [notion_page(n, f"Client {n}", str(5000 + n)) for n in range(8)]
    upstream.notion.respond = notion(lambda: pages)
    config = settings(harness, upstream)
    assert (await harness.run("sync-notion", config)).status == "success"
    before = await snapshot(harness, accounts)

    upstream.notion.respond = notion(lambda: [notion_page(99, "Hostile", "n/a")])
    harness.clock.advance(days=1)
    outcome = await harness.run("sync-notion", config)

    assert outcome.status == "error"
    assert "could not read 1 page" in outcome.message
    assert "deactivated none of the 8 active accounts" in outcome.message
    assert await snapshot(harness, accounts) == before


async def test_notion_losing_most_pages_is_refused(upstream: Upstream, harness: Harness) -> None:
    pages = [notion_page(n, f"Client {n}", str(5000 + n)) for n in range(8)]
    upstream.notion.respond = notion(lambda: pages)
    config = settings(harness, upstream)
    await harness.run("sync-notion", config)
    before = await snapshot(harness, accounts)

    upstream.notion.respond = notion(lambda: pages[:2])  # 6 of 8 "gone": a permissions slip
    outcome = await harness.run("sync-notion", config)

    assert outcome.status == "error"
    assert "refusing to deactivate 6 of 8 active accounts" in outcome.message
    assert await snapshot(harness, accounts) == before


# -- 2. suspicious answers are errors, not zeros ----------------------------------------------


async def _collect_good_meta(harness: Harness, up: Upstream) -> tuple[Any, list[str]]:
    up.meta.respond = meta(lambda d: [meta_good_row(d)])
    config = settings(harness, up)
    outcome = await harness.run("collect-daily", config)
    assert (outcome.status, outcome.summary.records_count) == ("success", 28)
    return config, await snapshot(harness, meta_daily_insights)


async def test_meta_rows_without_their_metrics_change_nothing(
    upstream: Upstream, harness: Harness
) -> None:
    config, before = await _collect_good_meta(harness, upstream)
    # Issue 19: rows holding only date_start zeroed 28 days of spend, impressions, conversions.
    upstream.meta.respond = meta(lambda d: [{"date_start": str(d), "date_stop": str(d)}])
    harness.clock.advance(hours=1)
    outcome = await harness.run("collect-daily", config)

    assert (outcome.status, outcome.summary.records_count) == ("error", 0)
    assert "missing 'spend', 'impressions', 'clicks'" in outcome.message
    assert await snapshot(harness, meta_daily_insights) == before


async def test_meta_conflicting_duplicate_rows_change_nothing(
    upstream: Upstream, harness: Harness
) -> None:
    config, before = await _collect_good_meta(harness, upstream)
    # Issue 19: two rows for one day were added together, doubling the stored values.
    upstream.meta.respond = meta(lambda d: [meta_good_row(d), meta_good_row(d, scale=2)])
    outcome = await harness.run("collect-daily", config)

    assert outcome.status == "error"
    assert "two different rows for" in outcome.message
    assert await snapshot(harness, meta_daily_insights) == before


async def test_meta_identical_duplicate_rows_collapse_and_change_no_figure(
    upstream: Upstream, harness: Harness
) -> None:
    config, before = await _collect_good_meta(harness, upstream)
    upstream.meta.respond = meta(lambda d: [meta_good_row(d), meta_good_row(d)])
    outcome = await harness.run("collect-daily", config)

    assert (outcome.status, outcome.summary.records_count, outcome.message) == ("success", 28, "")
    figures = [r.split("'collected_at'")[0] for r in await snapshot(harness, meta_daily_insights)]
    assert figures == [r.split("'collected_at'")[0] for r in before]


async def test_a_run_that_rewrites_stored_figures_says_how_many(
    upstream: Upstream, harness: Harness
) -> None:
    config, _ = await _collect_good_meta(harness, upstream)
    revised = {DAY, date.fromordinal(DAY.toordinal() - 1)}
    upstream.meta.respond = meta(lambda d: [meta_good_row(d, scale=3 if d in revised else 1)])
    outcome = await harness.run("collect-daily", config)

    assert (outcome.status, outcome.summary.records_count) == ("success", 28)
    assert outcome.message == "changed 2 stored rows to the figures Meta answered now"


async def _collect_good_mixpanel(harness: Harness, up: Upstream) -> tuple[Any, list[str]]:
    up.mixpanel.respond = mixpanel(lambda event, day: len(event) + int(day[-2:]))
    config = settings(harness, up)
    outcome = await harness.run("collect-mixpanel", config)
    assert (outcome.status, outcome.summary.records_count) == ("success", 21)
    return config, await snapshot(harness, mixpanel_daily_events)


async def test_mixpanel_an_answer_without_events_changes_nothing(
    upstream: Upstream, harness: Harness
) -> None:
    config, before = await _collect_good_mixpanel(harness, upstream)
    # Issue 19: this answer set 21 stored counts to 0 and the run ended success.
    upstream.mixpanel.respond = lambda request: as_json({"data": {"series": [], "values": {}}})
    outcome = await harness.run("collect-mixpanel", config)

    assert (outcome.status, outcome.summary.records_count) == ("error", 0)
    assert "holds none of the 3 requested events" in outcome.message
    assert await snapshot(harness, mixpanel_daily_events) == before


async def test_mixpanel_an_answer_lacking_an_event_with_stored_counts_changes_nothing(
    upstream: Upstream, harness: Harness
) -> None:
    config, before = await _collect_good_mixpanel(harness, upstream)
    upstream.mixpanel.respond = mixpanel(
        lambda event, day: None if event == "purchase" else len(event) + int(day[-2:])
    )
    outcome = await harness.run("collect-mixpanel", config)

    assert outcome.status == "error"
    assert "lacks 'purchase' (7 days)" in outcome.message
    assert await snapshot(harness, mixpanel_daily_events) == before


async def test_mixpanel_an_event_without_data_and_nothing_stored_counts_zero(
    upstream: Upstream, harness: Harness
) -> None:
    upstream.mixpanel.respond = mixpanel(lambda event, day: None if event == "trial_started" else 5)
    outcome = await harness.run("collect-mixpanel", settings(harness, upstream))

    assert (outcome.status, outcome.summary.records_count) == ("success", 21)
    rows = await harness.rows(mixpanel_daily_events, "event", "date")
    assert {r["count"] for r in rows if r["event"] == "trial_started"} == {0}


# -- 3. bounded answers -----------------------------------------------------------------------


async def test_a_gzip_bomb_fails_the_unit_within_the_cap_and_changes_nothing(
    upstream: Upstream, harness: Harness
) -> None:
    config, before = await _collect_good_meta(harness, upstream)
    bomb = gzip_bomb(64 * 1024 * 1024)  # 64 MiB of zeros in about 64 KB
    upstream.meta.respond = lambda request: Reply(200, bomb, (("content-encoding", "gzip"),))
    cap = 4 * 1024 * 1024
    harness.clock.advance(days=2)  # the stored details are stale: read again, then insights
    outcome = await harness.run(
        "collect-daily", config, policy=RetryPolicy(**{**vars(POLICY), "max_body": cap})
    )

    assert (outcome.status, outcome.summary.records_count) == ("error", 0)
    assert "larger than 4 MiB once decoded (CRONKEEPER_MAX_RESPONSE_BYTES)" in outcome.message
    assert META_TOKEN not in outcome.message
    # The good run asked for details and insights; this one for details, once (not retried),
    # then, on the stored details (issue 17), for insights, once: the bomb again.
    assert len(upstream.meta.asked) == 4
    assert "details not read again, the stored ones of" in outcome.message
    assert await snapshot(harness, meta_daily_insights) == before
    assert cap > CHUNK


# -- 4. outside text is inert everywhere it goes ----------------------------------------------

HOSTILE_NAME = "Acme [/b] @channel [login](https://evil.test) <!here>\x1b[31m"


async def test_a_hostile_notion_name_is_inert_in_the_cli_the_log_and_chat(
    upstream: Upstream, harness: Harness
) -> None:
    pages = [notion_page(1, "Good", "5001"), notion_page(2, HOSTILE_NAME, "n/a")]
    upstream.notion.respond = notion(lambda: pages)
    outcome = await harness.run("sync-notion", settings(harness, upstream))
    assert outcome.status == "partial"
    assert HOSTILE_NAME in outcome.row.error_message  # stored as it came: it is evidence

    # The terminal: `cronkeeper runs` (its table) prints it as text, escapes shown.
    screen = io.StringIO()
    print_runs(Console(file=screen, width=500, force_terminal=True), [outcome.row], UTC, "UTC")
    assert "Acme [/b] @channel [login](https://evil.test) <!here>\\x1b[31m" in screen.getvalue()

    # The log: one record, one line.
    record = logging.LogRecord(
        "cronkeeper", logging.ERROR, __file__, 1, "%s", (outcome.message,), None
    )
    assert "\n" not in OneLineFormatter("%(message)s").format(record)

    # Chat: through a real webhook post.
    upstream.webhook.respond = lambda request: Reply(200, b"ok", (("content-type", "text/plain"),))
    alerter = WebhookAlerter(f"{upstream.webhook_url}/hook", retries=0, waits=(0.0,))
    text = finished_text(outcome.row, None, Redactor())
    assert text is not None
    assert await alerter.send(text)
    (posted,) = upstream.webhook.asked
    said = json.loads(posted.body)["text"]
    for active in ("@channel", "<!here>", "](https://", "\x1b"):
        assert active not in said
    assert "@\u200bchannel" in said and "&lt;!here&gt;" in said
