"""Safe text for Slack ``mrkdwn``: escaping, trimming, quoting, splitting, mentions and dates.

Rule of the package: every string that may come from a model, a tool or a person passes
through :func:`escape` (directly or via :func:`clip`, :func:`mrkdwn_quote`, :func:`code`,
:func:`code_chunks`) before it reaches Slack, so it can never form ``<!channel>``, ``<@U…>``
or ``<http://x|y>``, and a plain ``@channel``, ``@here`` or ``@everyone`` in it pings nobody
(:func:`defuse`). The only ``<…>`` sequences in a view are built here: :func:`mention`,
:func:`date` and :func:`link` (a link whose text is its own target, never a disguise).

Text that is meant to be Slack ``mrkdwn`` (a model's ``slack_post_message``) cannot be
escaped; :func:`bot.hygiene.safe_mrkdwn` cleans it instead, and :class:`bot.poster.Poster`
passes every outgoing payload through :func:`bot.hygiene.clean_payload` as a last line.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_ENTITIES = ("&amp;", "&lt;", "&gt;")
#: Looks the same as nothing: between ``@`` and the word, it stops the word being a mention.
ZWSP = "\u200b"
#: ``<!channel>``, ``<!here|here>``, ``<!everyone>``: Slack's broadcast tokens.
_SPECIAL_MENTION = re.compile(r"<!(channel|here|everyone)(?:\|[^>]*)?>", re.IGNORECASE)
#: A user-group mention pings every member: ``<!subteam^S0123|@oncall>``.
_GROUP_MENTION = re.compile(r"<!subteam\^[A-Za-z0-9]*(?:\|@?([^>]*))?>")
#: Plain ``@channel`` (a person typed it, a model wrote it): with ``link_names`` it pings.
_PLAIN_MENTION = re.compile(r"(?<![\w@])@(channel|here|everyone)\b", re.IGNORECASE)
_LINKABLE = re.compile(r"(?:https?://|mailto:)[^\s<>|]+", re.IGNORECASE)
_USER_ID = re.compile(r"[UW][A-Z0-9]{1,30}")
# Backticks in user text would close our code spans and blocks; this look-alike cannot.
_BACKTICK_STANDIN = "ˋ"


def defuse(text: str) -> str:
    """``text`` with broadcast and user-group mentions made inert, reading the same.

    ``<!channel>``, ``<!here>``, ``<!everyone>`` (labelled or not), ``<!subteam^…>`` and a
    plain ``@channel``, ``@here`` or ``@everyone`` become ``@channel``-looking text with a
    zero-width space after the ``@``. Idempotent; ``<@U…>`` and ``<#C…>`` are left alone.
    """
    text = _SPECIAL_MENTION.sub(lambda m: f"@{ZWSP}{m.group(1).lower()}", text)
    text = _GROUP_MENTION.sub(lambda m: f"@{ZWSP}{(m.group(1) or 'group').lstrip('@')}", text)
    return defuse_words(text)


def defuse_words(text: str) -> str:
    """Only the plain words: ``@channel``, ``@here``, ``@everyone`` (any case) pinging nobody."""
    return _PLAIN_MENTION.sub(lambda m: f"@{ZWSP}{m.group(1)}", text) if "@" in text else text


def escape(text: str) -> str:
    """The sanitiser of every view: escape the three characters Slack's ``mrkdwn`` treats as
    control characters (so no ``<…>`` token can form) and defuse plain broadcast mentions."""
    return defuse_words(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut_point(text: str, n: int) -> int:
    """``n``, moved back so that ``text[:n]`` does not end inside an escaped entity."""
    if n >= len(text):
        return len(text)
    start = text.rfind("&", max(0, n - 4), n)
    if start != -1 and any(
        text.startswith(entity, start) and start + len(entity) > n for entity in _ENTITIES
    ):
        return start
    return n


def trim(text: str, limit: int, marker: str = "…") -> str:
    """``text`` if it fits in ``limit`` characters, else its start plus ``marker``.

    Never cuts an ``&amp;``/``&lt;``/``&gt;`` entity in half, so escaped text stays valid.
    """
    if len(text) <= limit:
        return text
    if limit <= len(marker):
        return marker[:limit]
    return text[: _cut_point(text, limit - len(marker))].rstrip() + marker


def clip(text: str, limit: int) -> str:
    """Escape ``text``, then trim it to ``limit`` characters."""
    return trim(escape(text), limit)


def one_line(text: str) -> str:
    """Collapse all whitespace (newlines included) into single spaces."""
    return " ".join(text.split())


def code(text: str, limit: int = 100) -> str:
    """``text`` as inline code, escaped and trimmed; backticks inside are neutralised."""
    inner = clip(one_line(text).replace("`", _BACKTICK_STANDIN), limit)
    return f"`{inner}`" if inner else "—"


def mrkdwn_quote(text: str, limit: int | None = None) -> str:
    """Escape ``text`` and format it as a block quote, trimmed to ``limit`` characters."""
    quoted = "\n".join(f">{line}" for line in escape(text).splitlines() or [""])
    return quoted if limit is None else trim(quoted, limit)


def split(text: str, size: int, max_chunks: int, prefix: str = "") -> tuple[list[str], bool]:
    """Split already-escaped ``text`` into at most ``max_chunks`` chunks of ≤ ``size`` chars.

    Chunks break between lines where possible; a line longer than a chunk is cut (never inside
    an entity). Every output line starts with ``prefix`` (``">"`` makes each chunk a quote).
    Returns the chunks and whether some of ``text`` did not fit.
    """
    width = size - len(prefix)
    if width <= 0 or max_chunks <= 0:
        raise ValueError("chunk size must leave room for the prefix, and max_chunks be ≥ 1")
    lines: list[str] = []
    for line in text.splitlines() or [""]:
        while len(line) > width:
            cut = _cut_point(line, width) or width
            lines.append(prefix + line[:cut])
            line = line[cut:]
        lines.append(prefix + line)
    chunks: list[str] = []
    current: list[str] = []
    length = 0
    for line in lines:
        if current and length + 1 + len(line) > size:
            chunks.append("\n".join(current))
            current, length = [], 0
            if len(chunks) == max_chunks:
                return chunks, True
        length += len(line) + (1 if current else 0)
        current.append(line)
    chunks.append("\n".join(current))
    return chunks, False


def code_chunks(text: str, size: int, max_chunks: int) -> tuple[list[str], bool]:
    """Escape ``text`` and split it into code blocks of ≤ ``size`` characters each."""
    fence = "```"
    body = escape(text).replace(fence, fence[0] + _BACKTICK_STANDIN + fence[0])
    chunks, trimmed = split(body, size - 2 * len(fence) - 2, max_chunks)
    return [f"{fence}\n{chunk}\n{fence}" for chunk in chunks], trimmed


def is_user_id(user: str) -> bool:
    """Whether ``user`` is a Slack user id such as ``U0123ABCD``."""
    return _USER_ID.fullmatch(user) is not None


def mention(user: str | None, default: str = "someone") -> str:
    """``<@U123>`` for a Slack user id (``slack:U123`` too); anything else as escaped text."""
    if user is None or not user.strip():
        return default
    bare = user.removeprefix("slack:")
    return f"<@{bare}>" if is_user_id(bare) else clip(one_line(user), 80)


def link(url: str, limit: int = 300) -> str:
    """``url`` as a Slack link whose visible text is the URL itself (``<https://…>``).

    Only ``http``, ``https`` and ``mailto`` targets of one piece become links; anything else
    (or a URL longer than ``limit``) is shown as escaped text. A link is never given a label:
    what the reader sees is where it goes.
    """
    url = url.strip()
    if len(url) <= limit and _LINKABLE.fullmatch(url):
        return f"<{url}>"
    return clip(one_line(url), limit)


def date(ts: float) -> str:
    """A Slack date token showing ``ts`` in the reader's time zone, with a UTC fallback."""
    fallback = datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(ts)}^{{date_short_pretty}} {{time}}|{fallback}>"
