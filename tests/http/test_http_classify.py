"""The retry rules as tables: each row is one clause of the SPEC's Retry section."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from cronkeeper.errors import ConfigError
from cronkeeper.http import (
    MetaError,
    RetryPolicy,
    Verdict,
    api_error_text,
    buc_wait_seconds,
    classify,
    classify_exception,
    meta_error,
    parse_retry_after,
)

NOW = datetime(2025, 1, 15, 12, 0, 0, tzinfo=UTC)


def meta_body(code: int, *, transient: bool = False, subcode: int | None = None) -> bytes:
    error: dict[str, Any] = {"message": "boom", "type": "OAuthException", "code": code}
    error["is_transient"] = transient
    if subcode is not None:
        error["error_subcode"] = subcode
    return json.dumps({"error": error}).encode()


def buc(*minutes: object) -> str:
    return json.dumps(
        {
            "1234": [
                {"type": "ads_insights", "call_count": 28, "estimated_time_to_regain_access": m}
                for m in minutes
            ]
        }
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", 2.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("Wed, 15 Jan 2025 12:00:05 GMT", 5.0),  # HTTP-date 5 s after now
        ("Wed, 15 Jan 2025 12:01:00 -0000", 60.0),  # no-zone form counts as UTC
        ("Wed, 15 Jan 2025 11:59:00 GMT", 0.0),  # in the past: go now
        ("Mon, 01 Jan 2024 00:00:00 GMT", 0.0),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("inf", None),
        ("nan", None),
        ("Wed, 99 Foo 2025 25:61:00 GMT", None),
    ],
)
def test_parse_retry_after_reads_seconds_and_http_dates(value: str, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (buc(2), 120.0),
        (buc(0), None),
        (buc(0, 3, 1), 180.0),  # the longest throttled entry wins
        (buc("4"), 240.0),
        (json.dumps({"1": [{"estimated_time_to_regain_access": 1}], "2": [{}]}), 60.0),
        (json.dumps({"1": {"estimated_time_to_regain_access": 5}}), 300.0),
        (json.dumps({"1": [{"call_count": 99}]}), None),
        (buc(True), None),
        ("not json", None),
        ("[]", None),
        ("", None),
    ],
)
def test_buc_wait_seconds_converts_minutes_to_regain_access(
    header: str, expected: float | None
) -> None:
    assert buc_wait_seconds(header) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (meta_body(17), MetaError(17, None, False, "boom")),
        (meta_body(190, subcode=463), MetaError(190, 463, False, "boom")),
        (meta_body(999, transient=True), MetaError(999, None, True, "boom")),
        ({"error": {"code": "613", "message": "x"}}, MetaError(613, None, False, "x")),
        ({"error": {"code": 1, "is_transient": "yes"}}, MetaError(1, None, False, "")),
        (b'{"error": "rate limited"}', None),  # Mixpanel's shape is not Meta's
        (b'{"error": {"message": "no code"}}', None),
        (b"<html>502</html>", None),
        (b"\xff\xfe", None),
        (b"", None),
    ],
)
def test_meta_error_reads_graph_api_error_bodies(body: Any, expected: MetaError | None) -> None:
    assert meta_error(body) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (meta_body(190, subcode=463), "Meta error 190/463: boom"),
        (b'{"object": "error", "code": "validation_error", "message": "bad\\n id"}', "bad id"),
        (b'{"error": "Project not found", "request": "/api"}', "Project not found"),
        (b"  Bad   Gateway \n", "Bad Gateway"),
        (b"", ""),
    ],
)
def test_api_error_text_extracts_the_apis_own_message(body: bytes, expected: str) -> None:
    assert api_error_text(body) == expected


RA = "Retry-After"
BUC = "X-Business-Use-Case-Usage"


@pytest.mark.parametrize(
    ("status", "headers", "body", "kind", "reason", "wait"),
    [
        (200, {}, b"{}", "ok", None, None),
        (204, {RA: "30"}, b"", "ok", None, None),
        (408, {}, b"", "retry", "status_408", None),
        (429, {}, b"", "retry", "status_429", None),  # no ask: the default wait applies
        (429, {RA: "2"}, b"", "retry", "status_429", 2.0),
        (429, {"retry-after": "7"}, b"", "retry", "status_429", 7.0),  # header case
        (429, {RA: "Wed, 15 Jan 2025 12:00:05 GMT"}, b"", "retry", "status_429", 5.0),
        (429, {RA: "garbage"}, b"", "retry", "status_429", None),
        (500, {}, b"", "retry", "status_5xx", None),
        (503, {RA: "4"}, b"", "retry", "status_5xx", 4.0),
        (599, {}, b"", "retry", "status_5xx", None),
        (400, {}, meta_body(4), "retry", "meta_throttle", None),
        (400, {}, meta_body(17), "retry", "meta_throttle", None),
        (400, {}, meta_body(32), "retry", "meta_throttle", None),
        (400, {}, meta_body(341), "retry", "meta_throttle", None),
        (403, {}, meta_body(613), "retry", "meta_throttle", None),
        (400, {}, meta_body(80000), "retry", "meta_throttle", None),
        (400, {}, meta_body(80014), "retry", "meta_throttle", None),
        (400, {}, meta_body(1), "retry", "meta_transient", None),
        (400, {}, meta_body(2), "retry", "meta_transient", None),
        (400, {}, meta_body(999, transient=True), "retry", "meta_transient", None),
        (400, {BUC: buc(2)}, meta_body(17), "retry", "meta_throttle", 120.0),
        (400, {BUC: buc(0)}, meta_body(17), "retry", "meta_throttle", None),
        (400, {BUC: buc(1), RA: "90"}, meta_body(17), "retry", "meta_throttle", 90.0),  # longer
        (400, {BUC: buc(2), RA: "90"}, meta_body(17), "retry", "meta_throttle", 120.0),
        (503, {BUC: buc(2)}, b"", "retry", "status_5xx", None),  # BUC speaks of throttling
        (400, {}, meta_body(80015), "fail", None, None),
        (400, {}, meta_body(190), "fail", None, None),
        (400, {}, meta_body(100), "fail", None, None),
        (400, {RA: "1"}, b'{"message": "bad"}', "fail", None, None),
        (401, {}, b"", "fail", None, None),
        (404, {}, meta_body(17), "fail", None, None),  # throttling codes only count on 400/403
        (304, {}, b"", "fail", None, None),
    ],
)
def test_classify_decides_retry_reason_and_server_wait(
    status: int,
    headers: dict[str, str],
    body: bytes,
    kind: str,
    reason: str | None,
    wait: float | None,
) -> None:
    verdict = classify(status, headers, body, NOW)
    assert (verdict.kind, verdict.reason, verdict.server_wait) == (kind, reason, wait)


def test_classify_names_the_header_that_carried_the_wait() -> None:
    verdict = classify(400, {BUC: buc(2), RA: "5"}, meta_body(80000), NOW)
    assert verdict.wait_source == BUC
    assert classify(429, {RA: "5"}, b"", NOW).wait_source == RA


@pytest.mark.parametrize("code", ["\u00b2", "\u0661\u0667", "\uff11\uff17", "1\u00b9", "-4", "4.0"])
def test_a_meta_error_code_that_is_not_ascii_digits_is_no_code(code: str) -> None:
    """Issue 12: ``"²".isdigit()`` is true and ``int("²")`` raises, so a body an attacker or
    a broken proxy sends escaped as a raw ValueError; ``int("١٧")`` even read as 17."""
    body = json.dumps({"error": {"code": code, "error_subcode": code, "message": "m"}})
    assert meta_error(body) is None
    verdict = classify(400, {}, body, NOW)
    assert (verdict.kind, verdict.meta) == ("fail", None)
    assert api_error_text(body) == "m"
    assert meta_error({"error": {"code": 17, "error_subcode": code}}) == MetaError(
        17, None, False, ""
    )


def test_classify_keeps_the_meta_error_of_a_permanent_failure() -> None:
    verdict = classify(400, {}, meta_body(190, subcode=463), NOW)
    assert verdict == Verdict("fail", meta=MetaError(190, 463, False, "boom"))


REQUEST = httpx.Request("GET", "https://example.test/")


@pytest.mark.parametrize(
    ("exc", "kind", "reason"),
    [
        (TimeoutError(), "retry", "timeout"),
        (httpx.ReadTimeout("slow", request=REQUEST), "retry", "timeout"),
        (httpx.ConnectTimeout("slow", request=REQUEST), "retry", "timeout"),
        (httpx.PoolTimeout("slow", request=REQUEST), "retry", "timeout"),
        (httpx.ConnectError("refused", request=REQUEST), "retry", "connection"),
        (httpx.ReadError("reset", request=REQUEST), "retry", "connection"),
        (httpx.RemoteProtocolError("closed", request=REQUEST), "retry", "connection"),
        (httpx.ProxyError("proxy", request=REQUEST), "retry", "connection"),
        (httpx.UnsupportedProtocol("ftp", request=REQUEST), "fail", None),
        (httpx.LocalProtocolError("bad", request=REQUEST), "fail", None),
        (httpx.TooManyRedirects("loop", request=REQUEST), "fail", None),
        (httpx.InvalidURL("bad"), "fail", None),
    ],
)
def test_classify_exception_retries_only_faults_that_time_can_heal(
    exc: BaseException, kind: str, reason: str | None
) -> None:
    verdict = classify_exception(exc)
    assert (verdict.kind, verdict.reason) == (kind, reason)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (RetryPolicy(), [3.0, 6.0]),
        (RetryPolicy(max_retries=5, waits=(1.0, 2.0)), [1.0, 2.0, 4.0, 8.0, 16.0]),
        (RetryPolicy(max_retries=4, waits=(10.0, 20.0), max_wait=50.0), [10, 20, 40, 50]),
        (RetryPolicy(max_retries=3, waits=(5.0,)), [5.0, 10.0, 20.0]),
        (RetryPolicy(max_retries=2, waits=()), [0.0, 0.0]),
        (RetryPolicy(max_retries=2, max_wait=0.0), [0.0, 0.0]),
    ],
)
def test_default_waits_follow_the_tuple_then_double_capped_at_max_wait(
    policy: RetryPolicy, expected: list[float]
) -> None:
    waits = [policy.default_wait(n) for n in range(1, policy.max_retries + 1)]
    assert waits == expected


def test_default_wait_does_not_overflow_for_absurd_retry_numbers() -> None:
    assert RetryPolicy().default_wait(10_000) == 60.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": -1},
        {"timeout": 0.0},
        {"timeout": float("nan")},
        {"max_wait": -1.0},
        {"waits": (3.0, -1.0)},
    ],
)
def test_retry_policy_rejects_impossible_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(**kwargs)
