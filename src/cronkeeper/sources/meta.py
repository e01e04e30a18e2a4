"""Meta Ads insights: one account-level row per ad account and day.

The parser is pure (a decoded page in, records out); :class:`MetaClient` only walks the
``paging.next`` chain and gathers the pages. Meta sends every number as a string. A row
without ``spend``, ``impressions`` or ``clicks`` is refused (:data:`REQUIRED_FIELDS`); a
missing ``reach`` or ``actions`` counts as 0.

Conversions (and leads) are the value of the *first* configured ``action_type`` present in the
row's ``actions``, never a sum: Meta reports one purchase under several nested types with the
same value (``omni_purchase`` = website + app + offline, ``purchase``,
``offsite_conversion.fb_pixel_purchase``), so adding them counts it two or three times. Source:
Meta Marketing API, Ads Action Stats, the ``action_type`` values
(https://developers.facebook.com/docs/marketing-api/reference/ads-action-stats/); Meta's
insights guide warns that action types nest (``link_click`` inside ``post_engagement`` inside
``page_engagement``), so the ``actions`` list is never to be totalled.

Requests send ``use_unified_attribution_setting=true`` so that attributed values follow each ad
set's own attribution setting, as Ads Manager shows them (a documented ``bool`` parameter of
``GET /act_{id}/insights``: Meta's Ad Account Insights reference, and ``AdAccount.get_insights``
``param_types`` in facebook-python-business-sdk ``facebook_business/adobjects/adaccount.py``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import httpx

from cronkeeper.config import zone
from cronkeeper.errors import ConfigError, PayloadError, TooMuchData
from cronkeeper.sources._payload import (
    decode_json,
    describe,
    non_negative_decimal,
    non_negative_int,
    parse_day,
    storable_text,
)
from cronkeeper.versions import pinned_versions, require_current, today_utc

if TYPE_CHECKING:
    from cronkeeper.config import Settings
    from cronkeeper.http import HttpContext

__all__ = [
    "ACTIVE_ACCOUNT_STATUSES",
    "DETAIL_FIELDS",
    "INACTIVE_ACCOUNT_STATUSES",
    "INSIGHT_FIELDS",
    "MAX_PAGES",
    "REQUIRED_FIELDS",
    "AccountDetails",
    "MetaClient",
    "MetaInsight",
    "TokenInfo",
    "normalize_ad_account_id",
    "parse_account_details",
    "parse_debug_token",
    "parse_insights_page",
]

log = logging.getLogger("cronkeeper.sources.meta")

INSIGHT_FIELDS = "spend,impressions,clicks,reach,actions,account_currency,date_start,date_stop"
DETAIL_FIELDS = "name,timezone_name,currency,account_status"

ACTIVE_ACCOUNT_STATUSES = frozenset({1, 8, 9, 201})
"""``account_status`` values of an ad account that still delivers, from Meta's AdAccount
reference (https://developers.facebook.com/docs/marketing-api/reference/ad-account/, field
``account_status``: 1 ACTIVE, 2 DISABLED, 3 UNSETTLED, 7 PENDING_RISK_REVIEW,
8 PENDING_SETTLEMENT, 9 IN_GRACE_PERIOD, 100 PENDING_CLOSURE, 101 CLOSED, 201 ANY_ACTIVE,
202 ANY_CLOSED). The same page counts ads as running only in accounts of status "1 - active,
8 - pending settlement, 9 - in grace period"; facebook-python-business-sdk reads the field as
``AdAccount.Field.account_status`` (``facebook_business/adobjects/adaccount.py``)."""
INACTIVE_ACCOUNT_STATUSES = frozenset({2, 3, 7, 100, 101, 202})
"""Disabled, unsettled, under risk review, closing or closed: no delivery expected. An unknown
value counts as active, so that a new status Meta adds never hides a failure."""
MAX_PAGES = 1000
"""More pages than this for one account's request chain can only be a paging loop."""


@dataclass(frozen=True)
class AccountDetails:
    """What ``GET /act_{id}`` says about an ad account: where its days begin and end."""

    ad_account_id: str
    name: str | None
    timezone_name: str
    currency: str | None
    account_status: int | None = None
    """Meta's ``account_status`` (``None``: not known, e.g. details stored before it was read)."""

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone_name)

    @property
    def inactive(self) -> bool:
        """Disabled, closed or otherwise not delivering (:data:`INACTIVE_ACCOUNT_STATUSES`)."""
        return self.account_status in INACTIVE_ACCOUNT_STATUSES


