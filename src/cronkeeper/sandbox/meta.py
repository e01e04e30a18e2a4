"""A local Meta Marketing API: ``GET /{version}/act_{id}/insights`` at ``level=account`` and
the account's details, ``GET /{version}/act_{id}?fields=name,timezone_name,currency``.

Answers like the Graph API: numbers as strings, ``paging.next`` as an absolute URL that carries
every original parameter (the access token included) plus ``after``, errors as
``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}`` with HTTP 400.
The unit key of an insights request is the ad account id without ``act_``; a details request's
key is ``details:{id}`` (so faults scripted for an account hit its insights, not its details).

With a ``clock`` the figures are Meta's as of that instant, in the account's own time zone
(``timezone_name``: Meta counts an account's day there; airbyte source-facebook-marketing,
``_get_end_date_for_account``): a day not begun has no row, today's row holds only the hours
elapsed, and conversions and leads keep growing for 28 days after a day ("Insights ... do not
change after 28 days of being reported", Meta's Insights API best practices). Without a clock
every day is final (what :meth:`MetaSimulator.expected` returns).

Versions have a lifecycle (Meta's Marketing API version table,
https://developers.facebook.com/documentation/ads-commerce/marketing-api/marketing-api-changelog/versions):
a version on or past its expiration date, or older than every version the table lists, is
answered with error #2635 "You are calling a deprecated version of the Ads API. Please update
to the latest version" (HTTP 400, ``OAuthException``; the wording reported against Meta's own
Business SDKs, e.g. facebook-python-business-sdk issue #148). The table and "today" (the
simulator's clock, else the real one) are the simulator's to set.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from cronkeeper.sandbox._asgi import (
    Reply,
    SimRequest,
    Simulator,
    buc_header,
    fake_trace_id,
    json_reply,
)
from cronkeeper.sandbox.data import MetaDay, date_range, meta_day
from cronkeeper.sandbox.faults import Fault, FaultMix
from cronkeeper.sandbox.quota import (
    ACCOUNT_REFUSALS,
    APP_REFUSAL,
    Admission,
    MetaQuota,
    QuotaPolicy,
)
from cronkeeper.versions import META_VERSIONS, meta_version_key

__all__ = ["AgencyScenario", "MetaAccount", "MetaSimulator", "agency_scenario"]

_PATH = re.compile(r"^/(?P<version>v\d+\.\d+)/act_(?P<id>[^/]+)/insights/?$")
_DETAILS = re.compile(r"^/(?P<version>v\d+\.\d+)/act_(?P<id>[^/]+)/?$")
_DEBUG = re.compile(r"^/(?P<version>v\d+\.\d+)/debug_token/?$")
DEBUG_KEY = "debug_token"
"""The unit key of ``GET /debug_token`` requests (to script faults on them)."""
DETAILS_KEY = "details:"
INSIGHTS_TIMEOUTS = {100: 1504018, 2: 1504038}
"""Ads Insights API error codes: "Request Timed Out", code → subcode (sync requests)."""
DEFAULT_PAGE_SIZE = 25
"""Rows per page without ``limit`` (Graph API cursor paging; Meta's ``limit`` parameter)."""
_STATUS_MESSAGES = {
    408: "Request timed out",
    429: "Too many requests",
    500: "An unexpected error has occurred. Please retry your request later.",
    502: "Bad Gateway",
    503: "Service temporarily unavailable",
    504: "Gateway timeout",
}


def strip_act(account_id: str | int) -> str:
    text = str(account_id).strip()
    return text[4:] if text.startswith("act_") else text


@dataclass(frozen=True)
class MetaAccount:
    """One ad account the simulator knows.

    ``pages`` > 1 serves each day's row on that many pages (the same row repeated: only the
    last page lacks ``paging.next``). Not split into parts that sum to the day: Meta sends one
    row per account and day at ``level=account`` (``time_increment=1``), so a client must
    keep a repeat once and refuse rows that disagree, never add them (issue 19).
    ``no_delivery`` answers ``{"data": []}`` as Meta does for an account that spent nothing.
    ``timezone_name`` is where the account's days begin and end.
    ``max_range_days``: an insights request whose ``time_range`` spans more days than this is
    answered with Meta's "Request Timed Out" (``timeout_code`` 100, subcode 1504018, or 2,
    subcode 1504038; Ads Insights API error codes,
    https://developers.facebook.com/documentation/ads-commerce/marketing-api/insights/error-codes:
    "Your request timed out. Try a smaller date range, fetch less data, or use async jobs.").
    """

    account_id: str
    currency: str = "USD"
    pages: int = 1
    no_delivery: bool = False
    timezone_name: str = "UTC"
    name: str | None = None
    max_range_days: int | None = None
    timeout_code: int = 100
    no_delivery_days: frozenset[date] = frozenset()
    """Days without delivery: no row for them, as Meta answers such a day (see
    ``no_delivery``); a test moves a day in here to model a row Meta drops on restating."""
    account_status: int = 1
    """Meta's ``account_status`` (1 active, 2 disabled, 101 closed, …; AdAccount reference)."""
    permitted: bool = True
    """``False``: the token may not read this account; every call answers Meta's permission
    error (see :func:`permission_refusal`)."""
    closed_refuses: bool = False
    """With ``account_status`` 101 (closed): insights calls are refused (see
    :func:`_closed_refusal`) instead of answering the history."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "account_id", strip_act(self.account_id))
        if not self.account_id.isdigit():
            raise ValueError(f"a Meta ad account id is digits, got {self.account_id!r}")
        if self.pages < 1:
            raise ValueError("pages must be >= 1")
        if self.timeout_code not in INSIGHTS_TIMEOUTS:
            raise ValueError(f"timeout_code must be one of {sorted(INSIGHTS_TIMEOUTS)}")
        ZoneInfo(self.timezone_name)  # a bad zone fails here, not in a request


class MetaSimulator(Simulator):
    """Meta insights with deterministic data (:func:`~cronkeeper.sandbox.data.meta_day`).

    Clients use ``base_url`` as ``META_API_BASE`` and any ``vNN.N`` version. Fault keys are
    ad account ids (``"123"`` or ``"act_123"`` both work).
    """

    def __init__(
        self,
        accounts: Iterable[MetaAccount | str | int],
        *,
        access_token: str = "sandbox-meta-token",  # noqa: S107 - a fake, sandbox only
        seed: int = 0,
        latency: float = 0.0,
        scripts: Mapping[str | int, Sequence[Fault | None]] | None = None,
        always: Mapping[str | int, Fault] | None = None,
        mix: FaultMix | None = None,
        clock: Callable[[], datetime] | None = None,
        quota: MetaQuota | None = None,
        versions: Mapping[str, date | None] | None = None,
        next_base: str | None = None,
        token_scopes: Sequence[str] = ("ads_read", "business_management"),
        token_expires_at: datetime | None = None,
        data_access_expires_at: datetime | None = None,
    ) -> None:
        self.token_scopes = tuple(token_scopes)
        """What ``/debug_token`` lists in ``scopes`` (drop ``ads_read`` to model a token
        granted without it)."""
        self.token_expires_at = token_expires_at
        """``/debug_token``'s ``expires_at``; ``None`` answers 0: never (a system user's)."""
        self.data_access_expires_at = data_access_expires_at
        self.next_base = next_base.rstrip("/") if next_base else None
        """Where ``paging.next`` points (``scheme://host:port``); ``None``: this server, as
        Meta does. Another origin is a hostile or broken answer: the token must not follow."""
        self.access_token = access_token
        self.versions = dict(META_VERSIONS if versions is None else versions)
        """Version → expiration date (``None``: not announced); see the module docstring."""
        self.seed = seed
        self.clock = clock
        self.quota = quota
        """Rolling-window quotas per ad account and app (:mod:`.quota`); ``None``: unlimited."""
        self.accounts: dict[str, MetaAccount] = {}
        for account in accounts:
            acc = account if isinstance(account, MetaAccount) else MetaAccount(str(account))
            self.accounts[acc.account_id] = acc
        super().__init__(latency=latency, scripts=scripts, always=always, mix=mix)

    def normalize_key(self, key: str | int) -> str:
        return strip_act(key)

    def expected(self, account_id: str | int, day: date) -> MetaDay:
        """The day's final totals for that account (what Meta reports once 28 days passed)."""
        acc_id = strip_act(account_id)
        currency = self.accounts[acc_id].currency if acc_id in self.accounts else "USD"
        return meta_day(acc_id, day, seed=self.seed, currency=currency)

    def served(self, account_id: str | int, day: date) -> MetaDay | None:
        """The row the simulator answers for that day right now (``None``: no row yet)."""
        acc_id = strip_act(account_id)
        final = self.expected(acc_id, day)
        if self.clock is None:
            return final
        zone = ZoneInfo(self.accounts[acc_id].timezone_name if acc_id in self.accounts else "UTC")
        return final.as_of(self.clock().astimezone(zone))

    # -- Simulator ----------------------------------------------------------------------------

    def route_key(self, request: SimRequest) -> str | None:
        if _DEBUG.match(request.path):
            return DEBUG_KEY
        match = _PATH.match(request.path)
        if match:
            return match["id"]
        details = _DETAILS.match(request.path)
        return f"{DETAILS_KEY}{strip_act(details['id'])}" if details else None

    def status_reply(self, status: int) -> Reply:
        message = _STATUS_MESSAGES.get(status, f"HTTP {status}")
        error: dict[str, object] = {
            "message": message,
            "type": "FacebookApiException",
            "fbtrace_id": fake_trace_id("status", status),
        }
        return json_reply(status, {"error": error})

    def handle(self, request: SimRequest, key: str | None) -> Reply:
        debug = _DEBUG.match(request.path)
        if debug is not None and request.method == "GET":
            return self._debug_token(request)
        match = _PATH.match(request.path) or _DETAILS.match(request.path)
        if match is None:
            return _error(400, 2500, f"Unknown path components: {request.path}")
        if request.method != "GET":
            return _error(400, 100, f"Unsupported {request.method.lower()} request.")
        if self.version_expired(match["version"]):
            latest = max(self.versions, key=_version_number, default="")
            return _error(
                400,
                2635,
                "(#2635) You are calling a deprecated version of the Ads API. Please update to"
                f" the latest version: {latest}.",
            )
        if not self._authorised(request):
            return _error(
                400,
                190,
                "Error validating access token: Session has expired",
                subcode=463,
            )
        account = self.accounts.get(match["id"])
        if account is None:
            return _error(
                400,
                100,
                f"Unsupported get request. Object with ID 'act_{match['id']}' does not exist, "
                "cannot be loaded due to missing permissions, or does not support this "
                "operation. Please read the Graph API documentation at "
                "https://developers.facebook.com/docs/graph-api",
                subcode=33,
                type_="GraphMethodException",
            )
        if not account.permitted:
            return permission_refusal(account)
        if not request.path.rstrip("/").endswith("/insights"):
            return self._details_under_quota(account, request)
        if account.account_status == 101 and account.closed_refuses:
            return _closed_refusal(account)
        level = request.query.get("level", "account")
        if level != "account":
            return _error(400, 100, f"(#100) The sandbox serves level=account only, not {level}")
        time_range = _parse_time_range(request.query.get("time_range"))
        if time_range is None:
            return _error(400, 100, "(#100) Must be a valid time_range: {since, until}")
        since, until = time_range
        if account.max_range_days is not None and (until - since).days + 1 > account.max_range_days:
            code = account.timeout_code
            return _error(
                400,
                code,
                "Your request timed out. Try a smaller date range, fetch less data, or use async"
                " jobs.",
                subcode=INSIGHTS_TIMEOUTS[code],
            )
        rows = self._parts(account, *time_range, request.query.get("time_increment"))
        size = _page_size(request.query.get("limit"), account)
        if size is None:
            return _error(400, 100, "(#100) limit must be a positive integer")
        parts = [rows[i : i + size] for i in range(0, len(rows), size)]
        fields = _parse_fields(request.query.get("fields"))
        index = 0
        if "after" in request.query or "before" in request.query:
            after = "after" in request.query
            decoded = _decode_cursor(request.query["after" if after else "before"])
            index = -1 if decoded is None else decoded + (1 if after else -1)
            if not 0 <= index < len(parts):
                return _error(400, 100, "(#100) Invalid cursor")
        usage = _light_usage(account.account_id, 1 + index % 5)
        if self.quota is not None:
            admission = self.quota.admit(account.account_id)
            usage = admission.headers
            if not admission.admitted:
                return _quota_refusal(admission)
        if not parts:
            return json_reply(200, {"data": []}, usage)
        cursor = _encode_cursor(index)
        paging: dict[str, object] = {"cursors": {"before": cursor, "after": cursor}}
        if index + 1 < len(parts):
            query = [(k, v) for k, v in request.query_items if k not in ("after", "before")]
            query.append(("after", cursor))
            origin = self.next_base or request.base_url
            paging["next"] = f"{origin}{request.path}?{urlencode(query)}"
        if index > 0:
            query = [(k, v) for k, v in request.query_items if k not in ("after", "before")]
            query.append(("before", cursor))
            paging["previous"] = f"{request.base_url}{request.path}?{urlencode(query)}"
        data = [part.to_row(fields) for part in parts[index]]
        return json_reply(200, {"data": data, "paging": paging}, usage)

    def today(self) -> date:
        now = self.clock() if self.clock is not None else datetime.now(UTC)
        return now.astimezone(UTC).date() if now.tzinfo is not None else now.date()

    def version_expired(self, version: str) -> bool:
        """Whether Meta would refuse ``version`` today (expired, or older than the table)."""
        key = meta_version_key(version)
        if key is None or not self.versions:
            return False
        if key in self.versions:
            expires = self.versions[key]
            return expires is not None and self.today() >= expires
        oldest = min(self.versions, key=_version_number)
        return _version_number(key) < _version_number(oldest)

    # -- helpers ------------------------------------------------------------------------------

    def _authorised(self, request: SimRequest) -> bool:
        token = request.query.get("access_token")
        if token is None:
            auth = request.headers.get("authorization", "")
            token = auth[7:] if auth.lower().startswith("bearer ") else None
        if not token:
            return False
        return hmac.compare_digest(token.encode(), self.access_token.encode())

    def _debug_token(self, request: SimRequest) -> Reply:
        """``GET /debug_token?input_token=…&access_token=…`` (Graph API reference,
        Debug-Token, https://developers.facebook.com/docs/graph-api/reference/debug_token):
        ``{"data": {"type", "application", "is_valid", "expires_at",
        "data_access_expires_at", "scopes", …}}`` with Unix seconds (the example answer of
        https://developers.facebook.com/documentation/threads/troubleshooting/debug-access-token).
        An access token that is not valid is refused as every call is, error 190
        (OAuthException), before the input token is looked at."""
        if not self._authorised(request):
            return _error(400, 190, "Invalid OAuth access token - Cannot parse access token")
        given = request.query.get("input_token", "")
        valid = hmac.compare_digest(given.encode(), self.access_token.encode())
        if self.token_expires_at is not None and self.clock is not None:
            valid = valid and self.clock() < self.token_expires_at
        data: dict[str, object] = {
            "app_id": "1000000000000001",
            "type": "USER",
            "application": "cronkeeper sandbox",
            "is_valid": valid,
            "expires_at": _unix(self.token_expires_at),
            "data_access_expires_at": _unix(self.data_access_expires_at),
            "scopes": list(self.token_scopes),
            "user_id": "1000000000000002",
        }
        return json_reply(200, {"data": data})

    def _details(self, account: MetaAccount, request: SimRequest) -> Reply:
        """``GET /act_{id}``: the ad account node (facebook-python-business-sdk ``AdAccount``
        fields ``name``, ``timezone_name``, ``currency``; ``id`` always, with ``act_``)."""
        node: dict[str, object] = {
            "name": account.name or f"Sandbox account {account.account_id}",
            "timezone_name": account.timezone_name,
            "currency": account.currency,
            "account_status": account.account_status,
        }
        fields = _parse_fields(request.query.get("fields"))
        if fields is not None:
            node = {k: v for k, v in node.items() if k in fields}
        node["id"] = f"act_{account.account_id}"
        return json_reply(200, node)

    # -- agency scale (issue 17): details under the quota ------------------------------------

    def _details_under_quota(self, account: MetaAccount, request: SimRequest) -> Reply:
        """A details call draws on the ad account's quota like an insights call: Meta's
        Business Use Case limits count every Marketing API call of the ad account, not only
        insights, and every answer carries the usage headers
        (https://developers.facebook.com/docs/graph-api/overview/rate-limiting, "Business Use
        Case Rate Limits" and "Headers"; airbyte's source-facebook-marketing reads account
        details through the same throttled ``FacebookAdsApi``). Before issue 17 the simulator
        answered details outside its quota, so no test could see a throttled details call."""
        if self.quota is None:
            return self._details(account, request)
        admission = self.quota.admit(account.account_id)
        if not admission.admitted:
            return _quota_refusal(admission)
        usage = [(k, v) for k, v in admission.headers if k.lower() != "x-fb-ads-insights-throttle"]
        return self._details(account, request).with_headers(*usage)

    def _parts(
        self, account: MetaAccount, since: date, until: date, increment: str | None
    ) -> list[MetaDay]:
        if account.no_delivery:
            return []
        served = (
            self.served(account.account_id, d)
            for d in date_range(since, until)
            if d not in account.no_delivery_days
        )
        days = [d for d in served if d is not None]
        if not days:
            return []
        rows = days if increment == "1" or len(days) == 1 else [MetaDay.total(days)]
        return [row for row in rows for _ in range(account.pages)]


def _light_usage(account_id: str, pct: int) -> list[tuple[str, str]]:
    """All four of Meta's usage headers at a low ``pct`` (no quota simulated): X-App-Usage,
    X-Ad-Account-Usage, X-Business-Use-Case-Usage and x-fb-ads-insights-throttle (see
    :mod:`.quota` for where each comes from)."""
    dump = partial(json.dumps, separators=(",", ":"))
    tier = "standard_access"
    return [
        ("X-App-Usage", dump({"call_count": pct, "total_cputime": pct, "total_time": pct})),
        (
            "X-Ad-Account-Usage",
            dump({"acc_id_util_pct": pct, "reset_time_duration": 0, "ads_api_access_tier": tier}),
        ),
        ("X-Business-Use-Case-Usage", buc_header(account_id, 0, pct)),
        (
            "x-fb-ads-insights-throttle",
            dump({"app_id_util_pct": pct, "acc_id_util_pct": pct, "ads_api_access_tier": tier}),
        ),
    ]


def _unix(moment: datetime | None) -> int:
    return 0 if moment is None else int(moment.timestamp())


def _version_number(key: str) -> tuple[int, int]:
    normal = meta_version_key(key) or "v0.0"
    major, _, minor = normal[1:].partition(".")
    return int(major), int(minor)


def _error(
    status: int,
    code: int,
    message: str,
    *,
    subcode: int | None = None,
    type_: str = "OAuthException",
) -> Reply:
    error: dict[str, object] = {"message": message, "type": type_, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = fake_trace_id(code, message)
    return json_reply(status, {"error": error})


def permission_refusal(account: MetaAccount) -> Reply:
    """Meta's answer when the token lacks permission on the ad account: code 200 ("Permissions
    error", the 200-299 family) on insights, as Meta's error reference lists it
    (https://developers.facebook.com/docs/graph-api/guides/error-handling: 10 "API Permission
    Denied", 200-299 "API Permission"). Not retried by the client (a permanent client error)."""
    return _error(
        400,
        200,
        f"(#200) Ad account owner has NOT grant ads_management or ads_read permission"
        f" (act_{account.account_id})",
        type_="OAuthException",
    )


def _closed_refusal(account: MetaAccount) -> Reply:
    """A simulator's choice for a closed account's insights: the Graph API's answer for an
    object the token cannot load (code 100, subcode 33, as for an unknown account above)."""
    return _error(
        400,
        100,
        f"Unsupported get request. Object with ID 'act_{account.account_id}' does not exist,"
        " cannot be loaded due to missing permissions, or does not support this operation.",
        subcode=33,
        type_="GraphMethodException",
    )


def _quota_refusal(admission: Admission) -> Reply:
    """Meta's answer to a call over a quota: HTTP 400 with the code and subcode Meta's
    rate-limiting page gives for that scope (:mod:`.quota`), usage headers kept."""
    code = admission.refusal_code
    known = APP_REFUSAL if code == APP_REFUSAL[0] else ACCOUNT_REFUSALS.get(code or 0)
    code, subcode, message = known or ACCOUNT_REFUSALS[17]
    return _error(400, code, message, subcode=subcode).with_headers(*admission.headers)


def _parse_time_range(raw: str | None) -> tuple[date, date] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
        since = date.fromisoformat(value["since"])
        until = date.fromisoformat(value["until"])
    except (ValueError, TypeError, KeyError):
        return None
    if since > until or (until - since).days > 366:
        return None
    return since, until


def _page_size(raw: str | None, account: MetaAccount) -> int | None:
    """Rows per page: ``limit``, else 25; an account split over pages gets one part a page."""
    if raw is None:
        return 1 if account.pages > 1 else DEFAULT_PAGE_SIZE
    return int(raw) if raw.isdigit() and int(raw) > 0 else None


def _parse_fields(raw: str | None) -> set[str] | None:
    if raw is None:
        return None
    return {f.strip() for f in raw.split(",") if f.strip()}


def _encode_cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"row:{index}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    prefix, _, number = text.partition(":")
    if prefix != "row" or not number.isdigit():
        return None
    return int(number)


# -- an agency's scale (issue 17): a documented scenario ---------------------------------------

AGENCY_ZONES = (
    "America/Los_Angeles",
    "America/New_York",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Seoul",
    "Australia/Sydney",
)
AGENCY_CURRENCIES = ("USD", "EUR", "KRW")
AGENCY_INACTIVE_STATUSES = (2, 101, 3, 7, 100)
"""Disabled, closed, unsettled, pending risk review, pending closure (Meta's AdAccount
reference, ``account_status``), given in turn to the inactive accounts."""


@dataclass(frozen=True)
class AgencyScenario:
    """A thousand ad accounts as an agency has them; see :func:`agency_scenario`."""

    accounts: tuple[MetaAccount, ...]
    policy: QuotaPolicy

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(a.account_id for a in self.accounts)

    @property
    def inactive(self) -> tuple[str, ...]:
        return tuple(a.account_id for a in self.accounts if a.account_status != 1)

    @property
    def forbidden(self) -> tuple[str, ...]:
        return tuple(a.account_id for a in self.accounts if not a.permitted)

    @property
    def active(self) -> tuple[str, ...]:
        return tuple(a.account_id for a in self.accounts if a.account_status == 1 and a.permitted)

    def simulator(
        self,
        *,
        access_token: str = "sandbox-meta-token",  # noqa: S107 - a fake, sandbox only
        latency: float = 0.0,
        clock: Callable[[], datetime] | None = None,
        quota_clock: Callable[[], float] | None = None,
    ) -> MetaSimulator:
        """A simulator serving these accounts under a fresh quota of :attr:`policy`."""
        quota = MetaQuota(self.policy, **({"clock": quota_clock} if quota_clock else {}))
        return MetaSimulator(
            self.accounts, access_token=access_token, latency=latency, clock=clock, quota=quota
        )


def agency_scenario(
    accounts: int = 1000,
    *,
    inactive_per_100: int = 3,
    forbidden_per_100: int = 1,
    policy: QuotaPolicy | None = None,
    first_id: int = 120_230_000_000_000,
) -> AgencyScenario:
    """``accounts`` ad accounts over six time zones and three currencies (in turn), of which
    ``inactive_per_100`` in a hundred are inactive (statuses 2, 101, 3, 7, 100 in turn; the
    closed ones refuse insights, the others answer with no delivery, as a disabled account
    spends nothing) and ``forbidden_per_100`` the token has no permission on (Meta's error
    200 on every call). Deterministic: account ``i`` is inactive (or forbidden) when
    ``i % 100`` falls on one of that many evenly spaced slots; the same call gives the same
    world.

    ``policy`` defaults to a binding quota scaled from Meta's hour to 10 s windows: 500 app
    calls and 10 per ad account per window (a complete run needs 3 calls per account: the
    details and two insights pages of a 28-day lookback). Use it from tests
    (``agency_scenario(40).simulator(...)``) and from scripts (``bench/agency_scale.py``).
    """
    if not 0 <= inactive_per_100 + forbidden_per_100 <= 100:
        raise ValueError("inactive and forbidden accounts are at most 100 per hundred")
    inactive_slots = _spaced(inactive_per_100, offset=0, taken=set())
    forbidden_slots = _spaced(forbidden_per_100, offset=50, taken=inactive_slots)
    made: list[MetaAccount] = []
    statuses = iter(AGENCY_INACTIVE_STATUSES * (accounts // len(AGENCY_INACTIVE_STATUSES) + 1))
    for i in range(accounts):
        slot = i % 100
        status = next(statuses) if slot in inactive_slots else 1
        made.append(
            MetaAccount(
                str(first_id + i),
                currency=AGENCY_CURRENCIES[i % len(AGENCY_CURRENCIES)],
                timezone_name=AGENCY_ZONES[i % len(AGENCY_ZONES)],
                name=f"Agency client {i + 1}",
                account_status=status,
                no_delivery=status not in (1, 101),
                closed_refuses=status == 101,
                permitted=slot not in forbidden_slots,
            )
        )
    return AgencyScenario(
        tuple(made), policy or QuotaPolicy(account_calls=10, app_calls=500, window=10.0)
    )


def _spaced(count: int, *, offset: int, taken: set[int]) -> set[int]:
    """``count`` slots of 0…99 spaced evenly from ``offset``, each moved on past ``taken``."""
    slots: set[int] = set()
    for k in range(count):
        slot = (offset + round(k * 100 / count)) % 100
        while slot in taken or slot in slots:
            slot = (slot + 1) % 100
        slots.add(slot)
    return slots
