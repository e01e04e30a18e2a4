"""Meta Ads insights: one account-level row per ad account and day.

The parser is pure (a decoded page in, records out); :class:`MetaClient` only walks the
``paging.next`` chain and adds the pages up. Meta sends every number as a string; a missing
metric means nothing happened, so it counts as 0. Conversions are the sum of the ``actions``
whose ``action_type`` is in the configured list.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING

from cronkeeper.errors import ConfigError, PayloadError
from cronkeeper.sources._payload import (
    decode_json,
    describe,
    non_negative_decimal,
    non_negative_int,
    parse_day,
    storable_text,
)

if TYPE_CHECKING:
    from cronkeeper.config import Settings
    from cronkeeper.http import HttpContext

__all__ = [
    "INSIGHT_FIELDS",
    "MAX_PAGES",
    "MetaClient",
    "MetaInsight",
    "normalize_ad_account_id",
    "parse_insights_page",
]

INSIGHT_FIELDS = "spend,impressions,clicks,reach,actions,account_currency,date_start,date_stop"
MAX_PAGES = 1000
"""More pages than this for one account and day can only be a paging loop."""


@dataclass(frozen=True)
class MetaInsight:
    """One ad account's totals for one day."""

    ad_account_id: str
    date: date
    spend: Decimal
    impressions: int
    clicks: int
    reach: int
    conversions: Decimal
    currency: str | None

    def __add__(self, other: MetaInsight) -> MetaInsight:
        """Totals of two rows of the same account and day (Meta may split a day over pages).

        ``reach`` is added too: at ``level=account`` Meta sends one row per day, so a split
        is rare, and a sum is the only total available without the underlying users.
        """
        if (other.ad_account_id, other.date) != (self.ad_account_id, self.date):
            raise ValueError("only rows of the same ad account and date can be added")
        return replace(
            self,
            spend=self.spend + other.spend,
            impressions=self.impressions + other.impressions,
            clicks=self.clicks + other.clicks,
            reach=self.reach + other.reach,
            conversions=self.conversions + other.conversions,
            currency=self.currency or other.currency,
        )


def normalize_ad_account_id(value: str) -> str:
    """``"act_123"`` or ``"123"`` → ``"123"``; anything else is a caller error."""
    digits = value.strip().removeprefix("act_")
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"ad account id must be digits, with or without act_: {value!r}")
    return digits


def parse_insights_page(
    payload: object, *, ad_account_id: str, conversion_action_types: Collection[str]
) -> tuple[list[MetaInsight], str | None]:
    """The rows of one decoded insights page and its ``paging.next`` URL (``None`` at the end).

    Raises :class:`PayloadError` naming the account, the row and the field when the page
    does not have the documented shape.
    """
    account = ad_account_id.removeprefix("act_")
    unit = f"Meta ad account {account}"
    if not isinstance(payload, dict):
        raise PayloadError(f"{unit}: expected a JSON object, got {describe(payload)}")
    rows = payload.get("data")
    if not isinstance(rows, list):
        raise PayloadError(f"{unit}: field 'data': expected a list of rows, got {describe(rows)}")
    wanted = frozenset(conversion_action_types)
    records = [_row(row, f"{unit}: data[{i}]", account, wanted) for i, row in enumerate(rows)]
    return records, _next_url(payload.get("paging"), unit)


def _row(row: object, where: str, account: str, wanted: frozenset[str]) -> MetaInsight:
    if not isinstance(row, dict):
        raise PayloadError(f"{where}: expected an object, got {describe(row)}")
    currency = row.get("account_currency")
    if currency is not None and not isinstance(currency, str):
        raise PayloadError(
            f"{where}: field 'account_currency': expected a currency code, got {describe(currency)}"
        )
    if currency is not None:
        currency = storable_text(currency, f"{where}: field 'account_currency'")
    return MetaInsight(
        ad_account_id=account,
        date=parse_day(row.get("date_start"), f"{where}: field 'date_start'"),
        spend=non_negative_decimal(row.get("spend"), f"{where}: field 'spend'"),
        impressions=non_negative_int(row.get("impressions"), f"{where}: field 'impressions'"),
        clicks=non_negative_int(row.get("clicks"), f"{where}: field 'clicks'"),
        reach=non_negative_int(row.get("reach"), f"{where}: field 'reach'"),
        conversions=_conversions(row.get("actions"), f"{where}: field 'actions'", wanted),
        currency=currency or None,
    )


