"""The run ledger (``cron_runs``): start, complete, track, and read back."""

from cronkeeper.ledger.models import FinalStatus, RunRow, RunSummary, Skipped, summarize
from cronkeeper.ledger.store import Ledger, RunTracker

__all__ = ["FinalStatus", "Ledger", "RunRow", "RunSummary", "RunTracker", "Skipped", "summarize"]
