"""The login door (issue 19): the limiter and a small body cap come before any parsing.

Before, ``/status/login`` read and parsed a 200 MB multipart body before the limiter looked at
the client. The bodies here are generators that count what the app pulled from them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from cronkeeper.web.routes import LOGIN_FORM_LIMIT
from tests.conftest import SECRET

WRONG = "not-the-secret-at-all"


class Counted:
    """A request body of ``size`` bytes, sent in 64 KiB chunks; ``sent`` counts what was read."""

    def __init__(self, size: int) -> None:
        self.size, self.sent = size, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunk = b"secret=" + b"x" * (64 * 1024 - 7)
        while self.sent < self.size:
            self.sent += len(chunk)
            yield chunk


async def test_a_large_body_is_refused_after_reading_little_of_it(
    client: httpx.AsyncClient,
) -> None:
    body = Counted(200 * 1024 * 1024)
    headers = {"content-type": "application/x-www-form-urlencoded"}
    response = await client.post("/status/login", content=body, headers=headers)

    assert response.status_code == 413
    assert body.sent <= LOGIN_FORM_LIMIT + 64 * 1024
    assert "set-cookie" not in response.headers


async def test_a_declared_large_body_is_refused_before_reading(client: httpx.AsyncClient) -> None:
    headers = {"content-type": "application/x-www-form-urlencoded", "content-length": "209715200"}
    body = Counted(1024)
    response = await client.post("/status/login", content=body, headers=headers)
    assert response.status_code == 413


async def test_a_multipart_form_is_refused_unparsed(client: httpx.AsyncClient) -> None:
    response = await client.post("/status/login", files={"secret": ("s", b"x" * 1024)})
    assert response.status_code == 415


async def test_a_limited_client_is_refused_before_its_body_is_read(
    client: httpx.AsyncClient,
) -> None:
    for _ in range(20):
        response = await client.post("/status/login", data={"secret": WRONG})
        if response.status_code == 429:
            break
    assert response.status_code == 429
    body = Counted(200 * 1024 * 1024)
    headers = {"content-type": "multipart/form-data; boundary=x"}
    refused = await client.post("/status/login", content=body, headers=headers)

    assert refused.status_code == 429
    assert body.sent <= 64 * 1024  # at most what the transport pushed before the answer
    assert refused.headers["retry-after"]


async def test_the_url_encoded_login_still_signs_in(client: httpx.AsyncClient) -> None:
    response = await client.post("/status/login", data={"secret": SECRET, "next": "/status"})
    assert response.status_code == 303
    assert "set-cookie" in response.headers
