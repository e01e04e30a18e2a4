"""Pacing before throttling: read the API's usage on every answer, slow down before the limit.

Meta reports how much of its rolling quotas an app and each ad account have used on every
answer, not only on refusals (https://developers.facebook.com/docs/graph-api/overview/rate-limiting,
"Headers"): ``X-App-Usage`` (``call_count``, ``total_cputime``, ``total_time``, percent of the
app's hourly budget), ``X-Business-Use-Case-Usage`` (per business object id, the same three
percentages plus ``estimated_time_to_regain_access`` in minutes once throttled),
``X-Ad-Account-Usage`` (``acc_id_util_pct``, the ad account's usage, and
``reset_time_duration``, seconds until it is back to zero) and, on insights,
``x-fb-ads-insights-throttle`` (``app_id_util_pct``, ``acc_id_util_pct``).
airbyte's source-facebook-marketing (``source_facebook_marketing/api.py``,
``MyFacebookAdsApi._parse_call_rate_header``) reads the same four headers
(``x-ad-account-usage``'s ``acc_id_util_pct`` among them), takes the largest percentage, and
pauses at least one minute above 95 %; we do the same from a configurable high-water mark, so
that the limit is not reached in the first place (shortened to the account's
``reset_time_duration`` when Meta says it is back to zero sooner).

Everything here is pure over an injected clock: :class:`Pacer` only answers "how long must
this scope wait before its next request"; the caller sleeps (with its injected ``sleep``).

Scopes: one per unit of a source (an ad account, a Mixpanel project), plus :data:`SOURCE`,
which holds back every unit of the source at once (an app-wide throttle: one refusal, one
wait for everybody, not one refusal per account).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cronkeeper.clock import Clock, utcnow
from cronkeeper.http.classify import BUC_HEADER, META_APP_THROTTLE_CODES

__all__ = [
    "AD_ACCOUNT_USAGE_HEADER",
    "APP_USAGE_HEADER",
    "BUC_HEADER",
    "INSIGHTS_THROTTLE_HEADER",
    "SOURCE",
    "SOURCE_WIDE_META_CODES",
    "Pacer",
    "PacingPolicy",
    "Usage",
    "read_usage",
]

APP_USAGE_HEADER = "X-App-Usage"
AD_ACCOUNT_USAGE_HEADER = "X-Ad-Account-Usage"
INSIGHTS_THROTTLE_HEADER = "X-FB-Ads-Insights-Throttle"
_QUOTAS = ("call_count", "total_cputime", "total_time")
SOURCE = "*"
"""The scope that stands for every unit of a source."""

SOURCE_WIDE_META_CODES = META_APP_THROTTLE_CODES
"""Meta throttle codes that hold every unit of the source (the app's quota; see classify)."""


@dataclass(frozen=True)
class Usage:
    """Percentages of the quotas used, as one answer reported them (``None``: not reported)."""

    app: float | None = None
    account: float | None = None
    regain_seconds: float | None = None
    """Meta's ``estimated_time_to_regain_access`` for a throttled business object, in seconds."""
    account_reset: float | None = None
    """``X-Ad-Account-Usage`` ``reset_time_duration``: seconds until the account's usage is 0."""


def _decode(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return None


def _pct(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _most(*values: float | None) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def read_usage(headers: Mapping[str, str]) -> Usage:
    """The usage an answer reports; unreadable headers count as not reported, never an error."""
    lowered = {key.lower(): value for key, value in headers.items()}
    app: float | None = None
    account: float | None = None
    regain: float | None = None

    app_usage = _decode(lowered.get(APP_USAGE_HEADER.lower()))
    if isinstance(app_usage, dict):
        app = _most(*(_pct(app_usage.get(k)) for k in _QUOTAS))

    insights = _decode(lowered.get(INSIGHTS_THROTTLE_HEADER.lower()))
    if isinstance(insights, dict):
        app = _most(app, _pct(insights.get("app_id_util_pct")))
        account = _most(account, _pct(insights.get("acc_id_util_pct")))

    ad_account = _decode(lowered.get(AD_ACCOUNT_USAGE_HEADER.lower()))
    reset: float | None = None
    if isinstance(ad_account, dict):
        account = _most(account, _pct(ad_account.get("acc_id_util_pct")))
        reset = _pct(ad_account.get("reset_time_duration"))  # seconds; same validity rules

    buc = _decode(lowered.get(BUC_HEADER.lower()))
    if isinstance(buc, dict):
        for entries in buc.values():
            for entry in entries if isinstance(entries, list) else [entries]:
                if not isinstance(entry, dict):
                    continue
                account = _most(
                    account,
                    *(_pct(entry.get(k)) for k in _QUOTAS),
                )
                minutes = _pct(entry.get("estimated_time_to_regain_access"))
                if minutes:
                    regain = _most(regain, minutes * 60.0)
    return Usage(app=app, account=account, regain_seconds=regain, account_reset=reset)


@dataclass(frozen=True)
class PacingPolicy:
    """When and how long to hold a scope back.

    At or above ``high_water`` percent of a quota, the scope sends nothing for ``pause``
    seconds; the first answer after that reports the usage again and decides the next hold.
    This is airbyte's rule (a pause of at least a minute above 95 %), started a little
    earlier so that requests already in flight when the mark is crossed still fit under
    100 %. Quotas are rolling windows: a pause lets the oldest calls leave the window, and a
    burst-then-pause schedule comes close to the most the quota allows (``bench/pacing.py``).
    """

    high_water: float = 90.0
    pause: float = 60.0

    def gap(self, pct: float | None) -> float:
        """Seconds to hold a scope whose answer reported ``pct`` percent usage."""
        if pct is None or pct < self.high_water:
            return 0.0
        return self.pause


@dataclass
class Pacer:
    """Earliest send time per scope, learnt from usage headers and from refusals.

    Shared by every unit of one source during a run (one asyncio loop: no locking needed).
    A time only ever moves later: a short ask never shortens a longer one already known, so
    no request of a scope goes out earlier than any answer asked.
    """

    policy: PacingPolicy = field(default_factory=PacingPolicy)
    clock: Clock = utcnow
    _not_before: dict[str, datetime] = field(default_factory=dict, init=False)

    def _push(self, scope: str, seconds: float) -> None:
        if seconds <= 0:
            return
        until = self.clock() + timedelta(seconds=seconds)
        current = self._not_before.get(scope)
        if current is None or current < until:
            self._not_before[scope] = until

    def observe(self, scope: str, usage: Usage) -> None:
        """An answer for ``scope`` reported ``usage``: space the next requests accordingly.

        An account at the high-water mark waits the policy's pause, or Meta's own
        ``reset_time_duration`` when that is sooner (its usage is back to 0 by then).
        """
        gap = self.policy.gap(usage.account)
        if gap and usage.account_reset:
            gap = min(gap, usage.account_reset)
        self._push(scope, max(gap, usage.regain_seconds or 0.0))
        self._push(SOURCE, self.policy.gap(usage.app))

    def hold(self, scope: str, seconds: float) -> None:
        """The API refused and asked for ``seconds``: nothing of ``scope`` goes out before."""
        self._push(scope, seconds)

    def not_before(self, scope: str) -> datetime | None:
        """When ``scope`` may send again (its own hold and the whole source's), if held."""
        holds = [self._not_before.get(scope), self._not_before.get(SOURCE)]
        latest = max((t for t in holds if t is not None), default=None)
        return latest if latest is not None and latest > self.clock() else None

    def delay(self, scope: str) -> float:
        """Seconds ``scope`` must still wait."""
        until = self.not_before(scope)
        return 0.0 if until is None else (until - self.clock()).total_seconds()
