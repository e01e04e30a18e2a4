"""Money is exact on both backends (issue 12, item 3): SQLite used to store NUMERIC as REAL."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.storage.engine import create_engine, head_revision, upgrade
from cronkeeper.storage.schema import Money, meta_daily_insights

pytestmark = pytest.mark.sql  # its subject is SQL: SQLite, PostgreSQL and PgBouncer

NOW = datetime(2026, 11, 20, tzinfo=UTC)

# (what a job hands the database, what every backend must give back)
AMOUNTS = [
    (Decimal("0.1") + Decimal("0.2"), Decimal("0.3000")),
    (0.1 + 0.2, Decimal("0.3000")),  # a float that went through arithmetic
    (Decimal("12345678901234.5678"), Decimal("12345678901234.5678")),  # 18 digits of KRW
    (Decimal("98765432109876"), Decimal("98765432109876.0000")),
    (Decimal("2.00005"), Decimal("2.0001")),  # PostgreSQL rounds half away from zero …
    (Decimal("-2.00005"), Decimal("-2.0001")),
    (Decimal("0.00004"), Decimal("0.0000")),
    ("1999.99", Decimal("1999.9900")),
]


def row(account: int, spend: object) -> dict[str, object]:
    return {
        "ad_account_id": str(account),
        "date": date(2026, 11, 19),
        "spend": spend,
        "impressions": 1,
        "clicks": 1,
        "reach": 1,
        "conversions": Decimal("0.1"),
        "collected_at": NOW,
    }


async def test_amounts_round_trip_identically_on_both_backends(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            insert(meta_daily_insights), [row(i, given) for i, (given, _) in enumerate(AMOUNTS)]
        )
    async with engine.connect() as conn:
        result = await conn.execute(
            select(meta_daily_insights.c.ad_account_id, meta_daily_insights.c.spend)
        )
        stored = {int(r.ad_account_id): r.spend for r in result}
    for i, (given, expected) in enumerate(AMOUNTS):
        assert stored[i] == expected, given
        assert str(stored[i]) == str(expected)  # same scale too: 4 places everywhere


async def test_ten_dimes_sum_to_one(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(meta_daily_insights), [row(i, "0.1") for i in range(10)])
    async with engine.connect() as conn:
        total = (await conn.execute(select(func.sum(meta_daily_insights.c.spend)))).scalar_one()
        conversions = (
            await conn.execute(select(func.sum(meta_daily_insights.c.conversions)))
        ).scalar_one()
    assert total == Decimal("1.0000")
    assert conversions == Decimal("1.0000")


async def test_an_amount_that_does_not_fit_numeric_18_4_is_refused_on_both(
    engine: AsyncEngine,
) -> None:
    """PostgreSQL refuses it (numeric field overflow); SQLite must not quietly keep it."""
    with pytest.raises(StatementError, match="NUMERIC"):
        async with engine.begin() as conn:
            await conn.execute(insert(meta_daily_insights), [row(1, Decimal("1e14"))])


def test_money_rounds_like_postgresql_numeric() -> None:
    assert Money.exact(Decimal("-0.00001")) == Decimal("0.0000")
    assert str(Money.exact(Decimal("-0.00001"))) == "0.0000"  # no negative zero
    with pytest.raises(ValueError, match="not an amount"):
        Money.exact(Decimal("NaN"))


async def test_migration_0006_turns_stored_sqlite_floats_into_exact_text(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/old.db")
    try:
        await upgrade(engine, "0004")
        floats = {"1": 0.1 + 0.2, "2": 123456789012.1234, "3": 100, "4": 1e-5}
        async with engine.begin() as conn:
            for account, spend in floats.items():
                await conn.execute(
                    text(
                        "INSERT INTO meta_daily_insights (ad_account_id, date, spend, impressions,"
                        " clicks, reach, conversions, collected_at) VALUES (:a, '2026-11-19',"
                        " :s, 1, 1, 1, :s, '2026-11-20 00:00:00.000000')"
                    ),
                    {"a": account, "s": spend},
                )
            kinds = await conn.execute(text("SELECT typeof(spend) FROM meta_daily_insights"))
            assert {k for (k,) in kinds} == {"real", "integer"}  # the defect, as it was

        assert await upgrade(engine) == head_revision()
        async with engine.connect() as conn:
            result = await conn.execute(
                select(
                    meta_daily_insights.c.ad_account_id,
                    meta_daily_insights.c.spend,
                    meta_daily_insights.c.conversions,
                )
            )
            migrated = {r.ad_account_id: (r.spend, r.conversions) for r in result}
            kinds = await conn.execute(text("SELECT typeof(spend) FROM meta_daily_insights"))
            assert {k for (k,) in kinds} == {"text"}
        expected = {
            "1": Decimal("0.3000"),
            "2": Decimal("123456789012.1234"),
            "3": Decimal("100.0000"),
            "4": Decimal("0.0000"),
        }
        assert migrated == {a: (v, v) for a, v in expected.items()}
    finally:
        await engine.dispose()
