"""Bearer authentication: ``Authorization: Bearer <CRON_SECRET>``, compared in constant time.

Every door that checks ``CRON_SECRET`` (the bearer API, ``/metrics``, ``/openapi.json``, the
status page's login) counts wrong secrets in one :class:`FailureLimiter` per app, so a
guesser cannot spread its attempts over several doors.
"""

from __future__ import annotations

import hmac
import math
from collections import deque
from datetime import datetime, timedelta

from pydantic import SecretStr

from cronkeeper.clock import Clock

__all__ = ["FailureLimiter", "bearer_token", "is_authorized", "secret_matches"]


def bearer_token(header: str | None) -> str | None:
    """The token of a ``Bearer`` authorization header, or ``None`` for any other shape."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


def secret_matches(candidate: str | None, secret: SecretStr | None) -> bool:
    """Never matches an unset or empty secret; compares bytes in constant time."""
    if secret is None or not candidate:
        return False
    expected = secret.get_secret_value()
    if not expected:
        return False
    return hmac.compare_digest(candidate.encode("utf-8"), expected.encode("utf-8"))


def is_authorized(header: str | None, secret: SecretStr | None) -> bool:
    """Whether ``header`` is ``Bearer <secret>``."""
    return secret_matches(bearer_token(header), secret)


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
