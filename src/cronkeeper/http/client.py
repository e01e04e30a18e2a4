"""The one factory for outbound HTTP clients: the source APIs and the alert webhook.

Every client cronkeeper sends with is built here, so each gets the same four things:

- **the per-attempt timeout**, given to httpx as well (connect, read, write and pool, each).
  httpx applies its own default of 5 s to a client built without one ("the default behavior
  is to raise a TimeoutException after 5 seconds of network inactivity",
  https://www.python-httpx.org/advanced/timeouts/), which silently cut every attempt to 5 s
  whatever ``CRONKEEPER_HTTP_TIMEOUT`` said. :func:`~cronkeeper.http.fetch_with_retry` still
  bounds the whole attempt (headers and body) with one deadline of the same length;
- **connection limits**: a bounded pool, large enough that waiting for a pooled connection
  never eats into an attempt's timeout at the highest ``CRONKEEPER_CONCURRENCY`` (64);
- **who we are, and no redirects**: a ``User-Agent`` naming cronkeeper and its version, and
  ``follow_redirects=False``, since a redirect would carry a token to a host nobody chose;
- **redaction**: a request hook teaches the ``httpx`` logger's redacting filter the secrets
  of every request (query tokens, ``Authorization``) before httpx logs its URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from cronkeeper import __version__
from cronkeeper.http.logs import protect_httpx_log, request_redactor
from cronkeeper.redact import Redactor

if TYPE_CHECKING:
    from cronkeeper.config import Settings

__all__ = [
    "KEEPALIVE_CONNECTIONS",
    "MAX_CONNECTIONS",
    "USER_AGENT",
    "build_client",
    "client_from_settings",
]

USER_AGENT = f"cronkeeper/{__version__}"
MAX_CONNECTIONS = 64
"""The highest ``CRONKEEPER_CONCURRENCY``: a unit never queues for a connection."""
KEEPALIVE_CONNECTIONS = 16


def build_client(
    *,
    timeout: float,
    redactor: Redactor | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """A client whose every request is bounded by ``timeout`` seconds per operation.

    ``redactor`` adds known secrets (the configuration's) to what the log filter learns from
    each request; ``transport`` is for tests (``httpx.MockTransport``).
    """
    base = redactor or Redactor()

    async def teach_log_filter(request: httpx.Request) -> None:
        protect_httpx_log(request_redactor(base, request.url, request.headers).secrets)

    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(
            max_connections=MAX_CONNECTIONS, max_keepalive_connections=KEEPALIVE_CONNECTIONS
        ),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
        event_hooks={"request": [teach_log_filter]},
        transport=transport,
    )


def client_from_settings(settings: Settings) -> httpx.AsyncClient:
    """The client for the source APIs: ``CRONKEEPER_HTTP_TIMEOUT`` per attempt."""
    return build_client(timeout=settings.http_timeout, redactor=settings.redactor)
