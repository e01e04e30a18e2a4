"""The doctor's ``--send-test`` (one test message to the configured alert webhook) and the
one alert of the watchdog's daily Meta token check."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from cronkeeper.alerting.delivery import WebhookAlerter, alerter_from_settings
from cronkeeper.errors import ConfigError
from cronkeeper.inert import for_chat

if TYPE_CHECKING:
    from cronkeeper.config import Settings

__all__ = ["TEST_MESSAGE", "probe_sender", "send_token_alert", "token_alert_text"]

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


def token_alert_text(lines: Sequence[str]) -> str:
    """The one alert of a Meta token check that found something (an expiry within 14 days,
    or an invalid token): each finding on its own line, made inert for chat."""
    body = "\n".join(f"• {for_chat(line)}" for line in lines)
    return f"⚠ cronkeeper: the Meta access token needs attention\n{body}"


async def send_token_alert(alerters: Sequence[WebhookAlerter], lines: Sequence[str]) -> None:
    """Post :func:`token_alert_text` to every alerter (each never raises)."""
    text = token_alert_text(lines)
    for alerter in alerters:
        await alerter.send(text, about="meta token")
