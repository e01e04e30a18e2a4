"""Delivery: alerts to a Slack-compatible incoming webhook (``ALERT_WEBHOOK_URL``).

What to say is decided elsewhere in :mod:`cronkeeper.alerting`: the state machine
(:mod:`~cronkeeper.alerting.state`: ``failed``, ``missing``, ``stuck``, ``anomalous``,
recovered; thresholds), the claim of each change (:mod:`~cronkeeper.alerting.dispatch`: one
message per change across replicas) and the wording (:mod:`~cronkeeper.alerting.messages`).
:class:`WebhookAlerter` posts, and also warns by itself when runs of a dead process are found
abandoned. A success after a success says nothing: an alert channel that talks every night is
a channel nobody reads.

The payload is ``{"text": "..."}``, which Slack, Mattermost and Discord's ``/slack``
endpoint all accept.

Delivery must never hurt the job. It goes through the same HTTP layer as the sources: a
client from :func:`~cronkeeper.http.build_client` and :func:`~cronkeeper.http.fetch_with_retry`
with the alerts' own policy (5 s per attempt, two retries after 1 s and 2 s; connection
errors, timeouts, 408, 429 and 5xx retried, ``Retry-After`` honoured up to the longest of
those waits, a longer ask given up at once). The whole delivery is bounded by
``timeout × attempts + waits``, and a failure is logged as one WARNING, never raised. The
webhook URL is itself the credential (Slack's ``hooks.slack.com/services/T…/B…/…``): logs
name only its scheme and host.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import httpx

from cronkeeper.clock import Clock, Sleep, utcnow
from cronkeeper.config import Settings, check_webhook_url
from cronkeeper.errors import ConfigError, FetchError, PermanentFetchError, WaitTooLong
from cronkeeper.http import (
    RetryEvent,
    RetryPolicy,
    build_client,
    fetch_with_retry,
    protect_httpx_log,
)
from cronkeeper.redact import Redactor, truncate

__all__ = [
    "WebhookAlerter",
    "alerter_from_settings",
    "safe_destination",
]

log = logging.getLogger("cronkeeper.alerting")


ClientFactory = Callable[[], httpx.AsyncClient]


def safe_destination(url: str) -> str:
    """What a log line may say about a webhook: scheme and host (with port), nothing else."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "an unparseable URL"
    port = f":{parsed.port}" if parsed.port is not None else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


# -- delivery ----------------------------------------------------------------------------


