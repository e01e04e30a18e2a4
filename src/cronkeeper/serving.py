"""How ``cronkeeper serve`` runs uvicorn: the door's timeouts and its connection limit.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but it has no
deadline for a request's *headers*: a client that connects and sends nothing, or trickles a
header a byte at a time, keeps its connection (and its slot) for ever (issue 19). Here:

- **header-read timeout** (:data:`HEADER_TIMEOUT`, 10 s): from the moment a connection opens,
  or a response ends on a kept-alive one, the next request's headers must be complete within
  it, or the connection is closed (:class:`HeaderDeadlineH11`);
- **keep-alive timeout** (:data:`KEEP_ALIVE_TIMEOUT`, 5 s, uvicorn's ``timeout_keep_alive``);
- **connection limit** (:data:`MAX_CONNECTIONS`, 256, uvicorn's ``limit_concurrency``): past it
  uvicorn answers 503 at once instead of queueing;
- header size: h11 refuses headers above 16 KiB (its ``max_incomplete_event_size``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = [
    "HEADER_TIMEOUT",
    "KEEP_ALIVE_TIMEOUT",
    "MAX_CONNECTIONS",
    "HeaderDeadlineH11",
    "uvicorn_limits",
]

HEADER_TIMEOUT = 10.0
KEEP_ALIVE_TIMEOUT = 5
MAX_CONNECTIONS = 256


class HeaderDeadlineH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers."""

    header_timeout: float = HEADER_TIMEOUT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._expect_headers()

    def _expect_headers(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_late)

    def _stop_waiting(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        self._header_deadline = None
        # IDLE: h11 has not seen a whole request head since the connection (or the last
        # response) began. Anything else means a request is being handled: not ours to cut.
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._stop_waiting()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._expect_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)


def uvicorn_limits(header_timeout: float = HEADER_TIMEOUT) -> dict[str, Any]:
    """The keyword arguments ``serve`` gives ``uvicorn.run`` for the door."""
    protocol = type("HeaderDeadlineH11", (HeaderDeadlineH11,), {"header_timeout": header_timeout})
    return {
        "http": protocol,
        "timeout_keep_alive": KEEP_ALIVE_TIMEOUT,
        "limit_concurrency": MAX_CONNECTIONS,
    }
