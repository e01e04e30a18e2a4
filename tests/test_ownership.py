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


# -- the report day (issue 16): "yesterday in a zone" is computed in reportday.py only --------

REPORT_DAY_ALLOWED = (
    "reportday.py",  # its owner
    "sandbox/",  # the simulators imitate the APIs' own day counting, not ours
    "migrations/",
)


def _is_one_day(node: ast.AST) -> bool:
    """``timedelta(days=1)``, ``timedelta(1)``, ``dt.timedelta(days=1)``."""
    if not isinstance(node, ast.Call):
        return False
    name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
    if name != "timedelta":
        return False
    values = [*node.args[:1], *(k.value for k in node.keywords if k.arg == "days")]
    return any(isinstance(v, ast.Constant) and v.value == 1 for v in values)


UTC_NAMES = frozenset({"UTC", "timezone.utc", "datetime.UTC", "datetime.timezone.utc"})


def _is_local_date(node: ast.AST) -> bool:
    """``<moment>.astimezone(<zone>).date()``: the calendar day of a moment in a zone (the
    UTC day of a moment, e.g. an API version's end of life, is no report day)."""
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "date"
        and isinstance(node.func.value, ast.Call)
        and isinstance(node.func.value.func, ast.Attribute)
        and node.func.value.func.attr == "astimezone"
    ):
        return False
    zone = node.func.value.args
    return not (len(zone) == 1 and ast.unparse(zone[0]) in UTC_NAMES)


def report_days_computed_outside_reportday(root: Path = SRC) -> list[str]:
    """Every local calendar day of a moment, and every "one day before", outside
    :mod:`cronkeeper.reportday`: which day a run collects, in which zone, has one owner."""
    found: list[str] = []
    for relative, source in _sources(REPORT_DAY_ALLOWED, root):
        for node in ast.walk(ast.parse(source)):
            if _is_local_date(node):
                found.append(f"{relative}:{node.lineno}: the day of a moment in a zone")
            elif (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Sub)
                and _is_one_day(node.right)
            ):
                found.append(f"{relative}:{node.lineno}: one day before")
            elif isinstance(node, ast.Constant) and node.value == "Etc/GMT-14":
                found.append(f"{relative}:{node.lineno}: the earliest zone")
    return sorted(found)


def test_only_reportday_says_which_day_a_run_collects() -> None:
    assert report_days_computed_outside_reportday() == []


def test_the_report_day_guard_sees_each_way_around_it(tmp_path: Path) -> None:
    (tmp_path / "ops").mkdir()
    (tmp_path / "ops" / "x.py").write_text(
        "a = now.astimezone(tz).date()\n"
        "b = day - timedelta(days=1)\n"
        "c = day - datetime.timedelta(1)\n"
        "d = ZoneInfo('Etc/GMT-14')\n"
        "fine = day - timedelta(days=7)\n"
        "also_fine = now.astimezone(tz)\n"
        "utc_day = now.astimezone(UTC).date()\n",
        encoding="utf-8",
    )
    (tmp_path / "reportday.py").write_text(
        "x = now.astimezone(zone).date() - timedelta(days=1)\n", encoding="utf-8"
    )
    assert [f.split(": ", 1)[0] for f in report_days_computed_outside_reportday(tmp_path)] == [
        "ops/x.py:1",
        "ops/x.py:2",
        "ops/x.py:3",
        "ops/x.py:4",
    ]


# -- alerting (issue 16): only alerting/ words and sends alert messages -----------------------

ALERTING_ALLOWED = ("alerting/",)
ALERT_MARKS = (
    ":red_circle:",
    ":large_green_circle:",
    ":large_yellow_circle:",
    ":large_orange_circle:",
    ":warning:",
    ":repeat:",
)


def alert_messages_outside_alerting(root: Path = SRC) -> list[str]:
    """Every alert wording (the Slack marks that open each message) and every ``.send(…)``
    on an alerter outside :mod:`cronkeeper.alerting`."""
    found: list[str] = []
    for relative, source in _sources(ALERTING_ALLOWED, root):
        for node in ast.walk(ast.parse(source)):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and any(mark in node.value for mark in ALERT_MARKS)
            ):
                found.append(f"{relative}:{node.lineno}: alert wording")
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "send"
                and "alert" in ast.unparse(node.func.value).lower()
            ):
                found.append(f"{relative}:{node.lineno}: sends an alert")
    return sorted(found)


def test_only_alerting_words_and_sends_alerts() -> None:
    assert alert_messages_outside_alerting() == []


def test_the_alerting_guard_sees_each_way_around_it(tmp_path: Path) -> None:
    (tmp_path / "ops").mkdir()
    (tmp_path / "ops" / "x.py").write_text(
        "text = f':red_circle: {job} failed'\n"
        "await alerter.send(text, about=job)\n"
        "await self.alerters[0].send(text)\n"
        "await client.send(request)\n",
        encoding="utf-8",
    )
    (tmp_path / "alerting").mkdir()
    (tmp_path / "alerting" / "ok.py").write_text(
        "await alerter.send(':repeat: still down')\n", encoding="utf-8"
    )
    assert [f.split(": ", 1)[0] for f in alert_messages_outside_alerting(tmp_path)] == [
        "ops/x.py:1",
        "ops/x.py:2",
        "ops/x.py:3",
    ]


# -- one bounded database call (issue 16): timeouts and error mapping only in storage/bounded --

