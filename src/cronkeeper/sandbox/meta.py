"""A local Meta Marketing API: ``GET /{version}/act_{id}/insights`` at ``level=account``.

Answers like the Graph API: numbers as strings, ``paging.next`` as an absolute URL that carries
every original parameter (the access token included) plus ``after``, errors as
``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}`` with HTTP 400.
The unit key of a request is the ad account id without ``act_``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlencode

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
from cronkeeper.sandbox.quota import Admission, MetaQuota

__all__ = ["MetaAccount", "MetaSimulator"]

_PATH = re.compile(r"^/(?P<version>v\d+\.\d+)/act_(?P<id>[^/]+)/insights/?$")
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

    ``pages`` > 1 splits each day's row over that many pages (same ``date_start``, metrics
    summing to the day's totals; only the last page lacks ``paging.next``). ``no_delivery``
    answers ``{"data": []}`` as Meta does for an account that spent nothing.
    """

    account_id: str
    currency: str = "USD"
    pages: int = 1
    no_delivery: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "account_id", strip_act(self.account_id))
        if not self.account_id.isdigit():
            raise ValueError(f"a Meta ad account id is digits, got {self.account_id!r}")
        if self.pages < 1:
            raise ValueError("pages must be >= 1")


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
        quota: MetaQuota | None = None,
    ) -> None:
        self.access_token = access_token
        self.seed = seed
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
        """The day's totals the simulator serves for that account (what a collector stores)."""
        acc_id = strip_act(account_id)
        currency = self.accounts[acc_id].currency if acc_id in self.accounts else "USD"
        return meta_day(acc_id, day, seed=self.seed, currency=currency)

    # -- Simulator ----------------------------------------------------------------------------

    def route_key(self, request: SimRequest) -> str | None:
        match = _PATH.match(request.path)
        return match["id"] if match else None

    def status_reply(self, status: int) -> Reply:
        message = _STATUS_MESSAGES.get(status, f"HTTP {status}")
        error: dict[str, object] = {
            "message": message,
            "type": "FacebookApiException",
            "fbtrace_id": fake_trace_id("status", status),
        }
        return json_reply(status, {"error": error})

    def handle(self, request: SimRequest, key: str | None) -> Reply:
        match = _PATH.match(request.path)
        if match is None:
            return _error(400, 2500, f"Unknown path components: {request.path}")
        if request.method != "GET":
            return _error(400, 100, f"Unsupported {request.method.lower()} request.")
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
        level = request.query.get("level", "account")
        if level != "account":
            return _error(400, 100, f"(#100) The sandbox serves level=account only, not {level}")
        time_range = _parse_time_range(request.query.get("time_range"))
        if time_range is None:
            return _error(400, 100, "(#100) Must be a valid time_range: {since, until}")
        parts = self._parts(account, *time_range, request.query.get("time_increment"))
        fields = _parse_fields(request.query.get("fields"))
        index = 0
        if "after" in request.query or "before" in request.query:
            after = "after" in request.query
            decoded = _decode_cursor(request.query["after" if after else "before"])
            index = -1 if decoded is None else decoded + (1 if after else -1)
            if not 0 <= index < len(parts):
                return _error(400, 100, "(#100) Invalid cursor")
        usage = [("X-Business-Use-Case-Usage", buc_header(account.account_id, 0, 1 + index % 5))]
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
            paging["next"] = f"{request.base_url}{request.path}?{urlencode(query)}"
        if index > 0:
            query = [(k, v) for k, v in request.query_items if k not in ("after", "before")]
            query.append(("before", cursor))
            paging["previous"] = f"{request.base_url}{request.path}?{urlencode(query)}"
        return json_reply(200, {"data": [parts[index].to_row(fields)], "paging": paging}, usage)

    # -- helpers ------------------------------------------------------------------------------

    def _authorised(self, request: SimRequest) -> bool:
        token = request.query.get("access_token")
        if token is None:
            auth = request.headers.get("authorization", "")
            token = auth[7:] if auth.lower().startswith("bearer ") else None
        if not token:
            return False
        return hmac.compare_digest(token.encode(), self.access_token.encode())

    def _parts(
        self, account: MetaAccount, since: date, until: date, increment: str | None
    ) -> list[MetaDay]:
        if account.no_delivery:
            return []
        days = [
            meta_day(account.account_id, d, seed=self.seed, currency=account.currency)
            for d in date_range(since, until)
        ]
        rows = days if increment == "1" or len(days) == 1 else [MetaDay.total(days)]
        return [part for row in rows for part in row.split(account.pages)]


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


def _quota_refusal(admission: Admission) -> Reply:
    """Meta's answer to a call over a quota: HTTP 400 with the error code, usage headers kept."""
    if admission.refusal_code == 4:
        reply = _error(400, 4, "(#4) Application request limit reached", type_="OAuthException")
    else:
        reply = _error(
            400,
            80000,
            "(#80000) There have been too many calls from this ad-account. Wait a bit and try"
            " again. For more info, please refer to"
            " https://developers.facebook.com/docs/graph-api/overview/rate-limiting.",
            subcode=2446079,
        )
    return reply.with_headers(*admission.headers)


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
