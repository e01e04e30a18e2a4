"""Memory while reading a gzip bomb: capped (cronkeeper) against a plain httpx read.

Issue 19: a 510 KB gzip body inflated to 500 MB in the serving process (110 MB → 1.15 GB).
This serves 500 MiB of zeros, gzipped (about 500 KB), on 127.0.0.1 and reads it in a fresh
Python process per mode, so each peak is that read's alone:

- *capped*: ``fetch_with_retry`` with the default ``CRONKEEPER_MAX_RESPONSE_BYTES`` (64 MiB),
  which stops at the cap with ``ResponseTooLarge``;
- *uncapped*: ``httpx.AsyncClient.get`` then ``.content``, what the client did before.

Peak resident memory is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the child, minus its
resident size just before the request; ``tracemalloc``'s peak is the Python allocations alone.
Usage: ``.venv/bin/python bench/response_cap.py [--mib 500] [--no-doc]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

from benchlib import (
    machine_lines,
    markdown_table,
    print_table,
    run_command,
    update_section,
    wait_until_quiet,
)

HERE = Path(__file__).resolve()


def bomb(mib: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(1 << 20)
    return b"".join([*(packer.compress(block) for _ in range(mib)), packer.flush()])


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


async def _child(mode: str, url: str) -> dict[str, object]:
    import httpx

    from cronkeeper.http import RetryPolicy, fetch_with_retry
    from cronkeeper.http.body import ResponseTooLarge

    async with httpx.AsyncClient(timeout=120) as client:
        await client.get(url.replace("/bomb", "/ping"))  # warm: imports, connection
        before = _rss_mib()
        tracemalloc.start()
        started = time.perf_counter()
        try:
            if mode == "capped":
                await fetch_with_retry(client, "GET", url, policy=RetryPolicy(timeout=120))
                outcome = "read whole (no cap hit)"
            else:
                response = await client.get(url)
                outcome = f"read whole: {len(response.content) >> 20} MiB in memory"
        except ResponseTooLarge as exc:
            outcome = f"ResponseTooLarge after {exc.decoded / (1 << 20):.2f} MiB decoded"
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return {
        "outcome": outcome,
        "rss_before": before,
        "rss_peak": _rss_mib(),
        "traced_peak": peak / (1 << 20),
        "seconds": seconds,
    }


def _serve(body: bytes) -> object:
    from cronkeeper.sandbox import serve_app

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        if scope["type"] != "http":
            return
        send_ = send  # type: ignore[assignment]
        headers = [(b"content-type", b"application/json")]
        payload = b"{}"
        if scope["path"] == "/bomb":
            headers.append((b"content-encoding", b"gzip"))
            payload = body
        await send_({"type": "http.response.start", "status": 200, "headers": headers})  # type: ignore[operator]
        await send_({"type": "http.response.body", "body": payload})  # type: ignore[operator]

    return serve_app(app)  # type: ignore[arg-type]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=500, help="decoded size of the bomb")
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_child(*args.child))))
        return 0

    body = bomb(args.mib)
    load = wait_until_quiet()
    results: dict[str, dict[str, object]] = {}
    with _serve(body) as base:  # type: ignore[attr-defined]
        for mode in ("capped", "uncapped"):
            done = subprocess.run(
                [sys.executable, str(HERE), "--child", mode, f"{base}/bomb"],
                capture_output=True,
                text=True,
                check=True,
            )
            results[mode] = json.loads(done.stdout.strip().splitlines()[-1])

    headers = ["read", "outcome", "peak RSS − before (MiB)", "tracemalloc peak (MiB)", "s"]
    rows = [
        [
            mode,
            str(r["outcome"]),
            f"{float(r['rss_peak']) - float(r['rss_before']):.0f}",  # type: ignore[arg-type]
            f"{float(r['traced_peak']):.1f}",  # type: ignore[arg-type]
            f"{float(r['seconds']):.2f}",  # type: ignore[arg-type]
        ]
        for mode, r in results.items()
    ]
    print_table(f"a {len(body) >> 10} KiB gzip body of {args.mib} MiB", headers, rows)
    capped = results["capped"]
    grew = float(capped["rss_peak"]) - float(capped["rss_before"])  # type: ignore[arg-type]
    goal = grew < 64 + 32
    if not args.no_doc:
        lines = [
            "## Response size cap (gzip bomb)",
            "",
            *machine_lines(),
            f"- command: `{run_command()}`; machine load: {load}",
            f"- the bomb: {args.mib} MiB of zeros gzipped into {len(body) >> 10} KiB, served on"
            " 127.0.0.1; each read in a fresh process (peaks are that read's alone)",
            "",
            markdown_table(headers, rows),
            "",
            f"**Goal** (capped: the process grows by less than the 64 MiB cap + 32 MiB):"
            f" {'met' if goal else 'NOT met'} ({grew:.0f} MiB).",
        ]
        update_section("response_cap", "\n".join(lines))
    return 0 if goal else 1


if __name__ == "__main__":
    sys.exit(main())
