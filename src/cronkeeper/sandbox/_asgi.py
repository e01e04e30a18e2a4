"""The machinery every simulator shares: request parsing, fault rendering, the ASGI entry.

Written against raw ASGI (no framework) because two faults need control a framework hides:
waiting for the client's disconnect during a hang, and closing the connection with no
response at all.
"""

from __future__ import annotations

import abc
import asyncio
import email.utils
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cronkeeper.sandbox.faults import Fault, FaultMix, FaultPlan, MalformedMode, stable_fraction
from cronkeeper.sandbox.log import RequestLog, RequestRecord

__all__ = ["ConnectionDropped", "Reply", "SimRequest", "Simulator", "json_reply"]

JSON_TYPE = "application/json; charset=utf-8"


class ConnectionDropped(Exception):
    """Raised inside the app to drop a connection when the server offers no transport to close."""


@dataclass(frozen=True)
class SimRequest:
    """The parts of an HTTP request the simulators look at."""

    method: str
    path: str
    query: dict[str, str]
    query_items: tuple[tuple[str, str], ...]
    headers: dict[str, str]
    body: bytes
    base_url: str

    @classmethod
    def from_scope(cls, scope: Scope, body: bytes) -> SimRequest:
        raw_headers: Sequence[tuple[bytes, bytes]] = scope.get("headers", [])
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw_headers}
        items = tuple(
            parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        )
        scheme = scope.get("scheme", "http")
        host = headers.get("host")
        if host is None:
            server = scope.get("server") or ("127.0.0.1", 80)
            host = f"{server[0]}:{server[1]}"
        return cls(
            method=scope["method"],
            path=scope["path"],
            query=dict(items),
            query_items=items,
            headers=headers,
            body=body,
            base_url=f"{scheme}://{host}",
        )

    def json_body(self) -> Any:
        """The body parsed as JSON; ``{}`` when empty. Raises ``ValueError`` when invalid."""
        if not self.body.strip():
            return {}
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    """A complete HTTP answer. ``retry_after_in`` asks for an HTTP-date ``Retry-After`` of
    *send time* + that many seconds (computed when the answer leaves, after any latency)."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str | None = JSON_TYPE
    retry_after_in: float | None = None

    def with_headers(self, *headers: tuple[str, str]) -> Reply:
        return Reply(
            self.status, self.body, self.headers + headers, self.content_type, self.retry_after_in
        )


def json_reply(status: int, payload: object, headers: Sequence[tuple[str, str]] = ()) -> Reply:
    return Reply(status, json.dumps(payload, separators=(",", ":")).encode(), tuple(headers))


def http_date(unix_seconds: float) -> str:
    """An IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``), rounded up to the whole second."""
    return email.utils.formatdate(math.ceil(unix_seconds), usegmt=True)


def fake_trace_id(*parts: object) -> str:
    """A Meta-looking ``fbtrace_id``: stable for the same inputs, opaque to clients."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    out = []
    for i in range(11):
        out.append(alphabet[int(stable_fraction("trace", i, *parts) * len(alphabet))])
    return "A" + "".join(out)


def meta_error_reply(fault: Fault, object_id: str | None, request_number: int) -> Reply:
    """A Graph API error envelope, with ``X-Business-Use-Case-Usage`` when asked."""
    error: dict[str, object] = {
        "message": fault.meta_message,
        "type": "OAuthException",
        "code": fault.meta_code,
    }
    if fault.meta_subcode is not None:
        error["error_subcode"] = fault.meta_subcode
    if fault.is_transient:
        error["is_transient"] = True
    if fault.meta_code == 190:
        error["error_user_title"] = "Session expired"
    error["fbtrace_id"] = fake_trace_id(object_id, request_number, fault.meta_code)
    headers: list[tuple[str, str]] = []
    if fault.regain_minutes is not None:
        headers.append(
            ("X-Business-Use-Case-Usage", buc_header(object_id or "0", fault.regain_minutes, 100))
        )
    return json_reply(fault.http_status, {"error": error}, headers)


def buc_header(object_id: str, regain_minutes: int, usage_percent: int) -> str:
    """The ``X-Business-Use-Case-Usage`` value Meta sends for ads insights calls."""
    usage = {
        object_id: [
            {
                "type": "ads_insights",
                "call_count": usage_percent,
                "total_cputime": usage_percent,
                "total_time": usage_percent,
                "estimated_time_to_regain_access": regain_minutes,
                "ads_api_access_tier": "standard_access",
            }
        ]
    }
    return json.dumps(usage, separators=(",", ":"))


_MALFORMED: dict[MalformedMode, tuple[bytes, str]] = {
    "shape": (b'{"data": "oops"}', JSON_TYPE),
    "json": (b'{"data": [{"account_id": "12', JSON_TYPE),
    "html": (
        b"<html><head><title>502 Bad Gateway</title></head>"
        b"<body><h1>Bad Gateway</h1></body></html>",
        "text/html; charset=utf-8",
    ),
    "empty": (b"", JSON_TYPE),
}


