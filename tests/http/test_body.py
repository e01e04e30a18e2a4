"""Answers are read with a cap on their decoded size (issue 19: a 510 KB gzip body inflated to
500 MB in the serving process)."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator

import httpx
import pytest
from tests.faults.hostile import Reply, StandIn

from cronkeeper.errors import PermanentFetchError
from cronkeeper.http import RetryPolicy, fetch_with_retry
from cronkeeper.http.body import CHUNK, ResponseTooLarge, decoded_pieces, read_capped
from cronkeeper.sandbox import serve_app

BOMB_SIZE = 500 * 1024 * 1024
"""Decoded size of the bomb: the issue's 500 MB of zeros."""
CAP = 8 * 1024 * 1024


def gzip_bomb(size: int = BOMB_SIZE) -> bytes:
    """``size`` zero bytes gzipped, made a megabyte at a time (about 500 KB for 500 MB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(1024 * 1024)
    parts = [packer.compress(block) for _ in range(size // len(block))]
    return b"".join([*parts, packer.flush()])


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip_bomb()


@pytest.fixture(scope="module")
def bomb_server(bomb: bytes) -> Iterator[str]:
    app = StandIn(lambda _: Reply(200, bomb, (("content-encoding", "gzip"),)))
    with serve_app(app) as base:
        yield base


def test_a_small_compressed_chunk_never_inflates_into_a_large_piece(bomb: bytes) -> None:
    assert len(bomb) < 1024 * 1024
    sizes = [
        len(p)
        for p, _ in zip(decoded_pieces("gzip", bomb[:65536], last=False), range(50), strict=False)
    ]
    assert sizes and max(sizes) <= CHUNK


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate", "gzip, gzip", "identity"])
def test_decoding_matches_what_httpx_would_read(coding: str) -> None:
    text = b"cronkeeper " * 50_000
    if coding == "gzip":
        raw = gzip.compress(text)
    elif coding == "deflate":
        raw = zlib.compress(text)
    elif coding == "raw-deflate":
        packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        raw, coding = packer.compress(text) + packer.flush(), "deflate"
    elif coding == "gzip, gzip":
        raw = gzip.compress(gzip.compress(text))
    else:
        raw = text
    assert b"".join(decoded_pieces(coding, raw, last=True)) == text
    assert httpx.Response(200, headers={"content-encoding": coding}, content=raw).content == text


async def test_a_gzip_bomb_stops_at_the_cap_and_is_not_retried(bomb_server: str) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(ResponseTooLarge) as info:
            await fetch_with_retry(
                client,
                "GET",
                f"{bomb_server}/v27.0/act_1/insights?access_token=secret-token-123456",
                policy=RetryPolicy(max_body=CAP, waits=(0.0,)),
            )
    error = info.value
    assert isinstance(error, PermanentFetchError)  # a retry would only inflate it again
    assert CAP < error.decoded <= CAP + CHUNK  # the cap, plus at most the piece that passed it
    assert error.attempts == 1
    message = str(error)
    assert message.startswith(f"GET {bomb_server}/v27.0/act_1/insights: the answer (HTTP 200,")
    assert "larger than 8 MiB once decoded (CRONKEEPER_MAX_RESPONSE_BYTES)" in message
    assert "secret-token-123456" not in message


async def test_an_answer_within_the_cap_reads_as_before() -> None:
    body = gzip.compress(b'{"data": []}')

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-encoding": "gzip"}, content=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        request = client.build_request("GET", "https://graph.test/x")
        response = await read_capped(client, request, auth=None, limit=1024)
    assert response.json() == {"data": []}


async def test_a_body_that_does_not_inflate_is_a_decoding_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-encoding": "gzip"}, content=b"not gzip")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        request = client.build_request("GET", "https://graph.test/x")
        with pytest.raises(httpx.DecodingError):
            await read_capped(client, request, auth=None, limit=1024)


async def test_a_gzip_answer_over_real_http_reads_whole_and_decoded() -> None:
    rows = b'{"data": [' + b",".join([b'{"spend": "1.00"}'] * 20_000) + b"]}"
    app = StandIn(lambda _: Reply(200, gzip.compress(rows), (("content-encoding", "gzip"),)))
    with serve_app(app) as base:
        async with httpx.AsyncClient() as client:
            response = await fetch_with_retry(client, "GET", f"{base}/x", policy=RetryPolicy())
    assert response.content == rows
    assert len(response.json()["data"]) == 20_000
