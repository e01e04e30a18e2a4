"""What the benchmark scripts share: timing, statistics, tables, the machine, the doc.

Each script in ``bench/`` rewrites only its own section of ``docs/benchmarks.md``, between
``<!-- bench:NAME:start -->`` and ``<!-- bench:NAME:end -->``, so running one never clobbers
another's figures. Everything here is loopback-only and bounded in time.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine
    from tests.support.pg import PgCluster

REPO_ROOT = Path(__file__).resolve().parent.parent
DOC = REPO_ROOT / "docs" / "benchmarks.md"
VENV_BIN = REPO_ROOT / ".venv" / "bin"
# Wide enough for the tables when the output is a pipe or a log file, not a terminal.
console = Console(width=None if sys.stdout.isatty() else 180)

__all__ = [
    "DOC",
    "OTHER_JOBS",
    "REPO_ROOT",
    "Served",
    "Stats",
    "console",
    "cpu_busy",
    "fill_runs",
    "free_port",
    "machine_lines",
    "markdown_table",
    "measure",
    "ms",
    "percentile",
    "print_table",
    "repo_on_path",
    "run_command",
    "scratch_dir",
    "serve_cronkeeper",
    "serve_each",
    "update_section",
    "wait_until_quiet",
]


DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
"""A throwaway PostgreSQL cluster's settings for benchmarks that measure writes: durable, as
a real database is (the test suite's cluster turns them off)."""


def repo_on_path() -> None:
    """Make ``tests.support.pg`` importable (the throwaway PostgreSQL of the test suite)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))


# -- statistics ---------------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Stats:
    n: int
    median: float
    p99: float
    mean: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        if not samples:
            return cls(0, math.nan, math.nan, math.nan)
        return cls(
            len(samples),
            statistics.median(samples),
            percentile(samples, 99),
            statistics.fmean(samples),
        )


async def measure(
    call: Callable[[], Awaitable[object]],
    *,
    iterations: int,
    warmup: int = 10,
    budget: float = 10.0,
    minimum: int = 5,
) -> list[float]:
    """Seconds per call, after ``warmup`` calls; stops at ``iterations`` or after ``budget``
    seconds (but never with fewer than ``minimum`` samples)."""
    for _ in range(warmup):
        await call()
    samples: list[float] = []
    deadline = time.perf_counter() + budget
    while len(samples) < iterations:
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
        if len(samples) >= minimum and time.perf_counter() > deadline:
            break
    return samples


def ms(seconds: float, digits: int = 2) -> str:
    return "—" if math.isnan(seconds) else f"{seconds * 1000:.{digits}f}"


# -- output -------------------------------------------------------------------------------------


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    table = Table(title=title)
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def run_command() -> str:
    """How this script was started, relative to the repository (for the doc)."""
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(REPO_ROOT)
    return shlex.join([".venv/bin/python", str(script), *sys.argv[1:]])


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_lines(postgres: str | None = None) -> list[str]:
    """Date and machine, as Markdown bullet lines."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {cpus} CPUs (nproc), {_cpu_model()}, Linux {platform.release()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()})",
    ]
    if postgres:
        lines.append(f"- PostgreSQL {postgres}")
    return lines


_INTRO = """# Benchmarks

Generated sections: each script in `bench/` rewrites only its own part of this file.
"""


def update_section(name: str, body: str) -> None:
    """Replace the text between this benchmark's markers in ``docs/benchmarks.md``."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    text = DOC.read_text() if DOC.exists() else _INTRO
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = before + block + after
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
    console.print(f"[dim]updated the {name} section of {DOC.relative_to(REPO_ROOT)}[/]")


def scratch_dir(prefix: str) -> Path:
    """A fresh temporary directory, removed when the script exits (whatever the outcome)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, True)
    return path


