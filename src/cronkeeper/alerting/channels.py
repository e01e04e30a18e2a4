"""Every alert channel: the Slack-compatible webhook and any Apprise URL (``ALERT_URLS``).

Apprise (https://github.com/caronc/apprise, the library behind many self-hosted monitors)
speaks e-mail (``mailto://``), Slack, Microsoft Teams, PagerDuty, Telegram, Discord,
Opsgenie, plain JSON (``json://``) and more, each from one URL. Its Python API, as documented
in its README's "Developer API" section and as Airflow's provider and Home Assistant's
``notify.apprise`` use it (``apprise.Apprise()``, ``add(url)``, ``notify(body=, title=,
body_format=)``; ``async_notify`` takes the same arguments and returns the same
``AppriseResult``, whose ``bool()`` says whether every service took the message;
``Apprise.instantiate(url)`` answers ``None`` for a URL no plugin understands): one
:class:`AppriseChannel` per URL, so each channel's delivery is reported on its own and a
failing one never hides the others.

Every channel has the :class:`Channel` shape (``destination`` for logs, ``send(text, about=,
title=)`` that never raises). A URL is its channel's credential (a Slack token, an SMTP
password): logs and results name only its scheme and its place in ``ALERT_URLS``, and the
``apprise`` logger gets a redacting filter that knows every URL and its parts.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urlsplit

from cronkeeper.alerting.messages import test_text
from cronkeeper.clock import Clock, Sleep, utcnow
from cronkeeper.config import Settings
from cronkeeper.errors import ConfigError
from cronkeeper.logs import RedactingFilter
from cronkeeper.redact import Redactor, truncate

__all__ = [
    "AppriseChannel",
    "Channel",
    "TestResult",
    "channels_from_settings",
    "send_test",
]

log = logging.getLogger("cronkeeper.alerting")

APPRISE_LOGGER = "apprise"
MIN_SECRET_PART = 6  # shorter URL parts (``smtp``, ``587``) are not worth redacting


class Channel(Protocol):
    """One place alerts go."""

    destination: str
    """What logs may say about it (scheme and host, or scheme and place in ``ALERT_URLS``)."""
    url: str
    """The channel's URL: a secret, only ever digested (the outbox's ``channel``)."""

    @property
    def budget(self) -> float:
        """The longest one delivery may take (the outbox holds a claim for longer)."""
        ...

    async def send(
        self,
        text: str,
        *,
        about: str = "cronkeeper",
        key: str | None = None,
        title: str = "",
    ) -> bool: ...


def _secret_parts(url: str) -> tuple[str, ...]:
    """``url`` and every piece of it that may be a credential (user, password, path tokens,
    query values), as written and unquoted: Apprise may log any of them on its own."""
    parts = {url}
    try:
        split = urlsplit(url)
    except ValueError:
        return (url,)
    pieces = [split.username or "", split.password or "", split.netloc]
    pieces += split.path.split("/")
    pieces += [kv.partition("=")[2] for kv in split.query.split("&")]
    for piece in pieces:
        for spelling in (piece, unquote(piece)):
            if len(spelling) >= MIN_SECRET_PART:
                parts.add(spelling)
    return tuple(parts)


def _protect_apprise_log(secrets: tuple[str, ...]) -> None:
    logger = logging.getLogger(APPRISE_LOGGER)
    found = next((f for f in logger.filters if isinstance(f, RedactingFilter)), None)
    if found is None:
        found = RedactingFilter()
        logger.addFilter(found)
    found.add(secrets)


class AppriseChannel:
    """Sends alerts to one Apprise URL (what to send, and when, is the watchdog's and the
    outbox's: :mod:`cronkeeper.alerting.dispatch`)."""

    def __init__(
        self,
        url: str,
        index: int,
        *,
        clock: Clock = utcnow,
        timeout: float = 15.0,
        redactor: Redactor | None = None,
    ) -> None:
        import apprise  # imported here: commands without alerts never pay for its plugins

        scheme = url.partition("://")[0].lower() if "://" in url else "?"
        # The URL is a secret: the message names its place and scheme, never its text.
        self.destination = f"{scheme}:// (ALERT_URLS entry {index})"
        secrets = _secret_parts(url)
        _protect_apprise_log(secrets)
        service = apprise.Apprise.instantiate(url)
        if service is None:
            raise ConfigError(
                f"ALERT_URLS entry {index} ({scheme}://…) is not a URL Apprise can send to;"
                " see https://github.com/caronc/apprise/wiki for each service's URL"
            )
        self.url = url
        self.apprise = apprise.Apprise()
        self.apprise.add(service)
        self.clock = clock
        self.timeout = timeout
        base = redactor or Redactor()
        self.redactor = Redactor(secrets=(*base.secrets, *secrets))

    @property
    def budget(self) -> float:
        return self.timeout + 1.0

    async def send(
        self,
        text: str,
        *,
        about: str = "cronkeeper",
        key: str | None = None,
        title: str = "",
    ) -> bool:
        """Send ``text``; whether the channel took it. Never raises (except cancellation).
        ``key`` (the outbox's idempotency key) has nowhere to go in most Apprise services:
        a repeated delivery after a lost answer is possible, as the outbox documents."""
        import apprise

        try:
            async with asyncio.timeout(self.budget):
                result = await self.apprise.async_notify(
                    body=text,
                    title=title or f"cronkeeper: {about}",
                    body_format=apprise.NotifyFormat.TEXT,
                    timeout=self.timeout,
                )
        except TimeoutError:
            self._warn(about, f"no delivery within {self.timeout:g} s")
            return False
        except Exception as exc:  # a channel must never fail a job, whatever goes wrong
            self._warn(about, truncate(self.redactor(f"{type(exc).__name__}: {exc}"), 300))
            return False
        if not result:
            self._warn(about, "the service refused it or could not be reached")
            return False
        log.info("alert about %s delivered to %s", about, self.destination)
        return True

    def _warn(self, about: str, detail: str) -> None:
        log.warning("alert about %s not delivered to %s: %s", about, self.destination, detail)


def channels_from_settings(
    settings: Settings, *, clock: Clock = utcnow, sleep: Sleep = asyncio.sleep
) -> list[Channel]:
    """Every configured channel: ``ALERT_WEBHOOK_URL`` first, then each ``ALERT_URLS`` entry.

    Raises :class:`~cronkeeper.errors.ConfigError` for a URL that cannot be used (naming its
    place, never its text).
    """
    from cronkeeper.alerting.delivery import alerter_from_settings

    channels: list[Channel] = []
    webhook = alerter_from_settings(settings, clock=clock, sleep=sleep)
    if webhook is not None:
        channels.append(webhook)
    for index, url in enumerate(settings.alert_url_list, 1):
        channels.append(AppriseChannel(url, index, clock=clock, redactor=settings.redactor))
    return channels


@dataclass(frozen=True)
class TestResult:
    """One channel's answer to ``cronkeeper alert test``."""

    __test__ = False  # not a pytest class

    destination: str
    delivered: bool

    def as_json(self) -> dict[str, object]:
        return {"channel": self.destination, "delivered": self.delivered}


async def send_test(settings: Settings, *, clock: Clock = utcnow) -> list[TestResult]:
    """Send one test message to each configured channel; one result per channel, in order.

    Raises :class:`~cronkeeper.errors.ConfigError` when a URL is unusable; an empty list
    when no channel is configured.
    """
    channels = channels_from_settings(settings, clock=clock)
    text = test_text(clock(), settings.public_url)
    results = []
    for channel in channels:
        delivered = await channel.send(text, about="test", title="cronkeeper: test alert")
        results.append(TestResult(channel.destination, delivered))
    return results
