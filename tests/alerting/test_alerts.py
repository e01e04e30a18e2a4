"""Webhook alerts: the right messages reach a real local receiver; a bad webhook hurts nobody.

Which run ends deserve a message is the state machine (tests/alerting/test_watchdog.py);
here a run's message (``finished_text``) is posted the way the watchdog posts it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from cronkeeper.alerting.delivery import WebhookAlerter, alerter_from_settings
from cronkeeper.alerting.messages import MAX_EXCERPT, abandoned_text, finished_text
from cronkeeper.alerting.watchdog import Watchdog
from cronkeeper.config import Settings
from cronkeeper.errors import ConfigError
from cronkeeper.ledger import RunRow
from cronkeeper.redact import Redactor
from cronkeeper.runner import run_job
from cronkeeper.sandbox import Fault, MetaSimulator
from cronkeeper.sandbox.server import serve_app
from cronkeeper.service import Service
from tests.conftest import FakeClock, make_settings

HOOK_PATH = "/services/T0001/B0002/hook-secret-XyZ123"
T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)


# -- a real receiver -----------------------------------------------------------------------


@dataclass
class Receiver:
    """A webhook endpoint on a real uvicorn; records what it got and fails when told to."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    fail_next: int = 0
    fail_status: int = 500
    fail_headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def texts(self) -> list[str]:
        return [str(message["text"]) for message in self.received]

    async def hook(self, request: Request) -> Response:
        payload = await request.json()
        with self.lock:
            self.attempts += 1
            failing = self.fail_next > 0
            if failing:
                self.fail_next -= 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if failing:
            return PlainTextResponse(
                "nope", status_code=self.fail_status, headers=self.fail_headers
            )
        with self.lock:
            self.received.append(payload)
        return PlainTextResponse("ok")


@pytest.fixture(scope="module")
def _server() -> Iterator[tuple[list[Receiver], str]]:
    current: list[Receiver] = []

    async def hook(request: Request) -> Response:
        return await current[0].hook(request)

    app = Starlette(routes=[Route(HOOK_PATH, hook, methods=["POST"])])
    with serve_app(app) as base:
        yield current, base


@pytest.fixture
def receiver(_server: tuple[list[Receiver], str]) -> Iterator[Receiver]:
    current, base = _server
    rec = Receiver(url=base + HOOK_PATH)
    current[:] = [rec]
    yield rec
    current.clear()


@dataclass
class FakeSleep:
    waits: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def alerter(url: str, sleep: FakeSleep | None = None, **kwargs: Any) -> WebhookAlerter:
    return WebhookAlerter(url, clock=FakeClock(T0), sleep=sleep or FakeSleep(), **kwargs)


async def post_finished(hook: WebhookAlerter, run: RunRow, previous: RunRow | None) -> None:
    """Post a finished run's message, if it has one (what the watchdog sends on a change)."""
    text = finished_text(run, previous, hook.redactor)
    if text is not None:
        await hook.send(text, about=run.cron_name)


def run(
    status: str,
    *,
    name: str = "collect-daily",
    records: int = 0,
    message: str | None = None,
    started: datetime = T0,
    run_id: str = "7d3c1e2a-0000-4000-8000-000000000001",
) -> RunRow:
    return RunRow(
        id=run_id,
        cron_name=name,
        started_at=started,
        finished_at=started + timedelta(seconds=42),
        status=status,
        records_count=records,
        error_message=message,
    )


def closed_port_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{HOOK_PATH}"  # nothing listens there any more


# -- messages ------------------------------------------------------------------------------


async def test_an_error_run_posts_a_red_alert_with_the_redacted_error(receiver: Receiver) -> None:
    message = (
        "FetchError: GET https://graph.test/v27.0/act_1/insights?access_token=EAAB-tok3n-999"
        " failed with HTTP 500\nsecond line\n"
    )
    await post_finished(alerter(receiver.url), run("error", message=message), None)
    [text] = receiver.texts
    assert text.startswith(":red_circle: collect-daily failed")
    assert "run 7d3c1e2a-0000-4000-8000-000000000001" in text
    assert "0 records" in text
    assert "2026-11-20T01:00:42+00:00" in text
    assert "HTTP 500\nsecond line" in text
    assert "EAAB-tok3n-999" not in text
    assert set(receiver.received[0]) == {"text"}


