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
- Once a limit is reached, calls fail until enough time has passed for the count to drop
  below it (same page): an ad account over its BUC limit gets error 80000 ("There have been
  too many calls from this ad-account", HTTP 400, subcode 2446079, with the regain estimate),
  the app over its limit gets error 4 ("Application request limit reached"), and the access
  token over its own limit error 17 ("User request limit reached"; both from the error
  reference, https://developers.facebook.com/docs/graph-api/guides/error-handling). A refused
  call is not counted. The simulator has one token, so the user's calls are the app's.

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

__all__ = ["Admission", "MetaQuota", "QuotaPolicy"]


@dataclass(frozen=True)
class QuotaPolicy:
    account_calls: int = 100
    """Calls one ad account may make per ``window``."""
    app_calls: int = 1000
    """Calls the whole app may make per ``window``."""
    user_calls: int | None = None
    """Calls the (one) access token may make per ``window``; ``None``: no user limit. Meta
    answers a token over its limit with code 17, "User request limit reached"."""
    window: float = 3600.0


@dataclass(frozen=True)
class Admission:
    """Whether a call may be served, and the usage headers its answer carries."""

    admitted: bool
    headers: list[tuple[str, str]]
    refusal_code: int | None = None
    """4 (the app's limit), 17 (the token's) or 80000 (the ad account's business use case)."""
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
            user_limit = self.policy.user_calls
            if len(app) >= self.policy.app_calls:
                code, regain = 4, self._regain(app, now)
            elif user_limit is not None and len(app) >= user_limit:
                code, regain = 17, self._regain(app, now)
            elif len(mine) >= self.policy.account_calls:
                code, regain = 80000, self._regain(mine, now)
            else:
                app.append(now)
                mine.append(now)
            if code is not None:
                self.refusals.append((now, account, code))
            app_pct = _pct(len(app), self.policy.app_calls)
            acc_pct = _pct(len(mine), self.policy.account_calls)
            regain_minutes = math.ceil(regain / 60.0) if code == 80000 else 0
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
                                    "ads_api_access_tier": "standard_access",
                                }
                            ]
                        }
                    ),
                ),
                (
                    "x-fb-ads-insights-throttle",
                    _dump({"app_id_util_pct": app_pct, "acc_id_util_pct": acc_pct}),
                ),
            ]
            return Admission(code is None, headers, code, regain)


def _pct(used: int, limit: int) -> int:
    return min(100, math.ceil(100 * used / limit)) if limit > 0 else 100


def _dump(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))
