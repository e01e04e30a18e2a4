"""The simulators' request log: what arrived, when, and what it was answered.

Tests read it from their own thread while the server appends from the uvicorn thread, so every
access goes through one lock and readers get snapshots.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["RequestLog", "RequestRecord"]


@dataclass(frozen=True)
class RequestRecord:
    """One request as the simulator saw it on arrival.

    ``at`` is ``time.monotonic()`` on arrival (compare it across records, or with
    ``time.monotonic()`` in the test process: same clock); ``wall`` the UTC wall-clock time.
    ``status`` is the status the simulator answered, or would have answered had the client
    waited (a hang, a latency the client gave up on); ``0`` means no HTTP response at all (a
    dropped connection). ``fault`` labels the injected fault (:meth:`Fault.describe`), ``None``
    for a normal answer. Header names are lower-case.
    """

    at: float
    wall: datetime
    method: str
    path: str
    query: Mapping[str, str]
    key: str | None
    status: int
    fault: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


class RequestLog:
    """Thread-safe, append-only list of :class:`RequestRecord` plus an in-flight gauge."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._in_flight = 0
        self._max_in_flight = 0

    # -- written by the simulator -------------------------------------------------------------

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def enter(self) -> None:
        """A request arrived (counts towards :attr:`max_in_flight`)."""
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def leave(self) -> None:
        """A request was answered, dropped, or abandoned by its client."""
        with self._lock:
            self._in_flight -= 1

    # -- read by tests and benchmarks ---------------------------------------------------------

    @property
    def records(self) -> list[RequestRecord]:
        """A snapshot of every record, in arrival order."""
        with self._lock:
            return list(self._records)

    def records_for(self, key: str) -> list[RequestRecord]:
        """The records of one unit key, in arrival order."""
        with self._lock:
            return [r for r in self._records if r.key == key]

    def attempt_gaps(self, key: str) -> list[float]:
        """Seconds between consecutive arrivals of ``key`` (proves no retry came early)."""
        times = [r.at for r in self.records_for(key)]
        return [later - earlier for earlier, later in itertools.pairwise(times)]

    def keys(self) -> list[str]:
        """Distinct unit keys, in order of first arrival."""
        with self._lock:
            return list(dict.fromkeys(r.key for r in self._records if r.key is not None))

    @property
    def in_flight(self) -> int:
        """Requests arrived and not yet answered, right now."""
        with self._lock:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The peak number of requests in flight at once since the last :meth:`clear`."""
        with self._lock:
            return self._max_in_flight

    def clear(self) -> None:
        """Forget every record and reset the peak (requests still in flight stay counted)."""
        with self._lock:
            self._records.clear()
            self._max_in_flight = self._in_flight

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)
