"""Every alert channel through Apprise: real local receivers (HTTP for ``json://``, SMTP for
``mailto://``), the CLI's ``alert test``, and the URLs kept out of logs and errors."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from cronkeeper.alerting.channels import AppriseChannel, channels_from_settings, send_test
from cronkeeper.alerting.messages import run_link
from cronkeeper.alerting.watchdog import Watchdog
from cronkeeper.config import Settings
from cronkeeper.errors import ConfigError
from cronkeeper.service import Service
from tests.cli.test_cli import cli
from tests.conftest import FakeClock, make_settings

T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
TOKEN = "tok-SeCrEt-4242"


@dataclass
class JsonReceiver:
    """What Apprise's ``json://`` posted: ``{"title", "message", "type", …}``."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def json_receiver() -> Iterator[JsonReceiver]:
    receiver = JsonReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            receiver.received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"json://127.0.0.1:{server.server_port}/hook/{TOKEN}"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Mailbox:
    port: int = 0
    messages: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        assert isinstance(content, bytes)
        self.messages.append(content.decode())
        return "250 OK"

    def url(self) -> str:
        return (
            f"mailto://127.0.0.1:{self.port}?from=ck@example.com&to=ops@example.com&mode=insecure"
        )


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with socket.socket() as probe:  # aiosmtpd's controller needs a port named in advance
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    box = Mailbox(port=port)
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


def _settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(_env_file=None, database_url=f"sqlite:///{tmp_path}/ck.db", **values)


async def test_json_and_mailto_channels_deliver_title_and_body(
    json_receiver: JsonReceiver, mailbox: Mailbox
) -> None:
    web = AppriseChannel(json_receiver.url, 1)
    mail = AppriseChannel(mailbox.url(), 2)
    assert await web.send("collect-daily failed", about="collect-daily", title="ck: failed")
    assert await mail.send("collect-daily failed", about="collect-daily", title="ck: failed")
    assert json_receiver.received[0]["title"] == "ck: failed"
    assert json_receiver.received[0]["message"] == "collect-daily failed"
    assert "Subject: ck: failed" in mailbox.messages[0]
    assert "collect-daily failed" in mailbox.messages[0]


async def test_a_channel_that_cannot_be_reached_says_so_without_its_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    channel = AppriseChannel(f"json://127.0.0.1:{port}/hook/{TOKEN}", 3)
    with caplog.at_level(logging.DEBUG):
        assert await channel.send("x", about="collect-daily") is False
    assert "json:// (ALERT_URLS entry 3)" in caplog.text
    assert TOKEN not in caplog.text


def test_an_unusable_url_is_a_config_error_naming_its_place_not_its_text(tmp_path: Path) -> None:
    settings = _settings(tmp_path, alert_urls=f"nosuchservice://{TOKEN}@host")
    with pytest.raises(ConfigError) as caught:
        channels_from_settings(settings)
    assert "ALERT_URLS entry 1" in str(caught.value) and TOKEN not in str(caught.value)
    with pytest.raises(ValueError) as invalid:
        _settings(tmp_path, alert_urls=f"json://ok/hook,{TOKEN}")
    assert "entry 2" in str(invalid.value) and TOKEN not in str(invalid.value)


def test_alert_urls_are_secrets_of_the_settings(tmp_path: Path) -> None:
    settings = _settings(tmp_path, alert_urls=f"json://h/{TOKEN}, tgram://bot/chat")
    assert settings.alert_url_list == (f"json://h/{TOKEN}", "tgram://bot/chat")
    assert TOKEN not in settings.redactor(f"posting to json://h/{TOKEN}")
    assert TOKEN not in repr(settings)


async def test_send_test_reaches_every_channel_webhook_included(
    tmp_path: Path, json_receiver: JsonReceiver, mailbox: Mailbox
) -> None:
    settings = _settings(
        tmp_path,
        alert_urls=f"{json_receiver.url},{mailbox.url()}",
        public_url="https://cron.example.com/",
    )
    results = await send_test(settings, clock=lambda: T0)
    assert [r.delivered for r in results] == [True, True]
    assert [r.destination for r in results] == [
        "json:// (ALERT_URLS entry 1)",
        "mailto:// (ALERT_URLS entry 2)",
    ]
    assert "test alert" in json_receiver.received[0]["message"]
    assert "https://cron.example.com/status" in json_receiver.received[0]["message"]


class _Recorder:
    destination = "recorder"
    url = "https://recorder.example.test/hook"
    budget = 1.0

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    async def send(
        self, text: str, *, about: str = "cronkeeper", key: str | None = None, title: str = ""
    ) -> bool:
        self.sent.append((text, about, title))
        return True


async def test_every_message_names_job_state_run_and_links_the_run_page(
    database_url: str, clock: FakeClock
) -> None:
    """Through the watchdog (and its outbox), as every alert goes: the title names the job and
    its state, the text the run, and the last line opens the run on the status page."""
    from tests.alerting.test_watchdog import FRIDAY, finish

    clock.now = FRIDAY
    settings = make_settings(
        database_url,
        monitored_jobs=("collect-daily",),
        public_url="https://cron.example.com/",
    )
    service = Service.from_settings(settings, clock=clock)
    recorder = _Recorder()
    service.observers.append(Watchdog(service, alerters=[recorder]))
    try:
        run = await finish(service, clock, "error")
    finally:
        await service.aclose()
    [(text, about, title)] = recorder.sent
    assert about == "collect-daily" and title == "cronkeeper: collect-daily down"
    assert f"run {run.id}" in text
    assert text.endswith(f"\nhttps://cron.example.com/status/runs/{run.id}")
    assert run_link("", "run-1") == "" and run_link("https://x", None) == ""


def test_cli_alert_test_exit_codes(tmp_path: Path, json_receiver: JsonReceiver) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/ck.db"}
    none = cli("alert", "test", env=env)
    assert none.returncode == 2 and "no alert channel" in none.stderr
    ok = cli("alert", "test", env={**env, "ALERT_URLS": json_receiver.url})
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["channels"] == [
        {"channel": "json:// (ALERT_URLS entry 1)", "delivered": True}
    ]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"json://127.0.0.1:{probe.getsockname()[1]}/{TOKEN}"
    failed = cli("alert", "test", env={**env, "ALERT_URLS": f"{json_receiver.url},{dead}"})
    assert failed.returncode == 1
    assert TOKEN not in failed.stdout + failed.stderr
    bad = cli("alert", "test", env={**env, "ALERT_URLS": f"bogus://{TOKEN}"})
    assert bad.returncode == 2 and TOKEN not in bad.stderr and "Traceback" not in bad.stderr
