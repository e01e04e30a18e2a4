"""One client per source API, each a thin loop over a pure parser.

Parsers take decoded JSON and return frozen records, or raise
:class:`~cronkeeper.errors.PayloadError` naming the unit (ad account, project, page) and the
field; clients add the request shape and paging on top of :class:`cronkeeper.http.HttpContext`.
"""

from __future__ import annotations

from cronkeeper.sources.meta import (
    AccountDetails,
    MetaClient,
    MetaInsight,
    normalize_ad_account_id,
    parse_account_details,
    parse_insights_page,
)
from cronkeeper.sources.mixpanel import MixpanelClient, MixpanelCount, parse_event_counts
from cronkeeper.sources.notion import (
    NotionAccount,
    NotionClient,
    NotionListing,
    NotionProps,
    SkippedPage,
    parse_query_page,
)

__all__ = [
    "AccountDetails",
    "MetaClient",
    "MetaInsight",
    "MixpanelClient",
    "MixpanelCount",
    "NotionAccount",
    "NotionClient",
    "NotionListing",
    "NotionProps",
    "SkippedPage",
    "normalize_ad_account_id",
    "parse_account_details",
    "parse_event_counts",
    "parse_insights_page",
    "parse_query_page",
]
