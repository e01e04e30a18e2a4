"""Triggered runs that outlive their request (issue 20.6).

``GET``/``POST /api/cron/{job}`` start the run as a task owned by the app, not by the
request: the caller waits at most ``CRONKEEPER_TRIGGER_WAIT`` for its end, then is answered
``202`` while the run goes on; a caller that hangs up stops nothing. The app cancels what is
still running at shutdown (each run then ends ``error``, "cancelled before it finished").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from cronkeeper.runner import RunResult

__all__ = ["TriggeredRuns"]

log = logging.getLogger("cronkeeper.api")


class TriggeredRuns:
    """The runs the HTTP triggers started that may still be going."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[RunResult]] = set()

    def start(self, run: Coroutine[Any, Any, RunResult], name: str) -> asyncio.Task[RunResult]:
        task = asyncio.create_task(run, name=f"trigger {name}")
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[RunResult]) -> None:
        self.tasks.discard(task)
        # Retrieved here: a run that refused to start (409, 404) was answered already, and a
        # run cancelled at shutdown ends ``error`` in the ledger on its own.
        if not task.cancelled():
            task.exception()

    async def join(self) -> None:
        """Wait for every run still going (tests, and the benchmark)."""
        while self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def settle(self, grace: float = 5.0) -> None:
        """Let the runs still going end (their observers included) for up to ``grace``
        seconds, then cancel the rest: what the service waits for before it disposes of its
        engine, so no run is left holding a connection of a closed pool."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=grace)
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel every run still going, and wait until each has closed its row."""
        tasks = list(self.tasks)
        if tasks:
            log.warning("cancelling %d triggered run(s) still going at shutdown", len(tasks))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
