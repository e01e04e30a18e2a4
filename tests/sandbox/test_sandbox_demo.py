"""The ready-made world behind ``cronkeeper demo``."""

from __future__ import annotations

import json

import httpx

from cronkeeper.sandbox import NOTION_VERSION, demo_world
from tests.sandbox.helpers import DAY, meta_params


def test_demo_world_contents() -> None:
    world = demo_world()
    c = world.credentials

    assert len(world.meta.accounts) == 8
    assert sorted(set(world.industries.values())) == ["Retail", "SaaS", "Travel"]
    assert len(world.notion.pages) == 9
    unusable = [p for p in world.notion.pages if p.ad_account_id == "TBD"]
    assert len(unusable) == 1
    assert list(world.mixpanel.projects) == [c.mixpanel_project_id]
    assert len(c.mixpanel_events) == 3
    assert set(c.meta_ad_account_ids) == set(world.meta.accounts)


def test_demo_world_serves_its_scenario() -> None:
    world = demo_world(latency=0)
    c = world.credentials
    with world.serve() as endpoints, httpx.Client() as client:
        env = world.environment(endpoints)
        assert env["MIXPANEL_API_BASE"].endswith("/api/query")

        notion = client.post(
            f"{env['NOTION_API_BASE']}/v1/data_sources/{c.notion_data_source_id}/query",
            json={"page_size": 100},
            headers={"Authorization": f"Bearer {c.notion_token}", "Notion-Version": NOTION_VERSION},
        )
        assert len(notion.json()["results"]) == 9

        def meta(account: str) -> int:
            response = client.get(
                f"{env['META_API_BASE']}/{c.meta_api_version}/act_{account}/insights",
                params=meta_params(token=c.meta_access_token),
            )
            return response.status_code

        statuses = {a: [meta(a), meta(a)] for a in c.meta_ad_account_ids}
        mixpanel = client.get(
            f"{env['MIXPANEL_API_BASE']}/events",
            params={
                "project_id": env["MIXPANEL_PROJECT_ID"],
                "event": json.dumps(env["MIXPANEL_EVENTS"].split(",")),
                "type": "general",
                "unit": "day",
                "from_date": DAY.isoformat(),
                "to_date": DAY.isoformat(),
            },
            auth=(c.mixpanel_service_account, c.mixpanel_service_secret),
        )

    assert statuses["120210000000006"] == [500, 500]
    assert statuses["120210000000002"] == [429, 200]
    assert statuses["120210000000007"] == [429, 200]
    assert statuses["120210000000004"] == [400, 200]
    assert sum(s == [200, 200] for s in statuses.values()) == 4
    assert mixpanel.status_code == 200
    assert mixpanel.json()["legend_size"] == 3


def test_the_demo_does_not_wait_out_metas_blocking_period() -> None:
    """`make demo` once sat 300 s in collect-daily: a simulated 429 carries no estimate, so
    the run waited META_THROTTLE_BLOCK (Meta's 300 s). The demo's throttles last seconds."""
    from cronkeeper.config import Settings
    from cronkeeper.sandbox.demo import DemoEndpoints

    world = demo_world(latency=0)
    endpoints = DemoEndpoints("http://m", "http://x/api/query", "http://n")
    settings = Settings(_env_file=None, **world.environment(endpoints))  # type: ignore[arg-type]
    assert settings.meta_throttle_block <= 5
