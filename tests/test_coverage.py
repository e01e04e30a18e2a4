"""Coverage: collected / restating / missing per source and day, in each source's own days."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.coverage import day_states, load_coverage, render_text
from cronkeeper.storage.schema import meta_account_details, meta_daily_insights
from tests.conftest import make_settings

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def d(day: int) -> date:
    return date(2026, 11, day)


def test_day_states_mark_missing_and_the_restatement_window() -> None:
    states = day_states({d(14), d(16), d(19)}, last_day=d(19), days=6, window=3)
    assert states == {
        d(14): "collected",
        d(15): "missing",
        d(16): "collected",
        d(17): "missing",  # inside the window, but never stored: missing all the same
        d(18): "missing",
        d(19): "restating",
    }


def _insight(account: str, day: date) -> dict[str, object]:
    return {
        "ad_account_id": account,
        "date": day,
        "spend": Decimal(1),
        "impressions": 10,
        "clicks": 1,
        "reach": 5,
        "conversions": Decimal(0),
        "currency": "USD",
        "collected_at": NOW,
    }


async def test_each_account_is_covered_up_to_its_own_yesterday(
    engine: AsyncEngine, database_url: str
) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            insert(meta_account_details),
            [
                {"ad_account_id": "1", "timezone_name": "Pacific/Kiritimati", "fetched_at": NOW},
                {"ad_account_id": "2", "timezone_name": "Pacific/Pago_Pago", "fetched_at": NOW},
            ],
        )
        await conn.execute(
            insert(meta_daily_insights),
            [_insight("1", d(20)), _insight("1", d(10)), _insight("2", d(19))],
        )
    settings = make_settings(
        database_url, meta_ad_account_ids="1,2", mixpanel_project_id="7", meta_lookback_days=5
    )

    found = await load_coverage(engine, settings, NOW, days=14)

    kiritimati, pago, project = found
    assert (kiritimati.last_day, pago.last_day) == (d(20), d(19))
    assert kiritimati.days[d(20)] == "restating"
    assert kiritimati.days[d(10)] == "collected"
    assert kiritimati.days[d(11)] == "missing"
    assert len(kiritimati.days) == 14
    assert pago.days[d(19)] == "restating"
    assert (pago.count("missing"), pago.zone) == (13, "Pacific/Pago_Pago")
    assert (project.source, project.count("missing")) == ("mixpanel", 14)
    lines = render_text(found)
    assert any(line.startswith("act_1 ") and line.count("~") == 1 for line in lines)
    assert len(json.loads(json.dumps([c.as_json() for c in found]))) == len(found)


def test_the_cli_prints_json(tmp_path: Path) -> None:
    from tests.cli.test_cli import cli

    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/ck.db", "META_AD_ACCOUNT_IDS": "42"}
    result = cli("coverage", "--days", "3", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["days"] == 3
    (source,) = body["sources"]
    assert (source["unit"], source["missing"]) == ("42", 3)
    text = cli("coverage", "--days", "3", env=env, cwd=tmp_path)
    assert "act_42" in text.stdout
    assert cli("coverage", "--days", "0", env=env, cwd=tmp_path).returncode == 2
