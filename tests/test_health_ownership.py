"""Whether a job is healthy is decided in one room, :mod:`cronkeeper.health`.

Read from the source (AST), like ``tests/test_ownership.py``: the API, the gauges, the status
page and the watchdog each used to compare a run's status or age with their own copy of the
rule. Two checkable signs of deciding it again:

* comparing a run's ``.status`` with ``"success"`` or ``"partial"`` (what counts as a good run:
  :func:`cronkeeper.health.outcome`, with the partial tolerance);
* comparing anything with a job's ``.window``, ``.max_runtime`` or ``.grace`` next to a
  ``started_at`` (missing or stuck: :func:`cronkeeper.health.evaluate_health`,
  :func:`cronkeeper.health.is_stuck`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import cronkeeper

SRC = Path(cronkeeper.__file__).parent

ALLOWED = (
    "health.py",  # the owner
    "records.py",  # a run's own skipped share (a success skipped nothing)
    "ledger/",  # writes the status (summarize) and the SQL of the last-success read
    "alerting/messages.py",  # the wording of a finished run's message (which emoji), not a state
    "backfill.py",  # a backfill's own outcome per date (success/skipped/busy)
    "demo.py",  # the demo's exit code
)
EXEMPT = "wording, not health"
"""A line that says so in a comment compares a status for a message's sake."""
GOOD = {"success", "partial"}
LIMITS = {"window", "max_runtime", "grace"}


def _strings(node: ast.AST) -> set[str]:
    return {
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def _attributes(node: ast.AST) -> set[str]:
    return {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}


def health_decided_outside_health(root: Path = SRC) -> list[str]:
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(ALLOWED):
            continue
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        for node in _compares(ast.parse(source)):
            if EXEMPT in lines[node.lineno - 1]:
                continue
            operands = [node.left, *node.comparators]
            statuses = [o for o in operands if isinstance(o, ast.Attribute) and o.attr == "status"]
            if statuses and any(_strings(o) & GOOD for o in operands):
                found.append(f"{relative}:{node.lineno}: run status judged: {ast.unparse(node)}")
            names = set().union(*(_attributes(o) for o in operands))
            if "started_at" in names and names & LIMITS:
                found.append(f"{relative}:{node.lineno}: run age judged: {ast.unparse(node)}")
    return found


def _compares(tree: ast.AST) -> Iterator[ast.Compare]:
    return (node for node in ast.walk(tree) if isinstance(node, ast.Compare))


def test_only_health_decides_whether_a_job_is_healthy() -> None:
    assert health_decided_outside_health() == []


def test_the_guard_sees_each_way_of_deciding_it_again(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "page.py").write_text(
        "ok = run.status in ('success', 'partial')\n"
        "good = latest.status == 'success'\n"
        "stuck = now - run.started_at > spec.max_runtime\n"
        "missing = run.started_at < now - spec.window\n"
        "fine = run.status == 'running'\n"
        "text = 'x' if run.status == 'partial' else 'y'  # wording, not health\n",
        encoding="utf-8",
    )
    (tmp_path / "health.py").write_text("ok = run.status == 'success'\n", encoding="utf-8")
    assert [f.split(": ", 1)[0] for f in health_decided_outside_health(tmp_path)] == [
        "web/page.py:1",
        "web/page.py:2",
        "web/page.py:3",
        "web/page.py:4",
    ]


def test_health_and_the_records_it_reads_import_no_ledger_and_no_io() -> None:
    """``health.py`` is pure: the plain records come from ``records.py``, not the ledger."""
    for module in ("health.py", "records.py"):
        tree = ast.parse((SRC / module).read_text(encoding="utf-8"))
        imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
        }
        forbidden = ("cronkeeper.ledger", "cronkeeper.storage", "sqlalchemy", "httpx", "asyncio")
        assert [m for m in imported if m.startswith(forbidden)] == [], module
