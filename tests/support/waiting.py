"""Waiting for an event without asserting on how long it took.

A deadline here is a hang guard: generous, it only ends a wait for something that is never
going to happen, so that a broken test fails with a message instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["HANG_GUARD", "eventually", "eventually_sync"]

HANG_GUARD = 30.0
"""Seconds before a wait for an event gives up: far beyond what any event here takes."""


def _give_up(what: str, within: float) -> AssertionError:
    return AssertionError(f"{what}: still not the case after {within:g} s (a hang guard)")


async def eventually(
    condition: Callable[[], bool], *, what: str, within: float = HANG_GUARD, poll: float = 0.01
) -> None:
    """Poll ``condition`` on the running loop until it holds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise _give_up(what, within)
        await asyncio.sleep(poll)


def eventually_sync(
    condition: Callable[[], bool], *, what: str, within: float = HANG_GUARD, poll: float = 0.05
) -> None:
    """Poll ``condition`` (blocking) until it holds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise _give_up(what, within)
        time.sleep(poll)
