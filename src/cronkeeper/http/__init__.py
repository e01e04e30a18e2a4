"""HTTP to the source APIs: one call, the retries the SPEC allows, and no secret in any error.

Source clients take an :class:`HttpContext` and call :meth:`HttpContext.fetch`; the pure
decisions behind it (:func:`classify`, :func:`parse_retry_after`, …) are exported for tests
and for the API simulators that must agree with them.
"""

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
from cronkeeper.http.logs import RedactingFilter, protect_httpx_log
from cronkeeper.http.retry import (
    DEFAULT_POLICY,
    Clock,
    HttpContext,
    RetryEvent,
    RetryPolicy,
    Sleep,
    fetch_with_retry,
)

__all__ = [
    "BUC_HEADER",
    "DEFAULT_POLICY",
    "META_THROTTLE_CODES",
    "META_TRANSIENT_CODES",
    "Clock",
    "HttpContext",
    "MetaError",
    "Reason",
    "RedactingFilter",
    "RetryEvent",
    "RetryPolicy",
    "Sleep",
    "Verdict",
    "api_error_text",
    "buc_wait_seconds",
    "classify",
    "classify_exception",
    "fetch_with_retry",
    "meta_error",
    "parse_retry_after",
    "protect_httpx_log",
]
