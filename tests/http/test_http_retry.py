"""fetch_with_retry against httpx.MockTransport, with a recording sleep and a pinned clock."""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from tests.support.timers import loop_timers

from cronkeeper.errors import FetchError, PermanentFetchError, RetriesExhausted, WaitTooLong
from cronkeeper.http import HttpContext, RetryEvent, RetryPolicy, fetch_with_retry
from cronkeeper.redact import Redactor

NOW = datetime(2025, 1, 15, 12, 0, 0, tzinfo=UTC)
TOKEN = "SECRETTOKEN123"
URL = "https://graph.test/v21.0/act_42/insights"
BUC = "X-Business-Use-Case-Usage"

Reply = httpx.Response | Exception
Handler = Callable[[httpx.Request], Any]


class Sleeps:
    """A sleep that records the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class Script:
    """A MockTransport handler that plays replies in order, repeating the last one."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        if isinstance(reply, Exception):
            raise reply
        return reply

    @property
    def calls(self) -> int:
        return len(self.requests)


def meta(code: int, status: int = 400, *, message: str = "boom", **extra: Any) -> httpx.Response:
    headers = extra.pop("headers", None)
    error = {"message": message, "type": "OAuthException", "code": code, **extra}
    return httpx.Response(status, json={"error": error}, headers=headers)


def buc(minutes: float) -> dict[str, str]:
    usage = {"1234": [{"type": "ads_insights", "estimated_time_to_regain_access": minutes}]}
    return {BUC: json.dumps(usage)}


OK = httpx.Response(200, json={"data": []})


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[[Handler], httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def make(handler: Handler) -> httpx.AsyncClient:
        clients.append(httpx.AsyncClient(transport=httpx.MockTransport(handler)))
        return clients[-1]

    yield make
    for client in clients:
        await client.aclose()


async def fetch(
    client: httpx.AsyncClient, sleeps: Sleeps, url: str = URL, **kwargs: Any
) -> httpx.Response:
    return await fetch_with_retry(client, "GET", url, sleep=sleeps, now=lambda: NOW, **kwargs)


# --- waits -----------------------------------------------------------------------------------


async def test_default_policy_makes_three_attempts_waiting_3_then_6_seconds(
    client_for: Callable[[Handler], httpx.AsyncClient], sleeps: Sleeps
) -> None:
    script = Script(httpx.Response(503))
    with pytest.raises(RetriesExhausted) as caught:
        await fetch(client_for(script), sleeps)
    assert script.calls == 3
    assert sleeps.waits == [3.0, 6.0]
    assert (caught.value.attempts, caught.value.status) == (3, 503)


async def test_success_after_retries_returns_the_2xx_response(
    client_for: Callable[[Handler], httpx.AsyncClient], sleeps: Sleeps
) -> None:
    script = Script(httpx.Response(502), httpx.Response(500), OK)
    response = await fetch(client_for(script), sleeps)
    assert response.status_code == 200
    assert response.json() == {"data": []}
    assert script.calls == 3


async def test_429_with_retry_after_seconds_waits_exactly_that(
    client_for: Callable[[Handler], httpx.AsyncClient], sleeps: Sleeps
) -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "2"}), OK)
    await fetch(client_for(script), sleeps)
    assert sleeps.waits == [2.0]


async def test_429_with_http_date_retry_after_waits_until_that_date(
    client_for: Callable[[Handler], httpx.AsyncClient], sleeps: Sleeps
) -> None:
    five_seconds_later = "Wed, 15 Jan 2025 12:00:05 GMT"
    script = Script(httpx.Response(429, headers={"Retry-After": five_seconds_later}), OK)
    await fetch(client_for(script), sleeps)
    assert sleeps.waits == [5.0]


async def test_retry_after_date_in_the_past_retries_without_waiting(
    client_for: Callable[[Handler], httpx.AsyncClient], sleeps: Sleeps
) -> None:
    script = Script(httpx.Response(503, headers={"Retry-After": "Wed, 15 Jan 2025 11:00:00 GMT"}))
    with pytest.raises(RetriesExhausted):
        await fetch(client_for(script), sleeps)
    assert sleeps.waits == [0.0, 0.0]


@pytest.mark.parametrize("header", [{"Retry-After": "after lunch"}, {}])
async def test_429_with_unreadable_or_no_retry_after_uses_the_default_wait(
    client_for: Callable[[Handler], httpx.AsyncClient], sleeps: Sleeps, header: dict[str, str]
) -> None:
    script = Script(httpx.Response(429, headers=header), httpx.Response(429, headers=header), OK)
    await fetch(client_for(script), sleeps)
    assert sleeps.waits == [3.0, 6.0]


