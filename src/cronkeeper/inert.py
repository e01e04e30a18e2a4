"""Outside text made inert wherever it goes: a terminal, a log line, a chat message.

Notion page names, API error texts and request paths end up in ``error_message``, in the log
and in alerts. Written as they came, they act (issue 19): ``Acme [/b]`` is Rich markup that
made ``cronkeeper runs`` exit 1, ``[link=…]`` a terminal hyperlink, ``\\x1b[…`` an escape
sequence, ``\\n2026-… INFO forged`` a second log record, ``@channel`` a ping of everyone.
Each destination gets one pure function; callers pass text through it at the last moment,
after redaction and truncation.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["for_chat", "printable"]

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Cc: C0/C1 controls (ESC, BEL, NUL, …); Cf: format characters, among them the bidi
# overrides (U+202E) that reorder what a reader sees; Zl/Zp: the Unicode line and paragraph
# separators, which some terminals and log viewers break lines on.
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp"})
_MENTION = re.compile(r"@(channel|here|everyone)\b", re.IGNORECASE)
_MARKDOWN_LINK = re.compile(r"\]\(")
_ZERO_WIDTH_SPACE = "\u200b"


def _escaped(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control, format and line-separator character written as its
    escape (``\\x1b``, ``\\n``, ``\\u202e``), so that it prints on one line and does nothing
    but show itself; ``keep_newlines`` leaves ``\\n`` as it is (a message meant to be read
    line by line)."""
    if text.isprintable() and "\n" not in text:
        return text  # the common case, without a walk over the characters
    return "".join(
        char
        if (keep_newlines and char == "\n") or unicodedata.category(char) not in _HIDDEN
        else _escaped(char)
        for char in text
    )


def for_chat(text: str) -> str:
    """``text`` as plain words in a Slack-compatible chat message.

    - ``&``, ``<`` and ``>`` become ``&amp;``, ``&lt;`` and ``&gt;``: Slack's three control
      characters ("Slack uses &, <, and > as control characters for special parsing … replace
      the character with its corresponding HTML entity", https://api.slack.com/reference/
      surfaces/formatting#escaping), which defuses ``<!channel>``, ``<!here>``,
      ``<!subteam^…>``, ``<@U…>`` and ``<url|text>`` links;
    - ``@channel``, ``@here`` and ``@everyone`` get a zero-width space after the ``@``: plain
      text that Mattermost and Discord (its ``/slack`` endpoint) read as mentions;
    - a Markdown link ``[text](url)`` gets one between ``]`` and ``(`` (Discord and
      Mattermost render those, and the shown text can lie about the URL);
    - other control characters are escaped as in :func:`printable`; line breaks stay.
    """
    text = printable(text, keep_newlines=True)  # first: the zero-width spaces below stay
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MENTION.sub(lambda m: f"@{_ZERO_WIDTH_SPACE}{m.group(1)}", text)
    return _MARKDOWN_LINK.sub(f"]{_ZERO_WIDTH_SPACE}(", text)
