"""A local Notion API: ``POST /v1/data_sources/{id}/query`` (Notion-Version 2025-09-03+).

Pages carry Notion's full property shapes (title, rich_text or number, select, checkbox,
number). ``next_cursor`` is the id of the next page, as on Notion. The unit key of a request is
the offset of its first result in the list (``"0"`` for the first request, ``"2"`` for the
second when ``page_size`` is 2 ...), so a script can fail one page of the query, retries
included.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from cronkeeper.notion_props import DEFAULT_NOTION_PROPS, NotionProps
from cronkeeper.sandbox._asgi import Reply, SimRequest, Simulator, json_reply
from cronkeeper.sandbox.faults import Fault, FaultMix, stable_fraction

__all__ = ["NotionAccountPage", "NotionSimulator"]

NOTION_VERSION = "2025-09-03"
_STATUS_CODES = {
    400: ("validation_error", "The request body could not be validated."),
    408: ("request_timeout", "The request timed out."),
    409: ("conflict_error", "Conflict occurred while saving. Please try again."),
    429: ("rate_limited", "You have been rate limited. Please try again in a few minutes."),
    500: ("internal_server_error", "Unexpected error occurred."),
    502: ("bad_gateway", "Notion encountered an issue while attempting to complete this request."),
    503: ("service_unavailable", "Notion is unavailable. Please try again later."),
    504: ("gateway_timeout", "Notion timed out while attempting to complete this request."),
}
_SELECT_COLORS = ("blue", "green", "orange", "purple", "pink", "red", "yellow", "brown", "gray")


@dataclass(frozen=True)
class NotionAccountPage:
    """One account row of the registry.

    ``ad_account_id``: ``"act_123"``/``"123"`` for a usable id, ``None`` for an empty cell,
    any other text (``"n/a"``) for a page with no usable id. ``page_id`` is derived
    deterministically when not given.
    """

    name: str
    ad_account_id: str | int | None
    industry: str | None = None
    active: bool = True
    mixpanel_project_id: int | None = None
    page_id: str | None = None


def _uuid(*parts: object) -> str:
    raw = bytes(int(stable_fraction("notion-id", i, *parts) * 256) for i in range(16))
    return str(uuid.UUID(bytes=raw, version=4))


class NotionSimulator(Simulator):
    """A Notion data source holding the account registry.

    ``ad_account_property`` is the type of the ad account column for the whole data source
    (as in Notion, every page has the same property types): ``"rich_text"`` or ``"number"``.
    ``property_names`` are the client's own :class:`~cronkeeper.notion_props.NotionProps`
    (the spec's defaults unless given), so a test renames a column in one place.
    """

    def __init__(
        self,
        pages: Sequence[NotionAccountPage],
        *,
        data_source_id: str = "5f0c8c2e-0d6b-4c3a-9a57-4a1f2b3c4d5e",
        token: str = "ntn_sandbox_token",  # noqa: S107 - a fake, sandbox only
        ad_account_property: Literal["rich_text", "number"] = "rich_text",
        property_names: NotionProps | None = None,
        min_version: str = NOTION_VERSION,
        latency: float = 0.0,
        scripts: Mapping[str | int, Sequence[Fault | None]] | None = None,
        always: Mapping[str | int, Fault] | None = None,
        mix: FaultMix | None = None,
    ) -> None:
        self.data_source_id = data_source_id
        self.database_id = _uuid("database", data_source_id)
        self.token = token
        self.ad_account_property = ad_account_property
        self.names = property_names or DEFAULT_NOTION_PROPS
        self.min_version = min_version
        self.missing_properties: set[str] = set()
        """Property names left out of the data source's schema (a renamed column)."""
        self.pages: list[NotionAccountPage] = []
        self._offsets: dict[str, int] = {}
        super().__init__(latency=latency, scripts=scripts, always=always, mix=mix)
        self.set_pages(pages)

    def set_pages(self, pages: Sequence[NotionAccountPage]) -> None:
        """Replace the registry (e.g. an account removed from Notion between two syncs)."""
        resolved = [
            p if p.page_id else replace(p, page_id=_uuid(self.data_source_id, i, p.name))
            for i, p in enumerate(pages)
        ]
        ids = [p.page_id for p in resolved]
        if len(set(ids)) != len(ids):
            raise ValueError("page ids must be unique")
        self.pages = resolved
        self._offsets = {str(p.page_id): i for i, p in enumerate(resolved)}

    @property
    def page_ids(self) -> list[str]:
        return [str(p.page_id) for p in self.pages]

    def page_json(self, page: NotionAccountPage) -> dict[str, object]:
        """A page object exactly as the query endpoint returns it."""
        page_id = str(page.page_id)
        names = self.names
        properties: dict[str, object] = {
            names.name: {"id": "title", "type": "title", "title": _rich_text(page.name)},
            names.ad_account: self._ad_account_value(page.ad_account_id),
            names.industry: {
                "id": _prop_id(names.industry),
                "type": "select",
                "select": None
                if page.industry is None
                else {
                    "id": _prop_id("option", page.industry),
                    "name": page.industry,
                    "color": _SELECT_COLORS[
                        int(stable_fraction("color", page.industry) * len(_SELECT_COLORS))
                    ],
                },
            },
            names.active: {
                "id": _prop_id(names.active),
                "type": "checkbox",
                "checkbox": page.active,
            },
            names.mixpanel_project: {
                "id": _prop_id(names.mixpanel_project),
                "type": "number",
                "number": page.mixpanel_project_id,
            },
        }
        user = {"object": "user", "id": _uuid("user", self.data_source_id)}
        return {
            "object": "page",
            "id": page_id,
            "created_time": "2025-01-06T09:00:00.000Z",
            "last_edited_time": "2025-01-06T09:00:00.000Z",
            "created_by": user,
            "last_edited_by": user,
            "cover": None,
            "icon": None,
            "parent": {
                "type": "data_source_id",
                "data_source_id": self.data_source_id,
                "database_id": self.database_id,
            },
            "archived": False,
            "in_trash": False,
            "is_locked": False,
            "properties": properties,
            "url": f"https://www.notion.so/{_slug(page.name)}-{page_id.replace('-', '')}",
            "public_url": None,
        }

    # -- Simulator ----------------------------------------------------------------------------

    def route_key(self, request: SimRequest) -> str | None:
        if request.path.rstrip("/") != f"/v1/data_sources/{self.data_source_id}/query":
            return None
        try:
            body = request.json_body()
        except ValueError:
            return None
        cursor = body.get("start_cursor") if isinstance(body, dict) else None
        if cursor is None:
            return "0"
        offset = self._offsets.get(cursor) if isinstance(cursor, str) else None
        return None if offset is None else str(offset)

    def status_reply(self, status: int) -> Reply:
        code, message = _STATUS_CODES.get(status, ("internal_server_error", f"HTTP {status}"))
        return _error(status, code, message)

    def handle(self, request: SimRequest, key: str | None) -> Reply:
        parts = request.path.strip("/").split("/")
        if len(parts) == 3 and parts[:2] == ["v1", "data_sources"] and request.method == "GET":
            return self._retrieve(request, parts[2])
        if len(parts) != 4 or parts[:2] != ["v1", "data_sources"] or parts[3] != "query":
            return _error(400, "invalid_request_url", "Invalid request URL.")
        if request.method != "POST":
            return _error(400, "invalid_request_url", "Invalid request URL.")
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        if not token or not hmac.compare_digest(token.encode(), self.token.encode()):
            return _error(401, "unauthorized", "API token is invalid.")
        version = request.headers.get("notion-version")
        if version is None:
            return _error(
                400,
                "missing_version",
                "Notion-Version header failed validation: Notion-Version header should be "
                "defined, instead was `undefined`.",
            )
        if version < self.min_version:
            return _error(
                400,
                "validation_error",
                f"Data source endpoints need Notion-Version {self.min_version} or later, "
                f"got `{version}`.",
            )
        if parts[2] != self.data_source_id:
            return _error(
                404,
                "object_not_found",
                f"Could not find data_source with ID: {parts[2]}. Make sure the relevant "
                "pages and databases are shared with your integration.",
            )
        try:
            body = request.json_body()
        except ValueError:
            return _error(400, "invalid_json", "Error parsing JSON body.")
        if not isinstance(body, dict):
            return _error(
                400, "validation_error", "body failed validation: body should be an object"
            )
        page_size = body.get("page_size", 100)
        if (
            not isinstance(page_size, int)
            or isinstance(page_size, bool)
            or not 1 <= page_size <= 100
        ):
            return _error(
                400,
                "validation_error",
                "body failed validation: body.page_size should be a number between 1 and 100, "
                f"instead was `{page_size}`.",
            )
        cursor = body.get("start_cursor")
        start = 0
        if cursor is not None:
            offset = self._offsets.get(cursor) if isinstance(cursor, str) else None
            if offset is None:
                return _error(
                    400, "validation_error", f"The start_cursor provided is invalid: {cursor}"
                )
            start = offset
        chunk = self.pages[start : start + page_size]
        has_more = start + page_size < len(self.pages)
        return json_reply(
            200,
            {
                "object": "list",
                "results": [self.page_json(p) for p in chunk],
                "next_cursor": self.pages[start + page_size].page_id if has_more else None,
                "has_more": has_more,
                "type": "page_or_data_source",
                "page_or_data_source": {},
                "request_id": _uuid("request", self._requests),
            },
        )

    def data_source_json(self) -> dict[str, object]:
        """The data source object of ``GET /v1/data_sources/{id}`` (notion-sdk-js
        ``src/api-endpoints/data-sources.ts``, ``DataSourceObjectResponse``: ``object``
        ``"data_source"``, ``id``, ``title``, ``properties`` name → ``{id, name, type, …}``)."""
        names = self.names
        kinds = {
            names.name: "title",
            names.ad_account: self.ad_account_property,
            names.industry: "select",
            names.active: "checkbox",
            names.mixpanel_project: "number",
        }
        properties = {
            name: {"id": _prop_id(name), "name": name, "type": kind, kind: {}}
            for name, kind in kinds.items()
            if name not in self.missing_properties
        }
        return {
            "object": "data_source",
            "id": self.data_source_id,
            "title": _rich_text("Client accounts"),
            "parent": {"type": "database_id", "database_id": self.database_id},
            "in_trash": False,
            "properties": properties,
        }

    def _retrieve(self, request: SimRequest, source_id: str) -> Reply:
        """``GET /v1/data_sources/{id}`` ("Retrieve a data source",
        https://developers.notion.com/reference/retrieve-a-data-source): 401 ``unauthorized``
        for a bad token, 404 ``object_not_found`` for a data source not shared with the
        integration (Notion's status codes page), else the data source object."""
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        if not token or not hmac.compare_digest(token.encode(), self.token.encode()):
            return _error(401, "unauthorized", "API token is invalid.")
        if source_id != self.data_source_id:
            return _error(
                404,
                "object_not_found",
                f"Could not find data_source with ID: {source_id}. Make sure the relevant "
                "pages and databases are shared with your integration.",
            )
        return json_reply(200, self.data_source_json())

    # -- helpers ------------------------------------------------------------------------------

    def _ad_account_value(self, value: str | int | None) -> dict[str, object]:
        prop_id = _prop_id(self.names.ad_account)
        if self.ad_account_property == "number":
            number: int | None = None
            if isinstance(value, int):
                number = value
            elif isinstance(value, str):
                digits = value.strip().removeprefix("act_")
                number = int(digits) if digits.isdigit() else None
            return {"id": prop_id, "type": "number", "number": number}
        text = "" if value is None else str(value)
        return {"id": prop_id, "type": "rich_text", "rich_text": _rich_text(text)}


def _rich_text(text: str) -> list[dict[str, object]]:
    if not text:
        return []
    return [
        {
            "type": "text",
            "text": {"content": text, "link": None},
            "annotations": {
                "bold": False,
                "italic": False,
                "strikethrough": False,
                "underline": False,
                "code": False,
                "color": "default",
            },
            "plain_text": text,
            "href": None,
        }
    ]


def _prop_id(*parts: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    return "%3A" + "".join(
        alphabet[int(stable_fraction("prop", i, *parts) * len(alphabet))] for i in range(4)
    )


def _slug(name: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in name).split()) or "Untitled"


def _error(status: int, code: str, message: str) -> Reply:
    return json_reply(
        status,
        {
            "object": "error",
            "status": status,
            "code": code,
            "message": message,
            "request_id": _uuid("error", code, message),
        },
    )
