"""API versions with a lifecycle: which pinned version expires when, and what to say about it.

Meta retires each Marketing API version on a published date; after it, calls answer error
#2635 ("You are calling a deprecated version of the Ads API") or are served by a newer
version nobody checked. So every place that reports on the service (the start-up log, the
health JSON's ``warnings``, the status page, the
``cronkeeper_api_version_expiry_timestamp_seconds`` gauge) asks this module, from
:data:`WARN_WITHIN` before the date on; once it has passed, every run of the source fails at
once naming the setting to change (:func:`require_current`).

Everything here is pure: plain strings and dates in, plain data out; ``today`` is passed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from cronkeeper.errors import ConfigError

if TYPE_CHECKING:
    from cronkeeper.config import Settings

__all__ = [
    "META_VERSIONS",
    "NOTION_VERSIONS",
    "WARN_WITHIN",
    "PinnedVersion",
    "expiry_samples",
    "meta_version_key",
    "pinned_versions",
    "require_current",
    "settings_warnings",
    "today_utc",
    "version_warnings",
]

WARN_WITHIN = timedelta(days=90)
"""How long before a version's expiry the service starts warning about it."""

# Meta's Marketing API version table, "Release Date | Expiration Date"
# (https://developers.facebook.com/documentation/ads-commerce/marketing-api/marketing-api-changelog/versions,
# read December 2026): v27.0 released November 4, 2026 and v26.0 July 29, 2026, both "TBD";
# v25.0 expires February 23, 2027; v24.0 expired November 10, 2026; v23.0 June 9, 2026;
# v22.0 February 19, 2026; and the older rows of the same table (v21.0 September 9, 2025,
# v20.0 May 6, 2025, v19.0 February 4, 2025). ``None``: no date announced yet. A version
# older than every row here has long expired; one newer than every row is not listed yet.
META_VERSIONS: dict[str, date | None] = {
    "v27.0": None,
    "v26.0": None,
    "v25.0": date(2027, 2, 23),
    "v24.0": date(2026, 11, 10),
    "v23.0": date(2026, 6, 9),
    "v22.0": date(2026, 2, 19),
    "v21.0": date(2025, 9, 9),
    "v20.0": date(2025, 5, 6),
    "v19.0": date(2025, 2, 4),
}

# Notion names versions by release date and publishes no end date for any of them
# (https://developers.notion.com/reference/versioning: "A new API version is released when we
# introduce a backwards-incompatible change"; notion-sdk-js pins ``defaultNotionVersion`` per
# major release: 2022-06-28 for v4, 2025-09-03 for v5). The data-source endpoints cronkeeper
# calls need 2025-09-03 or later. A date goes here the day Notion announces one.
NOTION_VERSIONS: dict[str, date | None] = {
    "2025-09-03": None,
    "2026-03-11": None,
}

_META_VERSION = re.compile(r"v?(\d+)(?:\.(\d+))?")

State = Literal["current", "expiring", "expired"]


def meta_version_key(version: str) -> str | None:
    """``"v27.0"``, ``"27"``, ``" V27.0 "`` → ``"v27.0"``; ``None`` when it is no version."""
    match = _META_VERSION.fullmatch(version.strip().lower())
    if match is None:
        return None
    return f"v{int(match[1])}.{int(match[2] or 0)}"


def _number(key: str) -> tuple[int, int]:
    major, _, minor = key[1:].partition(".")
    return int(major), int(minor)


