"""``manifest.yml`` against the code: every event, command and Web API method Baton uses is
covered, and no scope is granted that nothing uses.

What the code uses is read from the source of ``bot/`` (its syntax tree, not regexes):
Bolt registrations (``@app.event("…")``, ``@app.command("…")``, …), ``poster.call("…")`` /
``client.chat_postMessage(…)`` style Web API calls, and the ``say`` helper. Scopes per method
are from docs.slack.dev/reference/methods/<method> ("Required scopes", bot token).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from slack_sdk.web.async_client import AsyncWebClient

from bot.serve import EVENTS_PATH

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "manifest.yml"
BOT = REPO / "bot"

#: Web API method → bot scopes it needs (an empty set: none). A method the code starts using
#: must be added here, with its scope from docs.slack.dev/reference/methods/<method>.
METHOD_SCOPES: dict[str, frozenset[str]] = {
    "chat.postMessage": frozenset({"chat:write"}),
    "chat.update": frozenset({"chat:write"}),
    "chat.postEphemeral": frozenset({"chat:write"}),
    "chat.delete": frozenset({"chat:write"}),
    "chat.getPermalink": frozenset(),
    # One user's DM: im:write (mpim:write only for group DMs, channels:manage never).
    "conversations.open": frozenset({"im:write"}),
    "conversations.info": frozenset({"channels:read"}),
    "conversations.history": frozenset({"channels:history", "groups:history"}),
    "conversations.replies": frozenset({"channels:history", "groups:history"}),
    "views.open": frozenset(),
    "views.push": frozenset(),
    "views.update": frozenset(),
    "views.publish": frozenset(),
    "usergroups.users.list": frozenset({"usergroups:read"}),
    "users.info": frozenset({"users:read"}),
    "reactions.add": frozenset({"reactions:write"}),
    "files.getUploadURLExternal": frozenset({"files:write"}),
    "files.completeUploadExternal": frozenset({"files:write"}),
    "auth.test": frozenset(),
}

#: Methods Bolt and slack_sdk call on Baton's behalf, never named in bot/.
IMPLICIT_METHODS = {
    "auth.test",  # Bolt's authorization, once, before the first listener runs
}
#: Called with the app-level token (its scope, connections:write, is not in a manifest).
APP_TOKEN_METHODS = {"apps.connections.open"}

#: Bolt event listener → the subscription(s) that deliver it. Baton's ``message`` listener
#: only acts on direct messages, so it needs ``message.im`` and nothing wider.
EVENT_SUBSCRIPTIONS: dict[str, frozenset[str]] = {
    "app_mention": frozenset({"app_mention"}),
    "message": frozenset({"message.im"}),
    "app_home_opened": frozenset({"app_home_opened"}),
}
#: Subscription → the bot scope it needs (docs.slack.dev/reference/events/<event>).
EVENT_SCOPES: dict[str, frozenset[str]] = {
    "app_mention": frozenset({"app_mentions:read"}),
    "message.im": frozenset({"im:history"}),
    "message.channels": frozenset({"channels:history"}),
    "message.groups": frozenset({"groups:history"}),
    "message.mpim": frozenset({"mpim:history"}),
    "app_home_opened": frozenset(),
}

#: Scopes that would let Baton impersonate people, act in channels it was not invited to, or
#: read what it has no use for. Never granted unless the code really needs them.
RISKY_SCOPES = {
    "chat:write.customize",
    "chat:write.public",
    "channels:manage",
    "groups:write",
    "mpim:write",
    "mpim:history",
    "channels:join",
    "users:read.email",
    "files:write",
    "admin",
}
#: The only write scopes Baton needs.
WRITE_SCOPES = {"chat:write", "im:write"}


# ---- reading the manifest and the code ---------------------------------------------------------


@cache
def manifest() -> dict[str, Any]:
    data = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def bot_scopes() -> list[str]:
    return list(manifest()["oauth_config"]["scopes"]["bot"])


def _trees() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(BOT.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _string(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


@cache
def registrations() -> dict[str, set[str]]:
    """Bolt registrations in bot/: kind (event, command, action, view, …) → names."""
    found: dict[str, set[str]] = {}
    kinds = {"event", "command", "action", "view", "shortcut", "options", "message"}
    for _path, tree in _trees():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner = node.func.value
            if not (isinstance(owner, ast.Name) and owner.id == "app"):
                continue
            if node.func.attr not in kinds or not node.args:
                continue
            arg = node.args[0]
            name = _string(arg)
            if name is None and isinstance(arg, ast.Dict):  # app.event({"type": "…"})
                for key, value in zip(arg.keys, arg.values, strict=True):
                    if key is not None and _string(key) == "type":
                        name = _string(value)
            assert name is not None, (
                f"cannot read the {node.func.attr} listener at line {node.lineno}"
            )
            found.setdefault(node.func.attr, set()).add(name)
    return found


def _client_methods() -> set[str]:
    return {name for name in dir(AsyncWebClient) if re.fullmatch(r"[a-z]+(_[a-zA-Z]+)+", name)}


@cache
def web_api_methods() -> dict[str, list[str]]:
    """Web API methods bot/ calls → where (file:line)."""
    client_methods = _client_methods()
    found: dict[str, list[str]] = {}

    def add(method: str, path: Path, node: ast.AST) -> None:
        where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', 0)}"
        found.setdefault(method, []).append(where)

    for path, tree in _trees():
        for node in ast.walk(tree):
            # poster.call("chat.update", …) and any other helper taking the method name first
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "call"
                and node.args
            ):
                name = _string(node.args[0])
                if name and re.fullmatch(r"[a-z]+(\.[a-zA-Z]+)+", name):
                    add(name, path, node)
            # client.chat_postMessage(…), or a typed method passed around by name
            if isinstance(node, ast.Attribute) and node.attr in client_methods:
                add(node.attr.replace("_", "."), path, node)
            # Bolt's say() posts with chat.postMessage
            if isinstance(node, ast.arg) and node.arg == "say":
                add("chat.postMessage", path, node)
    return found


def used_methods() -> set[str]:
    return set(web_api_methods()) | IMPLICIT_METHODS


def needed_scopes() -> set[str]:
    needed: set[str] = set()
    for method in used_methods() - APP_TOKEN_METHODS:
        needed |= METHOD_SCOPES[method]
    for event in manifest()["settings"]["event_subscriptions"]["bot_events"]:
        needed |= EVENT_SCOPES[event]
    if registrations().get("command"):
        needed.add("commands")
    return needed


# ---- the scanner itself ----------------------------------------------------------------------


def test_the_scanner_sees_what_baton_is_known_to_use() -> None:
    """Guards against a scanner that silently finds nothing."""
    assert {"chat.postMessage", "chat.update", "views.publish", "views.open"} <= set(
        web_api_methods()
    ), web_api_methods()
    assert "/orchestrate" in registrations()["command"]
    assert "app_mention" in registrations()["event"]


# ---- events and commands -----------------------------------------------------------------------


def test_every_event_the_code_listens_to_is_subscribed() -> None:
    subscribed = set(manifest()["settings"]["event_subscriptions"]["bot_events"])
    for event in sorted(registrations().get("event", set())):
        assert event in EVENT_SUBSCRIPTIONS, (
            f"bot/ listens to {event!r}; add its subscription(s) to EVENT_SUBSCRIPTIONS"
        )
        missing = EVENT_SUBSCRIPTIONS[event] - subscribed
        assert not missing, f"{event!r} is handled but manifest.yml does not subscribe {missing}"


def test_no_subscription_without_a_listener() -> None:
    """Every delivered event costs a request (and some need broad read scopes)."""
    handled = set().union(*(EVENT_SUBSCRIPTIONS[e] for e in registrations().get("event", set())))
    subscribed = set(manifest()["settings"]["event_subscriptions"]["bot_events"])
    assert subscribed <= handled, f"subscribed but never handled: {subscribed - handled}"
    assert not {"message.channels", "message.groups", "message.mpim"} & subscribed


def test_commands_match_the_registered_ones() -> None:
    commands = manifest()["features"]["slash_commands"]
    assert {c["command"] for c in commands} == registrations()["command"]
    for command in commands:
        assert command["should_escape"] is True, command  # mentions arrive as <@U…>
        assert command["usage_hint"].strip(), command
        assert 0 < len(command["description"]) <= 2000, command


def test_interactivity_and_home_are_on_for_the_listeners_that_need_them() -> None:
    features, settings = manifest()["features"], manifest()["settings"]
    regs = registrations()
    assert regs.get("action") and regs.get("view")
    assert settings["interactivity"]["is_enabled"] is True
    assert "views.publish" in web_api_methods()
    assert features["app_home"]["home_tab_enabled"] is True
    # message.im is handled: people must be able to write to Baton in its Messages tab.
    assert features["app_home"]["messages_tab_enabled"] is True
    assert features["app_home"]["messages_tab_read_only_enabled"] is False


def test_socket_mode_and_request_urls() -> None:
    data = manifest()
    settings = data["settings"]
    assert settings["socket_mode_enabled"] is True
    urls = [
        settings["event_subscriptions"]["request_url"],
        settings["interactivity"]["request_url"],
        *(c["url"] for c in data["features"]["slash_commands"]),
    ]
    for url in urls:
        parsed = urlparse(url)
        assert parsed.scheme == "https", url  # Slack only calls HTTPS request URLs
        assert parsed.path == EVENTS_PATH, url  # the path `baton serve --http` listens on
    assert len({urlparse(u).netloc for u in urls}) == 1, urls


def test_display_information_fits_slacks_limits() -> None:
    info = manifest()["display_information"]
    assert 0 < len(info["name"]) <= 35
    assert 0 < len(info["description"]) <= 140
    assert 175 <= len(info["long_description"]) <= 4000
    assert re.fullmatch(r"#[0-9a-fA-F]{6}", info["background_color"])
    bot_user = manifest()["features"]["bot_user"]
    assert 0 < len(bot_user["display_name"]) <= 80
    assert manifest()["_metadata"]["major_version"] == 1


# ---- scopes ------------------------------------------------------------------------------------


def test_every_method_used_is_in_the_scope_table() -> None:
    unknown = {m: where for m, where in web_api_methods().items() if m not in METHOD_SCOPES}
    unknown = {m: w for m, w in unknown.items() if m not in APP_TOKEN_METHODS}
    assert not unknown, (
        f"bot/ calls {unknown}; add each to METHOD_SCOPES with its scope "
        "(docs.slack.dev/reference/methods/<method>) and to manifest.yml if needed"
    )
    for method in used_methods():
        assert hasattr(AsyncWebClient, method.replace(".", "_")), f"no such method {method}"


def test_scopes_cover_every_method_event_and_command() -> None:
    missing = needed_scopes() - set(bot_scopes())
    assert not missing, f"manifest.yml lacks {missing} (used by {sorted(used_methods())})"


def test_no_scope_that_nothing_uses() -> None:
    extra = set(bot_scopes()) - needed_scopes()
    assert not extra, f"manifest.yml grants {extra}, which no method, event or command needs"
    assert len(bot_scopes()) == len(set(bot_scopes())), "a scope is listed twice"


@pytest.mark.parametrize("scope", sorted(RISKY_SCOPES))
def test_no_risky_scope(scope: str) -> None:
    assert scope not in bot_scopes()


def test_write_scopes_are_only_the_needed_ones() -> None:
    for scope in bot_scopes():
        if re.search(r"write|manage|admin|customize", scope):
            assert scope in WRITE_SCOPES, scope


def test_every_scope_is_justified_in_a_comment() -> None:
    text = MANIFEST.read_text(encoding="utf-8")
    for scope in bot_scopes():
        line = re.search(rf"^\s*- {re.escape(scope)}\s*#\s*(\S.*)$", text, re.MULTILINE)
        assert line, f"scope {scope} has no comment saying why Baton needs it"
