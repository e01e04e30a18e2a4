"""How hard one call tries (:class:`RetryPolicy`) and what a retry reports (:class:`RetryEvent`).

Plain data: the retry loop (:mod:`.retry`) reads it, the runner and the alert webhook build
it from settings, metrics count the events.
"""

from __future__ import annotations

from dataclasses import dataclass

from cronkeeper.errors import ConfigError
from cronkeeper.http.body import DEFAULT_MAX_RESPONSE_BYTES

__all__ = ["DEFAULT_POLICY", "RetryEvent", "RetryPolicy"]

_MAX_DOUBLINGS = 64  # past this, 2**n only risks an OverflowError; max_wait caps it anyway


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
    max_body: int = DEFAULT_MAX_RESPONSE_BYTES  # decoded bytes of one answer (http/body.py)
    throttle_block: float | None = None
    """Wait after a Meta throttle that names no wait (``META_THROTTLE_BLOCK``); ``None``: the
    default schedule (the alert webhook and tests that do not model Meta)."""

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be 0 or more, got {self.max_retries}")
        if not self.timeout > 0:
            raise ConfigError(f"the per-attempt timeout must be above 0 s, got {self.timeout}")
        if not self.max_wait >= 0:
            raise ConfigError(f"max_wait must be 0 s or more, got {self.max_wait}")
        if self.throttle_block is not None and not self.throttle_block >= 0:
            raise ConfigError(f"throttle_block must be 0 s or more, got {self.throttle_block}")
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


@dataclass(frozen=True)
class RetryEvent:
    """One failed attempt that will be retried, for progress reporting and metrics."""

    attempt: int
    reason: str
    wait: float
    url: str
