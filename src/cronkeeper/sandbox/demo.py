"""A ready-made world for ``cronkeeper demo``: three simulators, their faults, fake credentials.

Eight Meta ad accounts in three industries (Retail, SaaS, Travel):

* ``120210000000006`` (Gridwise) always answers HTTP 500: retried, then skipped, run ``partial``;
* ``120210000000002`` and ``120210000000007`` are throttled once: 429 with ``Retry-After: 1``;
* ``120210000000004`` is throttled once with Meta's HTTP-400 code 17 (no usage header, so the
  client's default wait applies);
* ``120210000000003`` spreads each day over three pages (``paging.next``);
* ``120210000000008`` reports in EUR.

The Notion registry lists those eight accounts plus one page ("Juniper Labs") whose ad account
id is ``TBD``: no usable id, so ``sync-notion`` names it and ends ``partial``. One Mixpanel
project (``3141592``) has three events. All tokens are fake strings.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from cronkeeper.sandbox.faults import Fault
from cronkeeper.sandbox.meta import MetaAccount, MetaSimulator
from cronkeeper.sandbox.mixpanel import MixpanelProject, MixpanelSimulator
from cronkeeper.sandbox.notion import NOTION_VERSION, NotionAccountPage, NotionSimulator
from cronkeeper.sandbox.server import serve_apps

__all__ = ["DemoCredentials", "DemoEndpoints", "DemoWorld", "demo_world"]


@dataclass(frozen=True)
class DemoCredentials:
    """The fake secrets and ids the demo world accepts."""

    meta_access_token: str
    meta_api_version: str
    meta_ad_account_ids: tuple[str, ...]
    mixpanel_service_account: str
    mixpanel_service_secret: str
    mixpanel_project_id: str
    mixpanel_events: tuple[str, ...]
    notion_token: str
    notion_data_source_id: str
    notion_version: str = NOTION_VERSION


@dataclass(frozen=True)
class DemoEndpoints:
    """Base URLs of the running simulators, in the form cronkeeper's settings expect."""

    meta_api_base: str
    mixpanel_api_base: str
    notion_api_base: str


@dataclass
class DemoWorld:
    """The simulators of the demo, their credentials and each account's industry."""

    meta: MetaSimulator
    mixpanel: MixpanelSimulator
    notion: NotionSimulator
    credentials: DemoCredentials
    industries: dict[str, str]

    @contextlib.contextmanager
    def serve(self) -> Iterator[DemoEndpoints]:
        """Run the three simulators on loopback for the duration of the block."""
        with serve_apps(self.meta.app, self.mixpanel.app, self.notion.app) as urls:
            meta, mixpanel, notion = urls
            yield DemoEndpoints(
                meta_api_base=meta,
                mixpanel_api_base=f"{mixpanel}/api/query",
                notion_api_base=notion,
            )

    def environment(self, endpoints: DemoEndpoints) -> dict[str, str]:
        """The cronkeeper environment variables that point a run at this world.

        ``META_AD_ACCOUNT_IDS`` is left out on purpose: the accounts come from ``sync-notion``.
        """
        c = self.credentials
        return {
            "META_API_BASE": endpoints.meta_api_base,
            "META_API_VERSION": c.meta_api_version,
            "META_ACCESS_TOKEN": c.meta_access_token,
            # The simulator's throttles last seconds, not Meta's blocking period (300 s by
            # default when Meta gives no estimate): a demo must not sit still for 5 minutes.
            "META_THROTTLE_BLOCK": "2",
            "MIXPANEL_API_BASE": endpoints.mixpanel_api_base,
            "MIXPANEL_SERVICE_ACCOUNT": c.mixpanel_service_account,
            "MIXPANEL_SERVICE_SECRET": c.mixpanel_service_secret,
            "MIXPANEL_PROJECT_ID": c.mixpanel_project_id,
            "MIXPANEL_EVENTS": ",".join(c.mixpanel_events),
            "NOTION_API_BASE": endpoints.notion_api_base,
            "NOTION_TOKEN": c.notion_token,
            "NOTION_DATA_SOURCE_ID": c.notion_data_source_id,
        }


#: (name, ad account id, industry, currency, pages)
_ACCOUNTS: tuple[tuple[str, str, str, str, int], ...] = (
    ("Acme Outfitters", "120210000000001", "Retail", "USD", 1),
    ("Blue Harbor Goods", "120210000000002", "Retail", "USD", 1),
    ("Cedar & Pine Home", "120210000000003", "Retail", "USD", 3),
    ("Dataloom", "120210000000004", "SaaS", "USD", 1),
    ("Ferrous Cloud", "120210000000005", "SaaS", "USD", 1),
    ("Gridwise", "120210000000006", "SaaS", "USD", 1),
    ("Horizon Trails", "120210000000007", "Travel", "USD", 1),
    ("Isla Getaways", "120210000000008", "Travel", "EUR", 1),
)
ALWAYS_FAILING_ACCOUNT = "120210000000006"


def demo_world(*, seed: int = 0, latency: float = 0.02) -> DemoWorld:
    """A fresh demo world (fresh fault scripts and logs each call)."""
    # fake secrets of a local sandbox
    credentials = DemoCredentials(
        meta_access_token="demo-meta-access-token",  # noqa: S106
        meta_api_version="v27.0",
        meta_ad_account_ids=tuple(acc_id for _, acc_id, _, _, _ in _ACCOUNTS),
        mixpanel_service_account="demo.mp-service-account",
        mixpanel_service_secret="demo-mixpanel-secret",  # noqa: S106
        mixpanel_project_id="3141592",
        mixpanel_events=("Sign Up", "Add to Cart", "Purchase"),
        notion_token="ntn_demo_notion_token",  # noqa: S106
        notion_data_source_id="1f2e3d4c-5b6a-4978-8a1b-2c3d4e5f6a7b",
    )
    meta = MetaSimulator(
        [
            MetaAccount(acc_id, currency=currency, pages=pages)
            for _, acc_id, _, currency, pages in _ACCOUNTS
        ],
        access_token=credentials.meta_access_token,
        seed=seed,
        latency=latency,
        scripts={
            "120210000000002": [Fault.status(429, retry_after="1")],
            "120210000000007": [Fault.status(429, retry_after="1")],
            "120210000000004": [Fault.meta_throttle(17)],
        },
        always={ALWAYS_FAILING_ACCOUNT: Fault.status(500)},
    )
    mixpanel = MixpanelSimulator(
        [MixpanelProject(credentials.mixpanel_project_id)],
        service_account=credentials.mixpanel_service_account,
        service_secret=credentials.mixpanel_service_secret,
        seed=seed,
        latency=latency,
    )
    project = int(credentials.mixpanel_project_id)
    pages = [
        NotionAccountPage(
            name=name,
            # both spellings occur in real registries
            ad_account_id=f"act_{acc_id}" if i % 2 == 0 else acc_id,
            industry=industry,
            active=True,
            mixpanel_project_id=project if industry == "Retail" else None,
        )
        for i, (name, acc_id, industry, _, _) in enumerate(_ACCOUNTS)
    ]
    pages.append(
        NotionAccountPage(name="Juniper Labs", ad_account_id="TBD", industry="SaaS", active=True)
    )
    notion = NotionSimulator(
        pages,
        data_source_id=credentials.notion_data_source_id,
        token=credentials.notion_token,
        latency=latency,
    )
    return DemoWorld(
        meta=meta,
        mixpanel=mixpanel,
        notion=notion,
        credentials=credentials,
        industries={acc_id: industry for _, acc_id, industry, _, _ in _ACCOUNTS},
    )
