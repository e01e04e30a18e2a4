"""The alert outbox (issue 20.3): every state change's message delivered at least once, by
exactly one replica, through a webhook outage and a restart.

A real local receiver (the one of test_alerts.py) answers 503 while told to; time is the
injected clock, moved one watchdog tick (60 s) at a time; each tick is ``Watchdog.check``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from prometheus_client import generate_latest

from cronkeeper.alerting.delivery import WebhookAlerter
from cronkeeper.alerting.outbox import BACKOFF_CAP, OutboxSender, backoff, channel_of
from cronkeeper.alerting.watchdog import Watchdog, install_watchdog
from cronkeeper.errors import StorageError
from cronkeeper.ledger.job_state import JobState
from cronkeeper.ledger.models import ABANDONED
from cronkeeper.metrics import MetricsObserver
from cronkeeper.runner import run_job
from cronkeeper.service import Service
from cronkeeper.storage.engine import create_engine
from tests.alerting.test_alerts import FakeSleep, Receiver, _server, receiver  # noqa: F401
from tests.conftest import FakeClock, make_settings
from tests.web.conftest import client_for, login

pytestmark = pytest.mark.sql

JOB = "collect-daily"
TICK = timedelta(seconds=60)


def replica(database_url: str, clock: FakeClock, url: str) -> tuple[Service, Watchdog]:
    """One replica's service and watchdog, its webhook tried once per delivery."""
    settings = make_settings(database_url, monitored_jobs=(JOB,))
    service = Service.from_settings(settings, clock=clock, engine=create_engine(database_url))
    hook = WebhookAlerter(url, clock=clock, sleep=FakeSleep(), retries=0, timeout=5.0)
    watchdog = Watchdog(service, alerters=[hook])
    service.observers.append(watchdog)
    return service, watchdog


async def failed_run(service: Service) -> None:
    run_id = await service.ledger.start_cron_run(JOB)
    await service.ledger.complete_cron_run(run_id, "error", 0, "boom", cron_name=JOB)


@pytest.fixture
async def one(
    database_url: str,
    clock: FakeClock,
    receiver: Receiver,  # noqa: F811
) -> AsyncIterator[tuple[Service, Watchdog]]:
    service, watchdog = replica(database_url, clock, receiver.url)
    metrics = MetricsObserver([JOB])
    service.observers.append(metrics)
    yield service, watchdog
    await service.aclose()


def test_backoff_doubles_from_30_s_up_to_5_minutes() -> None:
    assert [backoff(n) for n in range(1, 7)] == [30, 60, 120, 240, 300, 300]
    assert BACKOFF_CAP == 300


async def test_a_10_minute_outage_delays_the_message_and_loses_nothing(
    one: tuple[Service, Watchdog],
    clock: FakeClock,
    receiver: Receiver,  # noqa: F811
) -> None:
    service, watchdog = one
    receiver.fail_status, receiver.fail_next = 503, 10**6  # Slack answers 503 for a while
    start = clock.now
    await failed_run(service)
    await watchdog.check()  # failed: the change and its message in one transaction
    [message] = await service.alert_outbox.all()
    assert (message.kind, message.delivered_at, receiver.attempts) == ("down", None, 1)
    assert await service.alert_outbox.pending() == 1

    while clock.now - start < timedelta(minutes=10):
        clock.advance(seconds=60)
        await watchdog.check()
    # Tried at 0, 60, 120, 240 and 480 s (back-off 30 s, 1, 2, 4 min, checked each tick).
    assert (receiver.attempts, receiver.received) == (5, [])
    receiver.fail_next = 0  # the webhook is back at 10 min
    for _ in range(6):
        clock.advance(seconds=60)
        await watchdog.check()
    # The next try was due at 480 + 300 s: delivered at the 13-minute tick, once.
    assert receiver.attempts == 6
    [payload] = receiver.received
    assert payload["text"].startswith(":red_circle: collect-daily failed")
    [message] = await service.alert_outbox.all()
    assert payload["idempotency_key"] == message.id
    assert message.delivered_at == start + timedelta(minutes=13)
    assert (message.attempts, message.last_error) == (6, None)
    assert await service.alert_outbox.pending() == 0
    metrics = next(o for o in service.observers if isinstance(o, MetricsObserver))
    text = generate_latest(metrics.registry).decode()
    assert f'cronkeeper_alert_delivery_failures_total{{cron="{JOB}"}} 5.0' in text


