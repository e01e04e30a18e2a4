"""The Notion account registry: one page per client account in a data source.

Two kinds of defect, two outcomes. A page whose own properties are unusable (no ad account id,
an id that is not digits, a duplicate) is a :class:`SkippedPage`: the other pages are still
synced and the run is ``partial``, naming it. A response whose envelope is wrong (``results``
not a list, no ``has_more``, ``has_more`` without a cursor, a result that is not a page object
with an id, a listing Notion says it cut short) raises :class:`PayloadError`: syncing from it
could mark every account it misses as inactive.

Decisions, for the operator:

- ``Active`` missing from a page (the property is not in the data source) counts as active;
  present and unticked is inactive. A registry without the column means "all active".
- ``Industry`` missing or empty is ``None`` (benchmarks file it under ``unknown``).
- The ad account id may be rich text, title, number, select or a formula; ``act_`` and
  whitespace are stripped; it must then be ASCII digits.
- ``Mixpanel Project ID`` empty or missing is ``None``; a value that is not a whole number
  skips the page, because storing ``None`` would silently drop the project.
- Pages in the trash and result objects that are not pages (a data source can list other
  data sources) are ignored: they are not rows of the registry.
- Duplicate ad account ids across the listing: the first page keeps it, later pages are
  skipped with a reason naming the page that holds it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from cronkeeper.errors import ConfigError, PayloadError
from cronkeeper.http.limits import Quota
from cronkeeper.notion_props import NotionProps
from cronkeeper.sources._payload import decode_json, describe, is_text, storable_text
from cronkeeper.versions import pinned_versions, require_current, today_utc

if TYPE_CHECKING:
    import httpx

    from cronkeeper.config import Settings
    from cronkeeper.http import HttpContext

__all__ = [
    "API_QUOTA",
    "MAX_PAGES",
    "DataSourceInfo",
    "NotionAccount",
    "NotionClient",
    "NotionListing",
    "NotionProps",
    "SkippedPage",
    "parse_data_source",
    "parse_query_page",
]

MAX_PAGES = 1000
"""100 results a page: 100,000 rows, ten times what one Notion query may return."""
PAGE_SIZE = 100
# "The rate limit for incoming requests per connection is an average of three requests per
# second. Some bursts beyond the average rate are allowed."
# https://developers.notion.com/reference/request-limits — three in any second keeps the
# average without counting on the bursts.
API_QUOTA = Quota("Notion's API", requests=3, window=1.0, per="integration")
_DIGITS = re.compile(r"[0-9]{1,20}")
_SHOWN = 40


@dataclass(frozen=True)
class NotionAccount:
    """One usable registry row."""

    page_id: str
    name: str
    meta_ad_account_id: str
    mixpanel_project_id: str | None
    industry: str | None
    active: bool


@dataclass(frozen=True)
class SkippedPage:
    """A page left out of the sync, and why (for the run's ``error_message``)."""

    page_id: str
    name: str | None
    reason: str

    def __str__(self) -> str:
        label = f"{self.name!r} ({self.page_id})" if self.name else self.page_id
        return f"Notion page {label}: {self.reason}"


@dataclass(frozen=True)
class NotionListing:
    """Every page of the data source, sorted into usable accounts and skipped pages."""

    accounts: tuple[NotionAccount, ...] = field(default=())
    skipped: tuple[SkippedPage, ...] = field(default=())


class _Unusable(Exception):
    """A page-level defect; becomes a :class:`SkippedPage`."""


def parse_query_page(
    payload: object, props: NotionProps
) -> tuple[list[NotionAccount], list[SkippedPage], str | None]:
    """Accounts and skipped pages of one decoded query response, and the next cursor
    (``None`` when ``has_more`` is false)."""
    unit = "Notion data source query"
    if not isinstance(payload, dict):
        raise PayloadError(f"{unit}: expected a JSON object, got {describe(payload)}")
    results = payload.get("results")
    if not isinstance(results, list):
        raise PayloadError(f"{unit}: field 'results': expected a list, got {describe(results)}")
    has_more = payload.get("has_more")
    if not isinstance(has_more, bool):
        raise PayloadError(
            f"{unit}: field 'has_more': expected true or false, got {describe(has_more)}"
        )
    cursor = payload.get("next_cursor")
    if has_more and not (isinstance(cursor, str) and cursor):
        raise PayloadError(
            f"{unit}: field 'next_cursor': has_more is true but the cursor is {describe(cursor)}"
        )
    status = payload.get("request_status")
    if isinstance(status, dict) and status.get("type") == "incomplete":
        raise PayloadError(
            f"{unit}: Notion cut the listing short ({describe(status.get('incomplete_reason'))});"
            " syncing a partial registry would deactivate the missing accounts"
        )
    accounts: list[NotionAccount] = []
    skipped: list[SkippedPage] = []
    for i, page in enumerate(results):
        if not isinstance(page, dict) or not isinstance(page.get("id"), str) or not page["id"]:
            raise PayloadError(
                f"{unit}: results[{i}]: expected a page object with an 'id', got {describe(page)}"
            )
        if page.get("object", "page") != "page" or page.get("in_trash") or page.get("archived"):
            continue
        outcome = _page(page, props)
        if isinstance(outcome, NotionAccount):
            accounts.append(outcome)
        else:
            skipped.append(outcome)
    return accounts, skipped, cursor if has_more else None


def _page(page: dict[str, object], props: NotionProps) -> NotionAccount | SkippedPage:
    page_id = storable_text(str(page["id"]), "field 'id' of a result")
    properties = page.get("properties")
    if not isinstance(properties, dict):
        reason = f"field 'properties': expected an object, got {describe(properties)}"
        return SkippedPage(page_id, None, reason)
    name: str | None = None
    try:
        name = _text(properties.get(props.name), props.name)
        return NotionAccount(
            page_id=page_id,
            name=name or "",
            meta_ad_account_id=_ad_account(properties.get(props.ad_account), props.ad_account),
            mixpanel_project_id=_project(
                properties.get(props.mixpanel_project), props.mixpanel_project
            ),
            industry=_text(properties.get(props.industry), props.industry),
            active=_active(properties.get(props.active), props.active),
        )
    except _Unusable as exc:
        return SkippedPage(page_id, name or None, str(exc))


def _kind(prop: object, label: str) -> tuple[str, object]:
    """``(type, value)`` of a property value object."""
    if not isinstance(prop, dict):
        raise _Unusable(f"property {label!r}: expected a property object, got {describe(prop)}")
    kind = prop.get("type")
    if not isinstance(kind, str) or kind not in prop:
        raise _Unusable(f"property {label!r}: no 'type' with a matching value")
    return kind, prop[kind]


def _rich_text(items: object, label: str) -> str:
    if not isinstance(items, list):
        raise _Unusable(f"property {label!r}: expected a list of text, got {describe(items)}")
    parts: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            raise _Unusable(f"property {label!r}: expected rich text, got {describe(item)}")
        text = item.get("plain_text")
        if text is None and isinstance(item.get("text"), dict):
            text = item["text"].get("content")
        if not isinstance(text, str):
            raise _Unusable(f"property {label!r}: rich text without plain_text")
        parts.append(text)
    return "".join(parts)


def _scalar(prop: object, label: str) -> str | int | float | bool | None:
    """The plain value of a text, number, select, checkbox or formula property."""
    kind, value = _kind(prop, label)
    if kind in ("title", "rich_text"):
        return _rich_text(value, label)
    if kind in ("select", "status"):
        if value is None:
            return None
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            raise _Unusable(f"property {label!r}: expected a {kind} option, got {describe(value)}")
        return str(value["name"])
    if kind == "formula":
        if not isinstance(value, dict):
            raise _Unusable(f"property {label!r}: expected a formula, got {describe(value)}")
        return _plain(value.get(str(value.get("type"))), label)
    if kind in ("number", "checkbox", "url", "email", "phone_number"):
        return _plain(value, label)
    raise _Unusable(f"property {label!r}: unsupported property type {kind!r}")


def _plain(value: object, label: str) -> str | int | float | bool | None:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise _Unusable(f"property {label!r}: expected a plain value, got {describe(value)}")


def _text(prop: object, label: str) -> str | None:
    if prop is None:
        return None
    value = _scalar(prop, label)
    if value is None or isinstance(value, bool):
        return None
    plain = str(_whole(value, label)) if isinstance(value, float) else str(value)
    if not is_text(plain):
        raise _Unusable(f"property {label!r}: not valid Unicode text (a lone surrogate escape)")
    return plain.strip() or None


def _whole(value: float, label: str) -> int:
    if value.is_integer() and abs(value) < 2**53:
        return int(value)
    raise _Unusable(f"property {label!r}: expected a whole number, got {value!r}")


def _identifier(prop: object, label: str) -> str | None:
    """Digits from an id-like property; ``None`` when empty; ``_Unusable`` when not digits."""
    value = _scalar(prop, label)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _Unusable(f"property {label!r}: expected an id, got a checkbox")
    if isinstance(value, float):
        value = _whole(value, label)
    if isinstance(value, int):
        if value < 0:
            raise _Unusable(f"no usable {label} ({value!r})")
        return str(value)
    digits = "".join(value.split())
    if digits[:4].lower() == "act_":
        digits = digits[4:]
    if not _DIGITS.fullmatch(digits):
        shown = value if len(value) <= _SHOWN else value[:_SHOWN] + "…"
        raise _Unusable(f"no usable {label} ({shown!r})")
    return digits


def _ad_account(prop: object, label: str) -> str:
    if prop is None:
        raise _Unusable(f"no {label!r} property")
    digits = _identifier(prop, label)
    if digits is None:
        raise _Unusable(f"no {label} (empty)")
    return digits


def _project(prop: object, label: str) -> str | None:
    if prop is None:
        return None
    return _identifier(prop, label)


def _active(prop: object, label: str) -> bool:
    if prop is None:
        return True
    value = _scalar(prop, label)
    if isinstance(value, bool):
        return value
    raise _Unusable(f"property {label!r}: expected a checkbox, got {describe(value)}")


@dataclass(frozen=True)
class DataSourceInfo:
    """A data source's title and its property schema: name → type."""

    title: str
    properties: dict[str, str]


def parse_data_source(payload: object) -> DataSourceInfo:
    """``GET /v1/data_sources/{id}``: a data source object whose ``properties`` maps each
    property's name to its configuration, with a ``type`` (notion-sdk-js
    ``src/api-endpoints/data-sources.ts``: ``getDataSource``, path ``data_sources/{id}``,
    ``DataSourceObjectResponse.properties: Record<string, DatabasePropertyConfigResponse>``;
    https://developers.notion.com/reference/retrieve-a-data-source)."""
    unit = "Notion data source"
    if not isinstance(payload, dict):
        raise PayloadError(f"{unit}: expected a JSON object, got {describe(payload)}")
    props = payload.get("properties")
    if not isinstance(props, dict):
        raise PayloadError(f"{unit}: field 'properties': expected an object, got {describe(props)}")
    kinds = {
        str(name): str(conf.get("type")) if isinstance(conf, dict) else "unknown"
        for name, conf in props.items()
    }
    title = payload.get("title")
    text = ""
    if isinstance(title, list):
        text = "".join(str(t.get("plain_text", "")) for t in title if isinstance(t, dict))
    return DataSourceInfo(text, kinds)


class NotionClient:
    """Reads the whole account registry from one Notion data source."""

    def __init__(
        self,
        http: HttpContext,
        *,
        base: str,
        token: str,
        data_source_id: str,
        version: str = "2025-09-03",
        props: NotionProps | None = None,
    ) -> None:
        self._http = http
        self._source_url = f"{base.rstrip('/')}/v1/data_sources/{data_source_id}"
        self._url = f"{self._source_url}/query"
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Notion-Version": version,
            "Content-Type": "application/json",
        }
        self._props = props or NotionProps()

    @classmethod
    def from_settings(
        cls, http: HttpContext, settings: Settings, *, current_only: bool = True
    ) -> NotionClient:
        """The client for this configuration; ``ConfigError`` without token or data source.
        ``current_only=False``: also for an expired version (``doctor`` reports it itself)."""
        token = settings.notion_token
        if token is None or not token.get_secret_value() or not settings.notion_data_source_id:
            raise ConfigError(
                "NOTION_TOKEN and NOTION_DATA_SOURCE_ID must both be set: "
                "sync-notion cannot read the registry"
            )
        if current_only:
            require_current(pinned_versions(settings)[1], today_utc(http.now()))
        return cls(
            http,
            base=settings.notion_api_base,
            token=token.get_secret_value(),
            data_source_id=settings.notion_data_source_id,
            version=settings.notion_version,
            props=NotionProps.from_settings(settings),
        )

    async def retrieve(self) -> DataSourceInfo:
        """The data source's title and property schema (``GET /v1/data_sources/{id}``); a
        data source not shared with the integration is Notion's 404 ``object_not_found``."""
        return await self._http.fetch_parsed(
            "GET",
            self._source_url,
            lambda response: parse_data_source(decode_json(response, "Notion data source")),
            headers={k: v for k, v in self._headers.items() if k != "Content-Type"},
            limit=API_QUOTA.of("the integration"),
        )

    @property
    def props(self) -> NotionProps:
        return self._props

    async def query_all(self) -> NotionListing:
        """Every page of the data source, following ``next_cursor`` until ``has_more`` is false.

        Raises :class:`PayloadError` for a malformed response or a cursor loop, and the HTTP
        layer's :class:`FetchError` family.
        """
        accounts: list[NotionAccount] = []
        skipped: list[SkippedPage] = []
        owner: dict[str, NotionAccount] = {}
        seen_pages: set[str] = set()
        async for page_accounts, page_skipped in self._pages():
            for account in page_accounts:
                if account.page_id in seen_pages:
                    continue
                seen_pages.add(account.page_id)
                first = owner.get(account.meta_ad_account_id)
                if first is not None:
                    skipped.append(_duplicate(account, first))
                    continue
                owner[account.meta_ad_account_id] = account
                accounts.append(account)
            for skip in page_skipped:
                if skip.page_id not in seen_pages:
                    seen_pages.add(skip.page_id)
                    skipped.append(skip)
        return NotionListing(tuple(accounts), tuple(skipped))

    async def _pages(self) -> AsyncIterator[tuple[list[NotionAccount], list[SkippedPage]]]:
        cursor: str | None = None
        seen: set[str] = set()
        for number in range(1, MAX_PAGES + 1):
            body: dict[str, object] = {"page_size": PAGE_SIZE}
            if cursor is not None:
                body["start_cursor"] = cursor
            accounts, skipped, cursor = await self._http.fetch_parsed(
                "POST",
                self._url,
                partial(self._parse, unit=f"Notion data source query, page {number}"),
                json=body,
                headers=self._headers,
                limit=API_QUOTA.of("the integration"),
            )
            yield accounts, skipped
            if cursor is None:
                return
            if cursor in seen:
                raise PayloadError(
                    f"Notion data source query: cursor loop: page {number} returned a cursor "
                    "already used"
                )
            seen.add(cursor)
        raise PayloadError(f"Notion data source query: more than {MAX_PAGES} pages; cursor loop?")

    def _parse(
        self, response: httpx.Response, unit: str
    ) -> tuple[list[NotionAccount], list[SkippedPage], str | None]:
        return parse_query_page(decode_json(response, unit), self._props)


def _duplicate(account: NotionAccount, first: NotionAccount) -> SkippedPage:
    holder = f"{first.name!r} ({first.page_id})" if first.name else first.page_id
    return SkippedPage(
        account.page_id,
        account.name or None,
        f"duplicate Meta ad account id {account.meta_ad_account_id}, already used by page {holder}",
    )
