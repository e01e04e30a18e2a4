"""FastAPI dependencies: the service and the bearer check, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

# Dependencies are ``async def``: FastAPI runs plain ``def`` ones in a worker thread, a thread
# hop per request for what is an attribute lookup and a constant-time compare.
from fastapi import Depends, HTTPException, Request, status

from cronkeeper.api.auth import is_authorized
from cronkeeper.service import Service

__all__ = ["Authorized", "ServiceDep", "get_service", "require_bearer"]


async def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


async def require_bearer(request: Request) -> None:
    # Reads the service itself rather than through ServiceDep: each sub-dependency costs
    # FastAPI's resolver measurable time on the health hot path.
    secret = (await get_service(request)).settings.cron_secret
    if not is_authorized(request.headers.get("authorization"), secret):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


Authorized = Depends(require_bearer)
