"""Who may see the status page: a signed session cookie, issued for the ``CRON_SECRET``.

- The cookie is an itsdangerous timestamp signature keyed by HMAC-SHA256(secret, purpose):
  rotating ``CRON_SECRET`` (and restarting) logs everybody out, and the secret itself never
  leaves the server, not even hashed.
- Sessions are stateless: logging out deletes the cookie in that browser; a copied cookie
  stays valid until it expires (12 h). Rotate the secret to end every session at once.
- Wrong secrets are limited per client by the app's one
  :class:`~cronkeeper.auth.limiter.FailureLimiter`, shared with the bearer API: a brute force
  gets a handful of guesses per window at all doors together, not thousands per second.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from itsdangerous import BadSignature, TimestampSigner
from pydantic import SecretStr

from cronkeeper.clock import Clock

__all__ = ["SESSION_COOKIE", "SESSION_MAX_AGE", "Sessions", "safe_next", "session_key"]

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
