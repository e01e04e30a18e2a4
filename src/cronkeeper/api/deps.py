"""FastAPI dependencies: the service and the bearer check, as ``Annotated`` aliases."""

from __future__ import annotations

import logging
from typing import Annotated, Any

# Dependencies are ``async def``: FastAPI runs plain ``def`` ones in a worker thread, a thread
# hop per request for what is an attribute lookup and a constant-time compare.
from fastapi import Depends, HTTPException, Request, status
from starlette.datastructures import State

from cronkeeper.api.auth import FailureLimiter, is_authorized
from cronkeeper.clock import Clock
from cronkeeper.service import Service

__all__ = [
    "AUTH_RESPONSES",
    "Authorized",
    "ServiceDep",
    "client_address",
    "get_service",
    "limiter_for",
    "require_bearer",
    "too_many_failures",
]

log = logging.getLogger("cronkeeper.api")

# The OpenAPI ``responses`` of every bearer-protected route.
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid bearer token"},
    429: {"description": "too many wrong secrets from this client (see Retry-After)"},
}


async def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


def limiter_for(state: State, clock: Clock) -> FailureLimiter:
    """The app's one failure limiter (``app.state``; made on first use), for every door."""
    limiter: FailureLimiter | None = getattr(state, "auth_limiter", None)
    if limiter is None:
        limiter = state.auth_limiter = FailureLimiter(clock)
    return limiter


def client_address(request: Request) -> str:
    """The client as the limiter counts it: the peer address, or the forwarded one only when
    ``serve --forwarded-allow-ips`` trusts the peer (uvicorn rewrites ``request.client``)."""
    return request.client.host if request.client else "unknown"


def too_many_failures(wait: int) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        detail="too many wrong secrets from this client; try again later",
        headers={"Retry-After": str(wait)},
    )


async def require_bearer(request: Request) -> None:
    """401 for a missing or wrong bearer; 429 (before any compare) for a client that has
    sent too many wrong ones. A wrong credential is counted and logged, never its value; a
    request with no ``Authorization`` header at all guessed nothing and is not counted."""
    # Reads the service itself rather than through ServiceDep: each sub-dependency costs
    # FastAPI's resolver measurable time on the health hot path.
    service = await get_service(request)
    limiter = limiter_for(request.app.state, service.clock)
    client = client_address(request)
    wait = limiter.retry_after(client)
    if wait is not None:
        raise too_many_failures(wait)
    header = request.headers.get("authorization")
    if is_authorized(header, service.settings.cron_secret):
        return
    if header:
        limiter.failed(client)
        log.warning("wrong bearer token from %s for %s", client, request.url.path)
    raise HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="missing or invalid bearer token",
        headers={"WWW-Authenticate": "Bearer"},
    )


Authorized = Depends(require_bearer)
