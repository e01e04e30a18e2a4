"""Pacing glue: what one call does with the :class:`~cronkeeper.http.pacing.Pacer` around
each attempt — which scope it draws on, waiting its turn, and feeding back what the answer said.

:mod:`.pacing` holds the pure rules (usage percentages → holds); this module applies them to
one request, so the retry loop (:mod:`.retry`) only calls :meth:`Throttle.wait_turn` before an
attempt and :meth:`Throttle.learn` after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx

from cronkeeper.clock import Sleep
from cronkeeper.http import wording
from cronkeeper.http.classify import Verdict
from cronkeeper.http.pacing import SOURCE, SOURCE_WIDE_META_CODES, Pacer, read_usage
from cronkeeper.http.policy import RetryPolicy

__all__ = ["Throttle", "pacing_scope"]

_AD_ACCOUNT = re.compile(r"/(act_\d+)(?:/|$)")


def pacing_scope(url: httpx.URL) -> str:
    """Which quota a request draws on: its ad account for Meta (``/act_<id>/…``), else the host.

    Derived from the URL so that every caller of :func:`fetch_with_retry` is paced the same
    way without naming its scope.
    """
    match = _AD_ACCOUNT.search(url.path)
    return match.group(1) if match else url.host


@dataclass
class Throttle:
    """One call's view of the pacer: its scope, and until when it has already waited."""

    pacer: Pacer
    scope: str
    policy: RetryPolicy
    sleep: Sleep
    call: str
    """``METHOD endpoint`` (redacted), for the error when a hold is too long to wait."""
    url: str
    covered: datetime | None = field(default=None)
    """Until when this call has already waited (its own retry wait, its pacing)."""

    async def wait_turn(self, attempts: int) -> None:
        """Wait until the pacer lets this scope send; a wait above ``max_wait`` is deferred.

        A hold this call's own retry wait already covered is not waited for twice. Loops
        only when the hold moved later while it slept (another unit's answer), so a clock
        that a test does not advance cannot spin it.
        """
        while (until := self.pacer.not_before(self.scope)) is not None:
            if self.covered is not None and until <= self.covered:
                return
            delay = (until - self.pacer.clock()).total_seconds()
            if delay > self.policy.max_wait:
                raise wording.held_back(self.call, self.url, delay, self.policy.max_wait, attempts)
            await self.sleep(delay)
            self.covered = until

    def learn(self, response: httpx.Response, verdict: Verdict, attempts: int) -> None:
        """Feed the pacer: usage on every answer; a refusal's wait for its whole scope.

        An app-wide throttle (Meta codes 4 and 341, or app usage at 100 %) holds every unit
        of the source: one refusal, one wait, instead of one refusal per account; an account
        throttle (17, 613, 80000–80014) holds that account only (see
        :data:`~cronkeeper.http.pacing.SOURCE_WIDE_META_CODES` for Meta's pages).
        """
        usage = read_usage(response.headers)
        self.pacer.observe(self.scope, usage)
        if verdict.kind != "retry":
            return
        source_wide = (usage.app is not None and usage.app >= 100) or (
            verdict.meta is not None and verdict.meta.code in SOURCE_WIDE_META_CODES
        )
        wait = verdict.server_wait
        if wait is None and source_wide:
            wait = self.policy.default_wait(attempts)
        if wait is not None:
            self.pacer.hold(SOURCE if source_wide else self.scope, wait)

    def cover(self, wait: float) -> None:
        """The retry loop is about to sleep ``wait``: the pacer's hold for it is waited out."""
        self.covered = self.pacer.clock() + timedelta(seconds=wait)