def parse_account_details(payload: object, *, ad_account_id: str) -> AccountDetails:
    """The account's details, or a :class:`PayloadError` naming the field.

    ``timezone_name`` is required and must be an IANA zone: without it the account's day is
    unknown, and collecting it in another zone would store a day that is not Meta's.
    """
    account = ad_account_id.removeprefix("act_")
    unit = f"Meta ad account {account}"
    if not isinstance(payload, dict):
        raise PayloadError(f"{unit}: details: expected a JSON object, got {describe(payload)}")
    zone_name = payload.get("timezone_name")
    if not isinstance(zone_name, str) or not zone_name.strip():
        raise PayloadError(
            f"{unit}: details: field 'timezone_name': expected an IANA time zone, "
            f"got {describe(zone_name)}"
        )
    try:
        zone(zone_name)
    except ValueError:
        raise PayloadError(
            f"{unit}: details: field 'timezone_name': unknown time zone {describe(zone_name)}"
        ) from None
    texts: dict[str, str | None] = {}
    for field in ("name", "currency"):
        value = payload.get(field)
        if value is not None and not isinstance(value, str):
            raise PayloadError(
                f"{unit}: details: field {field!r}: expected a string, got {describe(value)}"
            )
        texts[field] = storable_text(value, f"{unit}: details: field {field!r}") if value else None
    status = payload.get("account_status")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
        raise PayloadError(
            f"{unit}: details: field 'account_status': expected an integer, got {describe(status)}"
        )
    return AccountDetails(account, texts["name"], zone_name, texts["currency"], status)


@dataclass(frozen=True)
class TokenInfo:
    """What ``GET /debug_token`` says about the access token.

    Fields of its ``data`` object (Graph API reference, Debug-Token,
    https://developers.facebook.com/docs/graph-api/reference/debug_token: "whether the token is
    still valid, when it expires, and what permissions the app has"; the example answer of
    https://developers.facebook.com/documentation/threads/troubleshooting/debug-access-token
    shows ``is_valid``, ``scopes``, ``expires_at`` and ``data_access_expires_at`` as Unix
    seconds). ``expires_at`` 0 is a token that never expires (a system user's): ``None`` here.
    """

    is_valid: bool
    scopes: tuple[str, ...]
    expires_at: datetime | None
    data_access_expires_at: datetime | None
    token_type: str | None = None


def _timestamp(value: object, where: str) -> datetime | None:
    if value is None or value == 0:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PayloadError(f"{where}: expected Unix seconds, got {describe(value)}")
    return datetime.fromtimestamp(value, UTC)


def parse_debug_token(payload: object) -> TokenInfo:
    """The token's facts from a decoded ``/debug_token`` answer, or a :class:`PayloadError`."""
    unit = "Meta debug_token"
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        raise PayloadError(f"{unit}: expected an object with 'data', got {describe(payload)}")
    data = payload["data"]
    valid = data.get("is_valid")
    if not isinstance(valid, bool):
        raise PayloadError(
            f"{unit}: field 'is_valid': expected true or false, got {describe(valid)}"
        )
    scopes = data.get("scopes", [])
    if not isinstance(scopes, list) or not all(isinstance(x, str) for x in scopes):
        raise PayloadError(
            f"{unit}: field 'scopes': expected a list of names, got {describe(scopes)}"
        )
    kind = data.get("type")
    return TokenInfo(
        is_valid=valid,
        scopes=tuple(scopes),
        expires_at=_timestamp(data.get("expires_at"), f"{unit}: field 'expires_at'"),
        data_access_expires_at=_timestamp(
            data.get("data_access_expires_at"), f"{unit}: field 'data_access_expires_at'"
        ),
        token_type=kind if isinstance(kind, str) else None,
    )


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
    leads: Decimal = Decimal(0)

    def __add__(self, other: MetaInsight) -> MetaInsight:
        """The one row of an account and day that Meta sent twice.

        At ``level=account`` with ``time_increment=1`` Meta sends one row per day, so a second
        row for the same day is either a repeat (identical: kept once) or an answer that
        contradicts itself. Adding the two (as this once did) doubled the stored figures
        (issue 19); picking one would be a guess. So a conflicting pair is a
        :class:`PayloadError` that fails the account and keeps what is stored.
        """
        if (other.ad_account_id, other.date) != (self.ad_account_id, self.date):
            raise ValueError("only rows of the same ad account and date can be combined")
        currency = self.currency or other.currency
        if replace(self, currency=currency) == replace(other, currency=currency) and (
            None in (self.currency, other.currency) or self.currency == other.currency
        ):
            return replace(self, currency=currency)
        differ = [
            name
            for name in ("spend", "impressions", "clicks", "reach", "conversions", "leads")
            if getattr(self, name) != getattr(other, name)
        ] or ["account_currency"]
        raise PayloadError(
            f"Meta ad account {self.ad_account_id}: two different rows for"
            f" {self.date.isoformat()} ({', '.join(differ)} differ); Meta sends one row per"
            " day, so the answer contradicts itself: nothing of this account is stored"
        )


