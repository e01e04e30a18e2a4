"""What the four jobs share: describing a failure for the ledger, and running units side by side.

A unit's failure becomes a ``run.skip`` reason: the text must say what failed and why, in one
line, without the SQL and bound parameters SQLAlchemy appends to its messages.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from cronkeeper.clock import Clock, Sleep
from cronkeeper.errors import (
    ApiVersionRefused,
    ConfigError,
    CronkeeperError,
    LeaseLost,
    StorageError,
    WaitTooLong,
    first_line,
)
from cronkeeper.jobs.base import JobContext
from cronkeeper.storage.schema import accounts

__all__ = [
    "Deferral",
    "Slots",
    "configured_or_active",
    "deferral",
    "describe_failure",
    "for_each",
    "sleep_outside",
    "storage_error",
]

T = TypeVar("T")
_MAX_REASON = 500
STOPS_SOURCE = (ApiVersionRefused, LeaseLost)
"""Failures every unit would share: the first one ends the job, one message (the API refuses
the pinned version; another run took the job's lease over, so no write of this one is kept)."""


def _first_line(exc: BaseException) -> str:
    line = first_line(exc)
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        # Not str(exc): "(psycopg.errors.X) message\n[SQL: …]\n[parameters: …]" shows the data.
        line = first_line(exc.orig) or line
    return line[:_MAX_REASON] + ("…" if len(line) > _MAX_REASON else "")


def describe_failure(exc: BaseException) -> str:
    """A one-line reason for a unit that failed with ``exc``.

    Our own errors already say what failed and what to do; anything else (a driver error, a
    timeout) gets its type name so the operator knows where to look.
    """
    if isinstance(exc, CronkeeperError):
        return str(exc).strip() or type(exc).__name__
    if isinstance(exc, TimeoutError):
        return "the database did not answer in time"
    line = _first_line(exc)
    if isinstance(exc, SQLAlchemyError | OSError):
        return f"the database failed ({type(exc).__name__}: {line})"
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


async def configured_or_active(
    ctx: JobContext,
    configured: Sequence[str],
    column: ColumnElement[Any],
    *,
    what: str,
    none_message: str,
) -> list[str]:
    """The configured ids if any, else the distinct ``column`` of active accounts; sorted.

    ``ConfigError(none_message)`` when there are none: a job with nothing to collect is a
    configuration problem to fix, not a success to report.
    """
    if configured:
        return sorted(set(configured))
    try:
        async with ctx.engine.connect() as conn:
            result = await conn.execute(
                select(column).where(accounts.c.active.is_(True), column.is_not(None)).distinct()
            )
            ids = sorted({str(r[0]) for r in result if str(r[0]).strip()})
    except Exception as exc:
        raise storage_error(f"could not read {what}", exc) from exc
    if not ids:
        raise ConfigError(none_message)
    return ids


def storage_error(what: str, exc: BaseException) -> StorageError:
    """A :class:`StorageError` for a statement the whole job depends on."""
    return StorageError(f"{what}: {describe_failure(exc)}")


class Slots:
    """A semaphore whose waiters coming back from a retry wait go before new units.

    With a plain FIFO semaphore, an account that gave its slot back to sleep out a
    ``Retry-After`` would queue behind every account not yet started, and a run's longest
    retry chain would finish last instead of overlapping the others. Here a returning unit
    takes the next free slot; the number of holders never exceeds ``size``.
    """

    def __init__(self, size: int) -> None:
        self._free = max(1, size)
        self._first: deque[asyncio.Future[None]] = deque()
        self._rest: deque[asyncio.Future[None]] = deque()

    async def acquire(self, *, first: bool = False) -> None:
        if self._free > 0 and not self._first and not self._rest:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (self._first if first else self._rest).append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot arrived as we were cancelled: pass it on
            raise

    def release(self) -> None:
        for queue in (self._first, self._rest):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)  # hand the slot over directly
                    return
        self._free += 1


