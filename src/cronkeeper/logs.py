"""Logging with secrets removed from every record, whoever logs it (us, httpx, SQLAlchemy)."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable

from cronkeeper.inert import printable
from cronkeeper.redact import Redactor, redact

__all__ = ["OneLineFormatter", "RedactingFilter", "configure_logging"]

_lock = threading.Lock()


class RedactingFilter(logging.Filter):
    """Rewrites a record whose text (message or traceback) carries a secret; drops none.

    ``secrets`` only grows (:meth:`add`) and is replaced as a whole, so a record filtered in
    another thread always sees a consistent tuple. Credential-shaped text (tokens in URLs,
    ``Authorization`` values) is redacted whatever the secrets.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets: tuple[str, ...] = tuple(sorted(set(secrets)))

    def add(self, secrets: Iterable[str]) -> None:
        new = set(secrets).difference(self.secrets)
        if new:
            with _lock:
                self.secrets = tuple(sorted(new.union(self.secrets)))

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a broken format string is logging's problem, not ours
            return True
        cleaned = redact(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            trace = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(trace, self.secrets)
            record.exc_info = None
        return True


class OneLineFormatter(logging.Formatter):
    """One record, one line: control characters escaped, tracebacks included (``\\n``).

    A request path or an API error text is outside text: a newline in it forged a whole second
    record ("…\\n2026-12-04 INFO cronkeeper: all good"), an escape sequence reached the
    operator's terminal (issue 19). :func:`~cronkeeper.inert.printable` shows them instead.
    """

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


def configure_logging(redactor: Redactor, level: int = logging.INFO) -> None:
    """Plain, greppable lines on stderr; every handler of the root logger redacts."""
    root = logging.getLogger()
    root.setLevel(level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for existing in list(root.handlers):
        root.removeHandler(existing)
    handler.addFilter(RedactingFilter(redactor.secrets))
    root.addHandler(handler)
    # httpx logs every request URL at INFO, token included: keep it at WARNING.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # Alembic announces every plugin it sets up, and every migration step, at INFO: noise on
    # every command that opens the SQLite default. cronkeeper says what it migrates itself.
    logging.getLogger("alembic").setLevel(logging.WARNING)