async def test_a_restart_delivers_what_was_pending(
    database_url: str,
    clock: FakeClock,
    receiver: Receiver,  # noqa: F811
) -> None:
    service, watchdog = replica(database_url, clock, receiver.url)
    receiver.fail_status, receiver.fail_next = 503, 1
    await failed_run(service)
    await watchdog.check()
    await service.aclose()  # the process stops with the message undelivered
    assert receiver.received == []

    clock.advance(seconds=60)
    service, watchdog = replica(database_url, clock, receiver.url)  # a new process
    try:
        changes = await watchdog.check()
        assert not any(c.sent for c in changes)  # no new change: the old message goes
        assert [p["text"][:30] for p in receiver.received] == [":red_circle: collect-daily fai"]
        assert await service.alert_outbox.pending() == 0
        clock.advance(seconds=600)
        await watchdog.check()
        assert len(receiver.received) == 1  # delivered once, never again
    finally:
        await service.aclose()


async def test_two_replicas_on_one_database_deliver_each_message_once(
    database_url: str,
    clock: FakeClock,
    receiver: Receiver,  # noqa: F811
) -> None:
    a, watchdog_a = replica(database_url, clock, receiver.url)
    b, watchdog_b = replica(database_url, clock, receiver.url)
    receiver.delay = 0.05  # both are inside a delivery at the same time
    try:
        await failed_run(a)
        await asyncio.gather(watchdog_a.check(), watchdog_b.check())
        for _ in range(3):
            clock.advance(seconds=60)
            await asyncio.gather(watchdog_a.check(), watchdog_b.check())
    finally:
        await a.aclose()
        await b.aclose()
    assert receiver.attempts == 1
    assert len(receiver.received) == 1


async def test_five_senders_racing_for_one_message_send_it_once(
    database_url: str,
    clock: FakeClock,
    receiver: Receiver,  # noqa: F811
) -> None:
    services = [replica(database_url, clock, receiver.url)[0] for _ in range(5)]
    receiver.delay = 0.05
    try:
        hook = WebhookAlerter(receiver.url, clock=clock, sleep=FakeSleep(), retries=0)
        senders = [OutboxSender(s.alert_outbox, [hook]) for s in services]
        await services[0].alert_outbox.add(senders[0].messages(JOB, "down", "x", clock.now))
        delivered = await asyncio.gather(*(s.deliver_due(clock.now) for s in senders))
    finally:
        for service in services:
            await service.aclose()
    assert sorted(delivered) == [0, 0, 0, 0, 1]
    assert receiver.attempts == 1


async def test_a_lost_claim_writes_no_message(
    one: tuple[Service, Watchdog],
    clock: FakeClock,
    receiver: Receiver,  # noqa: F811
) -> None:
    service, _ = one
    hook = WebhookAlerter(receiver.url, clock=clock, sleep=FakeSleep(), retries=0)
    sender = OutboxSender(service.alert_outbox, [hook])
    await service.job_states.ensure([JOB], clock.now)
    stale = JobState(JOB, version=41)  # another replica moved the job since this read
    messages = sender.messages(JOB, "down", "x", clock.now)
    assert not await service.job_states.claim(
        stale, "failed", clock.now, alerting=True, messages=messages
    )
    assert await service.alert_outbox.all() == []
    [row] = (await service.job_states.read([JOB])).values()
    assert await service.job_states.claim(
        row, "failed", clock.now, alerting=True, messages=messages
    )
    assert [m.id for m in await service.alert_outbox.all()] == [messages[0].id]


def test_the_channel_is_a_digest_never_the_url() -> None:
    url = "https://hooks.slack.com/services/T1/B2/secret-part"
    channel = channel_of(WebhookAlerter(url))
    assert len(channel) == 16
    assert "secret" not in channel


async def test_a_dead_webhook_never_makes_a_live_one_hear_twice(
    database_url: str,
    clock: FakeClock,
    receiver: Receiver,  # noqa: F811
) -> None:
    settings = make_settings(database_url, monitored_jobs=(JOB,))
    service = Service.from_settings(settings, clock=clock)
    dead = WebhookAlerter("http://127.0.0.1:9/x", clock=clock, sleep=FakeSleep(), retries=0)
    live = WebhookAlerter(receiver.url, clock=clock, sleep=FakeSleep(), retries=0)
    watchdog = Watchdog(service, alerters=[dead, live])
    try:
        await failed_run(service)
        for _ in range(5):
            await watchdog.check()
            clock.advance(seconds=300)
        assert len(receiver.received) == 1
        assert await service.alert_outbox.pending() == 1  # the dead one's, still retried
    finally:
        await service.aclose()


