"""Serve ASGI apps with a real uvicorn on loopback, in background threads.

The socket is bound before uvicorn starts (port 0: the kernel picks a free port), so there
is no window in which another process can take the port, and the URL is known at once.
Usable from sync fixtures and from async tests alike: the server runs its own event loop.

Every HTTP scope served here carries the :data:`CLOSE_CONNECTION` extension, the one thing
the simulators need from the server beyond ASGI itself. It is built from public hooks only:
uvicorn's ``http`` option (a protocol class), asyncio's ``Protocol.connection_made`` /
``connection_lost`` (which hand over each connection's transport) and the ``server`` and
``client`` addresses of the ASGI scope, which together name one open connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from cronkeeper.errors import CronkeeperError

__all__ = ["CLOSE_CONNECTION", "SandboxServerError", "serve_app", "serve_apps"]

_HOST = "127.0.0.1"

CLOSE_CONNECTION = "cronkeeper.close_connection"
"""The ASGI scope extension ``serve_apps`` offers: ``scope["extensions"][CLOSE_CONNECTION]
["close"]()`` closes the request's connection at once, with nothing more sent.

ASGI has no message for "hang up without answering" (an app that returns or raises before
answering gets a 500 from the server), yet that is exactly what ``Fault.drop`` must do. The
ASGI spec provides for server-specific extensions, each a named dict in the ``extensions``
part of the scope (django/asgiref ``docs/extensions.rst``, e.g. ``http.response.push``).
"""

_Address = tuple[str, int]
_open: dict[tuple[_Address, _Address], asyncio.BaseTransport] = {}
_open_lock = threading.Lock()  # several servers, each in its own thread, share the table


def _address(value: object) -> _Address | None:
    if isinstance(value, list | tuple) and len(value) >= 2:
        return str(value[0]), int(value[1])
    return None


def _connection_key(local: object, peer: object) -> tuple[_Address, _Address] | None:
    local_address, peer_address = _address(local), _address(peer)
    if local_address is None or peer_address is None:
        return None
    return local_address, peer_address


class _TrackedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, noting each connection's transport by its two addresses.

    Pinned to h11, uvicorn's pure-Python implementation (what ``http="auto"`` picks when
    httptools is not installed, as here), so the sandbox behaves alike on every machine.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # a TCP connection, as h11 expects
        self._sandbox_key = _connection_key(
            transport.get_extra_info("sockname"), transport.get_extra_info("peername")
        )
        if self._sandbox_key is not None:
            with _open_lock:
                _open[self._sandbox_key] = transport
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._sandbox_key is not None:
            with _open_lock:
                _open.pop(self._sandbox_key, None)
        super().connection_lost(exc)


class _OfferClose:
    """Adds :data:`CLOSE_CONNECTION` to every HTTP scope whose connection is tracked."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            key = _connection_key(scope.get("server"), scope.get("client"))
            with _open_lock:
                transport = _open.get(key) if key is not None else None
            if transport is not None:
                extensions = dict(scope.get("extensions") or {})
                extensions[CLOSE_CONNECTION] = {"close": transport.close}
                scope = {**scope, "extensions": extensions}
        await self.app(scope, receive, send)


class SandboxServerError(CronkeeperError):
    """A sandbox server did not start (or stop) within its time limit."""


@contextlib.contextmanager
def serve_apps(
    *apps: ASGIApp, start_timeout: float = 10.0, stop_timeout: float = 5.0
) -> Iterator[list[str]]:
    """Serve every app on its own free loopback port; yield their base URLs in order.

    On exit all servers are asked to stop together; in-flight requests get up to one second,
    and a server still running after ``stop_timeout`` is forced down.
    """
    running: list[tuple[uvicorn.Server, threading.Thread, socket.socket]] = []
    try:
        for app in apps:
            # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say
            # they are TCP; without it every keep-alive answer waits ~40 ms for a delayed ACK.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((_HOST, 0))
            config = uvicorn.Config(
                _OfferClose(app),
                host=_HOST,
                port=sock.getsockname()[1],
                http=_TrackedH11Protocol,
                # The scope's client address must stay the socket's peer: it finds the
                # connection to close (X-Forwarded-For would rewrite it).
                proxy_headers=False,
                log_level="warning",
                log_config=None,
                access_log=False,
                lifespan="off",
                interface="asgi3",
                timeout_graceful_shutdown=1,
                timeout_keep_alive=5,
            )
            server = uvicorn.Server(config)
            thread = threading.Thread(
                target=server.run, kwargs={"sockets": [sock]}, name="sandbox-uvicorn", daemon=True
            )
            thread.start()
            running.append((server, thread, sock))
        deadline = time.monotonic() + start_timeout
        for server, thread, _ in running:
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    raise SandboxServerError("a sandbox server did not start in time")
                time.sleep(0.005)
        yield [f"http://{_HOST}:{sock.getsockname()[1]}" for _, _, sock in running]
    finally:
        for server, _, _ in running:
            server.should_exit = True
        deadline = time.monotonic() + stop_timeout
        for server, thread, sock in running:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                server.force_exit = True
                thread.join(1.0)
            sock.close()


@contextlib.contextmanager
def serve_app(app: ASGIApp, *, start_timeout: float = 10.0) -> Iterator[str]:
    """Serve ``app`` on ``127.0.0.1`` at a free port; yield ``http://127.0.0.1:PORT``."""
    with serve_apps(app, start_timeout=start_timeout) as urls:
        yield urls[0]
