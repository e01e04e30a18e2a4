"""FastAPI dependencies: the service, and the bearer check, as ``Annotated`` aliases.

The bearer check itself lives in :mod:`cronkeeper.auth` (the status page and ``/metrics``
use it too, and must not import ``api``); it is named here for the API's routes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from cronkeeper.auth import (
    AUTH_RESPONSES,
    Authorized,
    client_address,
    limiter_for,
    require_bearer,
    too_many_failures,
)
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


# ``async def``: FastAPI runs plain ``def`` dependencies in a worker thread, a thread hop per
# request for an attribute lookup.
async def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]
