"""The bearer check as a FastAPI dependency, for every door that is not the status page.

It reads the secret and the clock from the app's service (``app.state.service``) through a
protocol rather than the ``Service`` class: authentication sits below both ``api/`` and
``metrics`` (``/metrics`` uses it), and imports neither.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

# Dependencies are ``async def``: FastAPI runs plain ``def`` ones in a worker thread, a thread
# hop per request for what is an attribute lookup and a constant-time compare.
from fastapi import Depends, HTTPException, Request, status
from pydantic import SecretStr

from cronkeeper.auth.limiter import client_address, limiter_for
from cronkeeper.auth.secret import is_authorized
from cronkeeper.clock import Clock

__all__ = ["AUTH_RESPONSES", "Authorized", "check_bearer", "require_bearer", "too_many_failures"]

T = TypeVar("T")

log = logging.getLogger("cronkeeper.api")

# The OpenAPI ``responses`` of every bearer-protected route.
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid bearer token"},
    429: {"description": "too many wrong secrets from this client (see Retry-After)"},
}


class _Secret(Protocol):
    cron_secret: SecretStr | None


class _Guarded(Protocol):
    """What the check needs of the app's service: its secret and its clock."""

    @property
    def settings(self) -> _Secret: ...

    @property
    def clock(self) -> Clock: ...


def too_many_failures(wait: int) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        detail="too many wrong secrets from this client; try again later",
        headers={"Retry-After": str(wait)},
    )


def check_bearer(
    request: Request,
    accept: Callable[[str | None], T | None],
    *,
    wrong: str = "wrong bearer token",
) -> T:
    """The one door: 429 (before any compare) for a client that has sent too many wrong
    credentials; ``accept(header)`` says who the caller is (``None``: nobody); otherwise 401.
    A wrong credential is counted and logged (as ``wrong``), never its value; a request with
    no ``Authorization`` header at all guessed nothing and is not counted."""
    # Reads app.state itself rather than through a sub-dependency: each one costs FastAPI's
    # resolver measurable time on the health hot path.
    service: _Guarded = request.app.state.service
    limiter = limiter_for(request.app.state, service.clock)
    client = client_address(request)
    wait = limiter.retry_after(client)
    if wait is not None:
        raise too_many_failures(wait)
    header = request.headers.get("authorization")
    caller = accept(header)
    if caller is not None:
        return caller
    if header:
        limiter.failed(client)
        log.warning("%s from %s for %s", wrong, client, request.url.path)
    raise HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="missing or invalid bearer token",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def require_bearer(request: Request) -> None:
    """401 for a missing or wrong ``CRON_SECRET`` bearer, 429 when limited (see
    :func:`check_bearer`)."""
    secret = request.app.state.service.settings.cron_secret
    check_bearer(request, lambda header: True if is_authorized(header, secret) else None)


Authorized = Depends(require_bearer)
