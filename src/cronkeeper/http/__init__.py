"""Outbound HTTP: one client factory, one call with the retries the SPEC allows, client-side
quotas, and no secret in any error or log line.

Every outbound client comes from :func:`build_client` (:mod:`.client`: per-attempt timeout,
connection limits, User-Agent, no redirects, log redaction). Source clients take an
:class:`HttpContext` (:mod:`.context`) and call :meth:`HttpContext.fetch_parsed`; the alert
webhook calls :func:`fetch_with_retry` directly. One module per concern: the retry loop
(:mod:`.retry`, tenacity wiring), its policy (:mod:`.policy`), the pacing around each attempt
(:mod:`.throttle` over the pure rules of :mod:`.pacing`), the words of every error
(:mod:`.wording`), client-side quotas (:mod:`.limits`) and redaction (:mod:`.logs`).
The pure decisions behind them (:func:`classify`, :func:`parse_retry_after`,
:func:`next_start`, …) are exported for tests and for the API simulators that must agree
with them.
"""

from cronkeeper.clock import Clock, Sleep
from cronkeeper.http.classify import (
    BUC_HEADER,
    META_THROTTLE_CODES,
    META_TRANSIENT_CODES,
    MetaError,
    Reason,
    Verdict,
    api_error_text,
    buc_wait_seconds,
    classify,
    classify_exception,
    meta_error,
    parse_retry_after,
)
from cronkeeper.http.client import USER_AGENT, build_client, client_from_settings
from cronkeeper.http.context import HttpContext
from cronkeeper.http.limits import Limit, Quota, RequestLimiter, next_start
from cronkeeper.http.logs import RedactingFilter, protect_httpx_log, request_redactor
from cronkeeper.http.policy import DEFAULT_POLICY, RetryEvent, RetryPolicy
from cronkeeper.http.retry import fetch_with_retry

__all__ = [
    "BUC_HEADER",
    "DEFAULT_POLICY",
    "META_THROTTLE_CODES",
    "META_TRANSIENT_CODES",
    "USER_AGENT",
    "Clock",
    "HttpContext",
    "Limit",
    "MetaError",
    "Quota",
    "Reason",
    "RedactingFilter",
    "RequestLimiter",
    "RetryEvent",
    "RetryPolicy",
    "Sleep",
    "Verdict",
    "api_error_text",
    "buc_wait_seconds",
    "build_client",
    "classify",
    "classify_exception",
    "client_from_settings",
    "fetch_with_retry",
    "meta_error",
    "next_start",
    "parse_retry_after",
    "protect_httpx_log",
    "request_redactor",
]
