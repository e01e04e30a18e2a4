"""Check-ins over real HTTP (uvicorn): start, finish, ping; credentials, bodies, errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from cronkeeper.api.app import create_app
from cronkeeper.sandbox.server import serve_app
from cronkeeper.service import Service
from tests.conftest import SECRET, FakeClock, make_settings

BACKUP_KEY = "backup-ping-key-0123456789"
DBT_KEY = "dbt-build-ping-key-0123456789"
JOBS = """\
[jobs.backup]
kind = "external"
schedule = "0 3 * * *"
ping_key_env = "BACKUP_PING_KEY"

[jobs.dbt-build]
kind = "external"
schedule = "*/15 * * * *"
window = "1h"
ping_key_env = "DBT_PING_KEY"
"""
ADMIN = {"Authorization": f"Bearer {SECRET}"}
BACKUP = {"Authorization": f"Bearer {BACKUP_KEY}"}


def declare_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cronkeeper.toml").write_text(JOBS)
    monkeypatch.setenv("BACKUP_PING_KEY", BACKUP_KEY)
    monkeypatch.setenv("DBT_PING_KEY", DBT_KEY)


@pytest.fixture
def api(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> Iterator[httpx.Client]:
    declare_jobs(tmp_path, monkeypatch)
    service = Service.from_settings(make_settings(database_url), clock=clock)
    with serve_app(create_app(service)) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client


def test_start_then_finish_records_one_run_and_a_retry_of_the_same_end_is_idempotent(
    api: httpx.Client, clock: FakeClock
) -> None:
    started = api.post("/api/cron/backup/start", headers=BACKUP, json={"reportDate": "2026-11-19"})
    assert started.status_code == 201, started.text
    run_id = started.json()["runId"]
    assert list(started.json()) == ["runId"]
    clock.advance(minutes=3)
    end = {"status": "partial", "recordsCount": 41, "errorMessage": "2 tables skipped"}
    finished = api.post(f"/api/cron/runs/{run_id}/finish", headers=BACKUP, json=end)
    assert finished.status_code == 200, finished.text
    run = finished.json()
    assert run | {"startedAt": None, "finishedAt": None} == {
        "id": run_id,
        "cronName": "backup",
        "startedAt": None,
        "finishedAt": None,
        "status": "partial",
        "recordsCount": 41,
        "durationSeconds": 180.0,
        "errorMessage": "2 tables skipped",
        "reportDate": "2026-11-19",
    }
    again = api.post(f"/api/cron/runs/{run_id}/finish", headers=BACKUP, json=end)
    assert (again.status_code, again.json()) == (200, run)
    other = api.post(f"/api/cron/runs/{run_id}/finish", headers=BACKUP, json={"status": "success"})
    assert other.status_code == 409
    assert other.json()["error"] == f"run {run_id} already ended partial"
    listed = api.get("/api/cron/runs", params={"job": "backup"}, headers=ADMIN).json()["runs"]
    assert [r["id"] for r in listed] == [run_id]
    health = api.get("/api/cron/health", headers=ADMIN).json()
    assert health["checks"]["backup"]["status"] == "partial"
    assert "backup" not in health["missing"]
    assert "dbt-build" in health["missing"]


def test_ping_records_one_finished_run_with_its_duration(
    api: httpx.Client, clock: FakeClock
) -> None:
    pinged = api.post(
        "/api/cron/dbt-build/ping",
        headers={"Authorization": f"Bearer {DBT_KEY}"},
        json={"status": "success", "recordsCount": 7, "durationSeconds": 90.5},
    )
    assert pinged.status_code == 201, pinged.text
    run = pinged.json()
    assert (run["cronName"], run["status"], run["recordsCount"]) == ("dbt-build", "success", 7)
    assert run["durationSeconds"] == 90.5
    assert run["finishedAt"] == clock.now.isoformat()
    assert run["startedAt"] == (clock.now - timedelta(seconds=90.5)).isoformat()
    listed = api.get("/api/cron/runs", params={"job": "dbt-build"}, headers=ADMIN).json()
    assert [r["status"] for r in listed["runs"]] == ["success"]


def test_cron_secret_may_check_in_any_declared_job_and_nothing_else(api: httpx.Client) -> None:
    assert api.post("/api/cron/backup/start", headers=ADMIN).status_code == 201
    assert api.post("/api/cron/collect-daily/start", headers=ADMIN).status_code == 201
    unknown = api.post("/api/cron/nightly/start", headers=ADMIN)
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "unknown job 'nightly'; declare it in cronkeeper.toml"}
    pinged = api.post("/api/cron/nightly/ping", headers=ADMIN, json={"status": "success"})
    assert pinged.status_code == 404
    missing = api.post(
        "/api/cron/runs/2b1e8d1c-5c3e-4a43-9b7e-6f1b2d3c4a5b/finish",
        headers=ADMIN,
        json={"status": "success"},
    )
    assert (missing.status_code, missing.json()["error"]) == (
        404,
        "no run '2b1e8d1c-5c3e-4a43-9b7e-6f1b2d3c4a5b'",
    )
    not_an_id = api.post("/api/cron/runs/42/finish", headers=ADMIN, json={"status": "success"})
    assert not_an_id.status_code == 404


def test_a_ping_key_reports_its_own_job_only_and_reads_nothing(api: httpx.Client) -> None:
    dbt = {"Authorization": f"Bearer {DBT_KEY}"}
    other_job = api.post("/api/cron/backup/start", headers=dbt)
    assert other_job.status_code == 404
    run_id = api.post("/api/cron/backup/start", headers=BACKUP).json()["runId"]
    foreign = api.post(f"/api/cron/runs/{run_id}/finish", headers=dbt, json={"status": "error"})
    assert foreign.status_code == 404
    mine = api.post(f"/api/cron/runs/{run_id}/finish", headers=BACKUP, json={"status": "error"})
    assert mine.status_code == 200 and mine.json()["status"] == "error"
    # Elsewhere a ping key is a wrong secret (and counts as one for the limiter).
    for path in ("/api/cron/health", "/api/cron/runs", "/metrics", "/api/cron/backup"):
        assert api.get(path, headers=BACKUP).status_code == 401, path
    assert api.post("/api/cron/backup/pause", headers=BACKUP).status_code == 401


def test_missing_or_wrong_credentials_are_401_and_a_guesser_is_stopped_at_429(
    api: httpx.Client,
) -> None:
    nothing = api.post("/api/cron/backup/start")
    assert nothing.status_code == 401
    assert nothing.headers["www-authenticate"] == "Bearer"
    for _ in range(5):
        wrong = api.post("/api/cron/backup/start", headers={"Authorization": "Bearer guess"})
        assert wrong.status_code == 401
    blocked = api.post("/api/cron/backup/start", headers=BACKUP)
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    # The same limiter as every door: the health endpoint refuses this client too.
    assert api.get("/api/cron/health", headers=ADMIN).status_code == 429


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"", 400, 'a JSON body is required, e.g. {"status": "success"}'),
        (b"{nope", 400, "the body is not JSON"),
        (b"[1]", 400, "the body must be a JSON object"),
        (b"{}", 400, "status: Field required"),
        (b'{"status": "ok"}', 400, "status: Input should be 'success', 'partial' or 'error'"),
        (
            b'{"status": "success", "recordsCount": -1}',
            400,
            "recordsCount: Input should be greater than or equal to 0",
        ),
        (b'{"status": "success", "recordsCount": "5"}', 400, "recordsCount: Input should be"),
        (
            b'{"status": "success", "records_count": 5}',
            400,
            "records_count: unknown field; fields are status, recordsCount, errorMessage",
        ),
        (b'{"status": "success", "errorMessage": "' + b"x" * 70_000 + b'"}', 413, "body over"),
    ],
)
def test_finish_bodies_are_validated_with_an_error_body(
    api: httpx.Client, body: bytes, status: int, error: str
) -> None:
    run_id = api.post("/api/cron/backup/start", headers=BACKUP).json()["runId"]
    answer = api.post(
        f"/api/cron/runs/{run_id}/finish",
        headers=BACKUP | {"Content-Type": "application/json"},
        content=body,
    )
    assert answer.status_code == status, answer.text
    assert answer.json()["error"].startswith(error), answer.json()
    state = api.get("/api/cron/runs", params={"job": "backup"}, headers=ADMIN).json()["runs"]
    assert state[0]["status"] == "running"  # a refused body changes nothing


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        ("/api/cron/backup/start", {"reportDate": "19/11/2026"}, "reportDate: invalid date"),
        ("/api/cron/backup/start", {"report_date": "2026-11-19"}, "report_date: unknown field"),
        (
            "/api/cron/backup/ping",
            {"status": "success", "durationSeconds": -1},
            "durationSeconds: Input should be greater than or equal to 0",
        ),
        (
            "/api/cron/backup/ping",
            {"status": "success", "durationSeconds": 10**9},
            "durationSeconds: at most 31 days",
        ),
    ],
)
def test_start_and_ping_bodies_are_validated(
    api: httpx.Client, path: str, body: dict[str, object], error: str
) -> None:
    answer = api.post(path, headers=BACKUP, json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"].startswith(error)


def test_error_messages_are_redacted_and_cut_to_4000_characters(api: httpx.Client) -> None:
    message = f"upload failed with token {BACKUP_KEY} and Bearer {SECRET}: " + "y" * 10_000
    answer = api.post(
        "/api/cron/backup/ping",
        headers=BACKUP,
        json={"status": "error", "errorMessage": message},
    )
    assert answer.status_code == 201
    stored = api.get("/api/cron/runs", params={"job": "backup"}, headers=ADMIN).json()["runs"][0]
    text = stored["errorMessage"]
    assert len(text) == 4000 and text.endswith("… [truncated]")
    assert BACKUP_KEY not in text and SECRET not in text


async def test_a_check_in_answers_500_without_driver_text_when_the_database_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    declare_jobs(tmp_path, monkeypatch)
    settings = make_settings("postgresql://u:hunter2hunter2@127.0.0.1:1/none", ledger_timeout=1.0)
    service = Service.from_settings(settings, clock=clock)
    transport = httpx.ASGITransport(app=create_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        started = await client.post("/api/cron/backup/start", headers=BACKUP)
        pinged = await client.post(
            "/api/cron/backup/ping", headers=BACKUP, json={"status": "success"}
        )
        finished = await client.post(
            "/api/cron/runs/2b1e8d1c-5c3e-4a43-9b7e-6f1b2d3c4a5b/finish",
            headers=BACKUP,
            json={"status": "success"},
        )
    await service.aclose()
    for answer in (started, pinged, finished):
        assert (answer.status_code, answer.json()) == (500, {"error": "database unavailable"})


def test_a_late_ping_carries_its_start_and_duration(api: httpx.Client, clock: FakeClock) -> None:
    started = clock.now - timedelta(hours=5)
    late = api.post(
        "/api/cron/backup/ping",
        headers=BACKUP,
        json={"status": "success", "startedAt": started.isoformat(), "durationSeconds": 60},
    )
    assert late.status_code == 201, late.text
    run = late.json()
    assert run["startedAt"] == started.isoformat()
    assert run["finishedAt"] == (started + timedelta(seconds=60)).isoformat()
    future = api.post(
        "/api/cron/backup/ping",
        headers=BACKUP,
        json={"status": "success", "startedAt": (clock.now + timedelta(hours=1)).isoformat()},
    )
    assert future.status_code == 400
    assert future.json()["error"] == "startedAt: in the last 31 days, not later"
    naive = api.post(
        "/api/cron/backup/ping",
        headers=BACKUP,
        json={"status": "success", "startedAt": "2026-11-20T10:00:00"},
    )
    assert naive.json()["error"] == "startedAt: expected ISO 8601 with an offset"
