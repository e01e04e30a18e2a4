"""What the fault tests share: a gate in front of a simulator, polling with a deadline, reads."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from datetime import date

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send

from cronkeeper.storage.schema import meta_daily_insights
from tests.conftest import BACKENDS, SECRET
from tests.support.waiting import eventually

DAY = date(2026, 11, 19)
META_TOKEN = "meta-fault-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {SECRET}"}
GATE_LIMIT = 30.0
"""A held request goes through by itself after this long: a broken test must not hang."""

POSTGRES_ONLY = [
    pytest.mark.parametrize("backend", ["postgresql"], indirect=True),
    pytest.mark.postgres_only,
    pytest.mark.skipif("postgresql" not in BACKENDS, reason="PostgreSQL is not selected"),
]
"""``pytestmark`` of the tests that stop, pause or restart the PostgreSQL server."""

_META_ACCOUNT = re.compile(r"/act_(?P<id>\d+)/insights")


def meta_account(path: str) -> str | None:
    """The ad account a Meta insights path is for (digits), ``None`` for any other path."""
    match = _META_ACCOUNT.search(path)
    return match["id"] if match else None


class GatedApp:
    """An ASGI app in front of a simulator that holds requests until the test lets them through.

    Timings ("stop the database while accounts are being fetched") become events: the test
    waits for requests to *arrive*, does what it must (stop a server), then *releases* them.
    The simulator runs in uvicorn's thread and the test in its own loop, hence thread events.
    """

    def __init__(self, app: ASGIApp, key_of: Callable[[str], str | None]) -> None:
        self.app = app
        self.key_of = key_of
        self._lock = threading.Lock()
        self._arrived: list[str] = []
        self._gates: dict[str, threading.Event] = {}
        self._all_open = False

    def _gate(self, key: str) -> threading.Event:
        with self._lock:
            gate = self._gates.setdefault(key, threading.Event())
            if self._all_open:
                gate.set()
            return gate

    def release(self, *keys: str) -> None:
        for key in keys:
            self._gate(key).set()

    def release_all(self) -> None:
        with self._lock:
            self._all_open = True
            gates = list(self._gates.values())
        for gate in gates:
            gate.set()

    @property
    def arrived(self) -> list[str]:
        """Keys in order of arrival (one entry per request)."""
        with self._lock:
            return list(self._arrived)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = self.key_of(scope["path"]) if scope["type"] == "http" else None
        if key is not None:
            gate = self._gate(key)
            with self._lock:
                self._arrived.append(key)
            await asyncio.to_thread(gate.wait, GATE_LIMIT)
        await self.app(scope, receive, send)


async def wait_until(condition: Callable[[], bool], *, within: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail the test (never hang it) after ``within`` s
    (the suite's one hang guard, :func:`tests.support.waiting.eventually`)."""
    await eventually(condition, what=what, within=within, poll=0.005)


async def stored_insights(engine: AsyncEngine) -> dict[str, dict[str, object]]:
    """``meta_daily_insights`` rows of :data:`DAY`, by ad account."""
    async with engine.connect() as conn:
        result = await conn.execute(
            select(meta_daily_insights).where(meta_daily_insights.c.date == DAY)
        )
        return {str(r.ad_account_id): dict(r._mapping) for r in result}


def skipped_units(message: str | None) -> set[str]:
    """The ``act_…`` units a run's ``error_message`` names as skipped: ``- act_1: why``, or a
    group of units skipped for one cause, ``- 2 ad accounts: why — act_1, act_2`` (the first
    five of a group are named, then ``…``)."""
    text = message or ""
    units = set(re.findall(r"^- act_(\d+): ", text, flags=re.MULTILINE))
    for named in re.findall(r"^- \d+ .* — ((?:act_\d+, )*act_\d+)(?:, …)?$", text, re.MULTILINE):
        units.update(re.findall(r"act_(\d+)", named))
    return units
