"""Wrong secrets counted per client, one limiter per app for every door.

Every door that checks ``CRON_SECRET`` (the bearer API, ``/metrics``, ``/openapi.json``, the
status page's login) counts wrong secrets in the app's one :class:`FailureLimiter`, so a
guesser cannot spread its attempts over several doors.

Hand-written rather than ``limits`` or ``aiolimiter`` (issue 16 asked): ``limits``'
``MemoryStorage`` reads the wall clock (``time.time``; its own tests freeze time with
``hiro``), and this limiter runs on the injected clock so that the five-minute window is
proved without sleeping; it also has no bound on the number of clients it remembers.
``aiolimiter`` is a leaky bucket that makes a caller *wait* for capacity, where a blocked
client here must be refused at once with its ``Retry-After``. What is left is thirty lines.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from datetime import datetime, timedelta

from starlette.datastructures import State
from starlette.requests import HTTPConnection

from cronkeeper.clock import Clock

__all__ = ["FailureLimiter", "client_address", "limiter_for"]

log = logging.getLogger("cronkeeper.auth")


def limiter_for(state: State, clock: Clock) -> FailureLimiter:
    """The app's one failure limiter (``app.state``; made on first use), for every door."""
    limiter: FailureLimiter | None = getattr(state, "auth_limiter", None)
    if limiter is None:
        limiter = state.auth_limiter = FailureLimiter(clock)
    return limiter


def client_address(request: HTTPConnection) -> str:
    """The client as the limiter counts it: the peer address, or the forwarded one only when
    ``serve --forwarded-allow-ips`` trusts the peer (uvicorn rewrites ``request.client``).

    A request that carries ``X-Forwarded-For`` from a peer uvicorn did not trust (its
    address is none of the forwarded ones: a trusted peer's request gets one of them) means
    a proxy in front that ``--forwarded-allow-ips`` does not name: every client then has the
    proxy's address, and five wrong secrets from anyone lock everyone out (issue 20.7). Said
    once per app, at WARNING.
    """
    host = request.client.host if request.client else "unknown"
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded is not None:
        _untrusted_proxy(request, host, forwarded)
    return host


def _untrusted_proxy(request: HTTPConnection, host: str, forwarded: str) -> None:
    if host in {part.strip() for part in forwarded.split(",")}:
        return  # uvicorn trusted the peer and took the client from the header
    app = request.scope.get("app")
    state = getattr(app, "state", None)
    if state is None or getattr(state, "untrusted_proxy_warned", False):
        return
    state.untrusted_proxy_warned = True
    log.warning(
        "requests carry X-Forwarded-For from %s, a peer not trusted to set it: the limiter of"
        " wrong secrets sees one address (%s) for all clients behind it, so five wrong secrets"
        " from any of them lock out all of them for 5 minutes; start `cronkeeper serve` with"
        " --forwarded-allow-ips=%s (the proxy's address) to count each client on its own",
        host,
        host,
        host,
    )


class FailureLimiter:
    """At most ``max_failures`` wrong secrets per client in any sliding ``window``.

    A blocked client is refused before its secret is even compared, so the right secret does
    not help a guesser either; the block lifts as the oldest failure leaves the window.
    Memory is bounded by ``max_clients``: past it, clients with no recent failure are
    forgotten first, then the oldest ones.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        max_failures: int = 5,
        window: timedelta = timedelta(minutes=5),
        max_clients: int = 10_000,
    ) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        self.clock = clock
        self.max_failures = max_failures
        self.window = window
        self.max_clients = max_clients
        self._failures: dict[str, deque[datetime]] = {}

    def _recent(self, client: str, now: datetime) -> deque[datetime] | None:
        failures = self._failures.get(client)
        if failures is None:
            return None
        while failures and now - failures[0] >= self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        return failures

    def retry_after(self, client: str) -> int | None:
        """Seconds until ``client`` may try again, or ``None`` when it may try now."""
        if client not in self._failures:  # every request asks: spare it the clock
            return None
        now = self.clock()
        failures = self._recent(client, now)
        if failures is None or len(failures) < self.max_failures:
            return None
        oldest = failures[-self.max_failures]
        return max(1, math.ceil((oldest + self.window - now).total_seconds()))

    def failed(self, client: str) -> None:
        now = self.clock()
        failures = self._recent(client, now)
        if failures is None:
            if len(self._failures) >= self.max_clients:
                self._evict(now)
            failures = self._failures[client] = deque(maxlen=self.max_failures)
        failures.append(now)

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)

    def _evict(self, now: datetime) -> None:
        for client in list(self._failures):
            self._recent(client, now)
        while len(self._failures) >= self.max_clients:
            del self._failures[next(iter(self._failures))]

    def __len__(self) -> int:
        return len(self._failures)
