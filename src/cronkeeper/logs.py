"""Logging with secrets removed from every record, whoever logs it (us, httpx, SQLAlchemy)."""

from __future__ import annotations

import logging
import sys

from cronkeeper.redact import Redactor

__all__ = ["RedactingFilter", "configure_logging"]


class RedactingFilter(logging.Filter):
    """Renders the message, redacts it, and stores the result so no handler sees the raw text."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record; let logging report it as usual
            return True
        record.msg = self.redactor(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redactor(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def configure_logging(redactor: Redactor, level: int = logging.INFO) -> None:
    """Plain, greppable lines on stderr; every handler of the root logger redacts."""
    root = logging.getLogger()
    root.setLevel(level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for existing in list(root.handlers):
        root.removeHandler(existing)
    handler.addFilter(RedactingFilter(redactor))
    root.addHandler(handler)
    # httpx logs every request URL at INFO, token included: keep it at WARNING.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
