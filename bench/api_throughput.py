"""Benchmark 3: requests per second of ``cronkeeper serve`` on health and on liveness.

Starts ``cronkeeper serve`` (uvicorn, one worker, one process) as a subprocess on a SQLite
ledger holding a few thousand runs, with ``CRON_SECRET`` set, and drives a bounded loopback
load at ``/healthz`` (no auth, no database) and then ``/api/cron/health`` (with the bearer):
``--clients`` concurrent keep-alive connections for ``--seconds`` each, after a 1 s warm-up.

Two load generators, because on a 2-core machine the client competes with the server:

* ``wrk`` (C, one thread) when it is installed (``apt-get install wrk``): cheap per request,
  so the figures are mostly the server's;
* a Python generator (raw asyncio keep-alive HTTP/1.1, ``--workers`` processes, so one
  interpreter's GIL does not cap the load): always available, but costs more CPU per
  request than wrk, CPU taken from the server.

The server's own CPU time per request (from ``/proc/PID/stat``) is reported too: it is the
figure that says how many requests one core can serve, whatever the client costs.

    .venv/bin/python bench/api_throughput.py [--clients 32] [--seconds 10] [--generator auto]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from benchlib import (
    console,
    cpu_busy,
    machine_lines,
    markdown_table,
    percentile,
    print_table,
    run_command,
    scratch_dir,
    serve_cronkeeper,
    update_section,
    wait_until_quiet,
)

from cronkeeper.storage.engine import create_engine, upgrade
from cronkeeper.storage.schema import cron_runs

SECRET = "bench-secret-0123456789abcdef"
JOBS = ("sync-notion", "collect-daily", "collect-mixpanel", "collect-benchmarks")
OTHER_JOBS = tuple(f"other-job-{i:02d}" for i in range(1, 21))
WARMUP = 1.0


@dataclass
class Load:
    endpoint: str
    generator: str
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    p50: float = float("nan")
    p99: float = float("nan")
    server_cpu: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


# -- the ledger --------------------------------------------------------------------------------


async def populate(url: str, rows: int) -> None:
    engine = create_engine(url)
    await upgrade(engine)
    now = datetime.now(UTC)
    names = JOBS + OTHER_JOBS
    values = []
    for g in range(1, rows + 1):
        started = now - timedelta(minutes=10 * g)
        values.append(
            {
                "id": str(uuid.uuid4()),
                "cron_name": names[g % len(names)],
                "started_at": started,
                "finished_at": started + timedelta(seconds=30),
                "status": "error" if g % 37 == 0 else "success",
                "records_count": g % 500,
                "created_at": started,
            }
        )
    async with engine.begin() as conn:
        await conn.execute(cron_runs.insert(), values)
    await engine.dispose()


# -- the Python load generator ------------------------------------------------------------------


async def _connection(
    host: str,
    port: int,
    request: bytes,
    measured_from: float,
    until: float,
    latencies: list[float],
    errors: list[int],
) -> None:
    """One keep-alive HTTP/1.1 connection sending ``request`` back to back until ``until``.

    A hand-rolled client on purpose: httpx spends far more CPU per request than the server
    does (and, with many connections in one pool, stalls on delayed ACKs), so it would measure
    itself. Answers are read by ``Content-Length``, which uvicorn always sends here.
    """
    reader, writer = await asyncio.open_connection(host, port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            t0 = time.perf_counter()
            if t0 >= until:
                return
            writer.write(request)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            t1 = time.perf_counter()
            if t0 >= measured_from and t1 <= until:
                latencies.append(t1 - t0)
                errors[0] += status != 200
    finally:
        writer.close()


def python_worker(
    url: str, headers: dict[str, str], clients: int, seconds: float
) -> dict[str, Any]:
    """One load process: ``clients`` keep-alive connections hammering ``url``."""
    parts = urlsplit(url)
    lines = [f"GET {parts.path} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def run() -> dict[str, Any]:
        latencies: list[float] = []
        errors = [0]
        start = time.perf_counter()
        measured_from, until = start + WARMUP, start + WARMUP + seconds
        outcomes = await asyncio.gather(
            *(
                _connection(
                    parts.hostname or "127.0.0.1",
                    parts.port or 80,
                    request,
                    measured_from,
                    until,
                    latencies,
                    errors,
                )
                for _ in range(clients)
            ),
            return_exceptions=True,
        )
        failed = sum(isinstance(o, BaseException) for o in outcomes)
        return {"latencies": latencies, "errors": errors[0] + failed}

    return asyncio.run(run())


def python_load(
    url: str, headers: dict[str, str], clients: int, seconds: float, workers: int
) -> Load:
    per = [clients // workers + (i < clients % workers) for i in range(workers)]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(python_worker, url, headers, n, seconds) for n in per if n]
        parts = [f.result(timeout=seconds + 60) for f in futures]
    latencies = [x for p in parts for x in p["latencies"]]
    load = Load(url, f"Python asyncio, {workers} processes")
    load.requests = len(latencies)
    load.errors = sum(p["errors"] for p in parts)
    load.seconds = seconds
    load.p50 = percentile(latencies, 50)
    load.p99 = percentile(latencies, 99)
    return load


# -- wrk -------------------------------------------------------------------------------------------

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _duration(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        return float("nan")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk_load(url: str, headers: dict[str, str], clients: int, seconds: float) -> Load:
    wrk = shutil.which("wrk")
    assert wrk is not None
    head = [arg for k, v in headers.items() for arg in ("-H", f"{k}: {v}")]
    # Warm-up (discarded), then the measured run; one thread leaves the other core to the server.
    subprocess.run(
        [wrk, "-t1", f"-c{clients}", "-d1s", *head, url], capture_output=True, check=True
    )
    out = subprocess.run(
        [
            wrk,
            "-t1",
            f"-c{clients}",
            f"-d{int(seconds)}s",
            "--latency",
            "--timeout",
            "5s",
            *head,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    load = Load(url, "wrk, 1 thread")
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+),", out)
    if total:
        load.requests = int(total.group(1))
        load.seconds = _duration(total.group(2) + total.group(3))
    for pct, value in re.findall(r"^\s+(50|99)%\s+(\S+)$", out, flags=re.MULTILINE):
        setattr(load, f"p{pct}", _duration(value))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    load.errors = int(non2xx.group(1)) if non2xx else 0
    if sockets:
        load.errors += sum(int(x) for x in sockets.groups())
    return load


# -- the server's CPU ---------------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """utime + stime of ``pid`` in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32, help="concurrent connections")
    parser.add_argument("--seconds", type=float, default=10.0, help="per endpoint and generator")
    parser.add_argument("--rows", type=int, default=5000, help="runs in the ledger")
    parser.add_argument("--workers", type=int, default=2, help="Python generator processes")
    parser.add_argument(
        "--generator",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="auto: wrk (if installed) and python",
    )
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.clients <= 256 or not 1 <= args.seconds <= 120:
        parser.error("keep the load bounded: 1-256 clients, 1-120 s")
    generators = ["wrk", "python"] if args.generator == "auto" else [args.generator]
    if shutil.which("wrk") is None:
        if args.generator == "wrk":
            parser.error("wrk is not installed (apt-get install wrk)")
        generators = ["python"]

    workdir = scratch_dir("cronkeeper-bench-api-")
    url = f"sqlite:///{workdir}/ledger.db"
    asyncio.run(populate(url, args.rows))
    auth = {"Authorization": f"Bearer {SECRET}"}
    loads: list[Load] = []
    busy = wait_until_quiet()
    console.print(busy)
    with serve_cronkeeper({"DATABASE_URL": url, "CRON_SECRET": SECRET}, workdir) as served:
        check = httpx.get(f"{served.base_url}/api/cron/health", headers=auth, timeout=10)
        if check.status_code != 200:
            raise RuntimeError(f"health answered {check.status_code}: {check.text}")
        bad = httpx.get(f"{served.base_url}/api/cron/health", timeout=10).status_code
        if bad != 401:
            raise RuntimeError(f"health without the bearer answered {bad}, not 401")
        for generator in generators:
            for path, headers in (("/healthz", {}), ("/api/cron/health", auth)):
                console.print(f"{generator}: {args.clients} clients × {args.seconds:g} s on {path}")
                target = served.base_url + path
                cpu_before = process_cpu(served.process.pid)
                began = time.perf_counter()
                if generator == "wrk":
                    load = wrk_load(target, headers, args.clients, args.seconds)
                else:
                    load = python_load(target, headers, args.clients, args.seconds, args.workers)
                wall = time.perf_counter() - began
                load.endpoint = path
                # CPU over the whole phase (warm-up included), per request over the same span.
                load.server_cpu = (process_cpu(served.process.pid) - cpu_before) / wall
                loads.append(load)
        alive = served.process.poll() is None
    busy_after = f"{cpu_busy():.0%} busy just after"
    report(loads, args, f"{busy}; {busy_after}", alive)
    return 0


