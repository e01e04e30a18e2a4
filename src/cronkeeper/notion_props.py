"""The Notion registry's property names, and their defaults, in one place.

Three readers need the same names: the configuration (``NOTION_PROP_*`` default to them), the
client that parses the registry (:mod:`cronkeeper.sources.notion`) and the simulator that
serves it (:mod:`cronkeeper.sandbox.notion`). This module imports nothing from cronkeeper at
run time, so each of them can import it without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cronkeeper.config import Settings

__all__ = ["DEFAULT_NOTION_PROPS", "NotionProps"]


@dataclass(frozen=True)
class NotionProps:
    """Names of the data source's properties (overridable: ``NOTION_PROP_*``)."""

    name: str = "Name"
    ad_account: str = "Meta Ad Account ID"
    industry: str = "Industry"
    active: str = "Active"
    mixpanel_project: str = "Mixpanel Project ID"

    @classmethod
    def from_settings(cls, settings: Settings) -> NotionProps:
        return cls(
            name=settings.notion_prop_name,
            ad_account=settings.notion_prop_ad_account,
            industry=settings.notion_prop_industry,
            active=settings.notion_prop_active,
            mixpanel_project=settings.notion_prop_mixpanel_project,
        )


DEFAULT_NOTION_PROPS = NotionProps()
"""The spec's names: what a registry built from the README's template has."""
