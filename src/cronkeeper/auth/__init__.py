"""Who may come in: one room for every door that checks ``CRON_SECRET``.

- :mod:`.secret`: the bearer header and the constant-time comparison;
- :mod:`.limiter`: the app's one limiter of wrong secrets, per client, for all doors;
- :mod:`.bearer`: the FastAPI dependency of the API, ``/metrics`` and ``/openapi.json``;
- :mod:`.sessions`: the status page's signed session cookie.

Below ``api/``, ``web/`` and ``metrics``, which all use it; it imports none of them.
"""

from __future__ import annotations

from cronkeeper.auth.bearer import AUTH_RESPONSES, Authorized, require_bearer, too_many_failures
from cronkeeper.auth.limiter import FailureLimiter, client_address, limiter_for
from cronkeeper.auth.secret import bearer_token, is_authorized, secret_matches
from cronkeeper.auth.sessions import (
    SESSION_COOKIE,
    SESSION_MAX_AGE,
    Sessions,
    safe_next,
    session_key,
)

__all__ = [
    "AUTH_RESPONSES",
    "SESSION_COOKIE",
    "SESSION_MAX_AGE",
    "Authorized",
    "FailureLimiter",
    "Sessions",
    "bearer_token",
    "client_address",
    "is_authorized",
    "limiter_for",
    "require_bearer",
    "safe_next",
    "secret_matches",
    "session_key",
    "too_many_failures",
]
