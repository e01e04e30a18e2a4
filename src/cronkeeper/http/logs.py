"""Keep secrets out of httpx's own log line.

httpx logs every request at INFO as ``HTTP Request: GET <full URL> "HTTP/1.1 200 OK"``, and
the Meta token travels in that URL's query string. Whoever configures logging cannot be
trusted to silence the ``httpx`` logger, so every :func:`fetch_with_retry` call makes sure a
redacting filter sits on it and knows that call's secrets.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from cronkeeper.redact import redact

__all__ = ["HTTPX_LOGGER", "RedactingFilter", "protect_httpx_log"]

HTTPX_LOGGER = "httpx"

_lock = threading.Lock()


class RedactingFilter(logging.Filter):
    """Rewrites a record whose text carries a secret; never drops a record.

    ``secrets`` only grows, and is replaced as a whole so that a record being filtered in
    another thread always sees a consistent tuple.
    """

    def __init__(self) -> None:
        super().__init__()
        self.secrets: tuple[str, ...] = ()

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
        return True


def protect_httpx_log(secrets: Iterable[str] = ()) -> RedactingFilter:
    """Install (once) the filter on the ``httpx`` logger and teach it ``secrets``."""
    logger = logging.getLogger(HTTPX_LOGGER)
    with _lock:
        found = next((f for f in logger.filters if isinstance(f, RedactingFilter)), None)
        if found is None:
            found = RedactingFilter()
            logger.addFilter(found)
    found.add(secrets)
    return found
