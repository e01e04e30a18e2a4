"""The run ledger: the only owner of ``cron_runs``.

``models`` (plain data and the status rule) · ``reads`` (every read statement) · ``store``
(:class:`Ledger`: start, complete, track, and every read, bounded by one timeout and breaker)
· ``retention`` (the pruning statements) · ``health_read`` (a health request's reads of
``cron_runs``, ``job_state`` and ``scheduler_heartbeats`` as one statement). Nothing outside
this package writes SQL on ``cron_runs``; a test greps ``src/`` to keep it so.
"""

from cronkeeper.ledger.models import FinalStatus, RunRow, RunSummary, Skipped, summarize
from cronkeeper.ledger.store import Ledger, RunTracker

__all__ = ["FinalStatus", "Ledger", "RunRow", "RunSummary", "RunTracker", "Skipped", "summarize"]
