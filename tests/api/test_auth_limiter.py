"""One limiter of wrong secrets for every door that checks ``CRON_SECRET`` (issue 12, item 10).

Over real uvicorn (the client address is the socket's), on a fake clock: nothing sleeps.
Before the fix the bearer API took unlimited wrong secrets and logged none, and only the
status page's login was limited, on a limiter of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cronkeeper.api.app import create_app
from cronkeeper.sandbox import serve_app
from cronkeeper.service import Service
from tests.conftest import SECRET, FakeClock, make_settings

AUTH = {"Authorization": f"Bearer {SECRET}"}
WRONG = "wrong-secret-0123456789"


@pytest.fixture
def served(tmp_path: Path, clock: FakeClock) -> Iterator[str]:
    # No database is touched: /openapi.json and the login form need none.
    service = Service.from_settings(make_settings(f"sqlite:///{tmp_path}/ck.db"), clock=clock)
    with serve_app(create_app(service, own_service=False)) as url:
        yield url


def wrong_bearer(http: httpx.Client, path: str = "/api/cron/health") -> httpx.Response:
    return http.get(path, headers={"Authorization": f"Bearer {WRONG}"})


def test_the_sixth_wrong_bearer_is_429_with_retry_after_even_with_the_right_one_next(
    served: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cronkeeper.api")
    with httpx.Client(base_url=served) as http:
        doors = ("/api/cron/health", "/api/cron/runs", "/api/cron/sync-notion", "/metrics")
        for path in (*doors, "/openapi.json"):
            response = wrong_bearer(http, path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
        blocked = wrong_bearer(http)
        assert blocked.status_code == 429
        assert blocked.headers["retry-after"] == "300"  # 5 failures in a 5-minute window
        right = http.get("/openapi.json", headers=AUTH)
        assert right.status_code == 429  # a guesser gains nothing by guessing right now
        clock.advance(seconds=299)
        assert http.get("/openapi.json", headers=AUTH).headers["retry-after"] == "1"
        clock.advance(seconds=1)
        assert http.get("/openapi.json", headers=AUTH).status_code == 200
    failures = [r.getMessage() for r in caplog.records if "wrong bearer token" in r.getMessage()]
    assert len(failures) == 5
    assert all("127.0.0.1" in line for line in failures)
    assert not any(WRONG in r.getMessage() or SECRET in r.getMessage() for r in caplog.records)


def test_a_request_without_credentials_is_401_and_not_counted(served: str) -> None:
    with httpx.Client(base_url=served) as http:
        for _ in range(10):
            assert http.get("/api/cron/health").status_code == 401
        assert http.get("/openapi.json", headers=AUTH).status_code == 200


def test_the_bearer_api_and_the_status_login_share_one_limit(served: str, clock: FakeClock) -> None:
    with httpx.Client(base_url=served) as http:
        for _ in range(3):
            assert wrong_bearer(http).status_code == 401
        for _ in range(2):
            login = http.post("/status/login", data={"secret": WRONG})
            assert login.status_code == 401
        refused = http.post("/status/login", data={"secret": SECRET})
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "300"
        assert "set-cookie" not in refused.headers
        assert wrong_bearer(http).status_code == 429
        clock.advance(minutes=5)
        assert http.post("/status/login", data={"secret": SECRET}).status_code == 303
