"""Local simulators of the APIs cronkeeper reads, with deterministic fault injection.

Real HTTP servers (Starlette apps run by uvicorn on ``127.0.0.1``) that speak the shapes of the
Meta Marketing API insights, the Mixpanel Query API ``events`` endpoint and the Notion
data-source query. Tests, benchmarks and ``cronkeeper demo`` use them; production never does.

    sim = MetaSimulator(["123"], access_token="t")
    sim.script("123", Fault.status(429, retry_after="2"), Fault.meta_throttle(17))
    sim.always("456", Fault.status(500))
    with serve_app(sim.app) as base_url:
        ...  # GET {base_url}/v27.0/act_123/insights?...
    sim.log.attempt_gaps("123")  # seconds between the attempts: proves no retry came early

Fault order per request of a unit key: its script (one entry per request), then its
``always`` fault, then the seeded :class:`FaultMix`. See :mod:`cronkeeper.sandbox.faults`.
"""

from cronkeeper.sandbox._asgi import Simulator
from cronkeeper.sandbox.data import (
    DEFAULT_CONVERSION_ACTIONS,
    DEFAULT_LEAD_ACTIONS,
    MetaDay,
    meta_day,
    mixpanel_count,
)
from cronkeeper.sandbox.demo import DemoCredentials, DemoEndpoints, DemoWorld, demo_world
from cronkeeper.sandbox.faults import Fault, FaultKind, FaultMix, FaultPlan, MalformedMode
from cronkeeper.sandbox.log import RequestLog, RequestRecord
from cronkeeper.sandbox.meta import AgencyScenario, MetaAccount, MetaSimulator, agency_scenario
from cronkeeper.sandbox.mixpanel import MixpanelProject, MixpanelSimulator
from cronkeeper.sandbox.notion import (
    NOTION_VERSION,
    NotionAccountPage,
    NotionSimulator,
)
from cronkeeper.sandbox.quota import MetaQuota, QuotaPolicy
from cronkeeper.sandbox.server import SandboxServerError, serve_app, serve_apps

__all__ = [
    "DEFAULT_CONVERSION_ACTIONS",
    "DEFAULT_LEAD_ACTIONS",
    "NOTION_VERSION",
    "AgencyScenario",
    "DemoCredentials",
    "DemoEndpoints",
    "DemoWorld",
    "Fault",
    "FaultKind",
    "FaultMix",
    "FaultPlan",
    "MalformedMode",
    "MetaAccount",
    "MetaDay",
    "MetaQuota",
    "MetaSimulator",
    "MixpanelProject",
    "MixpanelSimulator",
    "NotionAccountPage",
    "NotionSimulator",
    "QuotaPolicy",
    "RequestLog",
    "RequestRecord",
    "SandboxServerError",
    "Simulator",
    "agency_scenario",
    "demo_world",
    "meta_day",
    "mixpanel_count",
    "serve_app",
    "serve_apps",
]