async def test_buc_estimated_time_to_regain_access_of_2_minutes_waits_120_seconds(
    client_for: Callable[[Handler], httpx.AsyncClient], sleeps: Sleeps
) -> None:
    script = Script(meta(80000, headers=buc(2)), OK)
    await fetch(client_for(script), sleeps, policy=RetryPolicy(max_wait=300.0))
    assert sleeps.waits == [120.0]


async def test_the_longer_of_retry_after_and_buc_is_waited(
    client_for: Callable[[Handler], httpx.AsyncClient], sleeps: Sleeps
) -> None:
    script = Script(meta(17, headers={**buc(1), "Retry-After": "90"}), OK)
    await fetch(client_for(script), sleeps, policy=RetryPolicy(max_wait=300.0))
    assert sleeps.waits == [90.0]


async def test_buc_wait_above_max_wait_raises_wait_too_long_without_sleeping(
    client_for: Callable[[Handler], httpx.AsyncClient], sleeps: Sleeps
) -> None:
    script = Script(meta(17, headers=buc(20)), OK)
    with pytest.raises(WaitTooLong) as caught:
        await fetch(client_for(script), sleeps)
    assert sleeps.waits == []
    assert script.calls == 1
    assert caught.value.wait_seconds == 1200.0
    assert "Meta asked to wait 1200 s (above max_wait 60 s)" in str(caught.value)
    assert "Meta error 17: boom" in str(caught.value)


async def test_retry_after_above_max_wait_raises_wait_too_long_without_sleeping(
    client_for: Callable[[Handler], httpx.AsyncClient],
) -> None:
    async def must_not_sleep(seconds: float) -> None:
        raise AssertionError(f"slept {seconds} s")

    script = Script(httpx.Response(429, headers={"Retry-After": "3600"}), OK)
    with pytest.raises(WaitTooLong) as caught:
        await fetch_with_retry(client_for(script), "GET", URL, sleep=must_not_sleep)
    assert caught.value.wait_seconds == 3600.0
    assert caught.value.status == 429
    assert "asked to wait 3600 s (above max_wait 60 s)" in str(caught.value)


async def test_a_wait_equal_to_max_wait_is_still_slept(
    client_for: Callable[[Handler], httpx.AsyncClient], sleeps: Sleeps
) -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "60"}), OK)
    await fetch(client_for(script), sleeps)
    assert sleeps.waits == [60.0]


# --- what is retried -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (meta(17), "meta_throttle"),
        (meta(4), "meta_throttle"),
        (meta(32), "meta_throttle"),
        (meta(341), "meta_throttle"),
        (meta(613, status=403), "meta_throttle"),
        (meta(80000), "meta_throttle"),
        (meta(80014), "meta_throttle"),
        (meta(1), "meta_transient"),
        (meta(2), "meta_transient"),
        (meta(999, is_transient=True), "meta_transient"),
        (httpx.Response(408), "status_408"),
        (httpx.Response(429), "status_429"),
        (httpx.Response(500), "status_5xx"),
        (httpx.Response(504), "status_5xx"),
    ],
)
async def test_retryable_answers_are_retried_with_their_reason(
    client_for: Callable[[Handler], httpx.AsyncClient],
    sleeps: Sleeps,
    reply: httpx.Response,
    reason: str,
) -> None:
    events: list[RetryEvent] = []
    script = Script(reply, OK)
    response = await fetch(client_for(script), sleeps, on_retry=events.append)
    assert response.status_code == 200
    assert script.calls == 2
    assert [e.reason for e in events] == [reason]


@pytest.mark.parametrize(
    "reply",
    [
        meta(190, message="Error validating access token: Session has expired"),
        meta(100, message="(#100) Invalid parameter"),
        meta(17, status=404),
        httpx.Response(404, text="Not Found"),
        httpx.Response(401, json={"message": "API token is invalid."}),
        httpx.Response(400, json={"error": "unknown project"}),
    ],
)
async def test_client_errors_are_tried_exactly_once(
    client_for: Callable[[Handler], httpx.AsyncClient], sleeps: Sleeps, reply: httpx.Response
) -> None:
    script = Script(reply, OK)
    with pytest.raises(PermanentFetchError) as caught:
        await fetch(client_for(script), sleeps)
    assert script.calls == 1
    assert sleeps.waits == []
    assert caught.value.attempts == 1
    assert caught.value.status == reply.status_code