async def test_a_partial_run_posts_a_yellow_alert_naming_what_was_skipped(
    receiver: Receiver,
) -> None:
    message = "skipped 1 of 3 accounts:\n- 1234: still failing after 3 attempts"
    await post_finished(alerter(receiver.url), run("partial", records=7, message=message), None)
    [text] = receiver.texts
    assert text.startswith(":large_yellow_circle: collect-daily partial: 7 records")
    assert "skipped 1 of 3 accounts:\n- 1234: still failing" in text
    assert "2026-11-20T01:00:42+00:00" in text


@pytest.mark.parametrize("before", ["error", "partial"])
async def test_a_success_after_a_failure_posts_a_recovery(receiver: Receiver, before: str) -> None:
    previous = run(before, started=T0 - timedelta(days=1), run_id="old")
    await post_finished(alerter(receiver.url), run("success", records=12), previous)
    [text] = receiver.texts
    assert text.startswith(":large_green_circle: collect-daily recovered at 2026-11-20T01:00:42")
    assert "12 records" in text
    assert f"ended {before}" in text


@pytest.mark.parametrize("before", [None, "success"])
async def test_a_success_after_a_success_or_a_first_run_sends_nothing(
    receiver: Receiver, before: str | None
) -> None:
    previous = run(before, started=T0 - timedelta(days=1)) if before else None
    await post_finished(alerter(receiver.url), run("success", records=12), previous)
    assert receiver.attempts == 0


def test_abandoned_runs_warn_with_their_ids_and_the_time() -> None:
    # Delivered through the outbox (tests/alerting/test_outbox.py); here the words.
    text = abandoned_text("collect-mixpanel", ["run-a", "run-b"], T0)
    assert text.startswith(":warning: collect-mixpanel: 2 abandoned runs were closed as error")
    assert "2026-11-20T01:00:00+00:00" in text
    assert "run-a, run-b" in text


def test_error_text_is_cut_escaped_and_free_of_known_secrets() -> None:
    lines = [f"- {n}: HTTP 500 " + "x" * 90 for n in range(40)]
    message = "skipped 40 of 40 accounts <!channel> & co:\n" + "\n".join(lines) + "\nsk-SECRET1"
    text = finished_text(run("error", message=message), None, Redactor(("sk-SECRET1",)))
    assert text is not None
    excerpt = text.split(": ", 1)[1].split("+00:00: ", 1)[1]
    assert len(excerpt) <= MAX_EXCERPT + 20  # escaping may lengthen it a little
    assert "&lt;!channel&gt; &amp; co" in text and "<!channel>" not in text
    assert "- 39:" not in text and "sk-SECRET1" not in text
    short = finished_text(run("error", message="a\nb\nc\nd\ne\nf\ng\nh"), None, Redactor())
    assert short is not None and short.endswith("f\n… and 2 more lines")
    assert "no error message recorded" in str(finished_text(run("error"), None, Redactor()))
    many = abandoned_text("sync-notion", [f"r{i}" for i in range(8)], T0)
    assert "r0, r1, r2, r3, r4 and 3 more" in many


# -- delivery ------------------------------------------------------------------------------


async def test_a_webhook_failing_twice_gets_the_message_on_the_third_attempt(
    receiver: Receiver,
) -> None:
    receiver.fail_next = 2
    sleep = FakeSleep()
    assert await alerter(receiver.url, sleep).send("hello", about="collect-daily")
    assert receiver.attempts == 3
    assert receiver.texts == ["hello"]
    assert sleep.waits == [1.0, 2.0]