async def test_the_status_page_shows_how_many_alerts_wait(
    one: tuple[Service, Watchdog],
    clock: FakeClock,
    receiver: Receiver,  # noqa: F811
) -> None:
    service, watchdog = one
    client = client_for(service)
    async with client:
        assert (await login(client)).status_code == 303
        assert "data-undelivered" not in (await client.get("/status")).text
        receiver.fail_next = 10**6
        await failed_run(service)
        await watchdog.check()
        page = (await client.get("/status")).text
    assert 'data-undelivered="1"' in page
    assert "1 alert not delivered yet" in page


async def test_a_replaced_webhook_takes_the_messages_of_the_old_one(
    database_url: str,
    clock: FakeClock,
    receiver: Receiver,  # noqa: F811
) -> None:
    service, watchdog = replica(database_url, clock, "http://127.0.0.1:9/revoked")
    try:
        await failed_run(service)
        await watchdog.check()  # the old webhook refuses: the message waits
    finally:
        await service.aclose()
    clock.advance(minutes=5)
    service, watchdog = replica(database_url, clock, receiver.url)  # ALERT_WEBHOOK_URL fixed
    try:
        await watchdog.check()
        assert [p["text"][:30] for p in receiver.received] == [":red_circle: collect-daily fai"]
        assert await service.alert_outbox.pending() == 0
    finally:
        await service.aclose()


async def test_delivered_messages_are_deleted_after_30_days(
    one: tuple[Service, Watchdog],
    clock: FakeClock,
    receiver: Receiver,  # noqa: F811
) -> None:
    service, watchdog = one
    await failed_run(service)
    await watchdog.check()
    [first] = await service.alert_outbox.all()
    assert first.delivered_at is not None
    clock.advance(days=29)
    await watchdog.check()  # (the job is missing by now: a message of its own)
    assert first.id in [m.id for m in await service.alert_outbox.all()]
    clock.advance(days=2)
    await watchdog.check()
    assert first.id not in [m.id for m in await service.alert_outbox.all()]


# -- runs closed as abandoned (issue 20.3): their warning through the outbox too


async def abandoned_runs(service: Service, clock: FakeClock, count: int = 2) -> list[str]:
    """Runs left ``running`` by a dead process, closed by the next lease holder (as runner.py
    does: ``close_abandoned``, then every observer's ``run_abandoned``) once silent."""
    for _ in range(count):
        await service.ledger.start_cron_run(JOB)
    clock.advance(seconds=61)  # unguarded runs are closed once silent for a minute
    closed = await service.ledger.close_abandoned(JOB, reason=ABANDONED)
    assert len(closed) == count
    await service.notify(lambda o: o.run_abandoned(JOB, closed))
    return closed


async def test_an_abandoned_run_alert_waits_out_an_outage_and_is_delivered_once(
    one: tuple[Service, Watchdog],
    clock: FakeClock,
    receiver: Receiver,  # noqa: F811
) -> None:
    service, watchdog = one
    receiver.fail_status, receiver.fail_next = 503, 3  # the webhook refuses three tries
    closed = await abandoned_runs(service, clock)
    start = clock.now
    [message] = await service.alert_outbox.all()  # queued, tried at once, refused
    assert (message.kind, message.delivered_at, receiver.attempts) == ("abandoned", None, 1)
    for _ in range(10):
        clock.advance(seconds=60)
        await watchdog.alerting.deliver(clock.now)  # a tick's delivery (no evaluation)
    # Tried at 0, 60 (30 s back-off), 120 (1 min), then 240 s (2 min): taken, once.
    assert receiver.attempts == 4
    [payload] = receiver.received
    assert payload["text"].startswith(":warning: collect-daily: 2 abandoned runs were closed")
    assert all(run_id in payload["text"] for run_id in closed)
    [message] = await service.alert_outbox.all()
    assert payload["idempotency_key"] == message.id
    assert message.delivered_at == start + timedelta(minutes=4)
    assert await service.alert_outbox.pending() == 0


async def test_the_same_abandoned_runs_queued_twice_are_one_message(
    database_url: str,
    clock: FakeClock,
    receiver: Receiver,  # noqa: F811
) -> None:
    a, watchdog_a = replica(database_url, clock, receiver.url)
    b, watchdog_b = replica(database_url, clock, receiver.url)
    receiver.fail_next = 1
    try:
        closed = await abandoned_runs(a, clock)
        # The same change heard again (here and by another replica): its key is the same.
        await watchdog_a.run_abandoned(JOB, closed)
        await watchdog_b.run_abandoned(JOB, list(reversed(closed)))
        for _ in range(3):
            clock.advance(seconds=60)
            await asyncio.gather(
                watchdog_a.alerting.deliver(clock.now), watchdog_b.alerting.deliver(clock.now)
            )
        assert len(await a.alert_outbox.all()) == 1
    finally:
        await a.aclose()
        await b.aclose()
    assert receiver.attempts == 2
    assert len(receiver.received) == 1