async def test_permanent_error_message_names_method_url_status_and_api_message(
    client_for: Callable[[Handler], httpx.AsyncClient], sleeps: Sleeps
) -> None:
    script = Script(meta(190, message="Error validating access token", error_subcode=463))
    with pytest.raises(PermanentFetchError) as caught:
        await fetch(client_for(script), sleeps, params={"level": "account"})
    message = str(caught.value)
    assert f"GET {URL} failed" in message  # the endpoint, without its query
    assert "HTTP 400" in message
    assert "Meta error 190/463: Error validating access token" in message
    assert "renew META_ACCESS_TOKEN" in message


async def test_api_message_in_an_error_is_cut_to_300_characters(
    client_for: Callable[[Handler], httpx.AsyncClient], sleeps: Sleeps
) -> None:
    script = Script(meta(100, message="x" * 5000))
    with pytest.raises(PermanentFetchError) as caught:
        await fetch(client_for(script), sleeps)
    assert "x" * 250 in str(caught.value)
    assert "x" * 301 not in str(caught.value)


async def test_5xx_is_retried_then_raises_retries_exhausted_with_last_status(
    client_for: Callable[[Handler], httpx.AsyncClient], sleeps: Sleeps
) -> None:
    script = Script(httpx.Response(500), httpx.Response(502), httpx.Response(503, text="down"))
    with pytest.raises(RetriesExhausted) as caught:
        await fetch(client_for(script), sleeps)
    assert script.calls == 3
    assert caught.value.status == 503
    assert "after 3 attempts" in str(caught.value)
    assert "HTTP 503 (down)" in str(caught.value)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (httpx.ConnectError("All connection attempts failed"), "connection"),
        (httpx.RemoteProtocolError("Server disconnected"), "connection"),
        (httpx.ReadTimeout("timed out"), "timeout"),
        (httpx.ConnectTimeout("timed out"), "timeout"),
    ],
)
async def test_connection_errors_and_httpx_timeouts_are_retried(
    client_for: Callable[[Handler], httpx.AsyncClient],
    sleeps: Sleeps,
    error: Exception,
    reason: str,
) -> None:
    events: list[RetryEvent] = []
    script = Script(error, error, OK)
    response = await fetch(client_for(script), sleeps, on_retry=events.append)
    assert response.status_code == 200
    assert [e.reason for e in events] == [reason, reason]
    assert sleeps.waits == [3.0, 6.0]


async def test_connection_errors_that_never_heal_exhaust_the_retries(
    client_for: Callable[[Handler], httpx.AsyncClient], sleeps: Sleeps
) -> None:
    script = Script(httpx.ConnectError("All connection attempts failed"))
    with pytest.raises(RetriesExhausted) as caught:
        await fetch(client_for(script), sleeps)
    assert caught.value.status is None
    assert "ConnectError (All connection attempts failed)" in str(caught.value)


async def test_unsupported_scheme_fails_at_once(sleeps: Sleeps) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(PermanentFetchError) as caught:
            await fetch(client, sleeps, url=f"ftp://files.test/x?access_token={TOKEN}")
    assert sleeps.waits == []
    assert TOKEN not in str(caught.value)


# --- the per-attempt deadline ----------------------------------------------------------------


