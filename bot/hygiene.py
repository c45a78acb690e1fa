"""Slack text hygiene at the edge: what comes in from Slack, and what goes out to it.

In: Slack delivers command and message text with its own markup (``<https://a|a>``,
``<mailto:x@y|x@y>``, ``<@U1>``, ``<#C1|deals>``, ``<!channel>``, ``<!subteam^S1|@sales>``)
and HTML-escaped ``& < >``. :func:`from_slack` turns all of it into plain text once, before a
goal or an input reaches the engine: links become their target, broadcasts are defused.

Out: views escape everything (:func:`bot.views.text.escape`). Text that must stay ``mrkdwn``
(a model's ``slack_post_message``) goes through :func:`safe_mrkdwn`: a masked link shows its
real target, broadcast and user-group mentions ping nobody. :func:`clean_payload` applies the
same rules to every text of every message and view the :class:`~bot.poster.Poster` sends, as
a last line of defence for text that skipped a view (error messages, notes).
"""

from __future__ import annotations

import html
import re
import shlex
from collections.abc import Collection
from typing import Any

from bot.views.text import ZWSP, defuse, defuse_words

#: One Slack token: ``<target>`` or ``<target|label>``.
_TOKEN = re.compile(r"<([^<>|\s][^<>|]*)(?:\|([^<>]*))?>")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
_USER = re.compile(r"^@([UW][A-Z0-9]+)$")
_CHANNEL = re.compile(r"^#([CGD][A-Z0-9]+)$")
_GROUP = re.compile(r"^!subteam\^([A-Za-z0-9]+)$")
#: A label that reads like an address, a host or a URL: it must never stand for another one.
_ADDRESS_LIKE = re.compile(r"^\S*[.@/:]\S*$")
#: A placeholder for a Slack token while a command is split into words.
_KEPT = re.compile("\x00(\\d+)\x00")
_QUOTES = (("“", '"'), ("”", '"'), ("‘", "'"), ("’", "'"))

#: Web API methods whose arguments are shown to people, and where.
_MESSAGE_METHODS = frozenset(
    {"chat.postMessage", "chat.update", "chat.postEphemeral", "chat.scheduleMessage"}
)
_VIEW_METHODS = frozenset({"views.open", "views.push", "views.update", "views.publish"})


def _bare(target: str) -> str:
    """A URL or address as people compare them: no scheme, no ``www.``, no trailing slash."""
    value = _SCHEME.sub("", target.strip().lower()).lstrip("/")
    return value.removeprefix("www.").rstrip("/")


def _same(label: str, target: str) -> bool:
    return _bare(label) == _bare(target)


def _plain_link(target: str, label: str | None) -> str:
    """The plain text of a link: its target, with a wordy label kept before it."""
    address = target.removeprefix("mailto:") if target.lower().startswith("mailto:") else target
    words = (label or "").strip()
    if not words or _same(words, target) or _ADDRESS_LIKE.match(words):
        return address
    return f"{words} ({address})"


def from_slack(text: str) -> str:
    """Slack's command or message text as plain text, for goals and inputs alike.

    ``<https://a.example|a.example>`` → ``https://a.example`` (a wordy label is kept before
    the URL: ``the spec (https://…)``), ``<mailto:a@b.c|a@b.c>`` → ``a@b.c``, ``<@U123>`` →
    ``@U123``, ``<#C123|deals>`` → ``#deals (C123)``, ``<!channel>`` and ``<!subteam^S1|@sales>``
    → a defused ``@channel`` / ``@sales``, ``<!date^…|fallback>`` → ``fallback``. HTML
    entities are undone and smart quotes made straight, so what a person typed is what the
    engine gets (a literal ``<!here>`` they typed is defused too).
    """
    return _plain(_typed(text)).strip()


def _typed(text: str) -> str:
    """What the person typed: Slack's HTML entities undone, smart quotes made straight."""
    text = html.unescape(text or "")
    for a, b in _QUOTES:
        text = text.replace(a, b)
    return text


def _plain(text: str) -> str:
    """Slack's markup as plain text, broadcasts defused (see :func:`from_slack`)."""
    return defuse(_TOKEN.sub(_plain_token, text))


def slack_words(text: str) -> list[str]:
    """Slack's command text split like a shell line (``key="two words"``), each word then made
    plain with :func:`from_slack`. Slack's markup is kept whole while splitting, so a link
    label or a channel name with spaces never splits a word. Raises ``ValueError`` on an
    unclosed quote, as :func:`shlex.split` does.
    """
    kept: list[str] = []

    def keep(m: re.Match[str]) -> str:
        kept.append(m.group(0))
        return f"\x00{len(kept) - 1}\x00"

    words = shlex.split(_TOKEN.sub(keep, _typed(text)))
    return [_plain(_KEPT.sub(lambda m: kept[int(m.group(1))], w)) for w in words]