BOUNDED_OWNER = "storage/bounded.py"
DATABASE_NAMES = frozenset(
    {"engine", "conn", "connection", "ledger", "leases", "job_states", "breaker", "call"}
)
DATABASE_METHODS = frozenset({"begin", "connect", "execute"})
TIMEOUT_CALLS = frozenset({"wait_for", "timeout", "timeout_at"})


def _touches_database(nodes: list[ast.AST]) -> bool:
    for root in nodes:
        for node in ast.walk(root):
            name = (
                node.id
                if isinstance(node, ast.Name)
                else node.attr
                if isinstance(node, ast.Attribute)
                else None
            )
            if name in DATABASE_NAMES or name in DATABASE_METHODS:
                return True
    return False


def _called_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call):
        func = node.func
        return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return None


def _catches_timeout(handler: ast.ExceptHandler) -> bool:
    caught = handler.type
    names = caught.elts if isinstance(caught, ast.Tuple) else [caught] if caught else []
    return any(
        (isinstance(n, ast.Name) and n.id == "TimeoutError")
        or (isinstance(n, ast.Attribute) and n.attr == "TimeoutError")
        for n in names
    )


def database_calls_bounded_outside_storage(root: Path = SRC) -> list[str]:
    """Every database call wrapped in its own timeout (``asyncio.wait_for``/``timeout``) or
    whose ``TimeoutError`` is mapped by hand, outside :mod:`cronkeeper.storage.bounded`.

    "Database call": the timed expression or the ``try`` body names an engine, a connection,
    the ledger, the leases, the job states, a breaker or a bounded call (a timeout around a
    webhook or a stop event is no business of this rule)."""
    found: list[str] = []
    for relative, source in _sources((BOUNDED_OWNER,), root):
        for node in ast.walk(ast.parse(source)):
            if _called_name(node) in TIMEOUT_CALLS:
                assert isinstance(node, ast.Call)
                if _called_name(node) == "wait_for" and _touches_database(node.args[:1]):
                    found.append(f"{relative}:{node.lineno}: wait_for around a database call")
            elif isinstance(node, ast.AsyncWith | ast.With) and any(
                _called_name(item.context_expr) in TIMEOUT_CALLS for item in node.items
            ):
                if _touches_database(list(node.body)):
                    found.append(f"{relative}:{node.lineno}: timeout around a database call")
            elif (
                isinstance(node, ast.Try)
                and any(map(_catches_timeout, node.handlers))
                and _touches_database(list(node.body))
            ):
                found.append(f"{relative}:{node.lineno}: TimeoutError of a database call")
    return sorted(found)


def test_only_storage_bounds_database_calls() -> None:
    assert database_calls_bounded_outside_storage() == []


def test_the_bounded_call_guard_sees_each_way_around_it(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "x.py").write_text(
        "async def a(service):\n"
        "    return await asyncio.wait_for(load(service.engine), 5)\n"
        "async def b(engine):\n"
        "    async with asyncio.timeout(5):\n"
        "        async with engine.connect() as conn:\n"
        "            pass\n"
        "async def c(ledger):\n"
        "    try:\n"
        "        await ledger.breaker.record(None)\n"
        "    except (ValueError, TimeoutError):\n"
        "        pass\n"
        "async def fine(stop, client):\n"
        "    await asyncio.wait_for(stop.wait(), 5)\n"
        "    async with asyncio.timeout(5):\n"
        "        await client.post('/hook')\n",
        encoding="utf-8",
    )
    (tmp_path / "storage").mkdir()
    (tmp_path / "storage" / "bounded.py").write_text(
        "async def ok(engine):\n    return await asyncio.wait_for(engine.connect(), 1)\n",
        encoding="utf-8",
    )
    assert [f.split(": ", 1)[0] for f in database_calls_bounded_outside_storage(tmp_path)] == [
        "web/x.py:2",
        "web/x.py:4",
        "web/x.py:8",
    ]


# -- authentication in one room (issue 16): nothing below the API imports it ---------------

API_IMPORTERS_ALLOWED = (
    "api/",  # itself
    "cli.py",  # the entry point builds the app
    "__main__.py",
)


def imports_of_api_from_below(root: Path = SRC) -> list[str]:
    """Every ``import cronkeeper.api…`` / ``from cronkeeper.api… import`` / ``from cronkeeper
    import api`` outside the API and the entry point."""
    found: list[str] = []
    for relative, source in _sources(API_IMPORTERS_ALLOWED, root):
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            if any(
                name == "cronkeeper.api" or name.startswith("cronkeeper.api.") for name in names
            ):
                found.append(f"{relative}:{node.lineno}: imports cronkeeper.api")
    return sorted(found)


def test_no_lower_layer_imports_the_api() -> None:
    """``metrics.py`` and ``web/routes.py`` took the bearer check and the limiter from
    ``api.deps`` while ``api/app.py`` imported both; authentication is its own room now."""
    assert imports_of_api_from_below() == []


def test_the_api_import_guard_sees_each_form(tmp_path: Path) -> None:
    (tmp_path / "ops").mkdir()
    (tmp_path / "ops" / "x.py").write_text(
        "from cronkeeper.api.deps import Authorized\n"
        "import cronkeeper.api.app\n"
        "from cronkeeper import api\n"
        "from cronkeeper import auth\n"
        "from cronkeeper.apiary import bee\n",
        encoding="utf-8",
    )
    (tmp_path / "cli.py").write_text("from cronkeeper.api.app import create_app\n")
    assert [f.split(": ", 1)[0] for f in imports_of_api_from_below(tmp_path)] == [
        "ops/x.py:1",
        "ops/x.py:2",
        "ops/x.py:3",
    ]
