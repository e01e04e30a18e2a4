"""Tiny inline-SVG sparklines, computed here so the page needs no JavaScript.

Pure functions over plain numbers: the template only places the path this module draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Sparkline", "sparkline"]


@dataclass(frozen=True)
class Sparkline:
    width: int
    height: int
    path: str
    """SVG path data (``M``/``L`` commands); a gap in the values starts a new ``M``."""
    last: tuple[float, float] | None
    """Where the newest value is drawn (for a dot), ``None`` when it is missing."""
    latest: float | None
    high: float | None
    points: int
    band: tuple[float, float] | None = None
    """The expected range drawn behind the line: SVG ``y`` of its top and of its bottom."""

    @property
    def empty(self) -> bool:
        return self.points == 0


def _fmt(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def sparkline(
    values: Sequence[float | None],
    *,
    slots: int | None = None,
    width: int = 120,
    height: int = 28,
    pad: float = 2.0,
    band: tuple[float, float] | None = None,
) -> Sparkline:
    """Draw ``values`` (oldest first) right-aligned into ``slots`` evenly spaced positions.

    The y axis starts at zero, so a run that wrote half as many records sits half as high:
    a drop in volume looks like one. ``None`` (a run still going, no duration yet) leaves a
    gap rather than inventing a value. ``band`` (low, high) is an expected range (the records
    baseline), drawn on the same scale.
    """
    slots = max(slots or len(values), len(values))
    numbers = [v for v in values if v is not None]
    high = max(numbers) if numbers else None
    scale_top = max(high, band[1]) if high is not None and band is not None else high
    if slots == 0 or high is None:
        return Sparkline(width, height, "", None, None, high, 0)
    step = (width - 2 * pad) / (slots - 1) if slots > 1 else 0.0
    offset = slots - len(values)
    assert scale_top is not None
    scale = (height - 2 * pad) / scale_top if scale_top > 0 else 0.0
    drawn_band = None
    if band is not None:
        top, bottom = (height - pad - max(v, 0.0) * scale for v in (band[1], band[0]))
        drawn_band = (round(top, 1), round(bottom, 1))
    commands: list[str] = []
    pen_down = False
    point: tuple[float, float] | None = None
    for i, value in enumerate(values):
        if value is None:
            pen_down = False
            point = None
            continue
        x = pad + (offset + i) * step if slots > 1 else width / 2
        y = height - pad - max(value, 0.0) * scale
        commands.append(f"{'L' if pen_down else 'M'}{_fmt(x)} {_fmt(y)}")
        pen_down = True
        point = (round(x, 1), round(y, 1))
    return Sparkline(
        width, height, " ".join(commands), point, values[-1], high, len(numbers), drawn_band
    )