async def test_hung_response_fails_by_the_per_attempt_timeout(
    client_for: Callable[[Handler], httpx.AsyncClient], sleeps: Sleeps
) -> None:
    calls = 0

    async def hang(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        await asyncio.Event().wait()  # never answers: only the per-attempt timeout ends it
        return OK

    events: list[RetryEvent] = []
    with pytest.raises(RetriesExhausted) as caught:
        await fetch(
            client_for(hang), sleeps, policy=RetryPolicy(timeout=0.05), on_retry=events.append
        )
    assert calls == 3
    assert [e.reason for e in events] == ["timeout", "timeout"]
    assert "within the 0.05 s timeout" in str(caught.value)


async def test_slowly_trickling_body_fails_by_the_per_attempt_timeout(
    client_for: Callable[[Handler], httpx.AsyncClient], sleeps: Sleeps
) -> None:
    async def trickle() -> AsyncIterator[bytes]:
        for _ in range(100):
            await asyncio.sleep(0.01)  # each chunk is quick: only an overall deadline trips
            yield b"x"

    def slow_body(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=trickle())

    events: list[RetryEvent] = []
    with pytest.raises(RetriesExhausted):
        await fetch(
            client_for(slow_body),
            sleeps,
            policy=RetryPolicy(max_retries=1, timeout=0.1),
            on_retry=events.append,
        )
    assert [e.reason for e in events] == ["timeout"]


# --- attempts, hooks, logging ----------------------------------------------------------------


async def test_max_retries_zero_means_a_single_attempt(
    client_for: Callable[[Handler], httpx.AsyncClient], sleeps: Sleeps
) -> None:
    script = Script(httpx.Response(503), OK)
    with pytest.raises(RetriesExhausted) as caught:
        await fetch(client_for(script), sleeps, policy=RetryPolicy(max_retries=0))
    assert script.calls == 1
    assert sleeps.waits == []
    assert "after 1 attempt;" in str(caught.value)


async def test_on_retry_gets_one_event_per_retry_before_its_sleep(
    client_for: Callable[[Handler], httpx.AsyncClient],
) -> None:
    timeline: list[object] = []

    async def sleep(seconds: float) -> None:
        timeline.append(("sleep", seconds))

    script = Script(httpx.Response(429, headers={"Retry-After": "2"}), meta(1), OK)
    await fetch_with_retry(client_for(script), "GET", URL, sleep=sleep, on_retry=timeline.append)
    assert timeline == [
        RetryEvent(attempt=1, reason="status_429", wait=2.0, url=URL),
        ("sleep", 2.0),
        RetryEvent(attempt=2, reason="meta_transient", wait=6.0, url=URL),
        ("sleep", 6.0),
    ]


async def test_each_retry_is_logged_at_warning_with_url_reason_and_wait(
    client_for: Callable[[Handler], httpx.AsyncClient],
    sleeps: Sleeps,
    caplog: pytest.LogCaptureFixture,
) -> None:
    script = Script(httpx.Response(503), OK)
    with caplog.at_level(logging.DEBUG, logger="cronkeeper.http"):
        await fetch(client_for(script), sleeps)
    [record] = [r for r in caplog.records if r.name == "cronkeeper.http"]
    assert record.levelno == logging.WARNING
    text = record.getMessage()
    assert URL in text
    assert "status_5xx" in text
    assert "retrying in 3 s" in text


async def test_request_carries_method_params_json_headers_and_auth(
    client_for: Callable[[Handler], httpx.AsyncClient], sleeps: Sleeps
) -> None:
    script = Script(OK)
    await fetch_with_retry(
        client_for(script),
        "POST",
        "https://api.notion.test/v1/data_sources/abc/query",
        params={"page": "2"},
        json={"page_size": 100},
        headers={"Notion-Version": "2025-09-03"},
        auth=("user", "pass"),
        sleep=sleeps,
    )
    [request] = script.requests
    assert request.method == "POST"
    assert request.url.params["page"] == "2"
    assert json.loads(request.content) == {"page_size": 100}
    assert request.headers["Notion-Version"] == "2025-09-03"
    assert request.headers["Authorization"].startswith("Basic ")


async def test_params_are_added_to_a_query_already_in_the_url(
    client_for: Callable[[Handler], httpx.AsyncClient], sleeps: Sleeps
) -> None:
    script = Script(OK)
    await fetch(client_for(script), sleeps, url=f"{URL}?after=abc&limit=5", params={"limit": "9"})
    params = script.requests[0].url.params
    assert (params["after"], params["limit"]) == ("abc", "9")


async def test_without_auth_argument_the_clients_own_auth_is_used(sleeps: Sleeps) -> None:
    script = Script(OK)
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(script), auth=("svc", "secret")
    ) as client:
        await fetch_with_retry(client, "GET", URL, sleep=sleeps)
    assert script.requests[0].headers["Authorization"].startswith("Basic ")


async def test_http_context_fetch_applies_its_retry_settings(
    client_for: Callable[[Handler], httpx.AsyncClient], sleeps: Sleeps
) -> None:
    events: list[RetryEvent] = []
    script = Script(httpx.Response(503))
    context = HttpContext(
        client=client_for(script),
        policy=RetryPolicy(max_retries=3, waits=(1.0,)),
        sleep=sleeps,
        now=lambda: NOW,
        on_retry=events.append,
        redactor=Redactor(secrets=(TOKEN,)),
    )
    with pytest.raises(RetriesExhausted):
        await context.fetch("GET", URL, params={"token_holder": TOKEN})
    assert script.calls == 4
    assert sleeps.waits == [1.0, 2.0, 4.0]
    assert all(TOKEN not in e.url for e in events)


# --- secrets ---------------------------------------------------------------------------------


