"""The doctor's ``--send-test``: one test message to the configured alert webhook."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from cronkeeper.alerting.delivery import alerter_from_settings
from cronkeeper.errors import ConfigError

if TYPE_CHECKING:
    from cronkeeper.config import Settings

__all__ = ["TEST_MESSAGE", "probe_sender"]

TEST_MESSAGE = "cronkeeper doctor: test message (the alert webhook is reachable)"


def probe_sender(settings: Settings) -> Callable[[], Awaitable[bool]]:
    """A call that posts :data:`TEST_MESSAGE` and says whether the webhook took it;
    :class:`ConfigError` when ``ALERT_WEBHOOK_URL`` is unset or not a URL."""
    alerter = alerter_from_settings(settings)
    if alerter is None:
        raise ConfigError("--send-test: ALERT_WEBHOOK_URL is not set")

    async def send() -> bool:
        return await alerter.send(TEST_MESSAGE, about="doctor")

    return send
