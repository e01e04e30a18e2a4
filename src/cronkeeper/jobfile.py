"""``cronkeeper.toml``: one ``[jobs.NAME]`` table per job, for a dozen jobs or more.

The four built-in jobs may be tuned here; any other table declares an *external* job
(``kind = "external"``): a cron cronkeeper does not run but watches through its check-ins
(``POST /api/cron/{name}/start`` …, ``cronkeeper exec``). Environment variables keep
working and win over the file (:mod:`cronkeeper.config` applies them on top).

Read with :mod:`tomllib`, not pydantic-settings' ``TomlConfigSettingsSource``: that source
maps a file onto the *fields* of ``Settings`` (https://docs.pydantic.dev/latest/concepts/
pydantic_settings/#other-settings-source), and a job table keyed by an arbitrary name fits no
field without a second, nested model whose errors carry neither the file's line nor the
job's name. Every mistake here is one line naming the file, the line and the key, checked
at load time (``cronkeeper`` exits 2). Secrets never live in the file: ``ping_key_env``
names the environment variable that holds a job's ping key.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from cronkeeper.durations import parse_duration

__all__ = [
    "DEFAULT_PATH",
    "EXTERNAL_WINDOW",
    "JOB_KEYS",
    "JobFile",
    "JobFileError",
    "JobTable",
    "load_job_file",
    "read_ping_key",
]

DEFAULT_PATH = "cronkeeper.toml"
JOB_KEYS = (
    "kind",
    "schedule",
    "window",
    "grace",
    "max_runtime",
    "failure_threshold",
    "monitored",
    "ping_key_env",
)
EXTERNAL_WINDOW = timedelta(days=1)
"""The window of an external job that names none (a daily cron, like the built-in ones)."""
MIN_PING_KEY = 16
RESERVED = frozenset({"runs", "health"})
"""Names that are paths of the API (``/api/cron/runs``, ``/api/cron/health``)."""
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
Kind = Literal["builtin", "external"]
CheckSchedule = Callable[[str, str], None]


class JobFileError(ValueError):
    """One line: ``FILE line N: [jobs.NAME] KEY: what is wrong``."""


@dataclass(frozen=True)
class JobTable:
    """One ``[jobs.NAME]`` table, checked; ``None`` where the file says nothing."""

    name: str
    kind: Kind
    line: int
    schedule: str | None = None
    window: timedelta | None = None
    grace: timedelta | None = None
    max_runtime: timedelta | None = None
    failure_threshold: int | None = None
    monitored: bool | None = None
    ping_key_env: str | None = None

    def given(self) -> frozenset[str]:
        """The keys this table sets (for ``cronkeeper config``'s "file" column)."""
        return frozenset(k for k in JOB_KEYS if k != "kind" and getattr(self, k) is not None)


@dataclass(frozen=True)
class JobFile:
    """The jobs of ``path`` in file order (empty when there is no file)."""

    path: str | None = None
    tables: tuple[JobTable, ...] = ()
    ping_keys: dict[str, str] = field(default_factory=dict, repr=False)
    """Job name → its ping key, read from the environment variable its table names."""

    def table(self, name: str) -> JobTable | None:
        return next((t for t in self.tables if t.name == name), None)

    @property
    def external(self) -> tuple[JobTable, ...]:
        return tuple(t for t in self.tables if t.kind == "external")


def _lines(text: str) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """Where each job's table and each of its keys sit: ``[jobs.NAME]`` headers and the
    ``key =`` lines under them (tomllib reports no positions for a value it accepted)."""
    headers: dict[str, int] = {}
    keys: dict[tuple[str, str], int] = {}
    current: str | None = None
    header = re.compile(r"""^\s*\[\s*jobs\s*\.\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*\]""")
    key = re.compile(r"""^\s*(?:"([^"]*)"|([A-Za-z0-9_-]+))\s*=""")
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("["):
            found = header.match(line)
            current = next(g for g in found.groups() if g is not None) if found else None
            if current is not None:
                headers.setdefault(current, number)
            continue
        found = key.match(line)
        if current is not None and found:
            keys.setdefault((current, found.group(1) or found.group(2)), number)
    return headers, keys


def read_ping_key(env_name: str, env_file: Path | None = Path(".env")) -> str | None:
    """The value of ``env_name`` from the environment, else from ``.env`` (as settings are)."""
    value = os.environ.get(env_name)
    if value is None and env_file is not None and env_file.is_file():
        from dotenv import dotenv_values  # pydantic-settings' own .env reader

        value = dotenv_values(env_file).get(env_name)
    return value or None


def load_job_file(
    path: str | None,
    builtin: tuple[str, ...],
    *,
    check_schedule: CheckSchedule,
    env_file: Path | None = Path(".env"),
) -> JobFile:
    """Read and check ``path`` (``None``: the optional ``./cronkeeper.toml``).

    ``builtin``: the names of cronkeeper's own jobs; ``check_schedule(what, expr)`` raises
    ``ValueError`` for a cron expression the scheduler could not fire. Raises
    :class:`JobFileError`.
    """
    explicit = bool(path and path.strip())
    where = path.strip() if path and explicit else DEFAULT_PATH
    file = Path(where)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise JobFileError(f"CRONKEEPER_CONFIG: {where}: no such file") from None
        return JobFile()
    except (OSError, UnicodeDecodeError) as exc:
        raise JobFileError(f"{where}: cannot be read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # "Cannot declare ('jobs', 'x') twice (at line 5, column 10)": a duplicate job name
        # is a TOML error, and tomllib's message already names the line.
        detail = str(exc)
        found = re.search(r"\(at line (\d+), column \d+\)", detail)
        at = f" line {found.group(1)}" if found else ""
        detail = re.sub(r"\s*\(at line \d+, column \d+\)", "", detail)
        duplicate = re.match(r"Cannot declare \('jobs', '([^']*)'\) twice", detail)
        if duplicate:
            detail = f"[jobs.{duplicate.group(1)}] is declared twice (job names are unique)"
        raise JobFileError(f"{where}{at}: {detail}") from None
    headers, key_lines = _lines(text)

    def fail(line: int | None, message: str) -> JobFileError:
        return JobFileError(f"{where} line {line or 1}: {message}")

    for top in data:
        if top != "jobs":
            raise fail(_top_line(text, top), f"unknown key {top!r}: the file holds [jobs.NAME]")
    jobs = data.get("jobs", {})
    if not isinstance(jobs, dict):
        raise fail(_top_line(text, "jobs"), "jobs must be tables: [jobs.NAME]")
    tables: list[JobTable] = []
    ping_keys: dict[str, str] = {}
    for name, raw in jobs.items():
        line = headers.get(name)
        if not isinstance(raw, dict):
            raise fail(line, f"jobs.{name} must be a table: [jobs.{name}]")
        if not _NAME.match(name) or name in RESERVED:
            raise fail(
                line,
                f"[jobs.{name}]: job names are 1-64 lower-case letters, digits, '-', '_' or '.'"
                " (they appear in URLs), and not runs or health",
            )
        table = _table(name, raw, line, builtin, check_schedule, key_lines, fail)
        tables.append(table)
        if table.ping_key_env:
            key = read_ping_key(table.ping_key_env, env_file)
            if key is not None:
                if len(key) < MIN_PING_KEY or key != key.strip():
                    raise fail(
                        key_lines.get((name, "ping_key_env"), line),
                        f"[jobs.{name}] ping_key_env: {table.ping_key_env} must hold at least"
                        f" {MIN_PING_KEY} characters, no surrounding whitespace (the value is not"
                        " shown)",
                    )
                ping_keys[name] = key
    return JobFile(where, tuple(tables), ping_keys)


def _top_line(text: str, key: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip().lstrip("[").strip()
        if stripped.startswith(key):
            return number
    return 1


def _table(
    name: str,
    raw: dict[str, Any],
    line: int | None,
    builtin: tuple[str, ...],
    check_schedule: CheckSchedule,
    key_lines: dict[tuple[str, str], int],
    fail: Callable[[int | None, str], JobFileError],
) -> JobTable:
    def at(key: str) -> int | None:
        return key_lines.get((name, key)) or line

    for key in raw:
        if key not in JOB_KEYS:
            raise fail(
                at(key), f"[jobs.{name}] unknown key {key!r}; keys are {', '.join(JOB_KEYS)}"
            )
    kind = raw.get("kind", "builtin" if name in builtin else None)
    if name in builtin and kind != "builtin":
        raise fail(
            at("kind"),
            f"[jobs.{name}] kind: {name} is a built-in job (cronkeeper runs it); kind ="
            ' "external" is for crons that only check in',
        )
    if name not in builtin and kind != "external":
        raise fail(
            at("kind") if "kind" in raw else line,
            f'[jobs.{name}] is not a built-in job ({", ".join(builtin)}): add kind = "external"'
            " to watch a cron that checks in",
        )
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "kind":
            continue
        what = f"[jobs.{name}] {key}"
        if key == "schedule":
            if not isinstance(value, str):
                raise fail(at(key), f"{what}: expected a cron expression in quotes")
            try:
                check_schedule(name, value)
            except ValueError as exc:
                raise fail(at(key), f"{what}: {exc}") from None
        elif key in ("window", "grace", "max_runtime"):
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise fail(at(key), f'{what}: expected a duration such as "30m" or "1d"')
            try:
                value = parse_duration(value)
            except ValueError as exc:
                raise fail(at(key), f"{what}: {exc}") from None
        elif key == "failure_threshold":
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
                raise fail(at(key), f"{what}: expected a whole number of runs, 1 to 1000")
        elif key == "monitored":
            if not isinstance(value, bool):
                raise fail(at(key), f"{what}: expected true or false")
        elif key == "ping_key_env":
            if kind != "external":
                raise fail(at(key), f"{what}: only external jobs check in with a ping key")
            if not isinstance(value, str) or not _ENV_NAME.match(value):
                raise fail(
                    at(key),
                    f"{what}: expected the NAME of an environment variable (the key itself never"
                    " goes in the file)",
                )
        values[key] = value
    if kind == "external" and "schedule" not in values:
        raise fail(
            line,
            f"[jobs.{name}] schedule: an external job needs its cron expression"
            " (when it is expected to check in)",
        )
    checked: Kind = "external" if kind == "external" else "builtin"
    return JobTable(name=name, kind=checked, line=line or 1, **values)