async def test_a_webhook_still_failing_after_the_retries_is_given_up_with_a_warning(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.fail_next = 10
    sleep = FakeSleep()
    with caplog.at_level(logging.DEBUG):
        await post_finished(alerter(receiver.url, sleep), run("error", message="boom"), None)
    assert receiver.attempts == 3 and receiver.received == []
    assert sleep.waits == [1.0, 2.0]
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.name == "cronkeeper.alerting"
    text = warning.getMessage()
    assert "after 3 attempts" in text and "HTTP 500" in text
    assert "hook-secret-XyZ123" not in caplog.text
    assert "/services/" not in caplog.text


async def test_a_rejected_message_is_not_retried(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.fail_next, receiver.fail_status = 1, 404
    sleep = FakeSleep()
    assert not await alerter(receiver.url, sleep).send("hello")
    assert receiver.attempts == 1 and sleep.waits == []
    assert "HTTP 404" in caplog.text and "not retried" in caplog.text


async def test_a_429_is_retried_no_earlier_than_retry_after(receiver: Receiver) -> None:
    receiver.fail_next, receiver.fail_status = 1, 429
    receiver.fail_headers = {"Retry-After": "2"}
    sleep = FakeSleep()
    assert await alerter(receiver.url, sleep).send("hello")
    assert sleep.waits == [2.0]
    assert receiver.texts == ["hello"]


async def test_a_429_asking_for_a_long_wait_is_given_up_at_once(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.fail_next, receiver.fail_status = 1, 429
    receiver.fail_headers = {"Retry-After": "120"}
    sleep = FakeSleep()
    assert not await alerter(receiver.url, sleep).send("hello")
    assert receiver.attempts == 1 and sleep.waits == []
    assert "asked to wait 120 s" in caplog.text


async def test_a_dead_webhook_neither_raises_nor_delays_and_logs_no_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = closed_port_url()
    sleep = FakeSleep()
    with caplog.at_level(logging.DEBUG):
        await post_finished(alerter(url, sleep), run("error", message="boom"), None)
    # The only waits are the two between attempts, and they were handed to the injected
    # sleep: a refused connection delays nothing else.
    assert sleep.waits == [1.0, 2.0], "connection errors are retried"
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    host = url.split(HOOK_PATH)[0]
    assert host in warning.getMessage()
    assert "ConnectError" in warning.getMessage()
    assert "hook-secret-XyZ123" not in caplog.text


async def test_a_hung_webhook_is_bounded_by_the_timeout(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.delay = 5.0  # far beyond the timeout: only the timeout can end an attempt
    sleep = FakeSleep()
    async with asyncio.timeout(20):  # a hang guard (an unbounded send never returns)
        sent = await alerter(receiver.url, sleep, timeout=0.3, retries=1).send("hello")
    assert not sent
    assert receiver.attempts == 2  # two attempts, each ended by the 0.3 s timeout
    assert receiver.texts == []
    assert sleep.waits == [1.0]  # the wait between them injected, not slept
    assert "no answer within 0.3 s" in caplog.text


async def test_the_delivery_budget_covers_every_attempt_and_wait() -> None:
    a = alerter("https://hooks.example.test/x", timeout=5.0, retries=2)
    assert 5.0 * 3 + 2.0 * 2 <= a.budget <= 5.0 * 3 + 2.0 * 2 + 1


async def test_httpx_request_log_does_not_carry_the_webhook_url(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    # Another test may have run configure_logging, which quiets httpx to WARNING.
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="httpx"):
        assert await alerter(receiver.url).send("hello")
    assert any(r.name == "httpx" for r in caplog.records), "httpx logged its request line"
    assert "hook-secret-XyZ123" not in caplog.text


async def test_a_webhook_url_with_a_query_stays_out_of_every_log_line(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """The HTTP layer names a failing URL without its query: that spelling is secret too."""
    receiver.fail_next = 1
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="httpx"):
        assert await alerter(receiver.url + "?thread_ts=1700000000.1").send("hello")
    assert receiver.attempts == 2
    assert "attempt 1 of 3 failed" in caplog.text  # the retry line, at INFO
    assert "hook-secret-XyZ123" not in caplog.text
    assert "/services/" not in caplog.text


# -- configuration and wiring ---------------------------------------------------------------


def test_no_alerter_without_alert_webhook_url(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    assert alerter_from_settings(make_settings(url)) is None
    assert alerter_from_settings(make_settings(url, alert_webhook_url="  ")) is None
    built = alerter_from_settings(make_settings(url, alert_webhook_url="https://h.test/a/b/c"))
    assert isinstance(built, WebhookAlerter)
    assert built.destination == "https://h.test"


@pytest.mark.parametrize(
    "bad", ["ftp://h.test/hook-secret-XyZ123", "hook-secret-XyZ123", "http://"]
)
def test_a_malformed_webhook_url_fails_at_start_up_without_echoing_it(
    tmp_path: Any, bad: str
) -> None:
    # Settings refuse it at load (tests/test_config.py); the alerter checks it again.
    settings = make_settings(f"sqlite:///{tmp_path}/x.db").model_copy(
        update={"alert_webhook_url": SecretStr(bad)}
    )
    with pytest.raises(ConfigError) as caught:
        alerter_from_settings(settings)
    assert "ALERT_WEBHOOK_URL" in str(caught.value)
    assert "hook-secret-XyZ123" not in str(caught.value)


# -- end to end ------------------------------------------------------------------------------


async def test_runs_recorded_by_the_ledger_reach_the_webhook_through_the_service(
    settings: Settings, clock: FakeClock, receiver: Receiver
) -> None:
    """The ledger records a failure then a success; the service notifies; the webhook hears."""
    service = Service.from_settings(settings, clock=clock)
    service.observers.append(Watchdog(service, alerters=[alerter(receiver.url)]))
    first_id = await service.ledger.start_cron_run("collect-daily")
    clock.advance(seconds=3)
    await service.ledger.complete_cron_run(first_id, "error", 0, "RuntimeError: Meta is down")
    first = await service.ledger.get_run(str(first_id))
    assert first is not None
    await service.notify(lambda o: o.run_finished(first, None))
    clock.advance(days=1)
    second_id = await service.ledger.start_cron_run("collect-daily")
    clock.advance(seconds=3)
    await service.ledger.complete_cron_run(second_id, "success", 9)
    second = await service.ledger.get_run(str(second_id))
    assert second is not None
    await service.notify(lambda o: o.run_finished(second, first))
    await service.aclose()
    assert len(receiver.texts) == 2
    assert receiver.texts[0].startswith(":red_circle: collect-daily failed")
    assert "Meta is down" in receiver.texts[0]
    assert receiver.texts[1].startswith(":large_green_circle: collect-daily recovered")


async def test_a_dead_webhook_does_not_fail_the_observers_caller(
    settings: Settings, clock: FakeClock, receiver: Receiver
) -> None:
    """A dead webhook first, a live one after it: the second still gets the message."""
    service = Service.from_settings(settings, clock=clock)
    hooks = [alerter(closed_port_url()), alerter(receiver.url)]
    service.observers.append(Watchdog(service, alerters=hooks))
    run_id = await service.ledger.start_cron_run("collect-daily")
    await service.ledger.complete_cron_run(run_id, "error", 0, "boom")
    failed = await service.ledger.get_run(str(run_id))
    assert failed is not None
    await service.notify(lambda o: o.run_finished(failed, None))
    await service.aclose()
    assert len(receiver.texts) == 1


async def test_runs_of_a_real_job_alert_and_a_dead_webhook_fails_none_of_them(
    database_url: str, clock: FakeClock, receiver: Receiver
) -> None:
    """collect-daily over the Meta simulator: error, partial, recovered, then quiet.

    A dead webhook sits first among the observers: every run still ends as it should and
    the live webhook still hears about it.
    """
    token = "meta-token-0123456789abcdef"
    sim = MetaSimulator(["1001", "1002"], access_token=token)
    with serve_app(sim.app) as meta_base:
        settings = make_settings(
            database_url,
            meta_access_token=token,
            meta_api_base=meta_base,
            meta_api_version="v27.0",
            meta_ad_account_ids=("1001", "1002"),
            meta_lookback_days=1,
        )
        sleep = FakeSleep()
        service = Service.from_settings(settings, clock=clock, sleep=sleep)
        dead = WebhookAlerter(closed_port_url(), clock=clock, sleep=sleep)
        live = WebhookAlerter(receiver.url, clock=clock, sleep=sleep, redactor=settings.redactor)
        service.observers.append(Watchdog(service, alerters=[dead, live]))
        day = T0.date() - timedelta(days=1)  # a report date is a day that is over
        statuses = []
        try:
            sim.always("1001", Fault.expired_token())
            sim.always("1002", Fault.expired_token())
            statuses.append((await run_job(service, "collect-daily", day)).status)
            sim.always("1001", None)
            sim.always("1002", Fault.status(503))
            clock.advance(hours=1)
            statuses.append((await run_job(service, "collect-daily", day)).status)
            sim.always("1002", None)
            clock.advance(hours=1)
            statuses.append((await run_job(service, "collect-daily", day)).status)
            clock.advance(hours=1)
            statuses.append((await run_job(service, "collect-daily", day)).status)
        finally:
            await service.aclose()
    assert statuses == ["error", "partial", "success", "success"]
    texts = receiver.texts
    assert len(texts) == 3, texts
    assert texts[0].startswith(":red_circle: collect-daily failed")
    assert "190" in texts[0] or "token" in texts[0].lower()
    assert texts[1].startswith(":large_yellow_circle: collect-daily partial: 1 record")
    assert "1002" in texts[1]
    assert texts[2].startswith(":large_green_circle: collect-daily recovered")
    assert "ended partial" in texts[2]
    assert all(token not in text for text in texts)


def test_alert_texts_neutralise_mentions_and_links_from_outside_text() -> None:
    # Issue 19: Notion names and Meta errors passed @channel, @here and markdown to chat.
    message = "skipped 1 of 1 pages:\n- page 9 (@channel [login](https://evil.test)): @here"
    text = finished_text(run("error", message=message), None, Redactor())
    assert text is not None
    assert "@channel" not in text and "@here" not in text
    assert "@\u200bchannel" in text and "[login]\u200b(https://evil.test)" in text