def _plain_token(m: re.Match[str]) -> str:
    target, label = m.group(1).strip(), m.group(2)
    if user := _USER.match(target):
        return f"@{user.group(1)}"
    if channel := _CHANNEL.match(target):
        return f"#{label.strip()} ({channel.group(1)})" if label else f"#{channel.group(1)}"
    if target.startswith("!"):
        special = target[1:].split("^", 1)[0].lower()
        if special in ("channel", "here", "everyone"):
            return f"@{ZWSP}{special}"
        if special == "subteam":
            return f"@{ZWSP}{(label or 'group').strip().lstrip('@')}"
        return (label or special).strip()
    if _SCHEME.match(target):
        return _plain_link(target, label)
    return m.group(0)  # not Slack markup: someone typed angle brackets


def safe_mrkdwn(text: str, allowed_groups: Collection[str] = ()) -> str:
    """``mrkdwn`` written by someone else (a model), made safe to post as it is.

    A masked link shows its real target: ``<https://sso.evil.example|acme.example>`` becomes
    ``<https://sso.evil.example>`` (a label that reads like an address or URL is dropped; a
    wordy one is kept as text before the link). Broadcasts and user-group mentions are
    defused (except groups in ``allowed_groups``: Baton's own, configured approver groups).
    User mentions, channel links and dates are kept; any other ``<…>`` is shown as text.
    Idempotent, and a no-op on text built by :mod:`bot.views`.
    """

    def token(m: re.Match[str]) -> str:
        target, label = m.group(1).strip(), m.group(2)
        if _USER.match(target) or _CHANNEL.match(target) or target.startswith("!date^"):
            return m.group(0)
        group = _GROUP.match(target)
        if group and group.group(1) in allowed_groups and label is None:
            return m.group(0)
        if target.startswith("!"):
            return defuse(m.group(0)) if _is_ping(target) else _inert(m.group(0))
        if _SCHEME.match(target):
            words = (label or "").strip()
            if not words or _same(words, target) or _ADDRESS_LIKE.match(words):
                return f"<{target}>"
            return f"{words} (<{target}>)"
        return _inert(m.group(0))

    return defuse_words(_TOKEN.sub(token, text))


def _is_ping(target: str) -> bool:
    special = target[1:].split("^", 1)[0].split("|", 1)[0].lower()
    return special in ("channel", "here", "everyone", "subteam")


def _inert(token: str) -> str:
    return token.replace("<", "&lt;").replace(">", "&gt;")


def safe_plain(text: str) -> str:
    """``plain_text`` (never parsed for links or mentions): only broadcast words defused."""
    return defuse(text) if "@" in text or "<!" in text else text


def clean_payload(
    method: str, kwargs: dict[str, Any], allowed_groups: Collection[str] = ()
) -> dict[str, Any]:
    """The arguments of a Web API call with every text people will read made safe.

    Messages: the fallback ``text`` and every text object in ``blocks`` (sections, fields,
    context elements, buttons, confirm dialogs). Views: every text object (titles included).
    ``link_names`` and ``parse`` are dropped: Baton never asks Slack to turn names into pings.
    Input values, button values and metadata are left alone.
    """
    if method in _MESSAGE_METHODS:
        out = {k: v for k, v in kwargs.items() if k not in ("link_names", "parse")}
        if isinstance(out.get("text"), str):
            out["text"] = safe_mrkdwn(out["text"], allowed_groups)
        if isinstance(out.get("blocks"), list):
            out["blocks"] = _clean(out["blocks"], allowed_groups)
        return out
    if method in _VIEW_METHODS and isinstance(kwargs.get("view"), dict):
        return {**kwargs, "view": _clean(kwargs["view"], allowed_groups)}
    return kwargs


def _clean(value: Any, allowed_groups: Collection[str]) -> Any:
    if isinstance(value, list):
        return [_clean(v, allowed_groups) for v in value]
    if not isinstance(value, dict):
        return value
    kind, text = value.get("type"), value.get("text")
    if kind in ("mrkdwn", "plain_text") and isinstance(text, str):
        clean = safe_mrkdwn(text, allowed_groups) if kind == "mrkdwn" else safe_plain(text)
        return {**value, "text": clean}
    return {k: _clean(v, allowed_groups) for k, v in value.items()}
