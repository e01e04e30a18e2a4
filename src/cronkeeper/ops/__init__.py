"""What is left of "what runs the service": the metrics, the volume rule and the watchdog.

``metrics`` serves ``/metrics``; ``volume`` is the pure anomaly rule on record counts;
``watchdog`` decides *when* every job's alert state is evaluated (the rule itself is
:mod:`cronkeeper.alerting`). The scheduler (:mod:`cronkeeper.scheduler`), backfill
(:mod:`cronkeeper.backfill`), coverage (:mod:`cronkeeper.coverage`) and pruning
(:mod:`cronkeeper.ledger.prune`) have rooms named for what they are; these three are due to
follow (``docs/architecture.md``).
"""
