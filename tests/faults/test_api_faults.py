"""APIs that drop connections, answer garbage or answer too late: a clear partial/error, no hang.

Real simulators over real HTTP with the real runner; only the waits between attempts are
recorded instead of slept. The per-attempt timeout is 0.3 s and the hanging simulator answers
after 5 s: the cause each skipped unit names ("no complete answer within the 0.3 s timeout"),
the attempt counts in the simulator's request log and the recorded waits prove that no
attempt waited for the answer; the run itself is only guarded against hanging.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select

from cronkeeper.runner import RunResult, run_job
from cronkeeper.sandbox import (
    Fault,
    MixpanelSimulator,
    NotionAccountPage,
    NotionSimulator,
    serve_app,
    serve_apps,
)
from cronkeeper.sandbox.meta import MetaSimulator
from cronkeeper.service import Service
from cronkeeper.storage.schema import accounts, meta_account_details
from tests.conftest import make_settings
from tests.faults.helpers import DAY, META_TOKEN, skipped_units, stored_insights

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

HANG = 5.0
TIMEOUT = 0.3
HANG_GUARD = 30.0  # a run that hangs fails the test instead of the suite
MIXPANEL_SECRET = "mixpanel-fault-secret-0123456789"
NOTION_TOKEN = "ntn_fault_token_0123456789abcdef"

FAULTS: dict[str, Fault] = {
    "2001": Fault.drop(),
    "2002": Fault.drop(after_headers=True),
    "2003": Fault.malformed("json"),
    "2004": Fault.malformed("html"),
    "2005": Fault.malformed("shape"),
    "2006": Fault.malformed("empty"),
    "2007": Fault.hang(HANG),
}
GOOD = "2000"
RECOVERS = "2008"  # dropped, then too slow, then fine: retries heal it
CAUSES = {
    "2001": "still failing after 3 attempts; last: RemoteProtocolError (Server disconnected",
    "2002": "still failing after 3 attempts; last: RemoteProtocolError (peer closed connection",
    "2003": "Meta ad account 2003: the answer is not JSON (HTTP 200, application/json",
    "2004": "Meta ad account 2004: the answer is not JSON (HTTP 200, text/html",
    "2005": "Meta ad account 2005: field 'data': expected a list of rows, got 'oops'",
    "2006": "Meta ad account 2006: the answer is not JSON (HTTP 200, application/json; charset=utf-8, 0 bytes)",  # noqa: E501
    "2007": f"still failing after 3 attempts; last: no complete answer within the {TIMEOUT:g} s timeout",  # noqa: E501
}


class RecordedSleep:
    """The waits between attempts, recorded and not slept."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def meta() -> Iterator[tuple[MetaSimulator, str]]:
    accounts = [GOOD, RECOVERS, *FAULTS]
    sim = MetaSimulator(accounts, access_token=META_TOKEN)
    for account, fault in FAULTS.items():
        sim.always(account, fault)
    sim.script(RECOVERS, Fault.drop(), Fault.hang(HANG))
    with serve_app(sim.app) as url:
        yield sim, url


def service_for(database_url: str, sleep: RecordedSleep, **overrides: object) -> Service:
    settings = make_settings(database_url, http_timeout=TIMEOUT, **overrides)
    return Service.from_settings(settings, sleep=sleep)


async def known_details(service: Service, accounts: Iterable[str]) -> None:
    """Store the accounts' details as read now: the run asks Meta for insights only, so each
    request it makes is one this test put a fault on."""
    now = datetime.now(UTC)
    async with service.engine.begin() as conn:
        await conn.execute(
            insert(meta_account_details),
            [
                {"ad_account_id": a, "timezone_name": "UTC", "fetched_at": now, "account_status": 1}
                for a in accounts
            ],
        )


async def bounded_run(service: Service, job: str) -> RunResult:
    async with asyncio.timeout(HANG_GUARD):
        return await run_job(service, job, DAY)