async def test_install_watchdog_sends_abandoned_runs_through_the_outbox_only(
    database_url: str,
    clock: FakeClock,
    receiver: Receiver,  # noqa: F811
) -> None:
    # Before: every channel was an observer of its own and posted the warning directly, once,
    # whatever the webhook answered (three 503s: lost for good).
    settings = make_settings(database_url, monitored_jobs=(JOB,), alert_webhook_url=receiver.url)
    service = Service.from_settings(settings, clock=clock, sleep=FakeSleep())
    watchdog = install_watchdog(service)
    assert [o for o in service.observers if isinstance(o, WebhookAlerter)] == []
    receiver.fail_status, receiver.fail_next = 503, 3  # one delivery: 1 try + 2 retries
    try:
        await abandoned_runs(service, clock, count=1)
        assert receiver.received == []
        assert await service.alert_outbox.pending() == 1
        clock.advance(seconds=60)
        await watchdog.alerting.deliver(clock.now)
        assert await service.alert_outbox.pending() == 0
    finally:
        await service.aclose()
    assert [p["text"][:40] for p in receiver.received] == [
        ":warning: collect-daily: 1 abandoned run"
    ]


async def test_an_abandoned_run_alert_is_sent_directly_when_the_outbox_cannot_be_written(
    one: tuple[Service, Watchdog],
    clock: FakeClock,
    receiver: Receiver,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service, watchdog = one

    async def refuse(messages: object) -> list[object]:
        raise StorageError("database unavailable (locked)")

    monkeypatch.setattr(service.alert_outbox, "add_once", refuse)
    await watchdog.run_abandoned(JOB, ["run-a"])
    [payload] = receiver.received  # at most once, as before the outbox
    assert "idempotency_key" not in payload
    assert payload["text"].startswith(":warning: collect-daily: 1 abandoned run")


async def test_a_guarded_run_that_closes_abandoned_runs_queues_their_warning(
    database_url: str,
    clock: FakeClock,
    receiver: Receiver,  # noqa: F811
) -> None:
    settings = make_settings(database_url, monitored_jobs=(JOB,), alert_webhook_url=receiver.url)
    service = Service.from_settings(settings, clock=clock, sleep=FakeSleep())
    install_watchdog(service)
    try:
        dead = await service.ledger.start_cron_run(JOB)  # its process died
        assert dead is not None
        clock.advance(seconds=service.leases.ttl + 1)  # silent past the lease's TTL
        await run_job(service, JOB)  # (the job itself fails: no Meta token; no matter)
        [message] = [m for m in await service.alert_outbox.all() if m.kind == "abandoned"]
    finally:
        await service.aclose()
    assert dead in message.text
    assert message.delivered_at is not None
    [payload] = [p for p in receiver.received if p["idempotency_key"] == message.id]
    assert payload["text"].startswith(":warning: collect-daily: 1 abandoned run")


async def test_the_warning_is_queued_in_the_transaction_that_closes_the_runs(
    database_url: str,
    clock: FakeClock,
    receiver: Receiver,  # noqa: F811
) -> None:
    """The closer dies right after its close (nothing is notified): the warning is in the
    outbox all the same, and the next delivery round sends it once. Before, the close and
    the message were two transactions, and a crash between them lost the warning."""
    settings = make_settings(database_url, monitored_jobs=(JOB,), alert_webhook_url=receiver.url)
    service = Service.from_settings(settings, clock=clock, sleep=FakeSleep())
    dog = install_watchdog(service)
    try:
        dead = await service.ledger.start_cron_run(JOB)
        assert dead is not None
        clock.advance(seconds=service.leases.ttl + 1)
        warn = service.abandoned_messages
        assert warn is not None
        now = clock()
        closed = await service.ledger.close_abandoned(
            JOB, reason="abandoned", messages=lambda ids: warn(JOB, ids, now)
        )
        assert closed == [dead]
        [queued] = [m for m in await service.alert_outbox.all() if m.kind == "abandoned"]
        assert queued.delivered_at is None and dead in queued.text
        assert dog.alerting.sender is not None
        assert await dog.alerting.sender.deliver_due(clock()) == 1
        assert await dog.alerting.sender.deliver_due(clock()) == 0
    finally:
        await service.aclose()
    assert [p["idempotency_key"] for p in receiver.received] == [queued.id]
