"""Benchmark: collect-daily of 200 ad accounts against Meta's quotas, paced and not paced.

The Meta simulator (a real uvicorn on loopback) enforces rolling-window quotas
(:mod:`cronkeeper.sandbox.quota`): ``--app-calls`` insights calls per ``--window`` seconds
for the whole app and ``--account-calls`` per ad account, with the real usage headers on
every answer and error 4 (app) / 17 (ad account) refusals once a limit is reached. Meta's
windows are an hour; here they are scaled down to seconds so the bench finishes in a minute
or two, and the pause is scaled with them (``CRONKEEPER_PACING_PAUSE`` = the window).

collect-daily runs through ``cronkeeper.runner.run_job`` (lease, ledger, HTTP client, pacer,
deferral within ``CRONKEEPER_RUN_BUDGET``) on a fresh SQLite database, with a 28-day
lookback: each account is one ``time_increment=1`` chain of two pages (Meta pages 25 rows),
plus its account-details request, which the quota counts too (since issue 17). Runs:

* **paced**: the settings an operator would use, high-water mark ``--high-water`` (default
  90 %, the documented default), pause = the window;
* **pacing off**: ``CRONKEEPER_PACING_HIGH_WATER=100``, ``CRONKEEPER_PACING_PAUSE=0`` — no
  pause from usage headers, only the reaction to refusals (the app-wide back-off stays);
* **no pacer** (the behaviour before issue 11): the runner built without a pacer
  (``cronkeeper.runner.Pacer`` replaced by ``None`` for this run only): refusals are retried
  per account with the default 3 s / 6 s waits, then the account is skipped.

Lower bound: with a rolling window W and an app limit A, N calls cannot all be admitted
before (⌈N/A⌉ − 1)·W, plus one latency for the last answer. N = every page of every account
(the calls a complete run needs).

    .venv/bin/python bench/pacing.py [--accounts 200] [--window 10] [--app-calls 100]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import re
import statistics
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

from benchlib import (
    console,
    machine_lines,
    markdown_table,
    print_table,
    run_command,
    scratch_dir,
    update_section,
    wait_until_quiet,
)

from cronkeeper.config import Settings
from cronkeeper.runner import run_job
from cronkeeper.sandbox import MetaQuota, MetaSimulator, QuotaPolicy, serve_app
from cronkeeper.service import Service

TOKEN = "bench-meta-token-0123456789"
LOOKBACK = 28
PAGE = 25  # Meta's (and the simulator's) default page size
GOAL = 1.2


@dataclass(frozen=True)
class Outcome:
    label: str
    wall: float
    status: str
    skipped: int
    records: int
    admitted: int
    refusals: dict[int, int]
    max_in_flight: int
    app_peak: int
    app_calls: int
    high_water: float
    bursts: list[float]
    """Durations of the runs of admitted calls separated by a pause (gap > 1 s)."""

    @property
    def refused(self) -> int:
        return sum(self.refusals.values())


def peak_in_window(times: list[float], window: float) -> int:
    """The most admitted calls inside any rolling window (must stay ≤ the app limit)."""
    best, low = 0, 0
    for high, at in enumerate(times):
        while times[low] <= at - window:
            low += 1
        best = max(best, high - low + 1)
    return best


async def run_once(
    label: str,
    accounts: list[str],
    args: argparse.Namespace,
    workdir: Path,
    *,
    high_water: float,
    pause: float,
    pacer: bool = True,
    app_calls: int | None = None,
) -> Outcome:
    app_calls = app_calls or args.app_calls
    admitted: list[float] = []
    quota = MetaQuota(
        QuotaPolicy(account_calls=args.account_calls, app_calls=app_calls, window=args.window)
    )
    original = quota.admit

    def admit(account: str) -> Any:
        admission = original(account)
        if admission.admitted:
            admitted.append(time.monotonic())
        return admission

    quota.admit = admit  # type: ignore[method-assign]
    sim = MetaSimulator(accounts, access_token=TOKEN, latency=args.latency, quota=quota)
    day = datetime.now(UTC).date() - timedelta(days=1)
    with serve_app(sim.app) as base_url:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            database_url=f"sqlite:///{workdir}/{label.split()[0]}-{app_calls}.db",
            meta_access_token=TOKEN,
            meta_api_base=base_url,
            meta_ad_account_ids=tuple(accounts),
            meta_lookback_days=LOOKBACK,
            concurrency=args.concurrency,
            timezone="UTC",
            pacing_high_water=high_water,
            pacing_pause=pause,
            run_budget=f"{args.budget}s",
            max_wait=args.max_wait,
            # Meta's blocking period after a throttle with no estimate, scaled like the pause.
            meta_throttle_block=args.window,
        )
        service = Service.from_settings(settings)
        patch = nullcontext() if pacer else mock.patch("cronkeeper.runner.Pacer", _no_pacer)
        try:
            await service.prepare()
            start = time.perf_counter()
            with patch:
                result = await run_job(service, "collect-daily", day)
            wall = time.perf_counter() - start
        finally:
            await service.aclose()
    match = re.search(r"skipped (\d+) of", result.error_message or "")
    refusals: dict[int, int] = {}
    for _, _, code in quota.refusals:
        refusals[code] = refusals.get(code, 0) + 1
    return Outcome(
        label,
        wall,
        result.status,
        int(match.group(1)) if match else 0,
        result.records_count,
        len(admitted),
        refusals,
        sim.log.max_in_flight,
        peak_in_window(admitted, args.window),
        app_calls,
        high_water if pacer and pause > 0 else 100.0,
        bursts(admitted),
    )


def bursts(times: list[float], gap: float = 1.0) -> list[float]:
    """How long each run of calls lasted, runs split where nothing was admitted for ``gap``."""
    out: list[float] = []
    start = prev = times[0] if times else 0.0
    for at in times[1:]:
        if at - prev > gap:
            out.append(prev - start)
            start = at
        prev = at
    if times:
        out.append(prev - start)
    return out


def _no_pacer(*_args: object, **_kwargs: object) -> None:
    return None


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--window", type=float, default=10.0, help="quota window, seconds")
    parser.add_argument("--app-calls", type=int, default=120, help="app calls per window")
    parser.add_argument(
        "--worst-case-app-calls",
        type=int,
        default=100,
        help="one more paced run with this app quota (0: none); 100 makes N an exact multiple",
    )
    parser.add_argument("--account-calls", type=int, default=10, help="calls per account/window")
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--high-water", type=float, default=90.0)
    parser.add_argument("--budget", type=int, default=90, help="CRONKEEPER_RUN_BUDGET, seconds")
    parser.add_argument("--max-wait", type=float, default=60.0, help="CRONKEEPER_MAX_WAIT")
    parser.add_argument("--only-paced", action="store_true")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.accounts <= 2000:
        parser.error("--accounts must be 1-2000")
    logging.getLogger("cronkeeper").setLevel(logging.CRITICAL)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    accounts = [str(3_000_000_000 + i) for i in range(args.accounts)]
    workdir = scratch_dir("cronkeeper-bench-pacing-")
    busy = wait_until_quiet()
    console.print(busy)
    runs: list[tuple[str, dict[str, Any]]] = [
        (
            f"paced (high-water {args.high_water:g} %, pause {args.window:g} s)",
            {"high_water": args.high_water, "pause": args.window},
        ),
    ]
    if not args.only_paced:
        runs += [
            ("pacing off (high-water 100 %, pause 0)", {"high_water": 100.0, "pause": 0.0}),
            (
                "no pacer (before issue 11)",
                {"high_water": 100.0, "pause": 0.0, "pacer": False},
            ),
        ]
    if args.worst_case_app_calls:
        runs.append(
            (
                f"paced, app quota {args.worst_case_app_calls}",
                {
                    "high_water": args.high_water,
                    "pause": args.window,
                    "app_calls": args.worst_case_app_calls,
                },
            )
        )
    outcomes = []
    for label, kwargs in runs:
        console.print(f"{label}…")
        outcomes.append(await run_once(label, accounts, args, workdir, **kwargs))
    report(args, accounts, outcomes, busy)
    return 0


def bounds(calls: int, outcome: Outcome, args: argparse.Namespace) -> tuple[float, float]:
    """The quota's lower bound, and the one at the run's high-water mark (what a client that
    keeps its usage below the mark can reach at best)."""
    full = (math.ceil(calls / outcome.app_calls) - 1) * args.window + args.latency
    usable = max(1, math.floor(outcome.app_calls * outcome.high_water / 100))
    at_mark = (math.ceil(calls / usable) - 1) * args.window + args.latency
    return full, at_mark


def model(o: Outcome, args: argparse.Namespace) -> str:
    if not o.bursts:
        return "no calls"
    mean = statistics.fmean(o.bursts)
    est = (len(o.bursts) - 1) * (args.window + mean) + mean
    return (
        f"{len(o.bursts)} bursts of {mean:.2f} s on average, (bursts − 1)·(W + burst) + burst"
        f" = {est:.1f} s"
    )


def report(
    args: argparse.Namespace, accounts: list[str], outcomes: list[Outcome], busy: str
) -> None:
    pages = math.ceil(LOOKBACK / PAGE)
    calls = len(accounts) * (pages + 1)  # + the details call, counted since issue 17
    headers = [
        "run",
        "app quota A",
        "status",
        "accounts skipped",
        "rows stored",
        "calls admitted",
        "requests refused",
        "peak calls in a window",
        "max in flight",
        "wall s",
        "lower bound s",
        "wall / bound",
        "bound at the mark s",
        "bursts × mean s",
    ]
    rows = []
    for o in outcomes:
        full, at_mark = bounds(calls, o, args)
        refused = (
            f"{o.refused} ("
            + ", ".join(f"{n} × code {c}" for c, n in sorted(o.refusals.items()))
            + ")"
            if o.refusals
            else "0"
        )
        rows.append(
            [
                o.label,
                str(o.app_calls),
                o.status,
                str(o.skipped),
                f"{o.records:,}",
                f"{o.admitted} / {calls}",
                refused,
                str(o.app_peak),
                str(o.max_in_flight),
                f"{o.wall:.1f}",
                f"{full:.2f}",
                f"×{o.wall / full:.2f}",
                f"{at_mark:.2f}",
                f"{len(o.bursts)} × {statistics.fmean(o.bursts):.2f}" if o.bursts else "—",
            ]
        )
    verdicts = []
    per_quota: list[str] = []
    met = True
    for o in outcomes:
        if not o.label.startswith("paced"):
            continue
        full, at_mark = bounds(calls, o, args)
        ratio = o.wall / full
        ok = o.skipped == 0 and o.refused == 0 and ratio <= GOAL
        met &= ok
        per_quota.append(f"{'met' if ok else 'missed'} at A = {o.app_calls}")
        verdicts.append(
            f"{o.label} (A = {o.app_calls}): {o.skipped} accounts skipped, {o.refused} requests"
            f" refused, {o.wall:.1f} s against the quota's lower bound {full:.2f} s"
            f" (×{ratio:.2f}; ×{o.wall / at_mark:.2f} of {at_mark:.2f} s, the bound when usage"
            f" stays below the {o.high_water:g} % mark); {model(o, args)}:"
            f" {'met' if ok else 'MISSED'}"
        )
    for o in outcomes:
        if not o.label.startswith("paced"):
            verdicts.append(
                f"{o.label}: {o.skipped} accounts skipped, {o.refused} requests refused,"
                f" {o.wall:.1f} s"
            )
    title = (
        f"collect-daily, {len(accounts)} accounts × {LOOKBACK} days, quota A app /"
        f" {args.account_calls} account calls per {args.window:g} s, latency"
        f" {args.latency * 1000:.0f} ms, concurrency {args.concurrency}"
    )
    print_table(title, headers, rows)
    for line in verdicts:
        console.print(line)
    console.print(f"[bold]goal {'met' if met else 'MISSED'}[/]")
    if args.no_doc:
        return
    body = [
        "## 7. Pacing under Meta's quotas (issue 11)",
        "",
        f"Command: `{run_command()}`",
        "",
        *machine_lines(),
        f"- machine load: {busy}",
        f"- {len(accounts)} ad accounts, collect-daily with a {LOOKBACK}-day lookback: one"
        f" `time_increment=1` chain of {pages} pages per account, N = {calls} calls"
        " plus one account-details call each (counted by the quota since issue 17)",
        f"- Meta simulator in-process (uvicorn thread), {args.latency * 1000:.0f} ms per call,"
        f" quotas as rolling windows scaled from Meta's hour to W = {args.window:g} s: app"
        f" A calls per window (binding: N > A), {args.account_calls} per ad account;"
        " refusals are error 4 (app) and 17 (ad account), usage headers on every answer",
        f"- `run_job` with concurrency {args.concurrency}, `CRONKEEPER_RUN_BUDGET={args.budget}s`,"
        f" `CRONKEEPER_MAX_WAIT={args.max_wait:g}`, `CRONKEEPER_PACING_PAUSE` = W when paced;"
        " *pacing off* keeps only the reaction to refusals (an app-wide pause of the default"
        " 3 s / 6 s wait, since error 4 names no wait); *no pacer* is the runner built without"
        " one (the behaviour before issue 11: each refused account retries after 3 s then 6 s,"
        " then is skipped)",
        "- *lower bound* = (⌈N/A⌉ − 1)·W + one latency: a rolling window admits at most A calls"
        " in any W seconds. *Bound at the mark* = the same with ⌊A·mark⌋ calls per window, the"
        " best a client can do that keeps usage below its high-water mark (90 % by default:"
        " room for requests in flight and for other users of the same app). *Peak calls in a"
        " window* is the most calls the simulator admitted inside any W-second span",
        "- *bursts × mean s*: the admitted calls split where none was admitted for 1 s, and"
        " how long each run of calls lasted on average. A paced run takes about"
        " (bursts − 1)·(W + burst) + burst: the pause starts at the answer that crosses the"
        " mark, one burst after the window's first call",
        f"- A = {args.app_calls} is the headline; A = {args.worst_case_app_calls} makes N an"
        " exact multiple of A, the worst case for any headroom: a client that leaves 10 % of"
        " each window unused needs one whole window more than the bound",
        "",
        markdown_table(headers, rows),
        "",
        f"**Goal {', '.join(per_quota)}** (paced: 0 accounts skipped, 0 refused, within"
        f" ×{GOAL} of the lower bound):",
        "",
        *(f"- {v}" for v in verdicts),
        "",
        "Where the paced runs lose time against the bound (read from the columns above):",
        "",
        "- *the mark's headroom*: usage is kept below 90 % of A, so a window admits ⌊0.9·A⌋"
        " calls; when N is (close to) a multiple of A, that costs one whole window more than"
        " the bound (A = 100: 40 s at the mark against 30 s at 100 %). This is the price of"
        " never being refused with requests in flight, and of leaving room to other users of"
        " the same app; it shrinks as a run spans more windows (→ ×1/0.9 = ×1.11).",
        "- *the pause starts at the crossing*: `PacingPolicy` holds the app for `pause` from"
        " the answer that reached the mark, that is one burst after the window's first call;"
        " each cycle lasts W + burst instead of W. The bursts are the latency-bound part"
        " (≈ ⌊0.9·A⌋ × 20 ms / concurrency 4 on an idle machine, longer when the machine is"
        " busy: see the machine load above), so this part grows with the load.",
        "- no refusal, and no overshoot past the limit (*peak calls in a window* ≤ A), so"
        " in-flight requests are not the cause; *pacing off* is faster here only because each"
        " error-4 refusal costs 3 s (Meta names no wait for it), not the 60 s and more that a"
        " business-use-case refusal (80000, `estimated_time_to_regain_access` in whole"
        " minutes) costs.",
        "- proposed fix (not made): follow the window's drain instead of pausing from the"
        " crossing, i.e. hold until the oldest call this client made inside the window leaves"
        " it (its answer time + W) rather than until now + W. That needs the quota's window,"
        " which `PacingPolicy` does not know: `pause` (default 60 s, airbyte's) is shorter than"
        " Meta's one-hour window, and following the drain with it would send at full rate"
        " while nothing has left Meta's window, i.e. be refused. It needs a setting for the"
        " window (e.g. `CRONKEEPER_PACING_WINDOW`, default 1 h) and tests; until then the"
        " pause is the safe rule.",
    ]
    update_section("pacing", "\n".join(body))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
