"""The SQLite file and its WAL are created readable by their owner only (issue 19: 0644)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sqlalchemy import text

from cronkeeper.storage.engine import create_engine


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_new_sqlite_file_and_its_wal_are_0600(tmp_path: Path) -> None:
    database = tmp_path / "data" / "cronkeeper.db"
    old = os.umask(0o022)  # the usual umask, under which SQLite alone made 0644
    try:
        engine = create_engine(f"sqlite:///{database}")
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
            await conn.execute(text("INSERT INTO t VALUES (1)"))
            assert mode(Path(f"{database}-wal")) == 0o600  # stat: the WAL exists by now
        await engine.dispose()
    finally:
        os.umask(old)
    assert mode(database) == 0o600


async def test_an_existing_file_keeps_the_mode_its_owner_chose(tmp_path: Path) -> None:
    database = tmp_path / "shared.db"
    database.touch(mode=0o640)
    database.chmod(0o640)
    engine = create_engine(f"sqlite:///{database}")
    async with engine.begin() as conn:
        await conn.execute(text("SELECT 1"))
    await engine.dispose()
    assert mode(database) == 0o640
