"""Hostile stand-ins for Meta, Mixpanel, Notion and the alert webhook (issue 19).

Not the sandbox simulators: those answer correctly or break visibly. These answer what a test
tells them to, well-formed and wrong, over real HTTP on ``127.0.0.1`` (uvicorn, through
:func:`~cronkeeper.sandbox.serve_apps`), and keep every request they received.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from urllib.parse import parse_qs

from starlette.types import Receive, Scope, Send


@dataclass(frozen=True)
class Asked:
    """One request a stand-in received."""

    method: str
    path: str
    query: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b"{}"
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)


def as_json(payload: Any, *, status: int = 200) -> Reply:
    return Reply(status, json.dumps(payload).encode())


Respond = Callable[[Asked], Reply]


@dataclass
class StandIn:
    """An ASGI app whose every answer is ``respond(request)``; ``respond`` may be swapped."""

    respond: Respond
    asked: list[Asked] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
        request = Asked(scope["method"], scope["path"], query, body)
        self.asked.append(request)
        reply = self.respond(request)
        headers = [(k.encode(), v.encode()) for k, v in reply.headers]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})


# -- Meta -------------------------------------------------------------------------------------


def meta_days(request: Asked) -> list[date]:
    """The days of an insights request's ``time_range``."""
    window = json.loads(request.query["time_range"])
    since, until = date.fromisoformat(window["since"]), date.fromisoformat(window["until"])
    return [since + timedelta(days=n) for n in range((until - since).days + 1)]


def meta_good_row(day: date, scale: int = 1) -> dict[str, Any]:
    """A whole account-level row, as the Graph API sends one (numbers as strings)."""
    n = day.toordinal() % 97 + 3
    return {
        "spend": f"{n * 7 * scale}.25",
        "impressions": str(n * 1000 * scale),
        "clicks": str(n * 11 * scale),
        "reach": str(n * 800 * scale),
        "actions": [{"action_type": "omni_purchase", "value": str(n * scale)}],
        "account_currency": "USD",
        "date_start": day.isoformat(),
        "date_stop": day.isoformat(),
    }


def meta(rows: Callable[[date], list[dict[str, Any]]]) -> Respond:
    """Meta: the account's details, and ``rows(day)`` for every day of an insights request."""

    def respond(request: Asked) -> Reply:
        if not request.path.endswith("/insights"):
            return as_json(
                {"name": "Acme", "timezone_name": "UTC", "currency": "USD", "account_status": 1}
            )
        return as_json({"data": [r for d in meta_days(request) for r in rows(d)]})

    return respond


# -- Mixpanel ---------------------------------------------------------------------------------


def mixpanel_days(request: Asked) -> list[str]:
    since = date.fromisoformat(request.query["from_date"])
    until = date.fromisoformat(request.query["to_date"])
    return [(since + timedelta(days=n)).isoformat() for n in range((until - since).days + 1)]


def mixpanel(counts: Callable[[str, str], int | None]) -> Respond:
    """Mixpanel ``/events``: ``counts(event, day)`` per requested event; ``None`` leaves the
    event out of ``values`` (as an answer lacking it)."""

    def respond(request: Asked) -> Reply:
        days = mixpanel_days(request)
        values: dict[str, dict[str, int]] = {}
        for event in json.loads(request.query["event"]):
            by_day = {d: counts(event, d) for d in days}
            if all(v is None for v in by_day.values()):
                continue
            values[event] = {d: v for d, v in by_day.items() if v is not None}
        return as_json({"data": {"series": days, "values": values}, "legend_size": len(values)})

    return respond


# -- Notion -----------------------------------------------------------------------------------


def notion_page(n: int, name: str, ad_account: str) -> dict[str, Any]:
    """A data-source page with the default property names (notion-sdk-js page object)."""

    def text(value: str) -> list[dict[str, Any]]:
        return [{"type": "text", "text": {"content": value}, "plain_text": value}]

    return {
        "object": "page",
        "id": f"00000000-0000-4000-8000-{n:012d}",
        "in_trash": False,
        "properties": {
            "Name": {"id": "title", "type": "title", "title": text(name)},
            "Meta Ad Account ID": {"id": "a", "type": "rich_text", "rich_text": text(ad_account)},
            "Industry": {"id": "i", "type": "select", "select": {"name": "Retail"}},
            "Active": {"id": "c", "type": "checkbox", "checkbox": True},
        },
    }


def notion(pages: Callable[[], list[dict[str, Any]]]) -> Respond:
    """Notion ``POST /v1/data_sources/{id}/query``: every page at once, ``has_more`` false."""

    def respond(request: Asked) -> Reply:
        return as_json(
            {"object": "list", "results": pages(), "has_more": False, "next_cursor": None}
        )

    return respond
