"""One exception tree for everything cronkeeper raises on purpose.

    CronkeeperError
    ├── ConfigError            configuration is missing or invalid
    ├── StorageError           the database could not be reached or refused a statement
    │   ├── DatabaseUnreachable    no connection, or no answer within CRONKEEPER_LEDGER_TIMEOUT
    │   │   └── BreakerOpen            not attempted: it did not answer moments ago
    │   ├── DatabaseLocked         SQLite: another connection held the write lock (contention)
    │   ├── SchemaBehind           a table, column or migration this version needs is missing
    │   ├── PermissionDenied       the database role may not do this
    │   └── StatementFailed        any other refusal (a constraint, a bug)
    ├── FetchError             an HTTP call to a source API failed for good
    │   ├── PermanentFetchError    a 4xx no wait can fix (Meta 190 expired token, 100 bad param)
    │   │   ├── ApiVersionRefused      the API no longer serves the pinned version: the source stops
    │   │   └── TooMuchData            the API timed out on the request's size: ask for less
    │   ├── RetriesExhausted       still failing after every allowed retry
    │   └── WaitTooLong            the API asked to wait longer than ``max_wait``
    ├── PayloadError           an API answered with a malformed or unexpected body
    ├── UnknownJob             no job by that name
    ├── AlreadyRunning         another process holds the job's lease
    └── LeaseLost              a run's lease expired and another run took it over

The database errors are told apart once, where every statement runs
(:mod:`cronkeeper.storage.bounded`): callers decide on the kind (spool the write, run
unguarded, refuse the run), never on a driver's exception or its text.

Every message says what failed, for which unit, and what to do; none carries a secret
(URLs and texts pass through :mod:`cronkeeper.redact` before they reach an exception).
Third-party errors are cut to their :func:`first_line` before they are logged or stored:
SQLAlchemy's messages go on with the statement and its parameters.
"""

from __future__ import annotations

__all__ = [
    "LEASE_LOST",
    "AlreadyRunning",
    "ApiVersionRefused",
    "BreakerOpen",
    "ConfigError",
    "CronkeeperError",
    "DatabaseLocked",
    "DatabaseUnreachable",
    "FetchError",
    "LeaseLost",
    "PayloadError",
    "PermanentFetchError",
    "PermissionDenied",
    "RetriesExhausted",
    "SchemaBehind",
    "StatementFailed",
    "StorageError",
    "TooMuchData",
    "UnknownJob",
    "WaitTooLong",
    "first_line",
]


def first_line(exc: BaseException, default: str = "") -> str:
    """The first line of ``exc``'s text, stripped; ``default`` when it has none.

    Not redacted: callers pass it through their redactor before it leaves the process.
    """
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else default


class CronkeeperError(Exception):
    """Base of every error cronkeeper raises on purpose."""


class ConfigError(CronkeeperError):
    """Configuration is missing or invalid."""


class StorageError(CronkeeperError):
    """The database could not be reached or refused a statement."""


class DatabaseUnreachable(StorageError):
    """No connection, or no answer in time: an outage (it opens the breaker)."""


class BreakerOpen(DatabaseUnreachable):
    """Not attempted: the database failed to answer moments ago."""


class DatabaseLocked(StorageError):
    """SQLite's write lock stayed held by another connection: contention, not an outage."""


class SchemaBehind(StorageError):
    """The schema lacks what this version needs (a migration not applied, a missing table)."""


class PermissionDenied(StorageError):
    """The database role lacks a privilege (or the SQLite file is read-only)."""


class StatementFailed(StorageError):
    """The database answered and refused the statement for another reason."""


class FetchError(CronkeeperError):
    """An HTTP call to a source API failed for good.

    ``url`` is already redacted; ``status`` is the last HTTP status seen (``None`` when no
    response arrived); ``attempts`` is how many requests were sent. ``reason`` (``"timeout"``,
    ``"status_5xx"``, … as in :data:`cronkeeper.http.Reason`) and ``detail`` (redacted, one
    line: ``"HTTP 500 (…)"``) describe the last failed attempt, for callers that word their
    own message (the alert webhook).
    """

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        status: int | None = None,
        attempts: int = 1,
        reason: str | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.attempts = attempts
        self.reason = reason
        self.detail = detail


class PermanentFetchError(FetchError):
    """A client error that no wait can fix (expired token, invalid parameter, 404 …)."""


class ApiVersionRefused(PermanentFetchError):
    """The API refused the pinned version (Meta #2635, "You are calling a deprecated version").

    Every unit of the source would get the same answer, so the job stops at once with this
    one message instead of failing each unit in turn.
    """


class TooMuchData(PermanentFetchError):
    """The API timed out computing the answer and asks for less (Meta 100/1504018, 2/1504038).

    Retrying the same request earns the same timeout; the caller splits it instead.
    """


class RetriesExhausted(FetchError):
    """Every attempt failed with a retryable error."""


class WaitTooLong(FetchError):
    """The API asked for a wait above ``max_wait``; the call fails at once instead."""

    def __init__(self, message: str, *, wait_seconds: float, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.wait_seconds = wait_seconds


class PayloadError(CronkeeperError):
    """An API answered with a body that does not have the documented shape."""


class UnknownJob(CronkeeperError):
    """No job is registered under that name."""


class AlreadyRunning(CronkeeperError):
    """Another process holds the lease of this job; no run was recorded."""


class SlotServed(AlreadyRunning):
    """The scheduler's slot was served by another run, found once the lease was held (the
    check and the claim are one step: issue 20.2); no run was recorded."""


class LeaseLost(CronkeeperError):
    """A run's lease expired while it went on, and another run took it over."""


LEASE_LOST = "lease lost to another run"
"""Why a run whose lease was taken over ends ``error`` (the ledger's message; issue 20.2)."""
