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

from cronkeeper.logs import RedactingFilter

__all__ = ["HTTPX_LOGGER", "RedactingFilter", "protect_httpx_log"]

HTTPX_LOGGER = "httpx"

_lock = threading.Lock()


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
