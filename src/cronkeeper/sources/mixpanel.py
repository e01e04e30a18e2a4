"""Mixpanel Query API: daily totals of the configured events, one range query per project.

The answer of ``GET /events`` is ``{"data": {"series": [D…], "values": {event: {D: n}}},
"legend_size": n}`` (Mixpanel's OpenAPI file ``openapi/query.openapi.yaml``, ``/events``:
``values`` "Keys are the names of events", each "A mapping of the date of each unit to the
number of events"; ``series`` "All dates included in values"; its example lists a date in
``series`` that one event's mapping lacks). So a day missing from a *present* event's mapping
is a count of 0, and the parser returns one record per day for it, which makes a re-run
overwrite a stale count with 0 instead of leaving it behind.

A requested event missing from ``values`` altogether is not taken as 0: the parser returns no
record for it, and the job decides (:mod:`cronkeeper.jobs.collect_mixpanel`: it never writes
zeros over stored counts, issue 19).

Days are the project's own: Mixpanel buckets ``unit=day`` in the project's time zone (its
project settings; "the Mixpanel API returns timestamps based on your project's time zone
settings", Fivetran's Mixpanel connector notes). One query covers ``from_date`` … ``to_date``:
the Query API allows 60 queries an hour and 5 at once per project
(https://docs.mixpanel.com/reference/rate-limits), so a range costs one of them, not N.

Every query waits for a slot of :data:`QUERY_API_QUOTA` first, so the client never provokes
the 429 Mixpanel answers past its limits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

from cronkeeper.errors import ConfigError, PayloadError
from cronkeeper.http.limits import Quota
from cronkeeper.sources._payload import decode_json, describe, non_negative_int

if TYPE_CHECKING:
    from cronkeeper.config import Settings
    from cronkeeper.http import HttpContext

__all__ = [
    "QUERY_API_BASES",
    "QUERY_API_QUOTA",
    "MixpanelClient",
    "MixpanelCount",
    "parse_event_counts",
    "parse_event_names",
]

# The Query API's host per data residency: "Standard Server: mixpanel.com/api, EU Residency
# Server: eu.mixpanel.com/api, India Residency Server: in.mixpanel.com/api" (Mixpanel's API
# overview, https://docs.mixpanel.com/reference/overview; Mixpanel's OpenAPI query spec,
# mixpanel/docs openapi/src/query.openapi.yaml, serves ``https://{regionAndDomain}.com/api/query``
# with ``mixpanel`` and ``eu.mixpanel``). A project asked on another cluster's host answers 400
# "invalid project id for cluster".
QUERY_API_BASES = {
    "us": "https://mixpanel.com/api/query",
    "eu": "https://eu.mixpanel.com/api/query",
    "in": "https://in.mixpanel.com/api/query",
}

# "Query API: A maximum of 5 concurrent queries and 60 queries per hour", and "these rate
# limits are scope per project": https://docs.mixpanel.com/reference/rate-limits
QUERY_API_QUOTA = Quota(
    "Mixpanel's Query API", requests=60, window=3600.0, concurrent=5, per="project"
)


@dataclass(frozen=True)
class MixpanelCount:
    """How many times one event happened in one project on one day."""

    project_id: str
    event: str
    date: date
    count: int


def parse_event_counts(
    payload: object,
    *,
    project_id: str,
    events: Sequence[str],
    day: date,
    until: date | None = None,
) -> list[MixpanelCount]:
    """One record per requested event present in the answer (duplicates once, in request
    order) and per day of ``day`` … ``until`` (default: ``day`` alone), event by event. An
    event absent from ``values`` has no record (see the module's docstring).

    Raises :class:`PayloadError` naming the project and the field when the answer does not
    have the documented shape or a count is not a non-negative integer.
    """
    unit = f"Mixpanel project {project_id}"
    if not isinstance(payload, dict):
        raise PayloadError(f"{unit}: expected a JSON object, got {describe(payload)}")
    data = payload.get("data")
    if not isinstance(data, dict):
        raise PayloadError(f"{unit}: field 'data': expected an object, got {describe(data)}")
    series = data.get("series")
    if series is not None and not (
        isinstance(series, list) and all(isinstance(d, str) for d in series)
    ):
        raise PayloadError(
            f"{unit}: field 'data.series': expected a list of dates, got {describe(series)}"
        )
    values = data.get("values")
    if not isinstance(values, dict):
        raise PayloadError(
            f"{unit}: field 'data.values': expected an object of events, got {describe(values)}"
        )
    last = until or day
    days = [day + timedelta(days=i) for i in range((last - day).days + 1)]
    records: list[MixpanelCount] = []
    for event in dict.fromkeys(events):
        by_day = values.get(event)
        where = f"{unit}: event {event!r}"
        if by_day is None:
            continue
        if not isinstance(by_day, dict):
            raise PayloadError(
                f"{where}: field 'data.values': expected an object of daily counts, "
                f"got {describe(by_day)}"
            )
        for one in days:
            key = one.isoformat()
            raw = by_day.get(key)
            if isinstance(raw, str):  # counts are JSON integers; a string is not one
                raise PayloadError(f"{where} on {key}: expected an integer count, got {raw!r}")
            count = non_negative_int(raw, f"{where} on {key}")
            records.append(MixpanelCount(project_id, event, one, count))
    return records


def parse_event_names(payload: object, *, project_id: str) -> tuple[str, ...]:
    """The names of ``GET /events/names``: a JSON list of strings (Mixpanel's OpenAPI file
    ``openapi/query.openapi.yaml``, ``/events/names``, "Top Events": "a list of the most
    common events over the last 31 days", schema ``type: array`` of ``string``)."""
    unit = f"Mixpanel project {project_id}: event names"
    if not isinstance(payload, list) or not all(isinstance(n, str) for n in payload):
        raise PayloadError(f"{unit}: expected a list of names, got {describe(payload)}")
    return tuple(payload)


class MixpanelClient:
    """Calls the Query API's ``/events`` endpoint with a service account."""

    def __init__(
        self,
        http: HttpContext,
        *,
        base: str,
        service_account: str,
        secret: str,
        project_bases: Mapping[str, str] | None = None,
    ) -> None:
        self._http = http
        self._base = base.rstrip("/")
        self._project_bases = {k: v.rstrip("/") for k, v in (project_bases or {}).items()}
        """Per-project Query API bases (their data residency); others use ``base``."""
        # A tuple, not httpx.BasicAuth: the HTTP layer then knows the password to redact.
        self._auth = (service_account, secret)

    @classmethod
    def from_settings(cls, http: HttpContext, settings: Settings) -> MixpanelClient:
        """The client for this configuration; ``ConfigError`` without the service account."""
        secret = settings.mixpanel_service_secret
        if not settings.mixpanel_service_account or secret is None:
            raise ConfigError(
                "MIXPANEL_SERVICE_ACCOUNT and MIXPANEL_SERVICE_SECRET must both be set: "
                "collect-mixpanel cannot call Mixpanel"
            )
        override = settings.mixpanel_base_override
        return cls(
            http,
            base=override or QUERY_API_BASES["us"],
            service_account=settings.mixpanel_service_account,
            secret=secret.get_secret_value(),
            # MIXPANEL_API_BASE, when set, serves every project; else each its region's host.
            project_bases=None
            if override
            else {p: QUERY_API_BASES[r] for p, r in settings.mixpanel_regions.items()},
        )

    def base_for(self, project_id: str) -> str:
        """The Query API base that serves ``project_id`` (its region's, or the override)."""
        return self._project_bases.get(project_id, self._base)

    async def event_names(self, project_id: str, *, limit: int = 255) -> tuple[str, ...]:
        """The project's most common event names of the last 31 days (``GET /events/names``,
        ``type=general``, ``limit`` default 255 as documented in Mixpanel's OpenAPI file
        ``openapi/query.openapi.yaml``). A name missing here may be a typo, or an event too
        rare to be among the top ``limit``: the doctor warns, it does not fail."""
        unit = f"Mixpanel project {project_id}"
        return await self._http.fetch_parsed(
            "GET",
            f"{self.base_for(project_id)}/events/names",
            lambda response: parse_event_names(decode_json(response, unit), project_id=project_id),
            params={"project_id": project_id, "type": "general", "limit": str(limit)},
            auth=self._auth,
            limit=QUERY_API_QUOTA.of(f"project {project_id}"),
        )

    async def event_counts(
        self, project_id: str, events: Sequence[str], day: date, until: date | None = None
    ) -> list[MixpanelCount]:
        """Counts of ``events`` in ``project_id`` on every day of ``day`` … ``until`` (default
        ``day`` alone), in one query; no request when ``events`` is empty. Raises
        :class:`PayloadError` or the HTTP layer's :class:`FetchError` family."""
        if not events:
            return []
        last = until or day
        wanted = list(dict.fromkeys(events))
        params = {
            "project_id": project_id,
            "event": json.dumps(wanted, separators=(",", ":"), ensure_ascii=False),
            "type": "general",
            "unit": "day",
            "from_date": day.isoformat(),
            "to_date": last.isoformat(),
        }
        unit = f"Mixpanel project {project_id}"
        return await self._http.fetch_parsed(
            "GET",
            f"{self.base_for(project_id)}/events",
            lambda response: parse_event_counts(
                decode_json(response, unit),
                project_id=project_id,
                events=wanted,
                day=day,
                until=last,
            ),
            params=params,
            auth=self._auth,
            limit=QUERY_API_QUOTA.of(f"project {project_id}"),
        )
