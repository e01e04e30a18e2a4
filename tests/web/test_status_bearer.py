"""`/status` also opens with `Authorization: Bearer` (issue 22 point 6): monitors and screenshot
tools cannot fill a login form. Through the one door: the same limiter as every other."""

from __future__ import annotations

import httpx

from cronkeeper.service import Service
from tests.conftest import SECRET

BEARER = {"Authorization": f"Bearer {SECRET}"}
WRONG = {"Authorization": f"Bearer {SECRET}-not"}


async def test_the_bearer_opens_the_page_and_a_run(
    service: Service, client: httpx.AsyncClient
) -> None:
    await service.prepare()
    run = await service.ledger.start_cron_run("collect-daily")
    await service.ledger.complete_cron_run(run, "success", 7, None)
    page = await client.get("/status", headers=BEARER)
    assert page.status_code == 200
    assert 'id="job-collect-daily"' in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    detail = await client.get(f"/status/runs/{run}", headers=BEARER)
    assert detail.status_code == 200
    assert run in detail.text


async def test_without_a_header_a_person_still_gets_the_login(client: httpx.AsyncClient) -> None:
    response = await client.get("/status")
    assert response.status_code == 303
    assert response.headers["location"] == "/status/login"


async def test_wrong_bearers_are_refused_and_limited_like_every_door(
    service: Service, client: httpx.AsyncClient
) -> None:
    await service.prepare()
    for _ in range(5):
        wrong = await client.get("/status", headers=WRONG)
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"] == "Bearer"
        assert SECRET not in wrong.text
    limited = await client.get("/status", headers=BEARER)  # even the right one, now
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    # The same limiter as the login form: a person from that address waits too.
    login = await client.post("/status/login", data={"secret": SECRET})
    assert login.status_code == 429