def normalize_ad_account_id(value: str) -> str:
    """``"act_123"`` or ``"123"`` → ``"123"``; anything else is a caller error."""
    digits = value.strip().removeprefix("act_")
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"ad account id must be digits, with or without act_: {value!r}")
    return digits


def parse_insights_page(
    payload: object,
    *,
    ad_account_id: str,
    conversion_action_types: Sequence[str],
    lead_action_types: Sequence[str] = (),
) -> tuple[list[MetaInsight], str | None]:
    """The rows of one decoded insights page and its ``paging.next`` URL (``None`` at the end).

    ``conversion_action_types`` and ``lead_action_types`` are ordered precedence lists: a row's
    conversions are the value of the first listed type present in its ``actions``.

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
    wanted = (tuple(conversion_action_types), tuple(lead_action_types))
    records = [_row(row, f"{unit}: data[{i}]", account, wanted) for i, row in enumerate(rows)]
    return records, _next_url(payload.get("paging"), unit)


def _row(
    row: object, where: str, account: str, wanted: tuple[tuple[str, ...], tuple[str, ...]]
) -> MetaInsight:
    if not isinstance(row, dict):
        raise PayloadError(f"{where}: expected an object, got {describe(row)}")
    currency = row.get("account_currency")
    if currency is not None and not isinstance(currency, str):
        raise PayloadError(
            f"{where}: field 'account_currency': expected a currency code, got {describe(currency)}"
        )
    if currency is not None:
        currency = storable_text(currency, f"{where}: field 'account_currency'")
    actions = _actions(row.get("actions"), f"{where}: field 'actions'")
    _require(row, where)
    return MetaInsight(
        ad_account_id=account,
        date=parse_day(row.get("date_start"), f"{where}: field 'date_start'"),
        spend=non_negative_decimal(row.get("spend"), f"{where}: field 'spend'"),
        impressions=non_negative_int(row.get("impressions"), f"{where}: field 'impressions'"),
        clicks=non_negative_int(row.get("clicks"), f"{where}: field 'clicks'"),
        reach=non_negative_int(row.get("reach"), f"{where}: field 'reach'"),
        conversions=first_present(actions, wanted[0]),
        currency=currency or None,
        leads=first_present(actions, wanted[1]),
    )


REQUIRED_FIELDS = ("spend", "impressions", "clicks")
"""Metrics every row Meta returns carries. A day without delivery has no row at all (Meta's
Ads Insights API guide: "By default, GET requests will return basic metrics for the ad
object", its example row holding ``impressions`` and ``spend`` as numeric strings; and
``clicks`` is asked for in ``fields``), so a row without one of them is not "nothing
happened": storing it as 0 once overwrote 28 days of real figures (issue 19)."""


def _require(row: dict[str, object], where: str) -> None:
    missing = [name for name in REQUIRED_FIELDS if row.get(name) is None]
    if missing:
        raise PayloadError(
            f"{where}: missing {', '.join(repr(m) for m in missing)}: Meta sends"
            f" {', '.join(REQUIRED_FIELDS)} in every row it returns (a day without delivery"
            " has no row), so this answer is not trusted and nothing of this account is stored"
        )


def first_present(actions: dict[str, Decimal], precedence: Sequence[str]) -> Decimal:
    """The value of the first type of ``precedence`` present in ``actions``, else 0.

    Never a sum: the types overlap (one purchase is reported as ``omni_purchase``, ``purchase``
    and ``offsite_conversion.fb_pixel_purchase`` with equal values).
    """
    for kind in precedence:
        if kind in actions:
            return actions[kind]
    return Decimal(0)


