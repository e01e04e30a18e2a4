"""What a failed call says: one sentence naming the call, what the API said and what to do.

Every text is built from parts that already went through the call's redactor (the endpoint
without its query, the API's message redacted before it is cut), so no secret reaches an
error. The retry loop (:mod:`.retry`) decides *which* error; this module only words it.
"""

from __future__ import annotations

import re

import httpx

from cronkeeper.errors import (
    ApiVersionRefused,
    PermanentFetchError,
    RetriesExhausted,
    TooMuchData,
    WaitTooLong,
)
from cronkeeper.http.classify import (
    BLOCK_SETTING,
    BUC_HEADER,
    Verdict,
    api_error_text,
    is_too_much_data,
    is_version_refusal,
)
from cronkeeper.redact import Redactor, truncate

__all__ = [
    "MAX_API_MESSAGE",
    "api_message",
    "client_error",
    "exhausted",
    "held_back",
    "hint",
    "quota_wait",
    "seconds",
    "server_wait_too_long",
    "transport_detail",
    "unsendable",
]

MAX_API_MESSAGE = 300


def seconds(value: float) -> str:
    """A wait as an operator reads it: ``3``, ``0.5``, ``75`` (no ``75.0000001``)."""
    return f"{value:.0f}" if value >= 10 else f"{value:g}"


def api_message(redact: Redactor, body: bytes) -> str:
    """The API's own words, redacted then cut (so a secret cut in half cannot slip past)."""
    return truncate(redact(api_error_text(body)), MAX_API_MESSAGE)


def transport_detail(redact: Redactor, exc: BaseException, timeout: float) -> str:
    """What went wrong before any answer: the timeout, or the exception's redacted words."""
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        # Ours or httpx's (the client's per-operation timeout is the same number).
        return f"no complete answer within the {seconds(timeout)} s timeout"
    text = truncate(redact(str(exc)), MAX_API_MESSAGE)
    return type(exc).__name__ + (f" ({text})" if text else "")


def hint(verdict: Verdict, status: int) -> str:
    """What the operator should do about a client error no wait fixes."""
    if verdict.meta is not None and verdict.meta.code == 190:
        return "the Meta access token is invalid or expired, renew META_ACCESS_TOKEN"
    if verdict.meta is not None and verdict.meta.code == 100:
        return "Meta rejected a parameter, check the ad account id and the fields"
    if status in (401, 403):
        return "check the credentials and their permissions"
    if status == 404:
        return "check the id in the URL"
    return "check the request"


_VERSION_IN_PATH = re.compile(r"/(v\d+\.\d+)(?:/|$)")


def client_error(
    call: str, url: str, got: str, verdict: Verdict, status: int, attempts: int
) -> PermanentFetchError:
    """The error for an answer no wait fixes; its class tells the caller what to do next."""
    if is_version_refusal(verdict.meta, got):
        match = _VERSION_IN_PATH.search(url)
        version = f" {match[1]}" if match else ""
        setting = "META_API_VERSION" if verdict.meta is not None else "the API version setting"
        return ApiVersionRefused(
            f"{call} failed with {got}: the API no longer serves version{version}; upgrade"
            f" {setting} (every unit would get the same answer, so the source stops here)",
            url=url,
            status=status,
            attempts=attempts,
            detail=got,
        )
    if is_too_much_data(verdict.meta):
        return TooMuchData(
            f"{call} failed with {got}: Meta timed out on the amount of data asked for",
            url=url,
            status=status,
            attempts=attempts,
            detail=got,
        )
    return PermanentFetchError(
        f"{call} failed with {got}; not retried, since no wait fixes"
        f" a client error: {hint(verdict, status)}",
        url=url,
        status=status,
        attempts=attempts,
        detail=got,
    )


def unsendable(call: str, url: str, detail: str, attempts: int) -> PermanentFetchError:
    return PermanentFetchError(
        f"{call} could not be sent: {detail}; not retried, fix the request (URL, scheme,"
        " redirects)",
        url=url,
        status=None,
        attempts=attempts,
        detail=detail,
    )


def server_wait_too_long(
    call: str, url: str, got: str, verdict: Verdict, status: int, max_wait: float, attempts: int
) -> WaitTooLong:
    assert verdict.server_wait is not None
    meta = verdict.meta is not None or verdict.wait_source == BUC_HEADER
    if verdict.wait_source == BLOCK_SETTING:
        asked = (
            f"Meta throttled it and named no wait, so it waits Meta's documented blocking"
            f" period of {seconds(verdict.server_wait)} s ({BLOCK_SETTING}; above max_wait"
            f" {seconds(max_wait)} s)"
        )
    else:
        asked = (
            f"{'Meta' if meta else 'the API'} asked to wait {seconds(verdict.server_wait)} s"
            f" (above max_wait {seconds(max_wait)} s) in {verdict.wait_source}"
        )
    return WaitTooLong(
        f"{call}: {asked} after {got}; not waiting: this unit is skipped, run it again later",
        wait_seconds=verdict.server_wait,
        url=url,
        status=status,
        attempts=attempts,
        reason=verdict.reason,
        detail=got,
    )


def held_back(call: str, url: str, delay: float, max_wait: float, attempts: int) -> WaitTooLong:
    return WaitTooLong(
        f"{call}: held back {seconds(delay)} s by the API's usage (above max_wait"
        f" {seconds(max_wait)} s); not waiting now: this unit is set aside",
        wait_seconds=delay,
        url=url,
        status=None,
        attempts=attempts,
    )


def quota_wait(call: str, url: str, exc: WaitTooLong, attempts: int) -> WaitTooLong:
    """The client-side quota's refusal (it knows no URL), naming the endpoint as all do."""
    return WaitTooLong(
        f"{call}: {exc}",
        wait_seconds=exc.wait_seconds,
        url=url,
        attempts=attempts,
        reason="quota",
    )


def exhausted(
    call: str, url: str, attempts: int, detail: str, status: int | None, reason: str | None
) -> RetriesExhausted:
    plural = "s" if attempts != 1 else ""
    return RetriesExhausted(
        f"{call} still failing after {attempts} attempt{plural};"
        f" last: {detail}. The API is down, slow or throttling: this unit is skipped,"
        " run it again later",
        url=url,
        status=status,
        attempts=attempts,
        reason=reason,
        detail=detail,
    )
