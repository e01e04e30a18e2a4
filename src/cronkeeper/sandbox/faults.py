"""Deterministic fault injection for the API simulators.

A :class:`Fault` describes one bad answer (a status, a Meta error envelope, a hang, a malformed
body, a dropped connection). A :class:`FaultPlan` decides, per request, which fault (if any) a
simulator serves for a *unit key* (Meta: the ad account digits; Mixpanel: the project id;
Notion: the result offset the request starts at, ``"0"`` for the first page):

1. the next entry of that key's **script** (one entry consumed per request; ``None`` in a
   script means "answer normally this time");
2. otherwise the key's **always** fault;
3. otherwise the plan's seeded :class:`FaultMix`, a pure function of
   ``(seed, key, n-th request for that key)`` so a benchmark sees the same faults every run.

Nothing here does I/O; the simulators render the faults into HTTP answers.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Fault", "FaultKind", "FaultMix", "FaultPlan", "MalformedMode"]

FaultKind = Literal["status", "retry_after_date", "meta_error", "hang", "malformed", "drop"]
MalformedMode = Literal["json", "shape", "html", "empty"]

#: Meta's wording for the error codes the sandbox is asked for most often.
_META_MESSAGES: dict[int, str] = {
    1: "An unknown error occurred",
    2: "An unexpected error has occurred. Please retry your request later.",
    4: "(#4) There have been too many calls from this app. Wait a bit and try again.",
    17: "(#17) User request limit reached",
    32: "(#32) Page request limit reached",
    100: "(#100) Invalid parameter",
    190: "Error validating access token: Session has expired",
    341: "(#341) Application limit reached",
    613: "(#613) There have been too many calls from this ad-account. Please wait a bit and try"
    " again.",
    80000: "(#80000) There have been too many calls from this ad-account. "
    "Wait a bit and try again. For more info, please refer to "
    "https://developers.facebook.com/docs/graph-api/overview/rate-limiting.",
}
# Subcodes by scope, from Meta's Marketing API rate-limiting page
# (https://developers.facebook.com/docs/marketing-api/overview/rate-limiting): 17/2446079 and
# 613/1487742 the ad account's quota, 4/1504022 the app's.
_META_DEFAULT_SUBCODES: dict[int, int] = {
    4: 1504022,
    17: 2446079,
    190: 463,
    613: 1487742,
    80000: 2446079,
}


@dataclass(frozen=True)
class Fault:
    """One bad answer. Build it with the class methods, not the raw constructor.

    Only the fields of its ``kind`` matter; the others keep their defaults.
    """

    kind: FaultKind
    http_status: int = 0
    retry_after: str | None = None
    retry_after_seconds: float = 0.0
    meta_code: int | None = None
    meta_subcode: int | None = None
    is_transient: bool = False
    regain_minutes: int | None = None
    message: str | None = None
    seconds: float = 0.0
    malformed_mode: MalformedMode = "shape"
    after_headers: bool = False

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    def status(cls, code: int, retry_after: str | int | None = None) -> Fault:
        """An error status with the simulator's own error body (e.g. 429, 408, 500, 502, 503).

        ``retry_after`` is sent verbatim as ``Retry-After`` (``"2"``, an HTTP-date, or garbage
        to test a client's fallback); ``None`` sends no header.
        """
        if not 400 <= code <= 599:
            raise ValueError(f"Fault.status needs a 4xx or 5xx code, got {code}")
        return cls("status", http_status=code, retry_after=_opt_str(retry_after))

    @classmethod
    def retry_after_date(cls, seconds: float, *, code: int = 429) -> Fault:
        """``code`` with ``Retry-After`` as an HTTP-date ``seconds`` after the answer is sent.

        The date is rounded *up* to the whole second (HTTP-dates have no fractions), so a client
        that honours it never waits less than ``seconds``.
        """
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        if not 400 <= code <= 599:
            raise ValueError(f"Fault.retry_after_date needs a 4xx or 5xx code, got {code}")
        return cls("retry_after_date", http_status=code, retry_after_seconds=seconds)

    @classmethod
    def meta_error(
        cls,
        code: int,
        *,
        http_status: int = 400,
        subcode: int | None = None,
        is_transient: bool = False,
        regain_minutes: int | None = None,
        message: str | None = None,
    ) -> Fault:
        """A Graph API error envelope ``{"error": {"code": code, ...}}``.

        Throttling codes are 4, 17, 32, 341, 613, 80000-80014; 190 is an expired token (subcode
        463 by default); 1 and 2 are transient. ``regain_minutes`` adds an
        ``X-Business-Use-Case-Usage`` header whose ``estimated_time_to_regain_access`` is that
        many minutes. Served in Meta's shape by every simulator.
        """
        return cls(
            "meta_error",
            http_status=http_status,
            meta_code=code,
            meta_subcode=subcode if subcode is not None else _META_DEFAULT_SUBCODES.get(code),
            is_transient=is_transient,
            regain_minutes=regain_minutes,
            message=message,
        )

    @classmethod
    def meta_throttle(cls, code: int = 17, *, regain_minutes: int | None = None) -> Fault:
        """Meta's HTTP-400 throttling (code 17 "User request limit reached" by default)."""
        return cls.meta_error(code, regain_minutes=regain_minutes)

    @classmethod
    def expired_token(cls) -> Fault:
        """Meta code 190 / subcode 463: a token no wait can fix."""
        return cls.meta_error(190)

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        """Answer normally, but only after ``seconds`` (an async sleep: other requests proceed).

        If the client gives up first (its timeout), the simulator notices the disconnect and
        stops waiting.
        """
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        return cls("hang", seconds=seconds)

    @classmethod
    def malformed(cls, mode: MalformedMode = "shape") -> Fault:
        """HTTP 200 with a body that breaks the contract.

        ``"shape"``: valid JSON of the wrong shape (``{"data": "oops"}``); ``"json"``: truncated,
        invalid JSON; ``"html"``: an HTML page, as a proxy would send; ``"empty"``: no body.
        """
        return cls("malformed", http_status=200, malformed_mode=mode)

    @classmethod
    def drop(cls, *, after_headers: bool = False) -> Fault:
        """Close the connection without a complete HTTP response.

        By default nothing at all is sent (httpx: ``RemoteProtocolError`` "Server disconnected
        without sending a response"); with ``after_headers=True`` the status line, headers and
        part of the body go out first (httpx: ``RemoteProtocolError`` on the incomplete body).
        """
        return cls("drop", after_headers=after_headers)

    # -- helpers ------------------------------------------------------------------------------

    @property
    def meta_message(self) -> str:
        """The Graph API message for a ``meta_error`` fault."""
        if self.message is not None:
            return self.message
        return _META_MESSAGES.get(self.meta_code or 0, f"(#{self.meta_code}) Simulated error")

    def describe(self) -> str:
        """A short label for logs and request records (``"status:429"``, ``"meta:17"`` ...)."""
        if self.kind == "status":
            return f"status:{self.http_status}"
        if self.kind == "retry_after_date":
            return f"retry_after_date:{self.http_status}"
        if self.kind == "meta_error":
            return f"meta:{self.meta_code}"
        if self.kind == "hang":
            return f"hang:{self.seconds:g}"
        if self.kind == "malformed":
            return f"malformed:{self.malformed_mode}"
        return "drop:after_headers" if self.after_headers else "drop"


def _opt_str(value: str | int | None) -> str | None:
    return None if value is None else str(value)


def stable_fraction(*parts: object) -> float:
    """A number in [0, 1) that depends only on ``parts`` (not on the process, unlike hash())."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class FaultMix:
    """A seeded random fault mix for benchmarks.

    Each request draws one number from ``(seed, key, n)`` where ``n`` counts that key's
    requests; the probabilities are stacked in this order: 429 (with ``retry_after``; ``None``
    sends no header), 5xx (one of ``codes_5xx``), hang, drop, then each ``(p, fault)`` of
    ``extra``. Their sum must not exceed 1.
    """

    p429: float = 0.0
    retry_after: str | None = "1"
    p5xx: float = 0.0
    codes_5xx: tuple[int, ...] = (500, 502, 503)
    phang: float = 0.0
    hang_seconds: float = 30.0
    pdrop: float = 0.0
    extra: tuple[tuple[float, Fault], ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        probabilities = [self.p429, self.p5xx, self.phang, self.pdrop, *(p for p, _ in self.extra)]
        if any(p < 0 for p in probabilities):
            raise ValueError("FaultMix probabilities must be >= 0")
        if sum(probabilities) > 1.0 + 1e-9:
            raise ValueError("FaultMix probabilities must sum to at most 1")
        if self.p5xx and not self.codes_5xx:
            raise ValueError("FaultMix.codes_5xx must not be empty when p5xx > 0")

    def pick(self, key: str, index: int) -> Fault | None:
        """The fault for the ``index``-th (0-based) request of ``key``; ``None`` = answer well."""
        u = stable_fraction("mix", self.seed, key, index)
        choices: list[tuple[float, Fault]] = []
        if self.p429:
            choices.append((self.p429, Fault.status(429, self.retry_after)))
        if self.p5xx:
            pick = int(stable_fraction("mix5xx", self.seed, key, index) * len(self.codes_5xx))
            choices.append((self.p5xx, Fault.status(self.codes_5xx[pick])))
        if self.phang:
            choices.append((self.phang, Fault.hang(self.hang_seconds)))
        if self.pdrop:
            choices.append((self.pdrop, Fault.drop()))
        choices.extend(self.extra)
        threshold = 0.0
        for probability, fault in choices:
            threshold += probability
            if u < threshold:
                return fault
        return None


@dataclass
class FaultPlan:
    """Which fault each request gets: scripts first, then ``always``, then the mix.

    Thread-safe: tests configure it from their thread while the server consumes it in its own.
    """

    scripts: dict[str, deque[Fault | None]] = field(default_factory=dict)
    always: dict[str, Fault] = field(default_factory=dict)
    mix: FaultMix | None = None
    _counts: dict[str, int] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def build(
        cls,
        scripts: Mapping[str, Sequence[Fault | None]] | None = None,
        always: Mapping[str, Fault] | None = None,
        mix: FaultMix | None = None,
    ) -> FaultPlan:
        plan = cls(mix=mix)
        for key, faults in (scripts or {}).items():
            plan.add_script(key, faults)
        for key, fault in (always or {}).items():
            plan.set_always(key, fault)
        return plan

    def add_script(self, key: str, faults: Iterable[Fault | None]) -> None:
        """Append ``faults`` to ``key``'s script (consumed one per request, in order)."""
        with self._lock:
            self.scripts.setdefault(key, deque()).extend(faults)

    def set_always(self, key: str, fault: Fault | None) -> None:
        """Serve ``fault`` to every request of ``key`` once its script is used up."""
        with self._lock:
            if fault is None:
                self.always.pop(key, None)
            else:
                self.always[key] = fault

    def set_mix(self, mix: FaultMix | None) -> None:
        with self._lock:
            self.mix = mix

    def clear(self) -> None:
        """Forget every script, ``always`` fault, the mix and the request counts."""
        with self._lock:
            self.scripts.clear()
            self.always.clear()
            self.mix = None
            self._counts.clear()

    def pending(self, key: str) -> int:
        """How many scripted entries ``key`` still has."""
        with self._lock:
            return len(self.scripts.get(key, ()))

    def next_fault(self, key: str) -> Fault | None:
        """Consume the decision for the next request of ``key``."""
        with self._lock:
            index = self._counts.get(key, 0)
            self._counts[key] = index + 1
            script = self.scripts.get(key)
            if script:
                return script.popleft()
            if key in self.always:
                return self.always[key]
            mix = self.mix
        return mix.pick(key, index) if mix is not None else None
