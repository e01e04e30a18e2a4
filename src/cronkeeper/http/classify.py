"""Retry decisions as pure functions: what a failed attempt means and how long to wait.

Kept free of I/O so that every rule of the SPEC's Retry section can be proved by a table
test, and so that :mod:`cronkeeper.http.retry` only has to wire these answers into tenacity.

Only two outcomes are ever retried: a fault that a later attempt can outlive (timeouts,
dropped connections, 408, 429, 5xx) and Meta's throttling or transient errors, which Meta
sends as HTTP 400/403 with a JSON ``error.code``. Every other client error fails at once,
because no wait fixes an expired token or an invalid parameter and waiting only burns the
run's time budget.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, NamedTuple

import httpx

__all__ = [
    "BLOCK_SETTING",
    "BUC_HEADER",
    "META_APP_THROTTLE_CODES",
    "META_THROTTLE_CODES",
    "META_TOO_MUCH_DATA",
    "META_TRANSIENT_CODES",
    "META_VERSION_REFUSED",
    "MetaError",
    "Reason",
    "Verdict",
    "api_error_text",
    "buc_wait_seconds",
    "classify",
    "classify_exception",
    "is_too_much_data",
    "is_version_refusal",
    "meta_error",
    "parse_retry_after",
]

Reason = Literal[
    "timeout",
    "connection",
    "status_408",
    "status_429",
    "status_5xx",
    "meta_throttle",
    "meta_transient",
]

BUC_HEADER = "X-Business-Use-Case-Usage"
AD_ACCOUNT_USAGE_HEADER = "X-Ad-Account-Usage"
BLOCK_SETTING = "META_THROTTLE_BLOCK"
"""The ``wait_source`` of a throttle Meta gave no estimate for: its documented blocking period."""
RETRY_AFTER_HEADER = "Retry-After"

# https://developers.facebook.com/docs/graph-api/overview/rate-limiting and error reference.
META_THROTTLE_CODES = frozenset({4, 17, 32, 341, 613, *range(80000, 80015)})
META_TRANSIENT_CODES = frozenset({1, 2})
# Meta error codes whose limit is the app's, shared by every ad account we query with it.
# Meta's Marketing API rate-limiting page
# (https://developers.facebook.com/docs/marketing-api/overview/rate-limiting) ties error 17
# (subcode 2446079, "User request limit reached") and 613 (subcode 1487742, "There have been
# too many calls from this ad-account") to the ad account's business-use-case quota, and 4
# ("Application request limit reached"; subcodes 1504022 or 1504039, "too many calls from this
# app") to the app, as does the Ads Insights API error-code page (4/1504022 and 4/1504039,
# "Your app has exceeded the allowed number of API requests",
# https://developers.facebook.com/documentation/ads-commerce/marketing-api/insights/error-codes).
# 341 "Application limit reached" (Graph API error reference) is the app's too. Everything
# else (17, 613, 80000–80014 business use case, 32 page) holds only the object it names.
META_APP_THROTTLE_CODES = frozenset({4, 341})
# "Request Timed Out: Your request timed out. Try a smaller date range, fetch less data, or use
# async jobs." (Ads Insights API Error Codes,
# https://developers.facebook.com/documentation/ads-commerce/marketing-api/insights/error-codes):
# the same request would time out again, so it is not retried but split (code 2 is otherwise
# transient; this subcode is not).
META_TOO_MUCH_DATA = frozenset({(100, 1504018), (2, 1504038)})
# "(#2635) You are calling a deprecated version of the Ads API. Please update to the latest
# version" (facebook-python-business-sdk issue #148 and the other Business SDKs' reports): the
# version in the URL has expired (Marketing API versions page); no account will be served.
META_VERSION_REFUSED = 2635
_DEPRECATED_VERSION = re.compile(r"deprecated (api )?version", re.IGNORECASE)

_DELTA_SECONDS = re.compile(r"\d+(?:\.\d+)?")
_WHITESPACE = re.compile(r"\s+")
_ASCII_DIGITS = re.compile(r"[0-9]{1,18}")


class MetaError(NamedTuple):
    """The parts of a Graph API ``{"error": {...}}`` body that decide a retry."""

    code: int
    subcode: int | None
    is_transient: bool
    message: str


@dataclass(frozen=True)
class Verdict:
    """How one attempt ended.

    ``server_wait`` is what the server asked for (``None`` means it asked nothing, so the
    policy's default wait applies); ``wait_source`` names the header that carried the ask, so
    an error can tell the operator where the number came from.
    """

    kind: Literal["ok", "retry", "fail"]
    reason: Reason | None = None
    server_wait: float | None = None
    wait_source: str | None = None
    meta: MetaError | None = None


def _json(body: bytes | str | Any) -> Any:
    """Decode a body if it is text; a malformed body is simply 'not JSON', never an error."""
    if isinstance(body, bytes | bytearray | str):
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            return None
    return body


def _int(value: Any) -> int | None:
    """An integer code from a JSON number or a string of ASCII digits; ``None`` otherwise.

    ASCII only: ``str.isdigit`` is true for ``"²"`` (which ``int`` refuses with a raw
    ``ValueError``) and ``int`` reads ``"١٧"`` as 17; neither is a code Meta sends.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _ASCII_DIGITS.fullmatch(value.strip()):
        return int(value.strip())
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def parse_retry_after(value: str, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or ``None`` when it cannot be read.

    ``None`` (not 0) for garbage, so the caller falls back to its default wait instead of
    hammering a server whose ask it could not understand. A date in the past means the server
    is ready again: 0.
    """
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (ValueError, TypeError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with no claim about local time
        when = when.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def buc_wait_seconds(header: str) -> float | None:
    """Seconds Meta says a business stays throttled, from ``X-Business-Use-Case-Usage``.

    The header maps business ids to usage entries; any one throttled entry blocks the call,
    so the longest ``estimated_time_to_regain_access`` (minutes) wins. ``None`` when nothing
    is throttled or the header is unreadable.
    """
    data = _json(header)
    if not isinstance(data, dict):
        return None
    minutes: list[float] = []
    for entries in data.values():
        for entry in entries if isinstance(entries, list) else [entries]:
            if isinstance(entry, dict):
                value = _number(entry.get("estimated_time_to_regain_access"))
                if value is not None and value > 0:
                    minutes.append(value)
    return max(minutes) * 60.0 if minutes else None


def meta_error(body: bytes | str | Any) -> MetaError | None:
    """The Graph API error in ``body`` (raw or already decoded), or ``None`` if it has none."""
    data = _json(body)
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if not isinstance(error, dict):
        return None
    code = _int(error.get("code"))
    if code is None:
        return None
    message = error.get("message")
    return MetaError(
        code=code,
        subcode=_int(error.get("error_subcode")),
        is_transient=error.get("is_transient") is True,
        message=message if isinstance(message, str) else "",
    )


def is_version_refusal(meta: MetaError | None, text: str = "") -> bool:
    """Meta's #2635, or any API answer saying the version called is deprecated."""
    if meta is not None and meta.code == META_VERSION_REFUSED:
        return True
    return bool(_DEPRECATED_VERSION.search(meta.message if meta is not None else text))


def is_too_much_data(meta: MetaError | None) -> bool:
    """One of the Insights API's "request timed out, try a smaller date range" answers."""
    return meta is not None and (meta.code, meta.subcode) in META_TOO_MUCH_DATA


def api_error_text(body: bytes | str | Any) -> str:
    """The API's own words about the failure, unredacted and uncut (the caller does both).

    Knows the shapes of the APIs cronkeeper calls (Meta ``error.message``, Notion
    ``message``, Mixpanel ``error``) and falls back to the body itself.
    """
    meta = meta_error(body)
    if meta is not None:
        code = f"{meta.code}/{meta.subcode}" if meta.subcode is not None else str(meta.code)
        return f"Meta error {code}: {meta.message}".rstrip(": ")
    data = _json(body)
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):  # Meta's shape without a code, as some 5xx answers have
            data = error
        for key in ("message", "error", "detail"):
            value = data.get(key)
            if isinstance(value, str) and value.strip():
                return _WHITESPACE.sub(" ", value).strip()
    if isinstance(body, bytes | bytearray):
        body = bytes(body[:2000]).decode("utf-8", errors="replace")
    if isinstance(body, str):
        return _WHITESPACE.sub(" ", body[:2000]).strip()
    return ""


def _reset_seconds(header: str) -> float | None:
    data = _json(header)
    if not isinstance(data, dict):
        return None
    value = _number(data.get("reset_time_duration"))
    return value if value is not None and value > 0 else None


def classify(
    status: int,
    headers: Mapping[str, str],
    body: bytes | str | Any,
    now: datetime,
    throttle_block: float | None = None,
) -> Verdict:
    """Decide whether a response is a success, a retryable failure or a permanent one.

    For retryable failures, also say how long the server asked to wait: the longest of
    ``Retry-After`` and (for throttling) Meta's estimates (``estimated_time_to_regain_access``,
    ``X-Ad-Account-Usage`` ``reset_time_duration``), since retrying before any has passed only
    earns another refusal. A Meta throttle with no estimate at all waits ``throttle_block``
    when given: Meta's rate-limiting page says a throttled app or account "will be blocked for
    300 seconds" (development tier) or 60 seconds (standard tier)
    (https://developers.facebook.com/docs/marketing-api/overview/rate-limiting), far longer
    than the default retry schedule, which would only spend the retries on refusals.
    """
    if 200 <= status < 300:
        return Verdict("ok")
    meta = meta_error(body)
    reason: Reason | None = None
    if status == 408:
        reason = "status_408"
    elif status == 429:
        reason = "status_429"
    elif 500 <= status < 600:
        reason = "status_5xx"
    elif status in (400, 403) and meta is not None:
        if is_too_much_data(meta) or is_version_refusal(meta):
            return Verdict("fail", meta=meta)  # no wait changes the answer
        if meta.code in META_THROTTLE_CODES:
            reason = "meta_throttle"
        elif meta.code in META_TRANSIENT_CODES or meta.is_transient:
            reason = "meta_transient"
    if reason is None:
        return Verdict("fail", meta=meta)

    lowered = {key.lower(): value for key, value in headers.items()}
    asks: list[tuple[float, str]] = []
    retry_after = lowered.get(RETRY_AFTER_HEADER.lower())
    if retry_after is not None:
        seconds = parse_retry_after(retry_after, now)
        if seconds is not None:
            asks.append((seconds, RETRY_AFTER_HEADER))
    buc = lowered.get(BUC_HEADER.lower())
    if buc is not None and reason in ("meta_throttle", "status_429"):
        seconds = buc_wait_seconds(buc)
        if seconds is not None:
            asks.append((seconds, BUC_HEADER))
    reset = lowered.get(AD_ACCOUNT_USAGE_HEADER.lower())
    account_throttle = meta is not None and meta.code not in META_APP_THROTTLE_CODES
    if reset is not None and reason == "meta_throttle" and account_throttle:
        seconds = _reset_seconds(reset)
        if seconds is not None:
            asks.append((seconds, AD_ACCOUNT_USAGE_HEADER))
    if not asks and reason == "meta_throttle" and throttle_block is not None:
        asks.append((throttle_block, BLOCK_SETTING))
    if not asks:
        return Verdict("retry", reason, meta=meta)
    wait, source = max(asks)
    return Verdict("retry", reason, server_wait=wait, wait_source=source, meta=meta)


def classify_exception(exc: BaseException) -> Verdict:
    """Decide whether an exception raised while sending or reading is worth another attempt.

    ``TimeoutError`` is the per-attempt ``asyncio.timeout``; httpx's own timeouts are kept
    apart from other transport errors only for the reason they report. Errors in the request
    itself (bad URL, unsupported scheme, too many redirects) will not heal by waiting.
    """
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return Verdict("retry", "timeout")
    if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError | httpx.ProxyError):
        return Verdict("retry", "connection")
    return Verdict("fail")
