"""Deterministic numbers for the simulators: the same (seed, unit, date) gives the same data
in every process and on every machine (SHA-256 based, never Python's salted ``hash()``).

Tests of the collectors compute their expectations with these same functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from cronkeeper.config import DEFAULT_CONVERSION_TYPES, DEFAULT_LEAD_TYPES
from cronkeeper.sandbox.faults import stable_fraction

__all__ = [
    "DEFAULT_CONVERSION_ACTIONS",
    "DEFAULT_LEAD_ACTIONS",
    "RESTATEMENT_DAYS",
    "MetaDay",
    "date_range",
    "meta_day",
    "mixpanel_count",
]

#: The precedence lists the collector uses by default (first type present wins).
DEFAULT_CONVERSION_ACTIONS: tuple[str, ...] = DEFAULT_CONVERSION_TYPES
DEFAULT_LEAD_ACTIONS: tuple[str, ...] = DEFAULT_LEAD_TYPES


RESTATEMENT_DAYS = 28
"""Meta: insights "do not change after 28 days of being reported" (Insights API best
practices); before that, late conversions keep arriving."""


def date_range(since: date, until: date) -> list[date]:
    """Every day from ``since`` to ``until``, both included."""
    return [since + timedelta(days=i) for i in range((until - since).days + 1)]


@dataclass(frozen=True)
class MetaDay:
    """One insights row in exact integers (spend in cents), before Meta's string formatting."""

    account_id: str
    date_start: date
    date_stop: date
    spend_cents: int
    impressions: int
    clicks: int
    reach: int
    actions: tuple[tuple[str, int], ...]
    currency: str = "USD"

    @property
    def spend(self) -> Decimal:
        return Decimal(self.spend_cents) / 100

    def action(self, action_type: str) -> int:
        return sum(v for t, v in self.actions if t == action_type)

    def conversions(self, action_types: Iterable[str] = DEFAULT_CONVERSION_ACTIONS) -> int:
        """The value of the first of ``action_types`` present (Meta's types overlap)."""
        present = dict(self.actions)
        return next((present[t] for t in action_types if t in present), 0)

    def leads(self, action_types: Iterable[str] = DEFAULT_LEAD_ACTIONS) -> int:
        return self.conversions(action_types)

    def as_of(self, local_now: datetime) -> MetaDay | None:
        """This day's row as Meta reports it at ``local_now`` (the account's own zone).

        A day not begun has no row; today's row holds the share of the day elapsed; a complete
        day's conversions and leads grow from half their final value to all of it over
        :data:`RESTATEMENT_DAYS` days (late, attributed conversions), then never change.
        """
        today = local_now.date()
        if self.date_start > today:
            return None
        if self.date_start == today:
            midnight = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
            elapsed = (local_now - midnight).total_seconds() / 86_400
            return self._scaled(elapsed, elapsed)
        age = (today - self.date_stop).days
        if age >= RESTATEMENT_DAYS:
            return self
        return self._scaled(1.0, 0.5 + 0.5 * age / RESTATEMENT_DAYS)

    def _scaled(self, delivery: float, conversions: float) -> MetaDay:
        return replace(
            self,
            spend_cents=round(self.spend_cents * delivery),
            impressions=round(self.impressions * delivery),
            clicks=round(self.clicks * delivery),
            reach=round(self.reach * delivery),
            actions=tuple(
                (t, round(v * (delivery if t == "link_click" else conversions)))
                for t, v in self.actions
            ),
        )

    def split(self, parts: int) -> list[MetaDay]:
        """``parts`` rows with the same dates whose metrics sum exactly to this row's."""
        if parts < 1:
            raise ValueError("parts must be >= 1")
        spend = _split(self.spend_cents, parts)
        impressions = _split(self.impressions, parts)
        clicks = _split(self.clicks, parts)
        reach = _split(self.reach, parts)
        actions = {t: _split(v, parts) for t, v in self.actions}
        return [
            replace(
                self,
                spend_cents=spend[i],
                impressions=impressions[i],
                clicks=clicks[i],
                reach=reach[i],
                actions=tuple((t, vs[i]) for t, vs in actions.items() if vs[i]),
            )
            for i in range(parts)
        ]

    @classmethod
    def total(cls, days: list[MetaDay]) -> MetaDay:
        """The aggregate row Meta returns for a multi-day ``time_range`` without increments."""
        if not days:
            raise ValueError("no days to add up")
        actions: dict[str, int] = {}
        for day in days:
            for t, v in day.actions:
                actions[t] = actions.get(t, 0) + v
        return replace(
            days[0],
            date_start=min(d.date_start for d in days),
            date_stop=max(d.date_stop for d in days),
            spend_cents=sum(d.spend_cents for d in days),
            impressions=sum(d.impressions for d in days),
            clicks=sum(d.clicks for d in days),
            reach=sum(d.reach for d in days),
            actions=tuple(actions.items()),
        )

    def to_row(self, fields: set[str] | None = None) -> dict[str, object]:
        """The row as Meta sends it: every number a string; only ``fields`` (and the dates)."""
        row: dict[str, object] = {
            "account_id": self.account_id,
            "account_currency": self.currency,
            "spend": f"{self.spend_cents // 100}.{self.spend_cents % 100:02d}",
            "impressions": str(self.impressions),
            "clicks": str(self.clicks),
            "reach": str(self.reach),
            "actions": [{"action_type": t, "value": str(v)} for t, v in self.actions],
        }
        if self.impressions:
            row["ctr"] = f"{100 * self.clicks / self.impressions:.6f}"
            row["cpm"] = f"{1000 * self.spend_cents / 100 / self.impressions:.6f}"
        if self.clicks:
            row["cpc"] = f"{self.spend_cents / 100 / self.clicks:.6f}"
        if fields is not None:
            row = {k: v for k, v in row.items() if k in fields}
        row["date_start"] = self.date_start.isoformat()
        row["date_stop"] = self.date_stop.isoformat()
        return row


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def meta_day(account_id: str, day: date, *, seed: int = 0, currency: str = "USD") -> MetaDay:
    """The insights of one ad account on one day."""

    def u(name: str) -> float:
        return stable_fraction("meta", seed, account_id, day.isoformat(), name)

    scale = 0.3 + 2.0 * stable_fraction("meta-scale", seed, account_id)
    impressions = round((500 + 59_500 * u("impressions")) * scale)
    clicks = round(impressions * (0.004 + 0.031 * u("ctr")))
    cpm_cents = 200 + 2_800 * u("cpm")
    spend_cents = round(impressions * cpm_cents / 1000)
    reach = round(impressions * (0.55 + 0.4 * u("reach")))
    purchases = round(clicks * 0.08 * u("purchase"))
    leads = round(clicks * 0.05 * u("lead"))
    # Meta reports one purchase under several nested action types with the same value:
    # omni_purchase (website + app + offline), purchase, and the pixel's
    # offsite_conversion.fb_pixel_purchase; leads likewise (lead, the pixel's
    # offsite_conversion.fb_pixel_lead). Source: Meta Marketing API, Ads Action Stats
    # (https://developers.facebook.com/docs/marketing-api/reference/ads-action-stats/).
    # Some days have no omni_ type and some no pixel, so precedence matters.
    omni = u("omni") < 0.8
    pixel = u("pixel") < 0.7
    actions = (
        ("link_click", round(clicks * (0.6 + 0.3 * u("link_click")))),
        ("omni_purchase", purchases if omni else 0),
        ("purchase", purchases),
        ("offsite_conversion.fb_pixel_purchase", purchases if pixel else 0),
        ("lead", leads),
        ("offsite_conversion.fb_pixel_lead", leads if pixel else 0),
    )
    return MetaDay(
        account_id=account_id,
        date_start=day,
        date_stop=day,
        spend_cents=spend_cents,
        impressions=impressions,
        clicks=clicks,
        reach=reach,
        actions=tuple((t, v) for t, v in actions if v),
        currency=currency,
    )


def mixpanel_count(project_id: str, event: str, day: date, *, seed: int = 0) -> int:
    """The ``general`` count of one event in one project on one day."""
    base = 20 + 4_980 * stable_fraction("mixpanel-base", seed, project_id, event)
    return round(base * (0.7 + 0.6 * stable_fraction("mixpanel", seed, project_id, event, day)))
