"""Meta's quotas, simulated: rolling-window call counts per ad account and per app.

What the simulator imitates, and where it comes from:

- Marketing API calls are subject to Business Use Case rate limits per ad account and the
  app's own limits; usage is reported on every answer in ``X-Business-Use-Case-Usage``
  (per business object id: ``call_count``, ``total_cputime``, ``total_time`` in percent,
  ``estimated_time_to_regain_access`` in minutes once throttled) and ``X-App-Usage``
  (https://developers.facebook.com/docs/graph-api/overview/rate-limiting, "Headers" and
  "Business Use Case Rate Limits"). Insights answers also carry ``x-fb-ads-insights-throttle``
  with ``app_id_util_pct`` and ``acc_id_util_pct`` (read by airbyte's
  source-facebook-marketing, ``source_facebook_marketing/api.py``).
  Every answer also carries ``X-Ad-Account-Usage`` (``acc_id_util_pct``,
  ``reset_time_duration`` in seconds, ``ads_api_access_tier``), the header airbyte's
  ``MyFacebookAdsApi._parse_call_rate_header`` reads ``acc_id_util_pct`` from: all four of
  Meta's usage headers, so that pacing is proved against every one of them.
- Once a limit is reached, calls fail until enough time has passed for the count to drop
  below it, with the code and subcode Meta's Marketing API rate-limiting page gives for that
  scope (https://developers.facebook.com/docs/marketing-api/overview/rate-limiting, HTTP 400):
  an ad account over its business-use-case quota gets error 17, subcode 2446079 ("User
  request limit reached"), or, with ``account_code=613``, error 613, subcode 1487742 ("There
  have been too many calls from this ad-account. Please wait a bit and try again"), with the
  regain estimate; the app over its limit gets error 4, subcode 1504022 ("There have been too
  many calls from this app. Wait a bit and try again"; the same code and subcode on the
  Ads Insights API error-code page, "Too Many API Requests"). A refused call is not counted.

The windows are a simulator's choice (Meta does not publish its budgets): each is a number
of calls per ``window`` seconds, small enough that a benchmark sees throttling in seconds.
The clock is injected (``time.monotonic`` by default) so tests can share a fake one.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["ACCOUNT_REFUSALS", "APP_REFUSAL", "Admission", "MetaQuota", "QuotaPolicy"]

# (code, subcode, message) per scope, from Meta's Marketing API rate-limiting page.
ACCOUNT_REFUSALS: dict[int, tuple[int, int, str]] = {
    17: (17, 2446079, "(#17) User request limit reached"),
    613: (
        613,
        1487742,
        "(#613) There have been too many calls from this ad-account. Please wait a bit and"
        " try again.",
    ),
}
APP_REFUSAL = (
    4,
    1504022,
    "(#4) There have been too many calls from this app. Wait a bit and try again.",
)


@dataclass(frozen=True)
class QuotaPolicy:
    account_calls: int = 100
    """Calls one ad account may make per ``window``."""
    app_calls: int = 1000
    """Calls the whole app may make per ``window``."""
    window: float = 3600.0
    account_code: int = 17
    """How an ad account over its quota is refused: 17 (subcode 2446079) or 613 (1487742)."""
    access_tier: str = "standard_access"
    """``ads_api_access_tier`` in the usage headers."""

    def __post_init__(self) -> None:
        if self.account_code not in ACCOUNT_REFUSALS:
            raise ValueError(f"account_code must be one of {sorted(ACCOUNT_REFUSALS)}")


@dataclass(frozen=True)
class Admission:
    """Whether a call may be served, and the usage headers its answer carries."""

    admitted: bool
    headers: list[tuple[str, str]]
    refusal_code: int | None = None
    """4 (the app's limit), or 17 / 613 (the ad account's business-use-case quota)."""
    regain_seconds: float = 0.0


@dataclass
class MetaQuota:
    policy: QuotaPolicy = field(default_factory=QuotaPolicy)
    clock: Callable[[], float] = time.monotonic
    _app: deque[float] = field(default_factory=deque, init=False)
    _accounts: dict[str, deque[float]] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    refusals: list[tuple[float, str, int]] = field(default_factory=list, init=False)
    """Every refusal: (clock time, ad account, error code)."""

    def _prune(self, calls: deque[float], now: float) -> None:
        while calls and calls[0] <= now - self.policy.window:
            calls.popleft()

    def _regain(self, calls: deque[float], now: float) -> float:
        """Seconds until the oldest call leaves the window (one call's room frees up)."""
        return max(0.0, calls[0] + self.policy.window - now) if calls else 0.0

    def admit(self, account: str) -> Admission:
        """Count a call of ``account`` if both limits allow it; the answer's headers either way."""
        with self._lock:
            now = self.clock()
            app = self._app
            mine = self._accounts.setdefault(account, deque())
            self._prune(app, now)
            self._prune(mine, now)
            code: int | None = None
            regain = 0.0
            if len(app) >= self.policy.app_calls:
                code, regain = APP_REFUSAL[0], self._regain(app, now)
            elif len(mine) >= self.policy.account_calls:
                code, regain = self.policy.account_code, self._regain(mine, now)
            else:
                app.append(now)
                mine.append(now)
            if code is not None:
                self.refusals.append((now, account, code))
            app_pct = _pct(len(app), self.policy.app_calls)
            acc_pct = _pct(len(mine), self.policy.account_calls)
            account_refused = code is not None and code != APP_REFUSAL[0]
            regain_minutes = math.ceil(regain / 60.0) if account_refused else 0
            # "reset_time_duration": seconds until the account's usage is back to 0 (its newest
            # call leaves the window).
            reset = math.ceil(max(0.0, mine[-1] + self.policy.window - now)) if mine else 0
            tier = self.policy.access_tier
            headers = [
                (
                    "X-App-Usage",
                    _dump(
                        {
                            "call_count": app_pct,
                            "total_cputime": app_pct // 2,
                            "total_time": app_pct // 2,
                        }
                    ),
                ),
                (
                    "X-Business-Use-Case-Usage",
                    _dump(
                        {
                            account: [
                                {
                                    "type": "ads_insights",
                                    "call_count": acc_pct,
                                    "total_cputime": acc_pct // 2,
                                    "total_time": acc_pct // 2,
                                    "estimated_time_to_regain_access": regain_minutes,
                                    "ads_api_access_tier": tier,
                                }
                            ]
                        }
                    ),
                ),
                (
                    "X-Ad-Account-Usage",
                    _dump(
                        {
                            "acc_id_util_pct": acc_pct,
                            "reset_time_duration": reset,
                            "ads_api_access_tier": tier,
                        }
                    ),
                ),
                (
                    "x-fb-ads-insights-throttle",
                    _dump(
                        {
                            "app_id_util_pct": app_pct,
                            "acc_id_util_pct": acc_pct,
                            "ads_api_access_tier": tier,
                        }
                    ),
                ),
            ]
            return Admission(code is None, headers, code, regain)


def _pct(used: int, limit: int) -> int:
    return min(100, math.ceil(100 * used / limit)) if limit > 0 else 100


def _dump(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))
