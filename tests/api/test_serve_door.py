"""``serve``'s door (issue 19): a connection that never finishes its headers is closed.

A real uvicorn on 127.0.0.1 with the settings ``cronkeeper serve`` uses
(:func:`cronkeeper.serving.uvicorn_limits`), a header deadline shortened for the test.
Assertions are on what the socket sees (closed, answered), not on how long anything took.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from cronkeeper.serving import KEEP_ALIVE_TIMEOUT, MAX_CONNECTIONS, uvicorn_limits
from tests.support.waiting import eventually_sync

HEADER_TIMEOUT = 0.3
WAIT = 15.0
"""How long a socket read may block before the test gives up (a broken test must not hang)."""


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":  # handling outlasts the header deadline: must not be cut
        await asyncio.sleep(HEADER_TIMEOUT * 3)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="off", log_level="warning", **uvicorn_limits(HEADER_TIMEOUT)
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    eventually_sync(lambda: running.started, what="uvicorn started", within=WAIT, poll=0.01)
    yield "127.0.0.1", port
    running.should_exit = True
    thread.join(WAIT)
    sock.close()


def connect(address: tuple[str, int]) -> socket.socket:
    conn = socket.create_connection(address, timeout=WAIT)
    conn.settimeout(WAIT)
    return conn


def read_all(conn: socket.socket) -> bytes:
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    return data


def test_serve_uses_the_documented_limits() -> None:
    limits = uvicorn_limits()
    assert limits["timeout_keep_alive"] == KEEP_ALIVE_TIMEOUT == 5
    assert limits["limit_concurrency"] == MAX_CONNECTIONS == 256
    assert limits["http"].header_timeout == 10.0


def test_a_connection_that_sends_nothing_is_closed(server: tuple[str, int]) -> None:
    with connect(server) as conn:
        assert read_all(conn) == b""  # closed by the server, nothing answered


def test_a_connection_trickling_its_headers_is_closed(server: tuple[str, int]) -> None:
    with connect(server) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # the blank line never comes
        assert read_all(conn) == b""


def test_a_whole_request_is_answered_even_when_handling_outlasts_the_deadline(
    server: tuple[str, int],
) -> None:
    with connect(server) as conn:
        conn.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = read_all(conn)
    assert answer.startswith(b"HTTP/1.1 200 OK") and b"\r\nok\r\n" in answer


def test_a_kept_alive_connection_gets_a_new_deadline_after_each_answer(
    server: tuple[str, int],
) -> None:
    with connect(server) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b"0\r\n\r\n"):  # the whole chunked answer
            chunk = conn.recv(65536)
            assert chunk, "closed before the first answer"
            first += chunk
        conn.sendall(b"GET / HTTP/1.1\r\n")  # the next request's head stalls
        rest = read_all(conn)
    assert first.startswith(b"HTTP/1.1 200 OK")
    assert rest == b""
