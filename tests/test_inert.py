"""Outside text is inert wherever it goes (issue 19): terminal, log line, chat message."""

from __future__ import annotations

import io
import logging

import pytest
from rich.console import Console

from cronkeeper.inert import for_chat, printable
from cronkeeper.logs import OneLineFormatter


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Acme [/b]", "Acme [/b]"),  # markup is the caller's business (plain Text)
        ("red\x1b[31m!", "red\\x1b[31m!"),
        ("a\nb\r\tc", "a\\nb\\r\\tc"),
        ("bell\x07 nul\x00", "bell\\x07 nul\\x00"),
        ("csi\x9b2J", "csi\\x9b2J"),
        ("evil\u202etxt.exe", "evil\\u202etxt.exe"),  # a bidi override reorders what is read
        ("line\u2028sep", "line\\u2028sep"),
        ("Café 東京 🚀", "Café 東京 🚀"),
    ],
)
def test_printable_shows_control_characters_as_escapes(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_printable_can_keep_newlines_for_text_read_line_by_line() -> None:
    assert printable("a\n\x1bb", keep_newlines=True) == "a\n\\x1bb"


@pytest.mark.parametrize(
    ("text", "inert"),
    [
        ("ping @channel now", "ping @\u200bchannel now"),
        ("@here and @EVERYONE", "@\u200bhere and @\u200bEVERYONE"),
        ("<!channel> <!subteam^S1> <@U1>", "&lt;!channel&gt; &lt;!subteam^S1&gt; &lt;@U1&gt;"),
        ("<https://evil.test|Meta login>", "&lt;https://evil.test|Meta login&gt;"),
        ("[Meta login](https://evil.test)", "[Meta login]\u200b(https://evil.test)"),
        ("a & b\nnext line\x1b", "a &amp; b\nnext line\\x1b"),
        ("mail@channels.test", "mail@channels.test"),
    ],
)
def test_for_chat_neutralises_mentions_links_and_slack_controls(text: str, inert: str) -> None:
    assert for_chat(text) == inert


def test_a_log_record_stays_one_line_whatever_its_text() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(OneLineFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("cronkeeper.test.inert")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        forged = "/x\n2026-12-04 00:00:00 INFO cronkeeper: all good\x1b[2J"
        logger.warning("wrong bearer token for %s", forged)
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0] == (
        "WARNING wrong bearer token for /x\\n2026-12-04 00:00:00 INFO cronkeeper: all good\\x1b[2J"
    )
    assert lines[1].startswith("ERROR failed\\nTraceback (most recent call last):")
    assert "ValueError: boom\\nsecond line" in lines[1]


def test_the_runs_table_prints_stored_text_as_plain_text() -> None:
    from datetime import UTC, datetime

    from cronkeeper.ledger import RunRow
    from cronkeeper.runs_table import print_runs

    at = datetime(2026, 12, 4, tzinfo=UTC)
    message = (
        "skipped 1 of 1 pages:\n- page 1 (Acme [/b]): [link=https://evil.test]x[/link]\x1b]8;;"
    )
    row = RunRow("r1", "sync-notion", at, at, "error", 0, message)
    buffer = io.StringIO()
    console = Console(file=buffer, width=400, force_terminal=True, color_system="truecolor")

    print_runs(console, [row], UTC, "UTC")  # "Acme [/b]" used to raise MarkupError

    shown = buffer.getvalue()
    assert "Acme [/b]" in shown
    assert "[link=https://evil.test]x[/link]" in shown
    assert "\x1b]8;" not in shown  # no terminal hyperlink, from markup or from the text
    assert "\\x1b]8;;" in shown
