"""Write ``docs/architecture.md`` from the code: the rooms and who imports whom.

An AST walk over ``src/cronkeeper`` (nothing is imported or run): every ``import`` and
``from … import`` of a ``cronkeeper`` module, at any depth (function-level imports too),
folded to the room it lands in — a subpackage (``ledger/``) or a top-level module
(``health.py``). The result is a Mermaid graph of room → room imports and one line per
concept naming its room, so the document cannot drift from the code:
``tests/test_architecture.py`` regenerates it and fails when the file differs.

    python scripts/architecture.py            # print
    python scripts/architecture.py --write    # rewrite docs/architecture.md
    python scripts/architecture.py --check    # exit 1 if docs/architecture.md is stale
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "cronkeeper"
DOC = ROOT / "docs" / "architecture.md"
PACKAGE = "cronkeeper"
REGENERATE = "python scripts/architecture.py --write"
FOUNDATION = ("clock", "durations", "errors", "logs", "notion_props", "redact")
"""Small leaf modules every room may use: listed in the table, left out of the diagram."""

CONCEPTS: tuple[tuple[str, str, str], ...] = (
    # (concept, room relative to src/cronkeeper, what it owns)
    ("Configuration", "config.py", "settings read once at the entry point, passed down"),
    (
        "Health evaluation",
        "health.py",
        "whether a job is healthy: one pure function for the API, metrics, status page"
        " and watchdog",
    ),
    (
        "Run records",
        "records.py",
        "plain data read from the database (a run, a job's state) for the pure rules",
    ),
    (
        "Report day",
        "reportday.py",
        "which day a run collects, in which zone, for this source and this run",
    ),
    (
        "Alerting",
        "alerting",
        "state machine, messages, one claim per change, webhook delivery, pause/resume",
    ),
    ("Watchdog", "alerting/watchdog.py", "when alert states are evaluated (a timer, run ends)"),
    ("Volume anomalies", "volume.py", "the robust baseline of record counts"),
    (
        "Bounded database call",
        "storage/bounded.py",
        "one timeout, breaker and error mapping for every database call",
    ),
    ("Storage", "storage", "engine, URLs, tables, upserts, every dialect choice"),
    ("Authentication", "auth", "the secret, the wrong-secret limiter, bearer and sessions"),
    ("Ledger", "ledger", "the only SQL on `cron_runs`: start, complete, reads, pruning"),
    ("Leases", "lease.py", "one run of a job at a time across processes"),
    ("API versions", "versions.py", "each pinned API version's end of life and its warnings"),
    ("HTTP", "http", "the one client factory, retry, pacing, classification, quotas"),
    ("Sources", "sources", "one API client and parser per service"),
    ("Jobs", "jobs", "one module per job and the registry"),
    ("Runner", "runner.py", "one run: lease, ledger, HTTP client, the job, observers"),
    ("Scheduler", "scheduler.py", "fires each job on its cron expression, one run per slot"),
    (
        "Scheduler presence",
        "presence.py",
        "is a scheduler alive (pure rule); its heartbeats' SQL in ledger/presence.py",
    ),
    ("Cron syntax", "cron.py", "crontab expressions, fire times from cronsim"),
    ("Backfill", "backfill.py", "a date range, one run per window"),
    ("Coverage", "coverage.py", "which days each source has stored"),
    ("Preflight", "doctor.py", "`cronkeeper doctor`: pure verdicts over what each source says"),
    ("Status page", "web", "the HTML status page"),
    ("Metrics", "metrics.py", "`/metrics` for Prometheus"),
    ("HTTP API", "api", "the FastAPI app and routes"),
    ("CLI", "cli.py", "the Typer commands"),
    ("Simulators", "sandbox", "Meta, Mixpanel and Notion imitations for tests and the demo"),
    ("Migrations", "migrations", "Alembic"),
)


def room_of(module: str) -> str | None:
    """``cronkeeper.ledger.store`` → ``ledger``; ``cronkeeper.health`` → ``health``."""
    parts = module.split(".")
    if parts[0] != PACKAGE or len(parts) < 2:
        return None
    return parts[1]


def _module_name(path: Path, src: Path) -> str:
    relative = path.relative_to(src).with_suffix("")
    parts = [PACKAGE, *relative.parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".")
        if not is_package:
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    # ``from cronkeeper import api`` names a room in its alias, not in its module.
    return [target, *(f"{target}.{alias.name}" for alias in node.names if target == PACKAGE)]


def _is_room(name: str, src: Path) -> bool:
    return (src / name).is_dir() or (src / f"{name}.py").is_file()


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Each room (subpackage or top-level module) → the other rooms it imports."""
    graph: dict[str, set[str]] = {}
    for path in sorted(src.rglob("*.py")):
        module = _module_name(path, src)
        room = room_of(module)
        if room is None or room in ("__main__",):
            continue
        targets = graph.setdefault(room, set())
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for name in _imported(node, module, path.name == "__init__.py"):
                    other = room_of(name)
                    if other not in (None, room, "__main__") and _is_room(str(other), src):
                        targets.add(str(other))
    return graph


def _label(room: str, src: Path) -> str:
    return f"{room}/" if (src / room).is_dir() else f"{room}.py"


def _mermaid(graph: Mapping[str, Iterable[str]], src: Path) -> list[str]:
    lines = ["```mermaid", "graph LR"]
    rooms = [room for room in sorted(graph) if room not in FOUNDATION]
    for room in rooms:
        lines.append(f'  {room}["{_label(room, src)}"]')
    for room in rooms:
        for other in sorted(graph[room]):
            if other not in FOUNDATION:
                lines.append(f"  {room} --> {other}")
    lines.append("```")
    return lines


def render(src: Path = SRC) -> str:
    graph = import_graph(src)
    out = [
        "# Architecture",
        "",
        "<!-- Generated by scripts/architecture.py from the code; do not edit by hand."
        f" Regenerate with `{REGENERATE}`. -->",
        "",
        "## One room per concept",
        "",
        "Each rule has one home that every caller imports; a newcomer names the concept and"
        " opens one file.",
        "",
    ]
    for concept, room, owns in CONCEPTS:
        path = src / room
        where = f"`{room}/`" if path.is_dir() else f"`{room}`"
        if not path.exists() and not path.with_suffix(".py").exists():
            where += " (not in this tree yet)"
        out.append(f"- **{concept}** → {where}: {owns}.")
    out += [
        "",
        "## Rooms and their imports",
        "",
        "An arrow `a --> b`: some module of room `a` imports room `b` (at any depth, function-"
        "level imports included). Lower rooms never import higher ones: nothing below the"
        " API and the CLI imports `api/` (`tests/test_ownership.py`). The diagram leaves out"
        " the small leaf modules every room may use ("
        + ", ".join(f"`{name}.py`" for name in FOUNDATION)
        + "); the table below lists every import.",
        "",
        *_mermaid(graph, src),
        "",
        "| room | imports |",
        "|---|---|",
    ]
    for room in sorted(graph):
        targets = ", ".join(f"`{_label(t, src)}`" for t in sorted(graph[room])) or "—"
        out.append(f"| `{_label(room, src)}` | {targets} |")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--write" in argv:
        DOC.write_text(text, encoding="utf-8")
        return 0
    if "--check" in argv:
        current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
        if current != text:
            print(f"docs/architecture.md is stale: run `{REGENERATE}`", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