async def test_meta_faults_skip_each_account_with_its_cause_and_keep_the_others(
    database_url: str, meta: tuple[MetaSimulator, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sim, url = meta
    sleep = RecordedSleep()
    service = service_for(
        database_url,
        sleep,
        meta_api_base=url,
        meta_access_token=META_TOKEN,
        meta_ad_account_ids=",".join(sim.accounts),
        meta_lookback_days=1,
        concurrency=4,
    )
    try:
        await known_details(service, sim.accounts)
        result = await bounded_run(service, "collect-daily")
        stored = await stored_insights(service.engine)
        row = await service.ledger.get_run(result.run_id or "")
    finally:
        await service.aclose()

    assert (result.status, result.records_count) == ("partial", 2)
    assert set(stored) == {GOOD, RECOVERS}
    message = result.error_message or ""
    assert message.startswith("skipped 7 of 9 ad accounts:")
    assert skipped_units(message) == set(FAULTS)
    for account, cause in CAUSES.items():
        line = re.search(rf"^- act_{account}: (.*)$", message, flags=re.MULTILINE)
        assert line is not None and cause in line[1], (account, message)
    assert row is not None and (row.status, row.error_message) == ("partial", message)

    # Garbage is final at once; a dropped or hung connection is retried after 3 s, then 6 s.
    attempts = {key: len(sim.records_for(key)) for key in sim.accounts}
    assert attempts == {
        GOOD: 1, RECOVERS: 3, "2001": 3, "2002": 3, "2003": 1, "2004": 1, "2005": 1, "2006": 1,
        "2007": 3,
    }  # fmt: skip
    assert sorted(sleep.waits) == [3.0] * 4 + [6.0] * 4
    assert META_TOKEN not in message
    assert META_TOKEN not in caplog.text


async def test_a_run_whose_every_account_fails_ends_error_and_says_why(
    database_url: str, meta: tuple[MetaSimulator, str]
) -> None:
    sim, url = meta
    service = service_for(
        database_url,
        RecordedSleep(),
        meta_api_base=url,
        meta_access_token=META_TOKEN,
        meta_ad_account_ids="2001,2003,2007",
        meta_lookback_days=1,
        concurrency=3,
    )
    try:
        await known_details(service, ["2001", "2003", "2007"])
        result = await bounded_run(service, "collect-daily")
        stored = await stored_insights(service.engine)
    finally:
        await service.aclose()
    assert (result.status, result.records_count, stored) == ("error", 0, {})
    assert skipped_units(result.error_message) == {"2001", "2003", "2007"}
    assert "timeout" in (result.error_message or "")
    assert META_TOKEN not in (result.error_message or "")
    assert len(sim.log) == 3 + 1 + 3


async def test_mixpanel_faults_skip_each_project_with_its_cause(database_url: str) -> None:
    sim = MixpanelSimulator(
        ["31", "32", "33", "34"],
        service_account="cronkeeper.sa",
        service_secret=MIXPANEL_SECRET,
        always={"31": Fault.hang(HANG), "32": Fault.malformed("html"), "33": Fault.drop()},
    )
    with serve_app(sim.app) as url:
        service = service_for(
            database_url,
            RecordedSleep(),
            mixpanel_service_account="cronkeeper.sa",
            mixpanel_service_secret=MIXPANEL_SECRET,
            mixpanel_api_base=f"{url}/api/query",
            mixpanel_project_id="31,32,33,34",
            mixpanel_events="signup,purchase",
            mixpanel_lookback_days=1,  # one day: two counts for the one good project
        )
        try:
            result = await bounded_run(service, "collect-mixpanel")
        finally:
            await service.aclose()
    assert (result.status, result.records_count) == ("partial", 2)
    message = result.error_message or ""
    assert message.startswith("skipped 3 of 4 projects:")
    assert re.search(r"^- project 31: .*no complete answer within the 0.3 s timeout", message, re.M)
    assert re.search(
        r"^- project 32: .*the answer is not JSON \(HTTP 200, text/html", message, re.M
    )
    assert re.search(r"^- project 33: .*RemoteProtocolError", message, re.M)
    assert MIXPANEL_SECRET not in message


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        (Fault.malformed("json"), "Notion data source query, page 2: the answer is not JSON"),
        (Fault.hang(HANG), "no complete answer within the 0.3 s timeout"),
    ],
    ids=["garbage", "too-slow"],
)
async def test_a_broken_notion_page_fails_the_sync_without_touching_the_registry(
    database_url: str, fault: Fault, cause: str
) -> None:
    # A later page failing means the registry cannot be known whole: nothing is marked
    # inactive, nothing half-written; the run is an error naming the page.
    pages = [
        NotionAccountPage(
            name=f"Client {n}",
            ad_account_id=f"act_{5000 + n}",
            page_id=f"00000000-0000-4000-8000-{n:012d}",
        )
        for n in range(150)
    ]
    sim = NotionSimulator(pages, token=NOTION_TOKEN, always={"100": fault})
    with serve_apps(sim.app) as (url,):
        service = service_for(
            database_url,
            RecordedSleep(),
            notion_token=NOTION_TOKEN,
            notion_data_source_id=sim.data_source_id,
            notion_api_base=url,
        )
        try:
            result = await bounded_run(service, "sync-notion")
            async with service.engine.connect() as conn:
                count = (await conn.execute(select(func.count()).select_from(accounts))).scalar()
        finally:
            await service.aclose()
    assert (result.status, result.records_count, count) == ("error", 0, 0)
    assert cause in (result.error_message or "")
    assert NOTION_TOKEN not in (result.error_message or "")