def report(loads: list[Load], args: argparse.Namespace, load_note: str, alive: bool) -> None:
    headers = [
        "generator",
        "endpoint",
        "requests/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "server CPU (1 core = 100 %)",
        "server CPU ms/request",
    ]
    rows = []
    for load in loads:
        per_request = load.server_cpu / load.rate * 1000 if load.rate else float("nan")
        rows.append(
            [
                load.generator,
                load.endpoint,
                f"{load.rate:,.0f}",
                f"{load.p50 * 1000:.2f}",
                f"{load.p99 * 1000:.2f}",
                str(load.errors),
                f"{load.server_cpu:.0%}",
                f"{per_request:.2f}",
            ]
        )
    print_table(f"{args.clients} clients, {args.seconds:g} s per endpoint", headers, rows)
    verdicts: list[str] = []
    met = alive
    by_gen: dict[str, dict[str, Load]] = {}
    for load in loads:
        by_gen.setdefault(load.generator, {})[load.endpoint] = load
    for generator, pair in by_gen.items():
        health, live = pair["/api/cron/health"], pair["/healthz"]
        ratio = health.rate / live.rate if live.rate else 0.0
        errors = health.errors + live.errors
        ok = ratio >= 0.5 and errors == 0
        met &= ok
        verdicts.append(
            f"{generator}: health {health.rate:,.0f} req/s = {ratio:.0%} of /healthz "
            f"({live.rate:,.0f} req/s), {errors} errors: {'met' if ok else 'MISSED'}"
        )
    for line in verdicts:
        console.print(line)
    console.print(f"[bold]goal {'met' if met else 'MISSED'}[/]")
    if args.no_doc:
        return
    body = [
        "## 3. API throughput",
        "",
        f"Command: `{run_command()}`",
        "",
        *machine_lines(),
        f"- machine load: {load_note}",
        f"- server: `cronkeeper serve` (uvicorn {uvicorn_version()}, one process, asyncio loop"
        f" and h11 as installed), SQLite ledger with {args.rows:,} runs, `CRON_SECRET` set",
        f"- load: {args.clients} keep-alive connections, {args.seconds:g} s per endpoint after a"
        " 1 s warm-up; **the load generator runs on the same 2 cores as the server**, so the"
        " requests/s are a floor; the server CPU columns say what one core can do",
        "",
        markdown_table(headers, rows),
        "",
        f"**Goal {'met' if met else 'missed'}** (health ≥ 50 % of /healthz, zero errors):",
        "",
        *(f"- {v}" for v in verdicts),
    ]
    update_section("api", "\n".join(body))


def uvicorn_version() -> str:
    import uvicorn

    return str(uvicorn.__version__)


if __name__ == "__main__":
    sys.exit(main())
