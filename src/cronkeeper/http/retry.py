"""One HTTP call with the retries the SPEC allows, and nothing more.

The decisions (retry or not, how long) live in :mod:`cronkeeper.http.classify`; this module
sends the request, bounds each attempt with one overall deadline, and lets tenacity run the
attempts with an injected ``sleep`` so tests never wait for real.

Every error raised here is a :class:`~cronkeeper.errors.FetchError` whose text has been
through the redactor: the Meta token travels in the query string, so any message that names
the URL would otherwise carry it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import httpx
from tenacity import AsyncRetrying, RetryCallState, RetryError, retry_if_exception_type
from tenacity.stop import stop_after_attempt

from cronkeeper.clock import Clock, Sleep, utcnow
from cronkeeper.errors import (
    ConfigError,
    PayloadError,
    PermanentFetchError,
    RetriesExhausted,
    WaitTooLong,
)
from cronkeeper.http.classify import (
    BUC_HEADER,
    Verdict,
    api_error_text,
    classify,
    classify_exception,
)
from cronkeeper.http.limits import Limit, RequestLimiter
from cronkeeper.http.logs import protect_httpx_log, request_redactor
from cronkeeper.http.pacing import SOURCE, SOURCE_WIDE_META_CODES, Pacer, read_usage
from cronkeeper.redact import Redactor, truncate

__all__ = [
    "DEFAULT_POLICY",
    "MAX_API_MESSAGE",
    "Clock",
    "HttpContext",
    "RetryEvent",
    "RetryPolicy",
    "Sleep",
    "fetch_with_retry",
    "utcnow",
]

logger = logging.getLogger("cronkeeper.http")


MAX_API_MESSAGE = 300
T = TypeVar("T")
Gate = Callable[[], AbstractAsyncContextManager[None]]
_MAX_DOUBLINGS = 64  # past this, 2**n only risks an OverflowError; max_wait caps it anyway
_AD_ACCOUNT = re.compile(r"/(act_\d+)(?:/|$)")


def pacing_scope(url: httpx.URL) -> str:
    """Which quota a request draws on: its ad account for Meta (``/act_<id>/…``), else the host.

    Derived from the URL so that every caller of :func:`fetch_with_retry` is paced the same
    way without naming its scope.
    """
    match = _AD_ACCOUNT.search(url.path)
    return match.group(1) if match else url.host


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one call tries.

    ``max_wait`` bounds every sleep: a server ask above it fails the call at once
    (:class:`WaitTooLong`), and the default schedule, which keeps doubling past ``waits``,
    is capped at it rather than turned into an error, since that wait is our own choice.
    """

    max_retries: int = 2
    waits: tuple[float, ...] = (3.0, 6.0)
    timeout: float = 30.0
    max_wait: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be 0 or more, got {self.max_retries}")
        if not self.timeout > 0:
            raise ConfigError(f"the per-attempt timeout must be above 0 s, got {self.timeout}")
        if not self.max_wait >= 0:
            raise ConfigError(f"max_wait must be 0 s or more, got {self.max_wait}")
        if any(not wait >= 0 for wait in self.waits):
            raise ConfigError(f"waits must all be 0 s or more, got {self.waits}")

    def default_wait(self, retry_number: int) -> float:
        """Wait before retry ``retry_number`` (1-based) when the server asked for nothing."""
        if not self.waits:
            return 0.0
        if retry_number <= len(self.waits):
            wait = self.waits[max(retry_number, 1) - 1]
        else:
            doublings = min(retry_number - len(self.waits), _MAX_DOUBLINGS)
            wait = self.waits[-1] * 2.0**doublings
        return min(wait, self.max_wait)


DEFAULT_POLICY = RetryPolicy()
_DEFAULT_REDACTOR = Redactor()


@dataclass(frozen=True)
class RetryEvent:
    """One failed attempt that will be retried, for progress reporting and metrics."""

    attempt: int
    reason: str
    wait: float
    url: str


class _AttemptFailed(Exception):
    """A retryable failure, carried through tenacity to the wait and before-sleep hooks.

    Never leaves this module: the last one becomes :class:`RetriesExhausted`.
    """

    def __init__(self, verdict: Verdict, status: int | None, detail: str) -> None:
        super().__init__(detail)
        self.verdict = verdict
        self.status = status
        self.detail = detail


