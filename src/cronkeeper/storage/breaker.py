"""Fail fast after the database stopped answering, so a run pays the ledger timeout once.

Each ledger or lease call is bounded by ``CRONKEEPER_LEDGER_TIMEOUT``; a run makes several,
and with an unreachable database each would wait out its own timeout. After one call failed
to reach the database, the breaker lets bookkeeping calls fail at once for ``cooldown``
seconds. Reads that answer a person or a monitor (health, the runs list) are not gated: they
always try, and their success closes the breaker again.

A new run's first call (its lease claim) is a *probe*: it trusts a failure seen in the last
``recheck`` seconds — the run's own start-up found the database down moments ago — and asks
the database about an older one. Trusted for the whole cooldown, every run in the 30 s after
a blip would go on unguarded and unrecorded though the database answers again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from cronkeeper.errors import StorageError

__all__ = ["Breaker", "BreakerOpen", "is_unreachable"]

T = TypeVar("T")


class BreakerOpen(StorageError):
    """Not attempted: the database failed to answer moments ago."""


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be reached (not that it refused a row)."""
    if isinstance(exc, TimeoutError | OSError | OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


@dataclass
class Breaker:
    cooldown: float = 30.0
    monotonic: Callable[[], float] = time.monotonic
    recheck: float = 5.0
    _open_until: float = field(default=0.0, init=False)

    def allow(self, *, probe: bool = False) -> bool:
        """Whether a gated call may try; a ``probe`` may once the failure is ``recheck`` old."""
        now = self.monotonic()
        if probe:
            return now >= self._open_until - self.cooldown + self.recheck
        return now >= self._open_until

    def record(self, exc: BaseException | None) -> None:
        """After a call: ``None`` for success (closes), or its exception (opens if unreachable)."""
        if exc is None:
            self._open_until = 0.0
        elif is_unreachable(exc):
            self._open_until = self.monotonic() + self.cooldown

    async def call(
        self,
        work: Callable[[], Awaitable[T]],
        *,
        seconds: float,
        gated: bool = True,
        probe: bool = False,
    ) -> T:
        """Run ``work`` within ``seconds`` and learn from its outcome.

        ``gated`` calls (a run's bookkeeping) fail at once with :class:`BreakerOpen` while the
        breaker is open; ungated ones (health, lists, closing a recorded run, renewing a
        lease) always try; a gated ``probe`` (a new run's first call) tries again once the
        failure is ``recheck`` seconds old.
        """
        if gated and not self.allow(probe=probe):
            raise BreakerOpen(
                "not attempted: the database did not answer moments ago"
                f" (tried again after {self.cooldown:g} s)"
            )
        try:
            result = await _within(work, seconds)
        except Exception as exc:
            self.record(exc)
            raise
        self.record(None)
        return result


_left_behind: set[asyncio.Task[Any]] = set()
_GRACE = 0.5
"""How long a timed-out call gets to finish cancelling before it is left to end alone."""


def _forget(task: asyncio.Task[Any]) -> None:
    _left_behind.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: it was reported as a timeout already


async def _within(work: Callable[[], Awaitable[T]], seconds: float) -> T:
    """``work()`` within ``seconds`` — really: the timeout does not wait long for clean-up.

    ``asyncio.wait_for`` waits until the cancelled call has finished cancelling, and a
    driver talking to a server that hangs (stopped, partitioned) spends that time trying to
    cancel the query on the server: psycopg waits 5 s for the cancel request and 5 s more
    for the query to end before it closes the connection — 11 s for a 1 s timeout. Here a
    timed-out call gets a short grace to clean up (enough for a driver whose server
    answers) and then finishes in the background; the caller has its answer on time. When
    the *caller* is cancelled, the call is cancelled and waited for, as ``wait_for`` does.
    """
    task = asyncio.ensure_future(work())
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        await asyncio.wait({task})
        _forget(task)
        raise
    if not done:
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=min(_GRACE, seconds))
        if done:
            _forget(task)
        else:
            _left_behind.add(task)  # referenced until it ends, then its outcome is retrieved
            task.add_done_callback(_forget)
        raise TimeoutError(f"no answer within {seconds:g} s")
    return task.result()
