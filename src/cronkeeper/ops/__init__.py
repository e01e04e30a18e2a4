"""What runs the service rather than the seed's jobs.

``scheduler`` fires jobs on their cron expressions, ``watchdog`` evaluates every job's alert
state (``alert_state``, ``volume``: pure rules) and ``alerts`` delivers its webhook messages,
``metrics`` serves ``/metrics``, ``retention`` prunes the ledger and ``backfill`` re-collects
date ranges. Each is optional around the main path (CLI/API → runner → job → source → http →
storage) and reaches the ledger only through :mod:`cronkeeper.ledger`.
"""