def _seconds(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:g}"


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
        self.pacer = pacer
        self.sleep = sleep
        self.scope = pacing_scope(request.url)
        self._covered: datetime | None = None
        """Until when this call has already waited (its own retry wait, its pacing)."""
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
        self.attempts = 0

    def _api_message(self, body: bytes) -> str:
        # Redact before cutting, so a secret cut in half cannot slip past the redactor.
        return truncate(self.redact(api_error_text(body)), MAX_API_MESSAGE)

    async def _paced(self) -> None:
        """Wait until the pacer lets this scope send; a wait above ``max_wait`` is deferred.

        A hold this call's own retry wait already covered is not waited for twice. Loops
        only when the hold moved later while it slept (another unit's answer), so a clock
        that a test does not advance cannot spin it.
        """
        assert self.pacer is not None
        while (until := self.pacer.not_before(self.scope)) is not None:
            if self._covered is not None and until <= self._covered:
                return
            delay = (until - self.pacer.clock()).total_seconds()
            if delay > self.policy.max_wait:
                raise WaitTooLong(
                    f"{self.method} {self.url}: held back {_seconds(delay)} s by the API's"
                    f" usage (above max_wait {_seconds(self.policy.max_wait)} s); not waiting"
                    " now: this unit is set aside",
                    wait_seconds=delay,
                    url=self.url,
                    status=None,
                    attempts=self.attempts,
                )
            await self.sleep(delay)
            self._covered = until

    def _learn(self, response: httpx.Response, verdict: Verdict) -> None:
        """Feed the pacer: usage on every answer; a refusal's wait for its whole scope.

        An app-wide throttle (Meta codes 4, 17, 341, or app usage at 100 %) holds every unit
        of the source: one refusal, one wait, instead of one refusal per account.
        """
        assert self.pacer is not None
        usage = read_usage(response.headers)
        self.pacer.observe(self.scope, usage)
        if verdict.kind != "retry":
            return
        source_wide = (usage.app is not None and usage.app >= 100) or (
            verdict.meta is not None and verdict.meta.code in SOURCE_WIDE_META_CODES
        )
        wait = verdict.server_wait
        if wait is None and source_wide:
            wait = self.policy.default_wait(self.attempts)
        if wait is not None:
            self.pacer.hold(SOURCE if source_wide else self.scope, wait)

    async def attempt(self) -> httpx.Response:
        if self.pacer is not None:
            await self._paced()
        try:
            async with self.gate() if self.gate is not None else nullcontext():
                return await self._send()
        except WaitTooLong as exc:
            if exc.url:  # the server's ask, raised by _send and already worded
                raise
            # The gate's (a client-side quota knows no URL): name the endpoint, as every
            # other error does. Nothing was sent for this attempt.
            raise WaitTooLong(
                f"{self.method} {self.url}: {exc}",
                wait_seconds=exc.wait_seconds,
                url=self.url,
                attempts=self.attempts,
                reason="quota",
            ) from None

    async def _send(self) -> httpx.Response:
        self.attempts += 1
        try:
            # One deadline over connect, headers and the whole body: httpx's timeouts are per
            # operation, so a server trickling a byte every few seconds would never trip them.
            async with asyncio.timeout(self.policy.timeout):
                response = await self.client.send(
                    self.request,
                    auth=self.auth if self.auth is not None else httpx.USE_CLIENT_DEFAULT,
                )
        except (TimeoutError, httpx.HTTPError, httpx.InvalidURL) as exc:
            raise self._transport_failure(exc) from None
        verdict = classify(response.status_code, response.headers, response.content, self.now())
        if self.pacer is not None:
            self._learn(response, verdict)
        if verdict.kind == "ok":
            return response
        status = response.status_code
        api_message = self._api_message(response.content)
        got = f"HTTP {status}" + (f" ({api_message})" if api_message else "")
        if verdict.kind == "fail":
            raise PermanentFetchError(
                f"{self.method} {self.url} failed with {got}; not retried, since no wait fixes"
                f" a client error: {self._hint(verdict, status)}",
                url=self.url,
                status=status,
                attempts=self.attempts,
                detail=got,
            )
        if verdict.server_wait is not None and verdict.server_wait > self.policy.max_wait:
            meta = verdict.meta is not None or verdict.wait_source == BUC_HEADER
            raise WaitTooLong(
                f"{self.method} {self.url}: {'Meta' if meta else 'the API'} asked to wait"
                f" {_seconds(verdict.server_wait)} s (above max_wait"
                f" {_seconds(self.policy.max_wait)} s) in {verdict.wait_source} after {got};"
                " not waiting: this unit is skipped, run it again later",
                wait_seconds=verdict.server_wait,
                url=self.url,
                status=status,
                attempts=self.attempts,
                reason=verdict.reason,
                detail=got,
            )
        raise _AttemptFailed(verdict, status, got)

    def _transport_failure(self, exc: BaseException) -> Exception:
        verdict = classify_exception(exc)
        if isinstance(exc, TimeoutError | httpx.TimeoutException):
            # Ours or httpx's (the client's per-operation timeout is the same number).
            detail = f"no complete answer within the {_seconds(self.policy.timeout)} s timeout"
        else:
            text = truncate(self.redact(str(exc)), MAX_API_MESSAGE)
            detail = type(exc).__name__ + (f" ({text})" if text else "")
        if verdict.kind == "retry":
            return _AttemptFailed(verdict, None, detail)
        return PermanentFetchError(
            f"{self.method} {self.url} could not be sent: {detail}; not retried, fix the"
            " request (URL, scheme, redirects)",
            url=self.url,
            status=None,
            attempts=self.attempts,
            detail=detail,
        )

    @staticmethod
    def _hint(verdict: Verdict, status: int) -> str:
        if verdict.meta is not None and verdict.meta.code == 190:
            return "the Meta access token is invalid or expired, renew META_ACCESS_TOKEN"
        if verdict.meta is not None and verdict.meta.code == 100:
            return "Meta rejected a parameter, check the ad account id and the fields"
        if status in (401, 403):
            return "check the credentials and their permissions"
        if status == 404:
            return "check the id in the URL"
        return "check the request"

    def wait(self, state: RetryCallState) -> float:
        failure = self._failure(state)
        if failure.verdict.server_wait is not None:
            wait = failure.verdict.server_wait  # never earlier than the server asked
        else:
            wait = self.policy.default_wait(state.attempt_number)
        if self.pacer is not None:  # the pacer's hold for this refusal is waited out here
            self._covered = self.pacer.clock() + timedelta(seconds=wait)
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
            _seconds(wait),
        )
        if self.on_retry is not None:
            self.on_retry(
                RetryEvent(attempt=state.attempt_number, reason=reason, wait=wait, url=self.url)
            )

    def exhausted(self, error: RetryError) -> RetriesExhausted:
        failure = error.last_attempt.exception()
        detail = failure.detail if isinstance(failure, _AttemptFailed) else "unknown failure"
        status = failure.status if isinstance(failure, _AttemptFailed) else None
        reason = failure.verdict.reason if isinstance(failure, _AttemptFailed) else None
        plural = "s" if self.attempts != 1 else ""
        return RetriesExhausted(
            f"{self.method} {self.url} still failing after {self.attempts} attempt{plural};"
            f" last: {detail}. The API is down, slow or throttling: this unit is skipped,"
            " run it again later",
            url=self.url,
            status=status,
            attempts=self.attempts,
            reason=reason,
            detail=detail,
        )

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
    redactor: Redactor = _DEFAULT_REDACTOR,
    gate: Gate | None = None,
    retry_log_level: int = logging.WARNING,
    pacer: Pacer | None = None,
) -> httpx.Response:
    """Send one request, retrying what a later attempt can fix, and return the 2xx response.

    ``auth=None`` keeps the client's own auth. ``gate`` is entered around every attempt
    (a client-side quota: :meth:`RequestLimiter.slot`); ``retry_log_level`` is the level of
    the line logged before each retry (the alert webhook logs its own summary instead).
    With a ``pacer``, each attempt first waits until its scope may send (see :mod:`.pacing`).
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


@dataclass(frozen=True)
class HttpContext:
    """What source API clients receive: one client and the retry settings behind one method.

    ``limiter`` holds the client-side quotas (:mod:`cronkeeper.http.limits`); the runner
    shares the service's, so runs in one process share a quota. Left out, the context makes
    its own from its clock, sleep and ``policy.max_wait``.
    """

    client: httpx.AsyncClient
    policy: RetryPolicy = DEFAULT_POLICY
    sleep: Sleep = asyncio.sleep
    now: Clock = utcnow
    on_retry: Callable[[RetryEvent], None] | None = None
    redactor: Redactor = _DEFAULT_REDACTOR
    limiter: RequestLimiter | None = None
    pacer: Pacer | None = None
    _limiter: RequestLimiter = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        limiter = self.limiter or RequestLimiter(
            clock=self.now, sleep=self.sleep, max_wait=self.policy.max_wait
        )
        object.__setattr__(self, "_limiter", limiter)  # frozen: set once, here

    async def fetch(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        limit: Limit | None = None,
    ) -> httpx.Response:
        """:func:`fetch_with_retry` with this context's client and settings.

        ``limit`` makes every attempt wait for a slot of that client-side quota first.
        """
        return await fetch_with_retry(
            self.client,
            method,
            url,
            params=params,
            json=json,
            headers=headers,
            auth=auth,
            policy=self.policy,
            sleep=self.sleep,
            now=self.now,
            on_retry=self.on_retry,
            redactor=self.redactor,
            gate=(lambda: self._limiter.slot(limit)) if limit is not None else None,
            pacer=self.pacer,
        )

    async def fetch_parsed(
        self,
        method: str,
        url: str,
        parse: Callable[[httpx.Response], T],
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        limit: Limit | None = None,
    ) -> T:
        """:meth:`fetch`, then ``parse`` the answer; the source clients' one way to call.

        A :class:`PayloadError` from ``parse`` goes through the same redaction as the fetch's
        own errors (this context's secrets and the request's: its query token, its
        ``Authorization``, the ``auth`` password), since a hostile or broken body may echo a
        credential into the value a message quotes.
        """
        response = await self.fetch(
            method, url, params=params, json=json, headers=headers, auth=auth, limit=limit
        )
        try:
            return parse(response)
        except PayloadError as exc:
            request = response.request
            redactor = request_redactor(self.redactor, request.url, request.headers, auth)
            raise PayloadError(redactor(str(exc))) from None
