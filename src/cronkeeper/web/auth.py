"""Who may see the status page: a signed session cookie, issued for the ``CRON_SECRET``.

- The cookie is an itsdangerous timestamp signature keyed by HMAC-SHA256(secret, purpose):
  rotating ``CRON_SECRET`` (and restarting) logs everybody out, and the secret itself never
  leaves the server, not even hashed.
- Sessions are stateless: logging out deletes the cookie in that browser; a copied cookie
  stays valid until it expires (12 h). Rotate the secret to end every session at once.
- Wrong secrets are limited per client (:class:`FailureLimiter`), a sliding window in
  memory: a brute force gets a handful of guesses per window, not thousands per second.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import deque
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from itsdangerous import BadSignature, TimestampSigner
from pydantic import SecretStr

from cronkeeper.api.auth import secret_matches
from cronkeeper.clock import Clock

__all__ = [
    "SESSION_COOKIE",
    "SESSION_MAX_AGE",
    "FailureLimiter",
    "Sessions",
    "safe_next",
    "secret_matches",
    "session_key",
]

SESSION_COOKIE = "cronkeeper_status"
SESSION_MAX_AGE = 12 * 3600
_PURPOSE = b"cronkeeper-status-session"
_SUBJECT = b"status"


def session_key(secret: str) -> bytes:
    """The signing key: HMAC-SHA256 of a fixed purpose under the secret."""
    return hmac.new(secret.encode("utf-8"), _PURPOSE, hashlib.sha256).digest()


class _ClockedSigner(TimestampSigner):
    """A timestamp signer that reads the injected clock, so tests can expire a cookie."""

    def __init__(self, key: bytes, clock: Clock) -> None:
        super().__init__(key, salt="cronkeeper.web.session", digest_method=hashlib.sha256)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock().timestamp())


class Sessions:
    """Issues and checks session tokens; with no secret, issues none and accepts none."""

    def __init__(
        self, secret: SecretStr | None, clock: Clock, *, max_age: int = SESSION_MAX_AGE
    ) -> None:
        value = secret.get_secret_value() if secret is not None else ""
        self._signer = _ClockedSigner(session_key(value), clock) if value else None
        self.max_age = max_age

    @property
    def enabled(self) -> bool:
        return self._signer is not None

    def issue(self) -> str:
        if self._signer is None:
            raise RuntimeError("no CRON_SECRET: sessions are disabled")
        return self._signer.sign(_SUBJECT).decode("ascii")

    def valid(self, token: str | None) -> bool:
        """Signed with this secret's key, not older than ``max_age``, not from the future."""
        if self._signer is None or not token:
            return False
        try:
            return self._signer.unsign(token, max_age=self.max_age) == _SUBJECT
        except (BadSignature, UnicodeError, ValueError):
            return False


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


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on the status page, never another site."""
    default = "/status"
    if not target or any(ord(ch) < 32 for ch in target) or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/status"):
        return default
    if parts.path not in ("/status", "/status/") and not parts.path.startswith("/status/"):
        return default
    return target
