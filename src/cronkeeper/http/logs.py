"""Which secrets one request carries, and keeping them out of httpx's own log line.

httpx logs every request at INFO as ``HTTP Request: GET <full URL> "HTTP/1.1 200 OK"``, and
the Meta token travels in that URL's query string. Whoever configures logging cannot be
trusted to silence the ``httpx`` logger, so every client from :mod:`cronkeeper.http.client`
(a request hook) and every :func:`~cronkeeper.http.fetch_with_retry` call make sure a
redacting filter sits on it and knows that request's secrets.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

import httpx

from cronkeeper.logs import RedactingFilter
from cronkeeper.redact import Redactor, redact

__all__ = ["HTTPX_LOGGER", "RedactingFilter", "protect_httpx_log", "request_redactor"]

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


def _is_secret_key(name: str) -> bool:
    # Ask the redactor's own patterns rather than keep a second list of secret key names.
    probe = f"{name}=x"
    return redact(probe) != probe


def request_redactor(
    base: Redactor,
    url: httpx.URL,
    headers: httpx.Headers,
    auth: httpx.Auth | tuple[str, str] | None = None,
) -> Redactor:
    """Extend ``base`` with every secret this request carries, in every spelling it may take.

    The patterns already blank ``access_token=…`` in a URL; adding the values themselves also
    catches them where a pattern cannot see a key (an API echoing the token in its error
    message), and the percent-encoded forms catch them inside ``str(url)``. A basic-auth
    password is only known from ``auth`` given as a tuple: the header holds it base64-encoded.
    """
    secrets = set(base.secrets)
    secrets.update(value for key, value in url.params.multi_items() if _is_secret_key(key))
    for key in ("authorization", "proxy-authorization"):
        value = headers.get(key)
        if value:
            secrets.update((value, value.partition(" ")[2]))
    if isinstance(auth, tuple):
        secrets.add(auth[1])
    spellings = set(secrets)
    for secret in secrets:
        spellings.update((quote(secret, safe=""), quote_plus(secret, safe="")))
        spellings.add(str(httpx.QueryParams({"k": secret}))[2:])  # httpx's own encoding
    return Redactor(secrets=tuple(sorted(s for s in spellings if s)))