@dataclass(frozen=True)
class Deferral:
    """Set a unit aside while the API asks for a long wait, within the run's budget.

    A wait above ``CRONKEEPER_MAX_WAIT`` is not slept inside the call (:class:`WaitTooLong`);
    the unit gives its slot back, waits exactly what was asked (never less: the pacer holds
    its scope until then too) and starts again, as long as that ends before ``deadline``
    (the run's start + ``CRONKEEPER_RUN_BUDGET``). Otherwise it is skipped, and the message
    says how long the API asked to wait.
    """

    deadline: datetime
    clock: Clock
    sleep: Sleep
    max_times: int = 10
    """A unit set aside this often is skipped: an API that keeps moving its goalposts."""

    def allows(self, wait_seconds: float) -> bool:
        return self.clock() + timedelta(seconds=wait_seconds) <= self.deadline

    def too_late(self, exc: WaitTooLong) -> WaitTooLong:
        ends = self.deadline.strftime("%H:%M:%S %Z").strip()
        return WaitTooLong(
            f"{exc}; setting it aside for {exc.wait_seconds:.0f} s would pass the run's budget"
            f" (CRONKEEPER_RUN_BUDGET, ends {ends})",
            wait_seconds=exc.wait_seconds,
            url=exc.url,
            status=exc.status,
            attempts=exc.attempts,
            reason=exc.reason,
            detail=exc.detail,
        )


def deferral(ctx: JobContext) -> Deferral | None:
    """The run's :class:`Deferral`, when it has a budget."""
    if ctx.deadline is None:
        return None
    return Deferral(ctx.deadline, ctx.clock, ctx.http.sleep)


async def for_each(
    items: Iterable[T],
    work: Callable[[T], Awaitable[None]],
    *,
    limit: int | Slots,
    on_error: Callable[[T, Exception], None],
    defer: Deferral | None = None,
) -> None:
    """Run ``work`` for every item, at most ``limit`` at a time, until every item is done.

    A failing item is handed to ``on_error`` and never cancels the others: one account's
    expired token must not cost the other accounts their data. Cancellation from outside (the
    run itself cancelled) still propagates. ``limit`` may be :class:`Slots` the caller shares
    (see :func:`sleep_outside`). With ``defer``, an item the API asks to wait long for is set
    aside and tried again after that wait (see :class:`Deferral`). A failure in
    :data:`STOPS_SOURCE` (the API refuses the pinned version) cancels the other items and is
    raised as it is: every item would fail the same way.
    """
    slots = limit if isinstance(limit, Slots) else Slots(limit)

    async def one(item: T) -> None:
        await slots.acquire()
        try:
            for set_aside in itertools.count():
                try:
                    await work(item)
                    return
                except WaitTooLong as exc:
                    if defer is None or set_aside >= defer.max_times:
                        raise
                    if not defer.allows(exc.wait_seconds):
                        raise defer.too_late(exc) from None
                    wait = exc.wait_seconds
                await sleep_outside(slots, defer.sleep)(wait)
        except STOPS_SOURCE:
            raise
        except Exception as exc:
            on_error(item, exc)
        finally:
            slots.release()

    try:
        async with asyncio.TaskGroup() as group:
            for item in items:
                group.create_task(one(item))
    except* STOPS_SOURCE as stopped:
        first = stopped.exceptions[0]
        raise (first.exceptions[0] if isinstance(first, BaseExceptionGroup) else first) from None


def sleep_outside(slots: Slots, sleep: Sleep) -> Sleep:
    """A ``sleep`` that gives its unit's slot back while it waits out a retry.

    A unit waiting for a ``Retry-After`` sends nothing; holding its slot would only keep
    other units from their requests. Requests in flight stay bounded: the unit takes a slot
    again (ahead of units not yet started) before its next attempt.
    """

    async def wait(seconds: float) -> None:
        slots.release()
        try:
            await sleep(seconds)
        finally:
            await slots.acquire(first=True)

    return wait