def _conversions(actions: object, where: str, wanted: frozenset[str]) -> Decimal:
    if actions is None:
        return Decimal(0)
    if not isinstance(actions, list):
        raise PayloadError(f"{where}: expected a list of actions, got {describe(actions)}")
    total = Decimal(0)
    for i, action in enumerate(actions):
        if not isinstance(action, dict):
            raise PayloadError(f"{where}[{i}]: expected an object, got {describe(action)}")
        kind = action.get("action_type")
        if not isinstance(kind, str):
            raise PayloadError(
                f"{where}[{i}]: field 'action_type': expected a string, got {describe(kind)}"
            )
        if kind in wanted:
            total += non_negative_decimal(action.get("value"), f"{where}[{i}] ({kind}): 'value'")
    return total


def _next_url(paging: object, unit: str) -> str | None:
    if paging is None:
        return None
    if not isinstance(paging, dict):
        raise PayloadError(f"{unit}: field 'paging': expected an object, got {describe(paging)}")
    nxt = paging.get("next")
    if nxt is None:
        return None
    # Never show the URL itself: Meta puts the access token in it.
    if not isinstance(nxt, str) or not nxt.startswith(("https://", "http://")):
        kind = "a string that is not an absolute URL" if isinstance(nxt, str) else describe(nxt)
        raise PayloadError(f"{unit}: field 'paging.next': expected an absolute URL, got {kind}")
    return nxt


class MetaClient:
    """Reads one account-level insights row per ad account and day from the Graph API."""

    def __init__(
        self,
        http: HttpContext,
        *,
        base: str,
        version: str,
        access_token: str,
        conversion_action_types: Collection[str],
    ) -> None:
        self._http = http
        self._base = base.rstrip("/")
        self._version = version.strip("/")
        self._token = access_token
        self._conversions = tuple(conversion_action_types)

    @classmethod
    def from_settings(cls, http: HttpContext, settings: Settings) -> MetaClient:
        """The client for this configuration; ``ConfigError`` without ``META_ACCESS_TOKEN``."""
        token = settings.meta_access_token
        if token is None or not token.get_secret_value():
            raise ConfigError("META_ACCESS_TOKEN is not set: collect-daily cannot call Meta")
        return cls(
            http,
            base=settings.meta_api_base,
            version=settings.meta_api_version,
            access_token=token.get_secret_value(),
            conversion_action_types=settings.meta_conversion_action_types,
        )

    async def daily_insights(self, ad_account_id: str, day: date) -> MetaInsight | None:
        """The account's totals for ``day``, or ``None`` when Meta has no row (no activity).

        Follows every ``paging.next`` and adds up rows of the day across pages. Raises
        :class:`PayloadError` for a malformed page, a row of another day or a paging loop,
        and the :class:`FetchError` family from the HTTP layer.
        """
        account = normalize_ad_account_id(ad_account_id)
        return await self._collect(account, day, f"Meta ad account {account}")

    async def _collect(self, account: str, day: date, unit: str) -> MetaInsight | None:
        url = f"{self._base}/{self._version}/act_{account}/insights"
        params: dict[str, str] | None = {
            "level": "account",
            "time_range": json.dumps(
                {"since": day.isoformat(), "until": day.isoformat()}, separators=(",", ":")
            ),
            "fields": INSIGHT_FIELDS,
            "access_token": self._token,
        }
        total: MetaInsight | None = None
        seen: set[str] = set()
        for page in range(1, MAX_PAGES + 1):
            # fetch_parsed redacts a parse error with the call's secrets (the URL's token).
            rows, nxt = await self._http.fetch_parsed(
                "GET",
                url,
                lambda response: parse_insights_page(
                    decode_json(response, unit),
                    ad_account_id=account,
                    conversion_action_types=self._conversions,
                ),
                params=params,
            )
            for row in rows:
                if row.date != day:
                    raise PayloadError(
                        f"{unit}: page {page}: Meta answered a row for {row.date.isoformat()} "
                        f"when asked for {day.isoformat()}"
                    )
                total = row if total is None else total + row
            if nxt is None:
                return total
            if nxt in seen:
                raise PayloadError(
                    f"{unit}: paging loop: page {page} points back to a page already read"
                )
            seen.add(nxt)
            url, params = nxt, None  # the next URL carries every parameter, token included
        raise PayloadError(f"{unit}: more than {MAX_PAGES} pages for one day; paging loop?")