def _actions(actions: object, where: str) -> dict[str, Decimal]:
    """``actions`` as ``{action_type: value}``, every entry validated (a type listed twice is
    added up: at ``level=account`` Meta sends each type once per row).

    An absent ``actions`` is no action at all, hence zero conversions: the list holds one
    entry per action type that happened (Meta's Ads Action Stats reference, "a single action
    for a Statistics result"), airbyte source-facebook-marketing types it nullable
    (``schemas/ads_insights.json``, ``actions``), and a row with impressions but no action is
    an ordinary day."""
    if actions is None:
        return {}
    if not isinstance(actions, list):
        raise PayloadError(f"{where}: expected a list of actions, got {describe(actions)}")
    values: dict[str, Decimal] = {}
    for i, action in enumerate(actions):
        if not isinstance(action, dict):
            raise PayloadError(f"{where}[{i}]: expected an object, got {describe(action)}")
        kind = action.get("action_type")
        if not isinstance(kind, str):
            raise PayloadError(
                f"{where}[{i}]: field 'action_type': expected a string, got {describe(kind)}"
            )
        value = non_negative_decimal(action.get("value"), f"{where}[{i}] ({kind}): 'value'")
        values[kind] = values.get(kind, Decimal(0)) + value
    return values


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


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_of(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host.lower(), url.port or _DEFAULT_PORTS.get(url.scheme)


class MetaClient:
    """Reads one account-level insights row per ad account and day from the Graph API."""

    def __init__(
        self,
        http: HttpContext,
        *,
        base: str,
        version: str,
        access_token: str,
        conversion_action_types: Sequence[str],
        lead_action_types: Sequence[str] = (),
    ) -> None:
        self._http = http
        self._base = base.rstrip("/")
        self._version = version.strip("/")
        self._token = access_token
        self._conversions = tuple(conversion_action_types)
        self._leads = tuple(lead_action_types)

    @classmethod
    def from_settings(
        cls, http: HttpContext, settings: Settings, *, current_only: bool = True
    ) -> MetaClient:
        """The client for this configuration; ``ConfigError`` without ``META_ACCESS_TOKEN``.
        ``current_only=False``: also for an expired version (``doctor`` reports it itself)."""
        token = settings.meta_access_token
        if token is None or not token.get_secret_value():
            raise ConfigError("META_ACCESS_TOKEN is not set: collect-daily cannot call Meta")
        if current_only:
            # An expired version fails every run before its first call, naming the setting.
            require_current(pinned_versions(settings)[0], today_utc(http.now()))
        return cls(
            http,
            base=settings.meta_api_base,
            version=settings.meta_api_version,
            access_token=token.get_secret_value(),
            conversion_action_types=settings.meta_conversion_action_types,
            lead_action_types=settings.meta_lead_action_types,
        )

    async def daily_insights(self, ad_account_id: str, day: date) -> MetaInsight | None:
        """The account's totals for ``day``, or ``None`` when Meta has no row (no activity)."""
        rows = await self.insights(ad_account_id, day, day)
        return rows[0] if rows else None

    async def insights(self, ad_account_id: str, since: date, until: date) -> list[MetaInsight]:
        """One row per day of ``since`` … ``until`` that Meta has a row for, in date order.

        One request chain: ``time_increment=1`` asks for a row per day of the ``time_range``
        (Meta's Ad Account Insights reference; airbyte source-facebook-marketing reads daily
        rows the same way), and every ``paging.next`` is followed. A day sent twice is kept
        once when identical (``MetaInsight.__add__``). Raises :class:`PayloadError` for a
        malformed page, conflicting rows, a row outside the range or a paging loop, and the
        :class:`FetchError` family from the HTTP layer.
        """
        account = normalize_ad_account_id(ad_account_id)
        return await self._halving(account, since, until, f"Meta ad account {account}")

    async def _halving(
        self, account: str, since: date, until: date, unit: str
    ) -> list[MetaInsight]:
        """:meth:`_collect`, split in halves each time Meta times out on the amount of data.

        The Ads Insights API answers 100/1504018 or 2/1504038, "Request Timed Out: Try a
        smaller date range" (Ads Insights API error codes,
        https://developers.facebook.com/documentation/ads-commerce/marketing-api/insights/error-codes);
        the same range would time out again, so each half is asked for on its own, down to
        one day. A single day that still times out fails the unit, with Meta's code.
        """
        try:
            return await self._collect(account, since, until, unit)
        except TooMuchData as exc:
            if since >= until:
                raise TooMuchData(
                    f"{unit}: Meta timed out even for the single day {since.isoformat()}"
                    f" ({exc.detail}); no smaller request is possible: run it again later",
                    url=exc.url,
                    status=exc.status,
                    attempts=exc.attempts,
                    detail=exc.detail,
                ) from None
        middle = since + (until - since) // 2
        log.info("%s: too much data for %s … %s, asking for each half", unit, since, until)
        first = await self._halving(account, since, middle, unit)
        return first + await self._halving(account, middle + timedelta(days=1), until, unit)

    async def account_details(self, ad_account_id: str) -> AccountDetails:
        """``GET /{version}/act_{id}?fields=name,timezone_name,currency,account_status``: the
        account's own time zone (Meta counts its days there), currency and status
        (facebook-python-business-sdk, ``AdAccount.Field.timezone_name`` / ``currency`` /
        ``account_status``). The call draws on the ad account's quota like an insights call
        (its URL is ``/act_{id}``, its pacing scope), so it is paced and set aside the same way."""
        account = normalize_ad_account_id(ad_account_id)
        unit = f"Meta ad account {account}"
        url = f"{self._base}/{self._version}/act_{account}"
        params = {"fields": DETAIL_FIELDS, "access_token": self._token}
        return await self._http.fetch_parsed(
            "GET",
            url,
            lambda response: parse_account_details(
                decode_json(response, unit), ad_account_id=account
            ),
            params=params,
        )

    async def debug_token(self) -> TokenInfo:
        """``GET /{version}/debug_token?input_token=…``: the token inspects itself (a token
        may debug itself when it belongs to the app; Graph API reference, Debug-Token). An
        invalid token is answered with error 190 (OAuthException), a FetchError here."""
        return await self._http.fetch_parsed(
            "GET",
            f"{self._base}/{self._version}/debug_token",
            lambda response: parse_debug_token(decode_json(response, "Meta debug_token")),
            params={"input_token": self._token, "access_token": self._token},
        )

    def _origin(self) -> str:
        base = httpx.URL(self._base)
        return str(base.copy_with(path="/", query=None, fragment=None)).rstrip("/")

    def _home(self, url: str) -> bool:
        """Whether ``url`` is on the configured API origin: ``META_API_BASE``'s scheme, host
        and port. ``paging.next`` carries every parameter, the access token included, so it is
        followed nowhere else: Meta documents it as "the Graph API endpoint that will return
        the next page of data" (Paginated Results, https://developers.facebook.com/docs/graph-api/results)."""
        return _origin_of(httpx.URL(url)) == _origin_of(httpx.URL(self._base))

    async def _collect(
        self, account: str, since: date, until: date, unit: str
    ) -> list[MetaInsight]:
        url = f"{self._base}/{self._version}/act_{account}/insights"
        params: dict[str, str] | None = {
            "level": "account",
            "time_range": json.dumps(
                {"since": since.isoformat(), "until": until.isoformat()}, separators=(",", ":")
            ),
            "time_increment": "1",
            "fields": INSIGHT_FIELDS,
            # Attributed values as Ads Manager shows them (each ad set's own setting).
            "use_unified_attribution_setting": "true",
            "access_token": self._token,
        }
        asked = since.isoformat() if since == until else f"{since} … {until}"
        days: dict[date, MetaInsight] = {}
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
                    lead_action_types=self._leads,
                ),
                params=params,
            )
            for row in rows:
                if not since <= row.date <= until:
                    raise PayloadError(
                        f"{unit}: page {page}: Meta answered a row for {row.date.isoformat()} "
                        f"when asked for {asked}"
                    )
                days[row.date] = row + days[row.date] if row.date in days else row
            if nxt is None:
                return [days[d] for d in sorted(days)]
            if nxt in seen:
                raise PayloadError(
                    f"{unit}: paging loop: page {page} points back to a page already read"
                )
            if not self._home(nxt):
                # Never shown: the URL carries the token, and its host is the answer's choice.
                raise PayloadError(
                    f"{unit}: page {page}: paging.next leaves {self._origin()} (another host,"
                    " port or scheme); not followed, so the access token stays here"
                )
            seen.add(nxt)
            url, params = nxt, None  # the next URL carries every parameter, token included
        raise PayloadError(f"{unit}: more than {MAX_PAGES} pages for {asked}; paging loop?")
