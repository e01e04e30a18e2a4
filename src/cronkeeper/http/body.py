"""Reading an answer's body with a cap on its decoded size.

httpx reads a whole body into memory and inflates ``Content-Encoding: gzip`` in one go: a
510 KB gzip body of zeros became 500 MB in the serving process (issue 19), and a larger one
takes the API and the scheduler down with it. Here the body is read as a stream, inflated in
pieces of at most :data:`CHUNK` bytes (``zlib``'s ``max_length``, so one small compressed
chunk can never expand into a large buffer), and reading stops as soon as the decoded size
passes the cap (``CRONKEEPER_MAX_RESPONSE_BYTES``, default 64 MiB): the unit fails with
:class:`ResponseTooLarge`, and memory stays within the cap plus one piece.

The decodings are httpx's own (``gzip``, ``deflate``, in the order the header lists them;
an unknown coding is passed through as httpx does), so a body reads the same as before.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence

import httpx

from cronkeeper.errors import PermanentFetchError

__all__ = [
    "CHUNK",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "ResponseTooLarge",
    "decoded_pieces",
    "read_capped",
]

DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
CHUNK = 64 * 1024
"""The largest piece one inflate step may produce."""
_DROPPED = frozenset({"content-encoding", "content-length", "transfer-encoding"})


class ResponseTooLarge(PermanentFetchError):
    """An answer's decoded body passed ``CRONKEEPER_MAX_RESPONSE_BYTES``; not retried.

    ``decoded`` is how many bytes were inflated before reading stopped (at most the cap plus
    one :data:`CHUNK`)."""

    decoded: int = 0


class _Inflate:
    """One ``gzip`` or ``deflate`` layer, inflating at most :data:`CHUNK` bytes a step."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self._raw_deflate = False
        self._first = True
        self._obj = self._new()

    def _new(self) -> zlib._Decompress:
        if self.coding == "gzip":
            return zlib.decompressobj(zlib.MAX_WBITS | 16)
        # httpx's DeflateDecoder: zlib-wrapped deflate, or raw deflate when that fails at once.
        return zlib.decompressobj(-zlib.MAX_WBITS if self._raw_deflate else zlib.MAX_WBITS)

    def feed(self, data: bytes) -> Iterator[bytes]:
        while data:
            try:
                piece = self._obj.decompress(data, CHUNK)
            except zlib.error:
                if self.coding == "deflate" and self._first and not self._raw_deflate:
                    self._raw_deflate = True
                    self._obj = self._new()
                    continue
                raise
            self._first = False
            if piece:
                yield piece
            if self._obj.unconsumed_tail:
                data = self._obj.unconsumed_tail
            elif self._obj.eof and self._obj.unused_data:  # another gzip member follows
                data, self._obj = self._obj.unused_data, self._new()
            else:
                data = b""

    def flush(self) -> Iterator[bytes]:
        rest = self._obj.flush()
        for start in range(0, len(rest), CHUNK):
            yield rest[start : start + CHUNK]


def _layers(content_encoding: str) -> list[_Inflate]:
    """The decoding layers of a ``Content-Encoding`` header, outermost first."""
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    return [_Inflate(c) for c in reversed(codings) if c in ("gzip", "deflate")]


def _through(layers: Sequence[_Inflate], data: bytes) -> Iterator[bytes]:
    if not layers:
        yield data
        return
    for piece in layers[0].feed(data):
        yield from _through(layers[1:], piece)


def _flushed(layers: Sequence[_Inflate]) -> Iterator[bytes]:
    for i, layer in enumerate(layers):
        for piece in layer.flush():
            yield from _through(layers[i + 1 :], piece)


def decoded_pieces(content_encoding: str, raw: bytes, *, last: bool) -> Iterator[bytes]:
    """Decode one raw chunk in bounded pieces (pure; for tests: one shot, ``last=True``)."""
    layers = _layers(content_encoding)
    yield from _through(layers, raw)
    if last:
        yield from _flushed(layers)


async def read_capped(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    auth: httpx.Auth | tuple[str, str] | None,
    limit: int = DEFAULT_MAX_RESPONSE_BYTES,
    what: str = "",
) -> httpx.Response:
    """Send ``request`` and read its answer, decoded, up to ``limit`` bytes.

    Returns a response whose ``content`` is the decoded body (its ``Content-Encoding`` and
    ``Content-Length`` dropped, since they described the bytes on the wire). Raises
    :class:`ResponseTooLarge` past ``limit`` (``what`` names the call: method and redacted
    URL), ``httpx.DecodingError`` for a body that does not inflate, and what ``send`` raises.
    """
    response = await client.send(
        request, auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT, stream=True
    )
    try:
        if response.is_stream_consumed:  # an in-memory answer (httpx.MockTransport): read
            if len(response.content) > limit:
                raise _too_large(what, response, limit, len(response.content))
            return response
        layers = _layers(response.headers.get("content-encoding", ""))
        parts: list[bytes] = []
        size = 0
        try:
            async for raw in response.aiter_raw():
                for piece in _through(layers, raw):
                    size += len(piece)
                    if size > limit:
                        raise _too_large(what, response, limit, size)
                    parts.append(piece)
            for piece in _flushed(layers):
                size += len(piece)
                if size > limit:
                    raise _too_large(what, response, limit, size)
                parts.append(piece)
        except zlib.error as exc:
            raise httpx.DecodingError(
                f"could not decode the body: {exc}", request=request
            ) from None
    finally:
        await response.aclose()
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _DROPPED]
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=b"".join(parts),
        request=request,
        extensions=response.extensions,
    )


def _too_large(what: str, response: httpx.Response, limit: int, decoded: int) -> ResponseTooLarge:
    encoding = response.headers.get("content-encoding")
    sent = f", sent with Content-Encoding {encoding}" if encoding else ""
    error = ResponseTooLarge(
        f"{what + ': ' if what else ''}the answer (HTTP {response.status_code}{sent}) is larger"
        f" than {_size(limit)} once decoded (CRONKEEPER_MAX_RESPONSE_BYTES); stopped reading"
        " it. Not retried: this unit is skipped; raise the limit only if the API really"
        " answers that much",
        url=what.partition(" ")[2],
        status=response.status_code,
        detail="answer too large",
    )
    error.decoded = decoded
    return error


def _size(n: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} bytes"
