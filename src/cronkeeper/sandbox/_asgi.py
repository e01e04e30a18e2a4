"""What every simulator shares: the Starlette app, fault rendering, late and dropped answers.

Each simulator is a Starlette :class:`~starlette.routing.Router` with no routes and one default
endpoint, because every API here decides itself which unit a path addresses and words an
unknown path or method in its own error shape (Meta's code 2500, Notion's
``invalid_request_url`` ...), and every request, misrouted or not, goes into the request log.
Starlette reads the request (:class:`~starlette.requests.Request`), writes the answer
(:class:`~starlette.responses.Response`) and runs the lifespan. Raw ASGI is left for the two
faults a response object cannot express:

- an answer that comes late (the simulator's ``latency``, :meth:`Fault.hang`): the wait listens
  on the ASGI ``receive`` channel, so a client that gives up is noticed at once and answered
  nothing;
- a connection closed without an answer (:meth:`Fault.drop`): ASGI has no message for that, so
  the server offers it as a scope extension (:data:`~cronkeeper.sandbox.server.CLOSE_CONNECTION`,
  added by :func:`~cronkeeper.sandbox.serve_apps`). Under a server without it, the drop sends
  part of an answer and raises, which makes any server abort the connection.
"""

from __future__ import annotations

import abc
import asyncio
import email.utils
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Router, request_response
from starlette.types import ASGIApp, Receive, Scope, Send

from cronkeeper.sandbox.faults import Fault, FaultMix, FaultPlan, MalformedMode, stable_fraction
from cronkeeper.sandbox.log import RequestLog, RequestRecord
from cronkeeper.sandbox.server import CLOSE_CONNECTION

__all__ = ["ConnectionDropped", "Reply", "SimRequest", "Simulator", "json_reply"]

JSON_TYPE = "application/json; charset=utf-8"


class ConnectionDropped(Exception):
    """Raised inside the app to drop a connection when the server cannot close it for us."""


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
    def from_request(cls, request: Request, body: bytes) -> SimRequest:
        items = tuple(request.query_params.multi_items())
        return cls(
            method=request.method,
            # The decoded path as the server gave it (``request.url`` would re-parse it, and a
            # decoded ``%3F`` would then cut the path short).
            path=request.scope["path"],
            query=dict(items),
            query_items=items,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            base_url=str(request.base_url).rstrip("/"),
        )

    def json_body(self) -> Any:
        """The body parsed as JSON; ``{}`` when empty. Raises ``ValueError`` when invalid."""
        if not self.body.strip():
            return {}
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    """A complete HTTP answer, as the simulators' handlers write it (plain data, no I/O).

    ``retry_after_in`` asks for an HTTP-date ``Retry-After`` of *send time* + that many
    seconds (computed when the answer leaves, after any latency).
    """

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
    """Base of the three simulators: config + fault plan + request log, served by Starlette.

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
        self._in_flight_keys: Counter[str] = Counter()
        for key, faults in (scripts or {}).items():
            self.script(key, *faults)
        for key, fault in (always or {}).items():
            self.always(key, fault)
        # No routes: every path and every method reaches the one endpoint, which tells a wrong
        # path apart in its API's words and logs it like any other request. The router still
        # runs the lifespan.
        self._app = Router(default=request_response(self._serve))

    # -- configuration ------------------------------------------------------------------------

    @property
    def app(self) -> ASGIApp:
        """The ASGI application (serve it with :func:`cronkeeper.sandbox.serve_app`)."""
        return self._app

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

    def in_flight_for(self, key: str | int) -> int:
        """Requests of ``key`` being answered right now (this one included, inside ``handle``):
        what an API that limits concurrent queries per unit counts."""
        return self._in_flight_keys[self.normalize_key(key)]

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

    # -- serving ------------------------------------------------------------------------------

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

    async def _serve(self, request: Request) -> Response:
        """Every request: read it, pick its fault, log it, wait; Starlette sends what it returns."""
        at = time.monotonic()
        wall = datetime.now(UTC)
        counted: str | None = None
        self.log.enter()
        try:
            try:
                body = await request.body()
            except ClientDisconnect:
                return _NoAnswer()
            sim_request = SimRequest.from_request(request, body)
            key = self.route_key(sim_request)
            counted = key
            if counted is not None:
                self._in_flight_keys[counted] += 1
            self._requests += 1
            fault = self.faults.next_fault(key) if key is not None else None
            reply = (
                self._fault_reply(fault, sim_request, key)
                if fault is not None
                else self.handle(sim_request, key)
            )
            self.log.append(
                RequestRecord(
                    at=at,
                    wall=wall,
                    method=sim_request.method,
                    path=sim_request.path,
                    query=sim_request.query,
                    key=key,
                    status=reply.status if reply is not None else 0,
                    fault=fault.describe() if fault is not None else None,
                    headers=sim_request.headers,
                    body=sim_request.body,
                )
            )
            delay = self.latency + (fault.seconds if fault is not None else 0.0)
            if delay > 0 and await _client_left_within(request.receive, delay):
                return _NoAnswer()
            if reply is None:
                assert fault is not None
                return _Dropped(after_headers=fault.after_headers)
            return _response(reply)
        finally:
            if counted is not None:
                self._in_flight_keys[counted] -= 1
            # Leave the in-flight count *before* the answer goes out (Starlette sends it once
            # this returns): a client that holds its answer must never find its request still
            # counted.
            self.log.leave()


def _response(reply: Reply) -> Response:
    """The Starlette response for ``reply``, its ``Retry-After`` date counted from now."""
    response = Response(reply.body, reply.status, media_type=reply.content_type)
    for name, value in reply.headers:
        response.headers.append(name, value)
    if reply.retry_after_in is not None:
        response.headers.append("Retry-After", http_date(time.time() + reply.retry_after_in))
    return response


async def _client_left_within(receive: Receive, seconds: float) -> bool:
    """Sleep ``seconds`` without blocking other requests; ``True`` if the client hung up.

    Raw ASGI on purpose: once the body is read, the next message on ``receive`` is the
    client's disconnect, and waiting for it is how a late answer notices an impatient client.
    """
    try:
        async with asyncio.timeout(seconds):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return True
    except TimeoutError:
        return False


class _NoAnswer(Response):
    """Nothing to send: the client hung up before its answer was due."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        return None


class _Dropped(Response):
    """:meth:`Fault.drop`: close the connection mid-exchange (raw ASGI, see the module doc).

    With ``after_headers`` the status line, the headers (promising 4096 bytes) and the start
    of a body go out first; without, not a byte. A server that does not offer
    :data:`~cronkeeper.sandbox.server.CLOSE_CONNECTION` can only be made to drop a connection
    by an error after a partial answer, so there the headers always go out.
    """

    media_type = JSON_TYPE

    def __init__(self, *, after_headers: bool) -> None:
        super().__init__(status_code=200, headers={"content-length": "4096"})
        self.after_headers = after_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        close = _close_connection_hook(scope)
        if self.after_headers or close is None:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            await send({"type": "http.response.body", "body": b'{"data": [', "more_body": True})
        if close is None:
            raise ConnectionDropped("simulated connection drop")
        close()
        await _client_left_within(receive, 1.0)  # the server sees the disconnect: no error log


def _close_connection_hook(scope: Scope) -> Callable[[], None] | None:
    extension = (scope.get("extensions") or {}).get(CLOSE_CONNECTION)
    close = extension.get("close") if isinstance(extension, dict) else None
    return close if callable(close) else None
