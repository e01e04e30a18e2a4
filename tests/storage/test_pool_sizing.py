"""The database pool has room for every concurrent unit (issue 17.5)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy import text

from cronkeeper.storage.engine import POOL_RESERVE, create_engine, pool_limits


def test_the_pool_grows_with_the_concurrency_and_never_below_15() -> None:
    assert pool_limits(None) == (5, 10)
    assert pool_limits(4) == (5, 10)
    size, overflow = pool_limits(64)
    assert size + overflow == 64 + POOL_RESERVE


async def test_64_units_each_holding_a_connection_never_wait_for_one(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """64 concurrent transactions (CRONKEEPER_CONCURRENCY's maximum) on a pool with a
    0.5 s checkout timeout: with the old 5 + 10 they queued and failed."""
    caplog.set_level(logging.INFO, logger="cronkeeper.storage")
    engine = create_engine(database_url, timeout=0.5, concurrency=64)
    assert "up to 74 connections (5 kept) for CRONKEEPER_CONCURRENCY=64" in caplog.text
    held = asyncio.Event()
    inside = 0

    async def unit() -> None:
        nonlocal inside
        async with engine.begin() as conn:
            await conn.execute(text("SELECT 1"))
            inside += 1
            if inside == 64:
                held.set()
            await held.wait()

    try:
        await asyncio.wait_for(asyncio.gather(*(unit() for _ in range(64))), timeout=30)
    finally:
        await engine.dispose()
    assert inside == 64