SECRET_SCENARIOS: dict[str, tuple[Reply, type[FetchError]]] = {
    "retries_exhausted": (httpx.Response(503, text=f"bad token {TOKEN}"), RetriesExhausted),
    "expired_token_190": (
        meta(190, message=f"Error validating access token {TOKEN}"),
        PermanentFetchError,
    ),
    "wait_too_long": (meta(17, message=f"slow down {TOKEN}", headers=buc(30)), WaitTooLong),
    "connection_error": (
        httpx.ConnectError(f"cannot reach {URL}?access_token={TOKEN}"),
        RetriesExhausted,
    ),
}


@pytest.mark.parametrize("scenario", sorted(SECRET_SCENARIOS))
@pytest.mark.parametrize("where", ["url", "params", "params_with_innocent_key"])
async def test_the_token_never_appears_in_errors_logs_or_events(
    client_for: Callable[[Handler], httpx.AsyncClient],
    sleeps: Sleeps,
    caplog: pytest.LogCaptureFixture,
    scenario: str,
    where: str,
) -> None:
    reply, expected = SECRET_SCENARIOS[scenario]
    script = Script(reply)
    url, params = URL, {"level": "account"}
    if where == "url":
        url = f"{URL}?access_token={TOKEN}"
    elif where == "params":
        params["access_token"] = TOKEN
    else:
        params["credential"] = TOKEN  # no secret-shaped key: only redactor.secrets catches it
    events: list[RetryEvent] = []
    with caplog.at_level(logging.DEBUG), pytest.raises(expected) as caught:
        await fetch(
            client_for(script),
            sleeps,
            url=url,
            params=params,
            on_retry=events.append,
            redactor=Redactor(secrets=(TOKEN,)),
        )
    assert TOKEN in str(script.requests[0].url)  # the request itself still carries it
    error = caught.value
    printed = "".join(traceback.format_exception(error))
    assert TOKEN not in printed
    assert TOKEN not in repr(error)
    assert TOKEN not in error.url
    assert "?" not in error.url  # the endpoint only: the query, where tokens travel, is dropped
    assert error.__cause__ is None
    if scenario != "connection_error":  # httpx logs each answered request, URL included
        assert any(r.name == "httpx" and "HTTP Request" in r.getMessage() for r in caplog.records)
    assert all(TOKEN not in r.getMessage() for r in caplog.records)
    assert all(TOKEN not in repr(r.args) for r in caplog.records)
    assert all(TOKEN not in e.url for e in events)
    assert len(events) == (2 if expected is RetriesExhausted else 0)


async def test_percent_encoded_secrets_are_redacted_too(
    client_for: Callable[[Handler], httpx.AsyncClient], sleeps: Sleeps
) -> None:
    secret = "s3cr3t/+token=="
    script = Script(httpx.Response(404))
    with pytest.raises(PermanentFetchError) as caught:
        await fetch(
            client_for(script),
            sleeps,
            params={"key": secret},
            redactor=Redactor(secrets=(secret,)),
        )
    assert secret not in str(caught.value)
    assert "s3cr3t" not in str(caught.value)


async def test_basic_auth_password_echoed_by_the_api_is_redacted(
    client_for: Callable[[Handler], httpx.AsyncClient], sleeps: Sleeps
) -> None:
    script = Script(httpx.Response(401, json={"error": "bad secret mixpanel-pass-987"}))
    with pytest.raises(PermanentFetchError) as caught:
        await fetch(client_for(script), sleeps, auth=("svc", "mixpanel-pass-987"))
    assert "mixpanel-pass-987" not in str(caught.value)


# --- real time -------------------------------------------------------------------------------


@pytest.mark.realtime
async def test_waits_are_really_slept_with_the_default_sleep(
    client_for: Callable[[Handler], httpx.AsyncClient],
) -> None:
    """Without an injected sleep the wait is asyncio's: a 0.3 s timer is armed on the loop
    and the retry goes out only once it fired (an order of events, not a timing)."""
    with loop_timers(scale=0.1) as timers:

        def handler(request: httpx.Request) -> httpx.Response:
            timers.note("request")
            return httpx.Response(503) if len(timers.only("request")) == 1 else OK

        await fetch_with_retry(
            client_for(handler), "GET", URL, policy=RetryPolicy(max_retries=1, waits=(0.3,))
        )
    assert timers.only("request", "armed", "fired", delay=0.3) == [
        ("request", None),
        ("armed", 0.3),
        ("fired", 0.3),
        ("request", None),
    ]
