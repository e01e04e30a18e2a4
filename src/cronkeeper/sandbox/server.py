"""Serve ASGI apps with a real uvicorn on loopback, in background threads.

The socket is bound before uvicorn starts (port 0: the kernel picks a free port), so there
is no window in which another process can take the port, and the URL is known at once.
Usable from sync fixtures and from async tests alike: the server runs its own event loop.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from cronkeeper.errors import CronkeeperError

__all__ = ["SandboxServerError", "serve_app", "serve_apps"]

_HOST = "127.0.0.1"


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
                app,
                host=_HOST,
                port=sock.getsockname()[1],
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
