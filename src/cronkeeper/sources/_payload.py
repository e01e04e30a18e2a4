"""Small helpers shared by the parsers: decoding a body and describing a bad value.

Messages name the unit, the field and what was expected. A bad value is shown only as a short
``repr`` of a scalar (or its JSON type), never a whole body: bodies and URLs can echo a token.
"""

from __future__ import annotations

import json
import re
from datetime import date
from decimal import Decimal

import httpx

from cronkeeper.errors import PayloadError

__all__ = ["decode_json", "describe", "non_negative_decimal", "non_negative_int", "parse_day"]

_SHOWN = 40
# Bounded so that a hostile body cannot make int() choke or overflow a BIGINT / NUMERIC column.
_DECIMAL = re.compile(r"[0-9]{1,18}(?:\.[0-9]{1,12})?")
_INTEGER = re.compile(r"[0-9]{1,18}")
_MAX_NUMBER = 10**18
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def describe(value: object) -> str:
    """A short, safe description of a JSON value for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        shown = value if len(value) <= _SHOWN else value[:_SHOWN] + "…"
        return repr(shown)
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def decode_json(response: httpx.Response, unit: str) -> object:
    """The body as JSON, or a :class:`PayloadError` that names the unit (never the body)."""
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        kind = response.headers.get("content-type", "no content-type")
        raise PayloadError(
            f"{unit}: the answer is not JSON (HTTP {response.status_code}, {kind}, "
            f"{len(response.content)} bytes); the API may be down or behind a proxy"
        ) from None
    except RecursionError:  # valid JSON, but nested deeper than the decoder can follow
        raise PayloadError(
            f"{unit}: the answer is JSON nested too deeply to read ({len(response.content)} bytes)"
        ) from None


def is_text(value: str) -> bool:
    """Whether ``value`` can be stored: JSON allows lone surrogates (``"\\ud800"``), UTF-8 not."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable_text(value: str, where: str) -> str:
    """``value`` if it is storable text, else a :class:`PayloadError` naming the field."""
    if not is_text(value):
        raise PayloadError(f"{where}: not valid Unicode text (a lone surrogate escape)")
    return value


def non_negative_decimal(value: object, where: str) -> Decimal:
    """A decimal from a numeric string (Meta's format) or a JSON number; ``None`` is 0."""
    if value is None:
        return Decimal(0)
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        return Decimal(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _MAX_NUMBER:
        return Decimal(value)
    if isinstance(value, float) and 0 <= value < _MAX_NUMBER:  # NaN fails both comparisons
        return Decimal(str(value))
    raise PayloadError(f"{where}: expected a non-negative decimal number, got {describe(value)}")


def non_negative_int(value: object, where: str) -> int:
    """An integer from a digit string (Meta's format) or a JSON integer; ``None`` is 0."""
    if value is None:
        return 0
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _MAX_NUMBER:
        return value
    raise PayloadError(f"{where}: expected a non-negative integer, got {describe(value)}")


def parse_day(value: object, where: str) -> date:
    """A date from ``YYYY-MM-DD`` only (``date.fromisoformat`` would accept other forms)."""
    if isinstance(value, str) and _DAY.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise PayloadError(f"{where}: expected a date YYYY-MM-DD, got {describe(value)}")