class WebhookAlerter:
    """Posts alerts to one webhook (what to send, and when, is the watchdog's and the
    outbox's: :mod:`cronkeeper.alerting.dispatch`)."""

    def __init__(
        self,
        url: str,
        *,
        clock: Clock = utcnow,
        timeout: float = 5.0,
        retries: int = 2,
        waits: Sequence[float] = (1.0, 2.0),
        sleep: Sleep = asyncio.sleep,
        redactor: Redactor | None = None,
        client_factory: ClientFactory | None = None,
    ) -> None:
        try:
            check_webhook_url(url)  # the settings' own rule
        except ValueError:
            # The URL is a secret: the message must not echo it.
            raise ConfigError(
                "ALERT_WEBHOOK_URL must be an absolute http:// or https:// URL"
            ) from None
        parsed = httpx.URL(url)
        if not timeout > 0:
            raise ConfigError(f"the alert timeout must be above 0 s, got {timeout}")
        if retries < 0:
            raise ConfigError(f"alert retries must be 0 or more, got {retries}")
        if any(not wait >= 0 for wait in waits):
            raise ConfigError(f"alert waits must all be 0 s or more, got {tuple(waits)}")
        self.url = url
        self.destination = safe_destination(url)
        self.clock = clock
        self.timeout = timeout
        self.retries = retries
        self.waits = tuple(waits) or (0.0,)
        self.sleep = sleep
        self.policy = RetryPolicy(
            max_retries=retries, waits=self.waits, timeout=timeout, max_wait=max(self.waits)
        )
        # The HTTP layer names the URL without its query: that spelling is the secret too.
        bare = str(parsed.copy_with(query=None, fragment=None))
        spellings = tuple({url, str(parsed), bare})
        base = redactor or Redactor()
        self.redactor = Redactor(secrets=(*base.secrets, *spellings))
        self.client_factory = client_factory or self._default_client
        # httpx logs every request's full URL at INFO: teach its filter this secret too.
        protect_httpx_log(spellings)

    @property
    def budget(self) -> float:
        """The longest one delivery may take: every attempt's timeout plus every wait."""
        return self.timeout * (self.retries + 1) + self.retries * max(self.waits) + 0.5

    def _default_client(self) -> httpx.AsyncClient:
        return build_client(timeout=self.timeout, redactor=self.redactor)

    # -- delivery

    async def send(
        self,
        text: str,
        *,
        about: str = "cronkeeper",
        key: str | None = None,
        title: str = "",
    ) -> bool:
        """Post ``text``; whether the webhook took it. Never raises (except cancellation).

        ``key``: the outbox message's id (:mod:`cronkeeper.alerting.outbox`), sent as
        ``idempotency_key`` beside ``text`` so a receiver can drop a repeated delivery. Slack's
        incoming webhooks read the fields they document (``text``, ``blocks``, ``attachments``…:
        https://docs.slack.dev/messaging/sending-messages-using-incoming-webhooks); the docs do
        not say that other top-level fields are ignored, only that ``400 invalid_payload`` is
        for a body that "cannot be understood as presented", i.e. not structurally valid
        (https://api.slack.com/changelog/2016-05-17-changes-to-errors-for-incoming-webhooks).
        A payload with an extra top-level object beside ``text`` was reported posted as usual
        (https://github.com/hastic-zzz/hastic-server/issues/708). Should Slack ever refuse the
        key, the webhook's 400 shows in the delivery warnings and the outbox's pending count.
        ``title`` is for channels that have one (:mod:`~cronkeeper.alerting.channels`).
        """
        payload = {"text": text} if key is None else {"text": text, "idempotency_key": key}
        retries: list[RetryEvent] = []
        try:
            async with asyncio.timeout(self.budget), self.client_factory() as client:
                await fetch_with_retry(
                    client,
                    "POST",
                    self.url,
                    json=payload,
                    policy=self.policy,
                    sleep=self.sleep,
                    now=self.clock,
                    on_retry=retries.append,
                    redactor=self.redactor,
                    retry_log_level=logging.INFO,  # one WARNING per delivery, below
                )
        except FetchError as exc:
            self._warn(about, exc.attempts, self._failure(exc))
            return False
        except TimeoutError:
            self._warn(about, len(retries) + 1, f"no delivery within {self.budget:g} s")
            return False
        except Exception as exc:  # a webhook must never fail a job, whatever goes wrong
            detail = truncate(self.redactor(f"{type(exc).__name__}: {exc}"), 300)
            self._warn(about, len(retries) + 1, detail)
            return False
        log.info("alert about %s delivered to %s", about, self.destination)
        return True

    def _failure(self, exc: FetchError) -> str:
        """The last attempt's failure, in the alerts' words (the HTTP layer's speak of units)."""
        if exc.reason == "timeout":
            return f"no answer within {self.timeout:g} s"
        if isinstance(exc, WaitTooLong):
            return (
                f"{exc.detail}; the webhook asked to wait {exc.wait_seconds:g} s,"
                " more than alerts may wait"
            )
        if isinstance(exc, PermanentFetchError) and exc.status is not None:
            return f"{exc.detail}; not retried, check the webhook (revoked, archived, moved?)"
        return exc.detail or str(exc)

    def _warn(self, about: str, attempts: int, detail: str) -> None:
        plural = "s" if attempts != 1 else ""
        log.warning(
            "alert about %s not delivered to %s after %d attempt%s: %s",
            about,
            self.destination,
            attempts,
            plural,
            detail,
        )


# -- wiring ------------------------------------------------------------------------------


def alerter_from_settings(
    settings: Settings, *, clock: Clock = utcnow, sleep: Sleep = asyncio.sleep
) -> WebhookAlerter | None:
    """The alerter ``ALERT_WEBHOOK_URL`` asks for, or ``None`` when it is unset or empty.

    Raises :class:`~cronkeeper.errors.ConfigError` for a URL that is not http(s).
    """
    secret = settings.alert_webhook_url
    url = secret.get_secret_value().strip() if secret is not None else ""
    if not url:
        return None
    return WebhookAlerter(url, clock=clock, sleep=sleep, redactor=settings.redactor)
