"""The secret itself: ``Authorization: Bearer <CRON_SECRET>``, compared in constant time.

Every door that checks ``CRON_SECRET`` (the bearer API, ``/metrics``, ``/openapi.json``, the
status page's login) compares it here, and nowhere else.
"""

from __future__ import annotations

import hmac

from pydantic import SecretStr

__all__ = ["bearer_token", "is_authorized", "secret_matches"]


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
