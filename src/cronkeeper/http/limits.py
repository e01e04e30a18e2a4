"""Client-side quotas: never send the request an API has said it will refuse.

Some APIs publish their limits instead of (or before) answering 429: Mixpanel's Query API
allows 60 queries an hour and 5 at once per project, Notion about 3 requests a second per
integration. A :class:`Quota` states such a limit; :class:`RequestLimiter` holds the recent
request starts per quota and key (a project, an integration) and makes each request wait for
its slot before it goes out, every attempt of a retry included, since the API counts those
too.

The decision is pure (:func:`next_start` over the recent starts); the limiter only records
and sleeps, with the clock and the sleep injected, so tests never wait. A slot is *reserved*
(the start is recorded when it is granted, even if it lies in the future): concurrent
callers queue in order and the limiter never depends on the clock moving while it sleeps.

A slot further away than ``max_wait`` is not waited for: the request fails at once with
:class:`~cronkeeper.errors.WaitTooLong`, exactly as when a server asks for a wait that long,
so the unit is skipped (or, later, deferred) rather than holding the run for an hour.

State lives as long as the limiter: the runner shares one per service (process), so two runs
in the same process share a project's hourly budget; separate processes do not.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from cronkeeper.clock import Clock, Sleep, utcnow
from cronkeeper.errors import ConfigError, WaitTooLong

__all__ = ["Limit", "Quota", "RequestLimiter", "next_start"]


@dataclass(frozen=True)
class Quota:
    """At most ``requests`` starts in any ``window`` seconds and ``concurrent`` in flight.

    ``name`` and ``per`` only word the messages ("Mixpanel Query API", "project").
    """

    name: str
    requests: int
    window: float
    concurrent: int | None = None
    per: str = "key"

    def __post_init__(self) -> None:
        if self.requests < 1 or not self.window > 0:
            raise ConfigError(f"{self.name}: a quota needs requests >= 1 and a window > 0 s")
        if self.concurrent is not None and self.concurrent < 1:
            raise ConfigError(f"{self.name}: concurrent must be 1 or more")

    def of(self, key: str) -> Limit:
        """This quota, counted for ``key`` (one project, one integration)."""
        return Limit(self, key)

    def describe(self) -> str:
        """``"60 requests in an hour and 5 at once per project"``."""
        window = {1.0: "a second", 60.0: "a minute", 3600.0: "an hour"}.get(
            self.window, f"{self.window:g} s"
        )
        text = f"{self.requests} requests in {window}"
        if self.concurrent is not None:
            text += f" and {self.concurrent} at once"
        return f"{text} per {self.per}"


@dataclass(frozen=True)
class Limit:
    """One quota's counter: requests of the same ``Limit`` share a budget."""

    quota: Quota
    key: str


def next_start(recent: Sequence[float], now: float, quota: Quota) -> float:
    """The earliest moment (≥ ``now``) at which one more request may start.

    ``recent`` are the starts already granted (in order, possibly some in the future); only
    the last ``quota.requests`` matter. Slots are granted in order (never before the last
    one), so checking the window that ends at the new start is enough: the request that is
    ``quota.requests`` back must have left the window by then.
    """
    start = max(now, recent[-1]) if recent else now
    if len(recent) >= quota.requests:
        start = max(start, recent[-quota.requests] + quota.window)
    return start


class _Counter:
    """The recent starts and the in-flight gate of one :class:`Limit`."""

    def __init__(self, quota: Quota) -> None:
        self.starts: deque[float] = deque(maxlen=quota.requests)
        self.concurrent = quota.concurrent
        self.gate: asyncio.Semaphore | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def semaphore(self) -> asyncio.Semaphore | None:
        if self.concurrent is None:
            return None
        loop = asyncio.get_running_loop()
        if self.gate is None or self.loop is not loop:  # a semaphore belongs to one loop
            self.gate, self.loop = asyncio.Semaphore(self.concurrent), loop
        return self.gate


class RequestLimiter:
    """Grants request slots under every :class:`Quota` it is asked about."""

    def __init__(
        self,
        *,
        clock: Clock = utcnow,
        sleep: Sleep = asyncio.sleep,
        max_wait: float = 60.0,
    ) -> None:
        self.clock = clock
        self.sleep = sleep
        self.max_wait = max_wait
        self._counters: dict[Limit, _Counter] = {}

    def _counter(self, limit: Limit) -> _Counter:
        counter = self._counters.get(limit)
        if counter is None:
            counter = self._counters[limit] = _Counter(limit.quota)
        return counter

    def reserve(self, limit: Limit) -> float:
        """Grant the next slot of ``limit`` and say how many seconds away it is.

        Raises :class:`WaitTooLong` (and grants nothing) when that is above ``max_wait``.
        """
        counter = self._counter(limit)
        now = self.clock().timestamp()
        start = next_start(counter.starts, now, limit.quota)
        wait = start - now
        if wait > self.max_wait:
            quota = limit.quota
            raise WaitTooLong(
                f"{quota.name} allows {quota.describe()}: {limit.key} has used them up and"
                f" its next slot is in {wait:.0f} s (above max_wait {self.max_wait:g} s);"
                " not sent: this unit is skipped, run it again later",
                wait_seconds=wait,
                attempts=0,
                reason="quota",
            )
        counter.starts.append(start)
        return wait

    @asynccontextmanager
    async def slot(self, limit: Limit) -> AsyncIterator[None]:
        """Hold one request of ``limit``: wait for a free place and a slot, then send."""
        gate = self._counter(limit).semaphore()
        if gate is None:
            await self._wait_for(limit)
            yield
            return
        async with gate:
            await self._wait_for(limit)
            yield

    async def _wait_for(self, limit: Limit) -> None:
        wait = self.reserve(limit)
        if wait > 0:
            await self.sleep(wait)