class Simulator(abc.ABC):
    """Base of the three simulators: config + fault plan + request log, served as ASGI.

    Subclasses say which unit key a request belongs to (:meth:`route_key`), how a healthy
    answer looks (:meth:`handle`) and how their API words a plain error status
    (:meth:`status_reply`). The fault plan is consulted only for requests that have a key.
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        scripts: Mapping[str | int, Sequence[Fault | None]] | None = None,
        always: Mapping[str | int, Fault] | None = None,
        mix: FaultMix | None = None,
    ) -> None:
        if latency < 0:
            raise ValueError("latency must be >= 0")
        self.latency = latency
        self.log = RequestLog()
        self.faults = FaultPlan(mix=mix)
        self._requests = 0
        for key, faults in (scripts or {}).items():
            self.script(key, *faults)
        for key, fault in (always or {}).items():
            self.always(key, fault)

    # -- configuration ------------------------------------------------------------------------

    @property
    def app(self) -> ASGIApp:
        """The ASGI application (serve it with :func:`cronkeeper.sandbox.serve_app`)."""
        return self

    def normalize_key(self, key: str | int) -> str:
        """The canonical form of a unit key (Meta strips ``act_``)."""
        return str(key)

    def script(self, key: str | int, *faults: Fault | None) -> None:
        """Serve ``faults`` to the next requests of ``key``, one each (``None``: answer well)."""
        self.faults.add_script(self.normalize_key(key), faults)

    def always(self, key: str | int, fault: Fault | None) -> None:
        """Serve ``fault`` to every request of ``key`` (after its script); ``None`` removes it."""
        self.faults.set_always(self.normalize_key(key), fault)

    def set_mix(self, mix: FaultMix | None) -> None:
        """Replace the seeded random fault mix (``None``: no random faults)."""
        self.faults.set_mix(mix)

    def records_for(self, key: str | int) -> list[RequestRecord]:
        return self.log.records_for(self.normalize_key(key))

    def attempt_gaps(self, key: str | int) -> list[float]:
        return self.log.attempt_gaps(self.normalize_key(key))

    # -- what subclasses provide --------------------------------------------------------------

    @abc.abstractmethod
    def route_key(self, request: SimRequest) -> str | None:
        """The unit key of a request, ``None`` when it addresses no unit (wrong path ...)."""

    @abc.abstractmethod
    def handle(self, request: SimRequest, key: str | None) -> Reply:
        """The healthy answer (which may still be an auth or validation error)."""

    @abc.abstractmethod
    def status_reply(self, status: int) -> Reply:
        """A plain error ``status`` in this API's error shape."""

    # -- the ASGI entry -----------------------------------------------------------------------

    def _fault_reply(self, fault: Fault, request: SimRequest, key: str | None) -> Reply | None:
        if fault.kind == "status":
            reply = self.status_reply(fault.http_status)
            if fault.retry_after is not None:
                reply = reply.with_headers(("Retry-After", fault.retry_after))
            return reply
        if fault.kind == "retry_after_date":
            base = self.status_reply(fault.http_status)
            return Reply(
                base.status, base.body, base.headers, base.content_type, fault.retry_after_seconds
            )
        if fault.kind == "meta_error":
            return meta_error_reply(fault, key, self._requests)
        if fault.kind == "malformed":
            body, content_type = _MALFORMED[fault.malformed_mode]
            return Reply(200, body, content_type=content_type)
        if fault.kind == "drop":
            return None
        return self.handle(request, key)  # hang: a normal answer, late

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        at = time.monotonic()
        wall = datetime.now(UTC)
        self.log.enter()
        counted = True
        try:
            body = await _read_body(receive)
            if body is None:
                return
            request = SimRequest.from_scope(scope, body)
            key = self.route_key(request)
            self._requests += 1
            fault = self.faults.next_fault(key) if key is not None else None
            reply = (
                self._fault_reply(fault, request, key)
                if fault is not None
                else self.handle(request, key)
            )
            self.log.append(
                RequestRecord(
                    at=at,
                    wall=wall,
                    method=request.method,
                    path=request.path,
                    query=request.query,
                    key=key,
                    status=reply.status if reply is not None else 0,
                    fault=fault.describe() if fault is not None else None,
                    headers=request.headers,
                    body=request.body,
                )
            )
            delay = self.latency + (fault.seconds if fault is not None else 0.0)
            if delay > 0 and await _client_left_within(receive, delay):
                return
            # Leave the in-flight count *before* the answer goes out: a client that holds its
            # answer must never find its request still counted.
            counted = False
            self.log.leave()
            if reply is None:
                assert fault is not None
                await _drop(send, receive, after_headers=fault.after_headers)
                return
            await _send_reply(send, reply)
        finally:
            if counted:
                self.log.leave()


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or ``None`` if the client left before sending it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _client_left_within(receive: Receive, seconds: float) -> bool:
    """Sleep ``seconds`` without blocking other requests; ``True`` if the client hung up."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return True
    except TimeoutError:
        return False


async def _send_reply(send: Send, reply: Reply) -> None:
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
    if reply.content_type is not None:
        headers.append((b"content-type", reply.content_type.encode("latin-1")))
    if reply.retry_after_in is not None:
        headers.append((b"retry-after", http_date(time.time() + reply.retry_after_in).encode()))
    headers.append((b"content-length", str(len(reply.body)).encode()))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body, "more_body": False})


async def _drop(send: Send, receive: Receive, *, after_headers: bool) -> None:
    """Close the connection mid-exchange.

    uvicorn's ``send`` is a method of the request cycle that owns the transport; closing that
    transport is a clean drop (uvicorn sees the disconnect and logs nothing). Under any other
    server, raising after a partial send makes it abort the connection.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if not isinstance(transport, asyncio.BaseTransport):
        after_headers = True  # a raise before any byte would become a 500, not a drop
    if after_headers:
        start: Message = {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", JSON_TYPE.encode()), (b"content-length", b"4096")],
        }
        await send(start)
        await send({"type": "http.response.body", "body": b'{"data": [', "more_body": True})
    if not isinstance(transport, asyncio.BaseTransport):
        raise ConnectionDropped("simulated connection drop")
    transport.close()
    await _client_left_within(receive, 1.0)
