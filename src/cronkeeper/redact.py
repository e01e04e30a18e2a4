"""Keep secrets out of messages, logs and the ledger.

Two layers: patterns that catch credential-shaped text whatever its value (query parameters
such as ``access_token``, ``Authorization`` values, passwords in database URLs), and the exact
values of the secrets this process knows (tokens from the configuration), wherever they appear.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["MAX_ERROR_MESSAGE", "REDACTED", "Redactor", "redact", "truncate"]

REDACTED = "[REDACTED]"
MAX_ERROR_MESSAGE = 4000

# Names of secret-bearing keys, not secrets.
_SECRET_KEYS = "|".join(
    (
        "access_token",
        "client_secret",
        "secret",
        "password",
        "passwd",
        "pwd",
        "api_key",
        "apikey",
        "token",
        "refresh_token",
        "fb_exchange_token",
        "appsecret_proof",
        "signature",
        "sig",
    )
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # query strings and form bodies: access_token=abc&...
    (re.compile(rf"(?i)\b({_SECRET_KEYS})=([^&\s\"'#]+)"), rf"\1={REDACTED}"),
    # JSON-ish: "access_token": "abc"
    (
        re.compile(rf"(?i)([\"']?(?:{_SECRET_KEYS})[\"']?\s*[:=]\s*[\"'])([^\"']+)([\"'])"),
        rf"\1{REDACTED}\3",
    ),
    # Authorization header values: Bearer/Basic/Token credentials
    (re.compile(r"(?i)\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]{8,}"), rf"\1 {REDACTED}"),
    (
        re.compile(
            r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?:(?:Bearer|Basic|Token)\s+)?[^\s\"',}]+"
        ),
        rf"\1{REDACTED}",
    ),
    # userinfo in URLs: scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/\s:@]*):([^@\s/]+)@"), rf"\1:{REDACTED}@"),
)


def truncate(text: str, limit: int = MAX_ERROR_MESSAGE) -> str:
    """Cut ``text`` to at most ``limit`` characters, saying that it was cut."""
    if len(text) <= limit:
        return text
    marker = "… [truncated]"
    return text[: max(0, limit - len(marker))] + marker


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace credential-shaped text and every known secret value in ``text``."""
    # Longest first, so a secret that contains another is replaced whole.
    for value in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


@dataclass(frozen=True)
class Redactor:
    """A redaction function bound to the secrets of one configuration."""

    secrets: tuple[str, ...] = field(default=())

    def __call__(self, text: str) -> str:
        return redact(text, self.secrets)

    def message(self, text: str) -> str:
        """Redact, then truncate to what ``cron_runs.error_message`` may hold."""
        return truncate(redact(text, self.secrets))
