"""Fail fast after the database stopped answering, so a run pays the ledger timeout once.

Each ledger or lease call is bounded by ``CRONKEEPER_LEDGER_TIMEOUT``; a run makes several,
and with an unreachable database each would wait out its own timeout. After one call failed
to reach the database, the breaker lets bookkeeping calls fail at once for ``cooldown``
seconds. Reads that answer a person or a monitor (health, the runs list) are not gated: they
always try, and their success closes the breaker again.

A new run's first call (its lease claim) is a *probe*: it trusts a failure seen in the last
``recheck`` seconds — the run's own start-up found the database down moments ago — and asks
the database about an older one. Trusted for the whole cooldown, every run in the 30 s after
a blip would go on unguarded and unrecorded though the database answers again.

The calls themselves go through :class:`cronkeeper.storage.bounded.BoundedCall`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cronkeeper.errors import BreakerOpen
from cronkeeper.storage.failures import is_unreachable

__all__ = ["Breaker", "BreakerOpen", "is_unreachable"]


@dataclass
class Breaker:
    cooldown: float = 30.0
    monotonic: Callable[[], float] = time.monotonic
    recheck: float = 5.0
    _open_until: float = field(default=0.0, init=False)

    def allow(self, *, probe: bool = False) -> bool:
        """Whether a gated call may try; a ``probe`` may once the failure is ``recheck`` old."""
        now = self.monotonic()
        if probe:
            return now >= self._open_until - self.cooldown + self.recheck
        return now >= self._open_until

    def record(self, exc: BaseException | None) -> None:
        """After a call: ``None`` for success (closes), or its exception (opens if unreachable;
        SQLite's "database is locked" is contention and leaves it as it is)."""
        if exc is None:
            self._open_until = 0.0
        elif is_unreachable(exc):
            self._open_until = self.monotonic() + self.cooldown
