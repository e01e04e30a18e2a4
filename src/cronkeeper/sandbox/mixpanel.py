"""A local Mixpanel Query API: ``GET /api/query/events`` with service-account Basic auth.

Clients use ``{base_url}/api/query`` as ``MIXPANEL_API_BASE``. The unit key of a request is its
``project_id``.

With a ``clock``, counts are those of the project's own days (Mixpanel buckets ``unit=day`` in
the project's time zone, ``MixpanelProject.timezone_name``): a day not begun there counts
nothing yet and today only the share of the day elapsed. Without a clock every day is whole.
The Query API's per-project limits are enforced ("A maximum of 5 concurrent queries and 60
queries per hour", scoped per project: https://docs.mixpanel.com/reference/rate-limits): a
6th query of a project while 5 are being answered is refused 429 always; with a clock, a 61st
query of a project within an hour is too.

Each project lives in one data-residency cluster (``MixpanelProject.region``: ``us``, ``eu``
or ``in``), served at its own host: mixpanel.com, eu.mixpanel.com, in.mixpanel.com (Mixpanel's
API overview, https://docs.mixpanel.com/reference/overview). A request whose ``Host`` names
another cluster is answered as Mixpanel does, HTTP 400 ``{"request": …, "error": "request
failed with error: invalid project id for cluster."}`` (reported against an EU project queried
on mixpanel.com: dragonkhoi/mixpanel-mcp issue #5). A loopback ``Host`` stands for every
cluster, so tests that point ``MIXPANEL_API_BASE`` here need not care.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from cronkeeper.sandbox._asgi import Reply, SimRequest, Simulator, json_reply
from cronkeeper.sandbox.data import date_range, mixpanel_count
from cronkeeper.sandbox.faults import Fault, FaultMix

__all__ = ["CLUSTER_HOSTS", "MixpanelProject", "MixpanelSimulator"]

_PATH = "/api/query/events"
_NAMES = "/api/query/events/names"
CLUSTER_HOSTS = {"us": "mixpanel.com", "eu": "eu.mixpanel.com", "in": "in.mixpanel.com"}
QUERIES_PER_HOUR = 60
CONCURRENT_QUERIES = 5
_STATUS_MESSAGES = {
    408: "Request timed out",
    429: "Query rate limit exceeded",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


@dataclass(frozen=True)
class MixpanelProject:
    """A project the service account may query; ``absent_events`` never appear in ``values``."""

    project_id: str
    absent_events: frozenset[str] = field(default_factory=frozenset)
    timezone_name: str = "UTC"
    region: str = "us"
    event_names: tuple[str, ...] | None = None
    """What ``GET /events/names`` lists; ``None``: the events the project was asked about so
    far (every name it counts), sorted."""

    def __post_init__(self) -> None:
        if self.region not in CLUSTER_HOSTS:
            raise ValueError(f"region must be one of {sorted(CLUSTER_HOSTS)}")
        object.__setattr__(self, "project_id", str(self.project_id).strip())
        object.__setattr__(self, "absent_events", frozenset(self.absent_events))


class MixpanelSimulator(Simulator):
    """Mixpanel event counts with deterministic data
    (:func:`~cronkeeper.sandbox.data.mixpanel_count`)."""

    def __init__(
        self,
        projects: Iterable[MixpanelProject | str | int],
        *,
        service_account: str = "sandbox.mp-service-account",
        service_secret: str = "sandbox-mixpanel-secret",  # noqa: S107 - fake
        seed: int = 0,
        latency: float = 0.0,
        scripts: Mapping[str | int, Sequence[Fault | None]] | None = None,
        always: Mapping[str | int, Fault] | None = None,
        mix: FaultMix | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.clock = clock
        self._queries: dict[str, list[datetime]] = {}
        self.asked: dict[str, set[str]] = {}
        """Event names asked for per project: what ``/events/names`` lists by default."""
        self.service_account = service_account
        self.service_secret = service_secret
        self.seed = seed
        self.projects: dict[str, MixpanelProject] = {}
        for project in projects:
            proj = (
                project if isinstance(project, MixpanelProject) else MixpanelProject(str(project))
            )
            self.projects[proj.project_id] = proj
        super().__init__(latency=latency, scripts=scripts, always=always, mix=mix)

    def expected_count(self, project_id: str | int, event: str, day: date) -> int:
        """The count served for that event and day (0 when configured absent)."""
        project = self.projects.get(str(project_id))
        if project is not None and event in project.absent_events:
            return 0
        return mixpanel_count(str(project_id), event, day, seed=self.seed)

    def served_count(self, project_id: str | int, event: str, day: date) -> int:
        """The count answered right now: whole days, today's share, nothing for later days."""
        whole = self.expected_count(project_id, event, day)
        project = self.projects.get(str(project_id))
        if self.clock is None or project is None:
            return whole
        local = self.clock().astimezone(ZoneInfo(project.timezone_name))
        if day > local.date():
            return 0
        if day == local.date():
            midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
            return round(whole * (local - midnight).total_seconds() / 86_400)
        return whole

    # -- Simulator ----------------------------------------------------------------------------

    def route_key(self, request: SimRequest) -> str | None:
        if request.path.rstrip("/") not in (_PATH, _NAMES):
            return None
        return request.query.get("project_id") or None

    def status_reply(self, status: int) -> Reply:
        return _error(status, _STATUS_MESSAGES.get(status, f"HTTP {status}"))

    def handle(self, request: SimRequest, key: str | None) -> Reply:
        if request.path.rstrip("/") == _NAMES:
            return self._names(request, key)
        if request.path.rstrip("/") != _PATH:
            return _error(404, f"Unknown endpoint {request.path}")
        if request.method != "GET":
            return _error(405, f"Method {request.method} not allowed")
        found = self._project(request, key)
        if not isinstance(found, tuple):
            return found
        key, project = found
        host = request.headers.get("host", "").rsplit(":", 1)[0].lower()
        if host in CLUSTER_HOSTS.values() and host != CLUSTER_HOSTS[project.region]:
            target = f"{request.path}?{urlencode(request.query_items)}"
            body = {
                "request": target,
                "error": "request failed with error: invalid project id for cluster.",
            }
            return json_reply(400, body)
        if self.in_flight_for(key) > CONCURRENT_QUERIES:
            return _error(429, "Query rate limit exceeded: 5 concurrent queries per project")
        if self._over_hourly_limit(key):
            return _error(429, "Query rate limit exceeded: 60 queries per hour per project")
        events = _parse_events(request.query.get("event"))
        if events is None:
            return _error(400, "event must be a JSON list of event names")
        kind = request.query.get("type", "general")
        if kind not in ("general", "unique", "average"):
            return _error(400, f"type must be general, unique or average, not {kind}")
        unit = request.query.get("unit", "day")
        if unit != "day":
            return _error(400, f"the sandbox serves unit=day only, not {unit}")
        try:
            since = date.fromisoformat(request.query["from_date"])
            until = date.fromisoformat(request.query["to_date"])
        except (KeyError, ValueError):
            return _error(400, "from_date and to_date must be dates formatted as YYYY-MM-DD")
        if since > until:
            return _error(400, "from_date must not be after to_date")
        self.asked.setdefault(key, set()).update(events)
        days = [d.isoformat() for d in date_range(since, until)]
        values = {
            event: {d: self.served_count(key, event, date.fromisoformat(d)) for d in days}
            for event in events
            if event not in project.absent_events
        }
        return json_reply(
            200, {"data": {"series": days, "values": values}, "legend_size": len(values)}
        )

    def _names(self, request: SimRequest, key: str | None) -> Reply:
        """``GET /events/names``: "a list of the most common events over the last 31 days",
        a JSON array of strings, ``limit`` default 255 (Mixpanel's OpenAPI file
        ``openapi/query.openapi.yaml``, ``/events/names``). Auth and project as ``/events``:
        401 without valid service-account credentials, 403 for a project it may not read."""
        found = self._project(request, key)
        if not isinstance(found, tuple):
            return found
        key, project = found
        raw = request.query.get("limit", "255")
        limit = int(raw) if raw.isdigit() else 255
        names = project.event_names
        if names is None:
            names = tuple(sorted(self.asked.get(key, set()) - project.absent_events))
        return json_reply(200, list(names)[:limit])

    def _over_hourly_limit(self, project: str) -> bool:
        """Count this query; whether the project already had 60 in the last hour."""
        if self.clock is None:
            return False
        now = self.clock()
        recent = [t for t in self._queries.get(project, []) if (now - t).total_seconds() < 3600]
        if len(recent) >= QUERIES_PER_HOUR:
            self._queries[project] = recent
            return True
        self._queries[project] = [*recent, now]
        return False

    def _project(self, request: SimRequest, key: str | None) -> tuple[str, MixpanelProject] | Reply:
        """The project a request may read, or its refusal: 401 without valid service-account
        credentials, 400 without ``project_id``, 403 for a project it may not read."""
        if not self._authorised(request.headers.get("authorization", "")):
            return _error(401, "Unable to authenticate request").with_headers(
                ("WWW-Authenticate", 'Basic realm="Mixpanel"')
            )
        if key is None:
            return _error(400, "project_id is required when authenticating as a service account")
        project = self.projects.get(key)
        if project is None:
            return _error(403, f"Permission denied: no access to project {key}")
        return key, project

    def _authorised(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user_ok = hmac.compare_digest(user.encode(), self.service_account.encode())
        secret_ok = hmac.compare_digest(secret.encode(), self.service_secret.encode())
        return bool(sep) and user_ok and secret_ok


def _error(status: int, message: str) -> Reply:
    return json_reply(status, {"error": message, "status": "error"})


def _parse_events(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(e, str) for e in value):
        return None
    return list(dict.fromkeys(value))
