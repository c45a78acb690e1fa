"""Block Kit building blocks as plain dicts, and Slack's limits (slack.md §7).

Builders enforce limits as a last line of defence (trimming text, refusing oversized ids), so
a view that forgot to budget still produces a payload Slack accepts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bot.views.text import trim

Block = dict[str, Any]

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_SECTION_TEXT = 3_000
#: What views aim for, leaving room for a marker or a note.
SECTION_BUDGET = 2_900
MAX_HEADER_TEXT = 150
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2_000
MAX_ID = 255
MAX_CONTEXT_ELEMENTS = 10
MAX_VIEW_TITLE = 24
MAX_PRIVATE_METADATA = 3_000
MAX_INPUT_LENGTH = 3_000
#: Fallback ``text`` of a message: shown in notifications; chat.update refuses > 4,000.
FALLBACK_BUDGET = 300


def mrkdwn(text: str, limit: int = MAX_SECTION_TEXT) -> dict[str, Any]:
    """A ``mrkdwn`` text object. ``verbatim`` stops Slack from turning bare names into links."""
    return {"type": "mrkdwn", "text": trim(text, limit) or "—", "verbatim": True}


def plain(text: str, limit: int = MAX_SECTION_TEXT) -> dict[str, Any]:
    """A ``plain_text`` text object (emoji shortcodes rendered)."""
    return {"type": "plain_text", "text": trim(text, limit) or "—", "emoji": True}


def section(text: str) -> Block:
    """A section with ``mrkdwn`` text (trimmed to Slack's 3,000 characters if need be)."""
    return {"type": "section", "text": mrkdwn(text)}


def sections(lines: Iterable[str], size: int = SECTION_BUDGET) -> list[Block]:
    """Group lines into as few sections of ≤ ``size`` characters as they fit in."""
    groups: list[list[str]] = []
    length = 0
    for line in lines:
        if not groups or length + 1 + len(line) > size:
            groups.append([])
            length = -1
        groups[-1].append(line)
        length += 1 + len(line)
    return [section("\n".join(group)) for group in groups]


def context(*texts: str) -> Block:
    """A context block: small grey ``mrkdwn`` lines (at most 10 elements)."""
    return {"type": "context", "elements": [mrkdwn(t) for t in texts[:MAX_CONTEXT_ELEMENTS]]}


def header(text: str) -> Block:
    """A header block (plain text, 150 characters)."""
    return {"type": "header", "text": plain(text, MAX_HEADER_TEXT)}


def divider() -> Block:
    """A divider line."""
    return {"type": "divider"}


def checked_id(value: str, limit: int = MAX_ID) -> str:
    """``value`` unchanged, or ``ValueError``: an id or value cut short would route wrongly."""
    if not value or len(value) > limit:
        raise ValueError(f"{value[:40]!r}… is empty or longer than {limit} characters")
    return value


def button(text: str, action_id: str, value: str, style: str | None = None) -> Block:
    """A button; ``style`` is ``"primary"``, ``"danger"`` or ``None``."""
    element: Block = {
        "type": "button",
        "text": plain(text, MAX_BUTTON_TEXT),
        "action_id": checked_id(action_id),
        "value": checked_id(value, MAX_BUTTON_VALUE),
    }
    if style is not None:
        element["style"] = style
    return element


def actions(block_id: str, *elements: Block) -> Block:
    """An actions block holding ``elements``."""
    return {"type": "actions", "block_id": checked_id(block_id), "elements": list(elements)}
