"""Proving that a wait really happens, without timing it.

``asyncio.sleep(d)`` arms a timer on the running loop (``loop.call_later(d, …)``) and returns
when it fires. :func:`loop_timers` records every timer armed on the loop while it is active,
and when each fired, in one event list shared with the test: "the second request went out
after a 2 s timer fired" is then an ordering of events, not a comparison of clock readings,
and cannot fail on a loaded machine. ``scale`` shortens the timers actually armed (the
recorded delay stays what was asked) so that the suite does not wait the seconds out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LoopTimers", "loop_timers"]


@dataclass
class LoopTimers:
    """``events``: ``("armed", delay)``, ``("fired", delay)`` and whatever the test notes."""

    events: list[tuple[str, object]] = field(default_factory=list)

    def note(self, what: str, detail: object = None) -> None:
        self.events.append((what, detail))

    def delays(self) -> list[float]:
        return [float(d) for what, d in self.events if what == "armed"]  # type: ignore[arg-type]

    def only(self, *kinds: str, delay: float | None = None) -> list[tuple[str, object]]:
        """The events of ``kinds``; timer events only for ``delay`` when it is given."""
        return [
            (what, d)
            for what, d in self.events
            if what in kinds and (delay is None or what not in {"armed", "fired"} or d == delay)
        ]


@contextmanager
def loop_timers(
    loop: asyncio.AbstractEventLoop | None = None,
    *,
    scale: float = 1.0,
    watch: Callable[[], object] | None = None,
) -> Iterator[LoopTimers]:
    """Record the timers armed with ``call_later`` on ``loop`` (default: the running one).

    With ``watch``, a timer's ``fired`` event carries ``(delay, watch())``: what the test
    wants to know at that moment (say, how many requests a server had seen).
    """
    loop = loop or asyncio.get_running_loop()
    timers = LoopTimers()
    original = loop.call_later

    def call_later(
        delay: float, callback: Callable[..., Any], *args: Any, context: Any = None
    ) -> asyncio.TimerHandle:
        timers.note("armed", delay)

        def fire(*inner: Any) -> None:
            timers.note("fired", (delay, watch()) if watch is not None else delay)
            callback(*inner)

        return original(delay * scale, fire, *args, context=context)

    loop.call_later = call_later  # type: ignore[method-assign]
    try:
        yield timers
    finally:
        del loop.call_later  # the instance attribute: the class's method shows again
