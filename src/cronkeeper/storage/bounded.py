"""The one bounded database call: every statement on cronkeeper's own tables goes through it.

:class:`BoundedCall` runs one unit of database work (a transaction, a read) within
``CRONKEEPER_LEDGER_TIMEOUT``, through the process's one :class:`~.breaker.Breaker`, and turns
whatever went wrong into one kind of :class:`~cronkeeper.errors.StorageError`
(:mod:`.failures`): the ledger, the lease and the job state each decide on that kind — spool
the write, run unguarded, refuse the run, answer 500 — and none of them wraps a call in its
own timeout or reads a driver's error (``tests/test_ownership.py`` checks it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cronkeeper.errors import BreakerOpen, CronkeeperError, StorageError
from cronkeeper.storage.breaker import Breaker
from cronkeeper.storage.failures import database_error

__all__ = ["BoundedCall"]

T = TypeVar("T")


def _unchanged(text: str) -> str:
    return text


@dataclass
class BoundedCall:
    """``await call(work)``: ``work()`` within ``seconds``, gated and taught by ``breaker``.

    ``gated`` calls (a run's bookkeeping) fail at once with :class:`BreakerOpen` while the
    breaker is open; ungated ones (health, lists, closing a recorded run, renewing a lease)
    always try; a gated ``probe`` (a new run's first call) tries again once the failure is
    ``breaker.recheck`` seconds old. Raises only :class:`StorageError` kinds (and
    cancellation); ``redact`` cleans the driver's line before it enters a message.
    """

    seconds: float = 5.0
    breaker: Breaker = field(default_factory=Breaker)
    redact: Callable[[str], str] = _unchanged
    local: bool = False
    """A SQLite file: a call that ran out of time waited for another writer's lock (a slow
    machine can outlast the busy timeout's margin), which is contention, not an outage."""

    async def __call__(
        self, work: Callable[[], Awaitable[T]], *, gated: bool = False, probe: bool = False
    ) -> T:
        if gated and not self.breaker.allow(probe=probe):
            raise BreakerOpen(
                "not attempted: the database did not answer moments ago"
                f" (tried again after {self.breaker.cooldown:g} s)"
            )
        try:
            result = await _within(work, self.seconds)
        except CronkeeperError as exc:
            if isinstance(exc, StorageError):
                self.breaker.record(exc)
                raise
            # The work's own verdict, reached with the database's answer (a fenced write
            # whose lease was taken over: LeaseLost): not a database failure.
            self.breaker.record(None)
            raise
        except Exception as exc:
            error = database_error(exc, seconds=self.seconds, redact=self.redact, local=self.local)
            self.breaker.record(error)
            if error is exc:
                raise
            raise error from exc
        self.breaker.record(None)
        return result

    def error(self, exc: BaseException) -> StorageError:
        """``exc`` as the call would have raised it (for work that ran outside a call)."""
        return database_error(exc, seconds=self.seconds, redact=self.redact, local=self.local)


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
