"""Bearer authentication: ``Authorization: Bearer <CRON_SECRET>``, compared in constant time."""

from __future__ import annotations

import hmac

from pydantic import SecretStr

__all__ = ["bearer_token", "is_authorized"]


def bearer_token(header: str | None) -> str | None:
    """The token of a ``Bearer`` authorization header, or ``None`` for any other shape."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


def is_authorized(header: str | None, secret: SecretStr | None) -> bool:
    """Never authorises against an unset or empty secret; compares bytes in constant time."""
    if secret is None:
        return False
    expected = secret.get_secret_value()
    token = bearer_token(header)
    if not expected or token is None:
        return False
    return hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8"))
