"""Each rule of the layout has one room: ``cron_runs`` SQL in ``ledger/``, dialects in ``storage/``.

Read from the source, not imported: a statement on ``cron_runs`` written anywhere else would
escape the ledger's timeout and breaker, and a dialect ``if`` anywhere else is a second
place to change when a backend is added.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import cronkeeper

SRC = Path(cronkeeper.__file__).parent

CRON_RUNS_ALLOWED = (
    "ledger/",  # its owner
    "storage/schema.py",  # the table's definition
    "migrations/",  # its DDL
)
DIALECT_ALLOWED = (
    "storage/",  # the one place that knows which database is underneath
    "migrations/",  # per-dialect DDL by nature: RLS on PostgreSQL, batch mode on SQLite
)
DIALECT_PATTERNS = ("dialect.name", "dialects.postgresql", "dialects.sqlite", "get_backend_name")
RAW_SQL_ON_CRON_RUNS = re.compile(r"\b(from|into|update|join|table)\s+cron_runs\b", re.IGNORECASE)


def _sources(allowed: tuple[str, ...], root: Path = SRC) -> Iterator[tuple[str, str]]:
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if not relative.startswith(allowed):
            yield relative, path.read_text(encoding="utf-8")


def cron_runs_sql_outside_the_ledger(root: Path = SRC) -> list[str]:
    """Every use of the ``cron_runs`` table object (imported, or read as an attribute) and
    every SQL text naming the table, outside the allowed modules."""
    found: list[tuple[str, int, str]] = []
    for relative, source in _sources(CRON_RUNS_ALLOWED, root):
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.alias) and node.name.rsplit(".", 1)[-1] == "cron_runs":
                found.append((relative, node.lineno, "imports cron_runs"))
            elif isinstance(node, ast.Name) and node.id == "cron_runs":
                found.append((relative, node.lineno, "uses cron_runs"))
            elif isinstance(node, ast.Attribute) and node.attr == "cron_runs":
                found.append((relative, node.lineno, "uses .cron_runs"))
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and RAW_SQL_ON_CRON_RUNS.search(node.value)
            ):
                found.append((relative, node.lineno, "SQL text on cron_runs"))
    return [f"{relative}:{line}: {what}" for relative, line, what in sorted(found)]


def dialect_checks_outside_storage(root: Path = SRC) -> list[str]:
    return [
        f"{relative}:{number}: {line.strip()}"
        for relative, source in _sources(DIALECT_ALLOWED, root)
        for number, line in enumerate(source.splitlines(), 1)
        if any(pattern in line for pattern in DIALECT_PATTERNS)
    ]


def test_only_the_ledger_writes_sql_on_cron_runs() -> None:
    assert cron_runs_sql_outside_the_ledger() == []


def test_only_storage_chooses_by_dialect() -> None:
    assert dialect_checks_outside_storage() == []


def test_the_guards_see_what_they_guard_against(tmp_path: Path) -> None:
    """The two scans find each way of breaking the rules (a guard that sees nothing proves
    nothing)."""
    (tmp_path / "ops").mkdir()
    (tmp_path / "ops" / "x.py").write_text(
        "from cronkeeper.storage.schema import RUN_STATUSES, cron_runs\n"
        "from cronkeeper.storage import schema\n"
        "q = select(cron_runs.c.id)\n"
        "r = schema.cron_runs\n"
        "s = text('SELECT id FROM cron_runs')\n"
        "if conn.dialect.name == 'postgresql':\n"
        "    from sqlalchemy.dialects.postgresql import insert\n",
        encoding="utf-8",
    )
    (tmp_path / "ledger").mkdir()
    (tmp_path / "ledger" / "ok.py").write_text(
        "from cronkeeper.storage.schema import cron_runs\n", encoding="utf-8"
    )
    assert [f.split(": ", 1)[0] for f in cron_runs_sql_outside_the_ledger(tmp_path)] == [
        "ops/x.py:1",
        "ops/x.py:3",
        "ops/x.py:4",
        "ops/x.py:5",
    ]
    assert [f.split(": ", 1)[0] for f in dialect_checks_outside_storage(tmp_path)] == [
        "ops/x.py:6",
        "ops/x.py:7",
    ]
