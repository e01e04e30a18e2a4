"""One HTTP call with the retries the SPEC allows, and nothing more: the tenacity wiring.

The decisions (retry or not, how long) live in :mod:`.classify`, the policy in :mod:`.policy`,
the pacing around each attempt in :mod:`.throttle` and the words of every error in
:mod:`.wording`; this module sends the request, bounds each attempt with one overall
deadline, and lets tenacity run the attempts with an injected ``sleep`` so tests never wait
for real.

Every error raised here is a :class:`~cronkeeper.errors.FetchError` whose text has been
through the redactor: the Meta token travels in the query string, so any message that names
the URL would otherwise carry it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, RetryError, retry_if_exception_type
from tenacity.stop import stop_after_attempt

from cronkeeper.clock import Clock, Sleep, utcnow
from cronkeeper.errors import RetriesExhausted, WaitTooLong
from cronkeeper.http import wording
from cronkeeper.http.body import read_capped
from cronkeeper.http.classify import Verdict, classify, classify_exception
from cronkeeper.http.logs import protect_httpx_log, request_redactor
from cronkeeper.http.pacing import Pacer
from cronkeeper.http.policy import DEFAULT_POLICY, RetryEvent, RetryPolicy
from cronkeeper.http.throttle import Throttle, pacing_scope
from cronkeeper.redact import Redactor

__all__ = ["DEFAULT_REDACTOR", "Gate", "fetch_with_retry"]

logger = logging.getLogger("cronkeeper.http")

Gate = Callable[[], AbstractAsyncContextManager[None]]
DEFAULT_REDACTOR = Redactor()


class _AttemptFailed(Exception):
    """A retryable failure, carried through tenacity to the wait and before-sleep hooks.

    Never leaves this module: the last one becomes :class:`RetriesExhausted`.
    """

    def __init__(self, verdict: Verdict, status: int | None, detail: str) -> None:
        super().__init__(detail)
        self.verdict = verdict
        self.status = status
        self.detail = detail


class _Call:
    """The state of one ``fetch_with_retry`` call, shared by the attempt and tenacity hooks."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        request: httpx.Request,
        auth: httpx.Auth | tuple[str, str] | None,
        policy: RetryPolicy,
        now: Clock,
        on_retry: Callable[[RetryEvent], None] | None,
        redactor: Redactor,
        gate: Gate | None,
        retry_log_level: int,
        pacer: Pacer | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.client = client
        self.request = request
        self.auth = auth
        self.policy = policy
        self.now = now
        self.on_retry = on_retry
        self.gate = gate
        self.retry_log_level = retry_log_level
        self.redact = request_redactor(redactor, request.url, request.headers, auth)
        protect_httpx_log(self.redact.secrets)
        self.method = request.method
        # Messages name the endpoint, not the query: it is long, and it is where tokens travel.
        self.url = self.redact(str(request.url.copy_with(query=None, fragment=None)))
        self.name = f"{self.method} {self.url}"
        self.attempts = 0
        self.throttle = (
            Throttle(pacer, pacing_scope(request.url), policy, sleep, self.name, self.url)
            if pacer is not None
            else None
        )

    async def attempt(self) -> httpx.Response:
        if self.throttle is not None:
            await self.throttle.wait_turn(self.attempts)
        try:
            async with self.gate() if self.gate is not None else nullcontext():
                return await self._send()
        except WaitTooLong as exc:
            if exc.url:  # the server's ask, raised by _send and already worded
                raise
            # The gate's: nothing was sent for this attempt.
            raise wording.quota_wait(self.name, self.url, exc, self.attempts) from None

    async def _send(self) -> httpx.Response:
        self.attempts += 1
        try:
            # One deadline over connect, headers and the whole body: httpx's timeouts are per
            # operation, so a server trickling a byte every few seconds would never trip them.
            async with asyncio.timeout(self.policy.timeout):
                response = await read_capped(  # the body too, inflated within the cap
                    self.client, self.request, auth=self.auth, limit=self.policy.max_body,
                    what=f"{self.method} {self.url}",
                )  # fmt: skip
        except (TimeoutError, httpx.HTTPError, httpx.InvalidURL) as exc:
            raise self._transport_failure(exc) from None
        verdict = classify(
            response.status_code,
            response.headers,
            response.content,
            self.now(),
            self.policy.throttle_block,
        )
        if self.throttle is not None:
            self.throttle.learn(response, verdict, self.attempts)
        if verdict.kind == "ok":
            return response
        status = response.status_code
        api_message = wording.api_message(self.redact, response.content)
        got = f"HTTP {status}" + (f" ({api_message})" if api_message else "")
        if verdict.kind == "fail":
            raise wording.client_error(self.name, self.url, got, verdict, status, self.attempts)
        if verdict.server_wait is not None and verdict.server_wait > self.policy.max_wait:
            raise wording.server_wait_too_long(
                self.name, self.url, got, verdict, status, self.policy.max_wait, self.attempts
            )
        raise _AttemptFailed(verdict, status, got)

    def _transport_failure(self, exc: BaseException) -> Exception:
        verdict = classify_exception(exc)
        detail = wording.transport_detail(self.redact, exc, self.policy.timeout)
        if verdict.kind == "retry":
            return _AttemptFailed(verdict, None, detail)
        return wording.unsendable(self.name, self.url, detail, self.attempts)

    def wait(self, state: RetryCallState) -> float:
        failure = self._failure(state)
        if failure.verdict.server_wait is not None:
            wait = failure.verdict.server_wait  # never earlier than the server asked
        else:
            wait = self.policy.default_wait(state.attempt_number)
        if self.throttle is not None:  # the pacer's hold for this refusal is waited out here
            self.throttle.cover(wait)
        return wait

    def before_sleep(self, state: RetryCallState) -> None:
        failure = self._failure(state)
        reason = failure.verdict.reason or "connection"
        wait = float(state.upcoming_sleep)
        logger.log(
            self.retry_log_level,
            "%s %s: attempt %d of %d failed (%s: %s); retrying in %s s",
            self.method,
            self.url,
            state.attempt_number,
            self.policy.max_retries + 1,
            reason,
            failure.detail,
            wording.seconds(wait),
        )
        if self.on_retry is not None:
            self.on_retry(
                RetryEvent(attempt=state.attempt_number, reason=reason, wait=wait, url=self.url)
            )

    def exhausted(self, error: RetryError) -> RetriesExhausted:
        failure = error.last_attempt.exception()
        if isinstance(failure, _AttemptFailed):
            detail, status, reason = failure.detail, failure.status, failure.verdict.reason
        else:
            detail, status, reason = "unknown failure", None, None
        return wording.exhausted(self.name, self.url, self.attempts, detail, status, reason)

    @staticmethod
    def _failure(state: RetryCallState) -> _AttemptFailed:
        failure = state.outcome.exception() if state.outcome is not None else None
        if not isinstance(failure, _AttemptFailed):  # the retry predicate lets nothing else by
            raise TypeError(f"unexpected retry outcome: {type(failure).__name__}")
        return failure


