"""The doctor's ``--send-test`` (one test message to the configured alert webhook) and the
one alert of the watchdog's daily Meta token check."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from cronkeeper.alerting.channels import Channel, channels_from_settings
from cronkeeper.errors import ConfigError
from cronkeeper.inert import for_chat

if TYPE_CHECKING:
    from cronkeeper.config import Settings

__all__ = ["TEST_MESSAGE", "probe_sender", "send_token_alert", "token_alert_text"]

TEST_MESSAGE = "cronkeeper doctor: test message (this alert channel is reachable)"


def probe_sender(settings: Settings) -> Callable[[], Awaitable[bool]]:
    """A call that sends :data:`TEST_MESSAGE` to every channel (``ALERT_WEBHOOK_URL`` and
    each ``ALERT_URLS`` entry: :func:`~cronkeeper.alerting.channels.channels_from_settings`)
    and says whether all took it; :class:`ConfigError` when none is set or one is unusable.
    ``cronkeeper alert test`` reports each channel on its own (``channels.send_test``)."""
    channels = channels_from_settings(settings)
    if not channels:
        raise ConfigError("--send-test: neither ALERT_WEBHOOK_URL nor ALERT_URLS is set")

    async def send() -> bool:
        results = [
            await c.send(TEST_MESSAGE, about="doctor", title="cronkeeper: test alert")
            for c in channels
        ]
        return all(results)

    return send


def token_alert_text(lines: Sequence[str]) -> str:
    """The one alert of a Meta token check that found something (an expiry within 14 days,
    or an invalid token): each finding on its own line, made inert for chat."""
    body = "\n".join(f"• {for_chat(line)}" for line in lines)
    return f"⚠ cronkeeper: the Meta access token needs attention\n{body}"


async def send_token_alert(alerters: Sequence[Channel], lines: Sequence[str]) -> None:
    """Post :func:`token_alert_text` to every alerter (each never raises)."""
    text = token_alert_text(lines)
    for alerter in alerters:
        await alerter.send(text, about="meta token")