# -- processes and ports ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Served:
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def serve_cronkeeper(
    env: Mapping[str, str], workdir: Path, *, start_timeout: float = 30.0
) -> Iterator[Served]:
    """``cronkeeper serve`` as a subprocess on a free loopback port; stopped (by its pid) on
    exit, SIGKILL if it does not stop within 10 s."""
    port = free_port()
    log = workdir / f"serve-{port}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CRONKEEPER_", "META_"))}
    full_env.update(env)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(VENV_BIN / "cronkeeper"), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"cronkeeper serve exited {process.returncode}:\n{log.read_text()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"cronkeeper serve did not answer within {start_timeout} s")
            time.sleep(0.1)
        yield Served(base, process, log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def _cpu_times() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def cpu_busy(seconds: float = 1.0) -> float:
    """Share of all CPUs busy over ``seconds`` (other processes included), 0-1."""
    busy0, total0 = _cpu_times()
    time.sleep(seconds)
    busy1, total1 = _cpu_times()
    return (busy1 - busy0) / max(1, total1 - total0)


def wait_until_quiet(limit: float = 0.15, patience: float = 60.0) -> str:
    """Wait up to ``patience`` s for the machine to be idle (< ``limit`` busy over 1 s).

    Benchmarks on a shared 2-core machine are worthless while a test suite runs beside them;
    the returned text (busy share when the run started) goes into the doc.
    """
    deadline = time.monotonic() + patience
    busy = cpu_busy()
    while busy > limit and time.monotonic() < deadline:
        console.print(f"[yellow]machine {busy:.0%} busy; waiting for it to settle…[/]")
        busy = cpu_busy(2.0)
    return f"{busy:.0%} of the CPUs busy (other processes) just before the run"


# -- a history to measure against ---------------------------------------------------------------

OTHER_JOBS = tuple(f"other-job-{i:02d}" for i in range(1, 21))
"""Job names beside the four: a ledger shared with other jobs, as a real one often is."""

DEFAULT_STATUS = (
    "CASE WHEN g % 37 = 0 THEN 'error' WHEN g % 41 = 0 THEN 'partial' ELSE 'success' END"
)


async def fill_runs(
    engine: AsyncEngine,
    cluster: PgCluster,
    db: str,
    size: int,
    names: Sequence[str],
    status: str = DEFAULT_STATUS,
) -> float:
    """Rows 1..``size`` of ``cron_runs``, server-side: row g starts g×10 s ago on job
    ``names[g mod len]`` with the SQL expression ``status`` (over ``g`` and ``job``); then
    ``VACUUM ANALYZE``. Seconds taken."""
    from sqlalchemy import text

    array = "ARRAY[" + ", ".join(f"'{n}'" for n in names) + "]"
    statement = text(
        "INSERT INTO cron_runs "
        "(cron_name, started_at, finished_at, status, records_count, created_at) "
        f"SELECT job, now() - g * interval '10 seconds', "
        "now() - g * interval '10 seconds' + interval '5 seconds', "
        f"{status}, g % 1000, now() - g * interval '10 seconds' "
        f"FROM generate_series(1, CAST(:size AS bigint)) AS g, "
        f"LATERAL (SELECT ({array})[1 + g % {len(names)}] AS job) AS j"
    )
    start = time.perf_counter()
    async with engine.begin() as conn:
        await conn.execute(statement, {"size": size})
    cluster.psql("VACUUM ANALYZE cron_runs", db=db, timeout=3600)
    return time.perf_counter() - start


def serve_each(
    stack: contextlib.ExitStack, database_urls: Sequence[str], secret: str, workdir: Path
) -> tuple[list[str | None], str]:
    """``cronkeeper serve`` on each database, kept running until ``stack`` closes.

    Returns the base URLs and a note: if one server does not start, every URL is ``None``
    (HTTP is then not measured at all rather than at some sizes) and the note says why.
    """
    urls: list[str | None] = []
    for url in database_urls:
        try:
            served = stack.enter_context(
                serve_cronkeeper({"DATABASE_URL": url, "CRON_SECRET": secret}, workdir)
            )
        except Exception as exc:
            note = f"HTTP not measured: `cronkeeper serve` did not start ({exc!s:.300})"
            console.print(f"[yellow]{note}[/]")
            return [None] * len(database_urls), note
        urls.append(served.base_url)
    return urls, ""