def _merged_params(
    client: httpx.AsyncClient, url: str, params: Mapping[str, str] | None
) -> httpx.QueryParams | None:
    """The query to send: the client's, then the URL's own, then ``params``, later keys winning.

    httpx 0.28 lets ``params`` replace a query already in the URL, which would silently drop
    e.g. the ``access_token`` of a Meta ``paging.next`` URL given more parameters.
    """
    if not params and not client.params:
        return None  # leave the URL exactly as given
    return client.params.merge(httpx.URL(url).params).merge(params or {})


async def fetch_with_retry(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    params: Mapping[str, str] | None = None,
    json: Any = None,
    headers: Mapping[str, str] | None = None,
    auth: httpx.Auth | tuple[str, str] | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Sleep = asyncio.sleep,
    now: Clock = utcnow,
    on_retry: Callable[[RetryEvent], None] | None = None,
    redactor: Redactor = DEFAULT_REDACTOR,
    gate: Gate | None = None,
    retry_log_level: int = logging.WARNING,
    pacer: Pacer | None = None,
) -> httpx.Response:
    """Send one request, retrying what a later attempt can fix, and return the 2xx response.

    ``auth=None`` keeps the client's own auth. ``gate`` is entered around every attempt
    (a client-side quota: :meth:`RequestLimiter.slot`); ``retry_log_level`` is the level of
    the line logged before each retry (the alert webhook logs its own summary instead).
    With a ``pacer``, each attempt first waits until its scope may send (see :mod:`.throttle`).
    Raises :class:`PermanentFetchError` for errors no wait fixes (tried once),
    :class:`WaitTooLong` when the server (or the gate, or the pacer) asks for more than
    ``policy.max_wait`` (nothing is slept), :class:`RetriesExhausted` otherwise.
    """
    request = client.build_request(
        method, url, params=_merged_params(client, url, params), json=json, headers=headers
    )
    call = _Call(
        client,
        request,
        auth,
        policy,
        now,
        on_retry,
        redactor,
        gate,
        retry_log_level,
        pacer=pacer,
        sleep=sleep,
    )

    async def sleep_seconds(seconds: float) -> None:
        await sleep(float(seconds))  # tenacity hands over a float subclass; callers get a float

    retrying = AsyncRetrying(
        sleep=sleep_seconds,
        stop=stop_after_attempt(policy.max_retries + 1),
        wait=call.wait,
        retry=retry_if_exception_type(_AttemptFailed),
        before_sleep=call.before_sleep,
    )
    try:
        response: httpx.Response = await retrying(call.attempt)
    except RetryError as error:
        raise call.exhausted(error) from None
    return response
