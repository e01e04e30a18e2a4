"""The Mixpanel Query API simulator over real HTTP."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from cronkeeper.sandbox import Fault, MixpanelProject, MixpanelSimulator
from tests.sandbox.helpers import DAY, Serve

AUTH = ("sa.user", "sa-secret")


def _sim(**kwargs: Any) -> MixpanelSimulator:
    projects: list[MixpanelProject | str] = [
        MixpanelProject("4242", absent_events=frozenset({"Never Fired"})),
        "5151",
    ]
    return MixpanelSimulator(
        projects,
        service_account=AUTH[0],
        service_secret=AUTH[1],
        **kwargs,
    )


def _get(
    base: str,
    events: list[str],
    project: str = "4242",
    auth: tuple[str, str] | None = AUTH,
    **extra: str,
) -> httpx.Response:
    params = {
        "project_id": project,
        "event": json.dumps(events),
        "type": "general",
        "unit": "day",
        "from_date": DAY.isoformat(),
        "to_date": DAY.isoformat(),
        **extra,
    }
    return httpx.get(f"{base}/api/query/events", params=params, auth=auth)


def test_success_shape_and_counts(serve: Serve) -> None:
    sim = _sim()
    response = _get(serve(sim), ["Sign Up", "Purchase"])

    assert response.status_code == 200
    d = DAY.isoformat()
    assert response.json() == {
        "data": {
            "series": [d],
            "values": {
                "Sign Up": {d: sim.expected_count("4242", "Sign Up", DAY)},
                "Purchase": {d: sim.expected_count("4242", "Purchase", DAY)},
            },
        },
        "legend_size": 2,
    }


def test_absent_event_is_missing_from_values(serve: Serve) -> None:
    sim = _sim()
    body = _get(serve(sim), ["Sign Up", "Never Fired"]).json()

    assert set(body["data"]["values"]) == {"Sign Up"}
    assert body["legend_size"] == 1
    assert sim.expected_count("4242", "Never Fired", DAY) == 0


def test_date_range_gives_one_series_entry_per_day(serve: Serve) -> None:
    body = _get(serve(_sim()), ["A"], from_date="2025-03-01", to_date="2025-03-03").json()

    assert body["data"]["series"] == ["2025-03-01", "2025-03-02", "2025-03-03"]
    assert list(body["data"]["values"]["A"]) == body["data"]["series"]


@pytest.mark.parametrize("auth", [None, ("sa.user", "wrong"), ("other", "sa-secret")])
def test_bad_basic_auth_is_401_json(serve: Serve, auth: tuple[str, str] | None) -> None:
    response = _get(serve(_sim()), ["A"], auth=auth)

    assert response.status_code == 401
    assert response.json()["error"]
    assert response.headers["www-authenticate"].startswith("Basic")


def test_unknown_project_is_refused(serve: Serve) -> None:
    assert _get(serve(_sim()), ["A"], project="999").status_code == 403


def test_event_must_be_a_json_list(serve: Serve) -> None:
    base = serve(_sim())
    response = httpx.get(
        f"{base}/api/query/events",
        params={
            "project_id": "4242",
            "event": "Sign Up",
            "from_date": "2025-03-14",
            "to_date": "2025-03-14",
        },
        auth=AUTH,
    )

    assert response.status_code == 400


def test_faults_are_keyed_by_project(serve: Serve) -> None:
    sim = _sim(scripts={"4242": [Fault.status(429, "1"), Fault.status(502)]})
    base = serve(sim)

    assert _get(base, ["A"], project="5151").status_code == 200
    assert [_get(base, ["A"]).status_code for _ in range(3)] == [429, 502, 200]
    assert [r.status for r in sim.records_for(4242)] == [429, 502, 200]


def test_mixpanel_error_body_for_a_fault(serve: Serve) -> None:
    response = _get(serve(_sim(scripts={"4242": [Fault.status(429, "3")]})), ["A"])

    assert response.headers["retry-after"] == "3"
    assert response.json() == {"error": "Query rate limit exceeded", "status": "error"}


def test_same_seed_same_counts(serve: Serve) -> None:
    first = _get(serve(_sim(seed=1)), ["A", "B"]).json()
    again = _get(serve(_sim(seed=1)), ["A", "B"]).json()
    other = _get(serve(_sim(seed=2)), ["A", "B"]).json()

    assert first == again
    assert first != other


def test_with_a_clock_the_61st_query_of_a_project_within_an_hour_is_429(serve: Serve) -> None:
    """Mixpanel's Query API: 60 queries per hour, scoped per project (its rate-limits page)."""
    now = [datetime(2026, 11, 20, 12, 0, tzinfo=UTC)]
    base = serve(_sim(clock=lambda: now[0]))

    def query(project: str) -> int:
        return _get(base, ["signup"], project=project).status_code

    assert [query("4242") for _ in range(60)] == [200] * 60
    assert query("4242") == 429
    assert query("5151") == 200  # another project has its own budget
    now[0] += timedelta(minutes=61)
    assert query("4242") == 200


def test_a_sixth_concurrent_query_of_a_project_is_429(serve: Serve) -> None:
    """Mixpanel's Query API: at most 5 concurrent queries per project (its rate-limits page).

    Each answer takes 0.5 s, so six queries sent at once overlap: one is refused, and a query
    of another project at the same time is not.
    """
    from concurrent.futures import ThreadPoolExecutor

    base = serve(_sim(latency=0.5))
    projects = ["4242"] * 6 + ["5151"]
    with ThreadPoolExecutor(max_workers=len(projects)) as pool:
        statuses = list(pool.map(lambda p: _get(base, ["signup"], project=p).status_code, projects))
    assert sorted(statuses[:6]) == [200] * 5 + [429]
    assert statuses[6] == 200
    assert _get(base, ["signup"]).status_code == 200  # once they are answered, room again
