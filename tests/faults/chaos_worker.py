"""One process of the chaos test: runs random jobs until told to stop (or killed).

``python -m tests.faults.chaos_worker RESULTS STOP SEED`` with cronkeeper's settings in the
environment. Each finished run (and each refusal) is one JSON line in RESULTS, written
before the next run starts, so a line means "this run ended and the worker saw how".
With ``ALERT_WEBHOOK_URL`` set, alerts are wired as ``cronkeeper run`` wires them (the
watchdog: each run end evaluated, its change's message queued in the outbox and delivered).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from datetime import date, timedelta
from pathlib import Path

from cronkeeper.alerting.watchdog import install_watchdog
from cronkeeper.config import Settings
from cronkeeper.errors import AlreadyRunning
from cronkeeper.logs import configure_logging
from cronkeeper.runner import run_job
from cronkeeper.service import Service

JOBS = ("sync-notion", "collect-daily", "collect-mixpanel", "collect-benchmarks")
FIRST_DAY = date(2026, 11, 17)


async def work(results: Path, stop: Path, seed: int) -> None:
    settings = Settings(_env_file=None)
    configure_logging(settings.redactor)
    rng = random.Random(seed)
    service = Service.from_settings(settings)
    if settings.alert_webhook_url is not None:
        install_watchdog(service)
    await service.prepare()
    try:
        with results.open("a", buffering=1) as out:
            while not await asyncio.to_thread(stop.exists):
                job = rng.choice(JOBS)
                day = FIRST_DAY + timedelta(days=rng.randrange(3))
                try:
                    result = await run_job(service, job, day)
                except AlreadyRunning:
                    out.write(json.dumps({"busy": job}) + "\n")
                    await asyncio.sleep(rng.uniform(0.05, 0.3))
                    continue
                line = {
                    "run_id": result.run_id,
                    "job": job,
                    "status": result.status,
                    "records": result.records_count,
                    "message": result.error_message,
                }
                out.write(json.dumps(line) + "\n")
    finally:
        await service.aclose()


if __name__ == "__main__":
    asyncio.run(work(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])))
