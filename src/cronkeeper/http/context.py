"""The facade source clients receive: one client, the retry settings, quotas and pacing.

Source API clients (:mod:`cronkeeper.sources`) take an :class:`HttpContext` and call
:meth:`HttpContext.fetch_parsed`; everything below it (:mod:`.retry`) stays out of their sight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from cronkeeper.clock import Clock, Sleep, utcnow
from cronkeeper.errors import PayloadError
from cronkeeper.http.limits import Limit, RequestLimiter
from cronkeeper.http.logs import request_redactor
from cronkeeper.http.pacing import Pacer
from cronkeeper.http.policy import DEFAULT_POLICY, RetryEvent, RetryPolicy
from cronkeeper.http.retry import DEFAULT_REDACTOR, fetch_with_retry
from cronkeeper.redact import Redactor

__all__ = ["HttpContext"]

T = TypeVar("T")


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
    redactor: Redactor = DEFAULT_REDACTOR
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
