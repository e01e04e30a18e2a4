"""Parse and format short durations (``90s``, ``24h``, ``7d``) for configuration and the CLI."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["format_duration", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)


def parse_duration(text: str | float | int | timedelta) -> timedelta:
    """``"24h"`` → 24 hours; a bare number is seconds; ``ValueError`` names the accepted forms."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, int | float):
        value, unit = float(text), "s"
    else:
        match = _PATTERN.match(text)
        if not match:
            raise ValueError(
                f"invalid duration {text!r}: use a number with an optional unit s, m, h, d or w "
                "(for example 90s, 30m, 24h, 7d)"
            )
        value, unit = float(match.group(1)), (match.group(2) or "s").lower()
    if value <= 0:
        raise ValueError(f"invalid duration {text!r}: it must be greater than zero")
    return timedelta(seconds=value * _UNITS[unit])


def format_duration(value: timedelta) -> str:
    """The shortest exact form: 86400 s → ``"1d"``, 5400 s → ``"90m"``."""
    seconds = value.total_seconds()
    for unit in ("w", "d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
