"""Alerting: when a job's state change deserves a message, what it says, and its delivery.

One room per part of the rule, none of them scheduling anything (the watchdog,
:mod:`cronkeeper.alerting.watchdog`, decides when to look; the scheduler skips paused jobs):

- :mod:`~cronkeeper.alerting.state`: the state machine (``ok``, ``missing``, ``stuck``,
  ``failed``, ``anomalous``, ``paused``), thresholds and reminders — pure functions;
- :mod:`~cronkeeper.alerting.messages`: the wording of every alert — pure functions;
- :mod:`~cronkeeper.alerting.dispatch`: a change claimed once across replicas, then sent;
- :mod:`~cronkeeper.alerting.delivery`: the Slack-compatible webhook (``ALERT_WEBHOOK_URL``);
- :mod:`~cronkeeper.alerting.pause`: ``pause``/``resume``.

``tests/test_ownership.py`` keeps alert messages from being sent anywhere else.
"""
