"""Helpers shared by the sandbox tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import date

from cronkeeper.sandbox import Simulator

Serve = Callable[[Simulator], str]


DAY = date(2025, 3, 14)


META_TOKEN = "meta-token"


def meta_params(
    day: date = DAY, token: str | None = META_TOKEN, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The query ``collect-daily`` sends for one account and one day."""
    params = {
        "level": "account",
        "time_range": json.dumps({"since": day.isoformat(), "until": day.isoformat()}),
        "fields": "account_id,spend,impressions,clicks,reach,actions,account_currency",
    }
    if token is not None:
        params["access_token"] = token
    params.update(extra or {})
    return params