@dataclass(frozen=True)
class PinnedVersion:
    """One API version this configuration pins, with what is known of its end."""

    source: str
    """``meta`` or ``notion`` (the gauge's ``source`` label)."""
    setting: str
    """The setting that pins it: what the operator changes."""
    version: str
    expires: date | None
    """The first day it no longer works; ``None``: no date announced."""
    retired: bool = False
    """Older than every version the table lists: expired, on a date not kept here."""
    latest: str | None = None
    """The newest version the table knows, to name in an upgrade hint."""

    def state(self, today: date) -> State:
        if self.retired or (self.expires is not None and today >= self.expires):
            return "expired"
        if self.expires is not None and today >= self.expires - WARN_WITHIN:
            return "expiring"
        return "current"

    def message(self, today: date) -> str | None:
        """One line for the log, the health JSON and the status page; ``None`` while current."""
        state = self.state(today)
        if state == "current":
            return None
        upgrade = f"upgrade {self.setting}" + (f" (latest: {self.latest})" if self.latest else "")
        name = {"meta": "Meta Marketing API", "notion": "Notion API"}.get(self.source, self.source)
        if self.retired:
            return f"{name} version {self.version} has expired: {upgrade}"
        assert self.expires is not None
        if state == "expired":
            return f"{name} version {self.version} expired on {self.expires.isoformat()}: {upgrade}"
        days = (self.expires - today).days
        return (
            f"{name} version {self.version} expires on {self.expires.isoformat()}"
            f" (in {days} day{'s' if days != 1 else ''}): {upgrade}"
        )


def _meta_pin(version: str) -> PinnedVersion:
    key = meta_version_key(version)
    latest = max(META_VERSIONS, key=_number)
    if key is None:
        return PinnedVersion("meta", "META_API_VERSION", version, None, latest=latest)
    if key in META_VERSIONS:
        return PinnedVersion("meta", "META_API_VERSION", key, META_VERSIONS[key], latest=latest)
    oldest = min(META_VERSIONS, key=_number)
    retired = _number(key) < _number(oldest)
    return PinnedVersion("meta", "META_API_VERSION", key, None, retired=retired, latest=latest)


def _notion_pin(version: str) -> PinnedVersion:
    latest = max(NOTION_VERSIONS)
    return PinnedVersion(
        "notion",
        "NOTION_VERSION",
        version.strip(),
        NOTION_VERSIONS.get(version.strip()),
        latest=latest,
    )


def pinned_versions(settings: Settings) -> tuple[PinnedVersion, ...]:
    """The versions this configuration pins (Meta's and Notion's), with their known ends."""
    return (_meta_pin(settings.meta_api_version), _notion_pin(settings.notion_version))


def version_warnings(pins: tuple[PinnedVersion, ...], today: date) -> list[str]:
    """A line per pinned version that expires within :data:`WARN_WITHIN` or has expired."""
    return [m for pin in pins if (m := pin.message(today)) is not None]


def require_current(pin: PinnedVersion, today: date) -> None:
    """Refuse to run a source whose pinned version has expired (:class:`ConfigError`).

    After the date Meta answers #2635 to every call, or serves a version nobody checked:
    either way the run would be wrong, so it fails before its first call, naming the setting.
    """
    if pin.state(today) == "expired":
        raise ConfigError(f"{pin.message(today)}; no call was made")


def expiry_samples(pins: tuple[PinnedVersion, ...]) -> list[tuple[str, str, float]]:
    """``(source, version, expiry as a Unix timestamp)`` for every pin with a known date
    (midnight UTC of the expiry day): the ``cronkeeper_api_version_expiry_timestamp_seconds``
    series. A version without an announced date has no sample."""
    return [
        (
            pin.source,
            pin.version,
            datetime.combine(pin.expires, datetime.min.time(), UTC).timestamp(),
        )
        for pin in pins
        if pin.expires is not None
    ]


def today_utc(now: datetime) -> date:
    """The day ``now`` falls on in UTC (Meta's dates are calendar days; UTC is the safe read)."""
    return now.astimezone(UTC).date() if now.tzinfo is not None else now.date()


def settings_warnings(settings: Settings, now: datetime) -> list[str]:
    """:func:`version_warnings` for this configuration at ``now``: what health, the status
    page and the start-up log show."""
    return version_warnings(pinned_versions(settings), today_utc(now))
