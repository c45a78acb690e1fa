"""Requests *into* the app, built and signed exactly as Slack builds and signs them.

Slack delivers three kinds of HTTP requests to an app (see ``shared/research/slack.md``):

* slash commands: ``application/x-www-form-urlencoded`` with the fields of §2;
* interactions (``block_actions``, ``view_submission``): a form body whose single
  field ``payload`` is JSON (§3);
* Events API callbacks and ``url_verification``: a JSON body (§4).

Every request carries ``X-Slack-Request-Timestamp`` and
``X-Slack-Signature = "v0=" + hex(HMAC-SHA256(secret, "v0:{ts}:{raw body}"))`` (§1).

The builders return ``(body_bytes, content_type)`` so a test can sign the *exact*
bytes it sends (signing a re-serialised body is the classic way to get a false
"invalid signature"). :func:`post_signed` / :func:`post_signed_sync` put the two
together.

The identifiers below describe one consistent test workspace; ``FakeSlack`` in
``tests.support.slack_api`` uses the same ones, so a request built here refers to
users, channels and the bot that the fake Web API knows about.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import random
import re
import string
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

# --- the test workspace --------------------------------------------------------------

TEAM_ID = "T0BATON01"
TEAM_DOMAIN = "baton-test"
TEAM_NAME = "Baton Test"
API_APP_ID = "A0BATON01"
BOT_USER_ID = "U0BATONBOT"
BOT_ID = "B0BATONBOT"
BOT_NAME = "baton"
USER_ID = "U0ALICE01"
USER_NAME = "alice"
OTHER_USER_ID = "U0BOB0001"
OTHER_USER_NAME = "bob"
CHANNEL_ID = "C0GENERAL1"
CHANNEL_NAME = "general"
#: The deprecated per-app verification token Slack still puts in every payload.
VERIFICATION_TOKEN = "vErIfIcAtIoNtOkEn0123456"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

_ALNUM = string.ascii_uppercase + string.digits
_rng = random.Random()
_rng_lock = threading.Lock()


def _random(chars: str, n: int) -> str:
    with _rng_lock:
        return "".join(_rng.choice(chars) for _ in range(n))


def dm_channel_id(user_id: str) -> str:
    """The id of the bot's DM (``D…``) with ``user_id``; ``FakeSlack`` derives it the same way."""
    return "D" + user_id[1:]


# --- identifiers ---------------------------------------------------------------------

_ts_lock = threading.Lock()
_last_ts_us = 0


def new_ts() -> str:
    """A fresh message timestamp (``"1732450000.000100"`` format), strictly increasing."""
    global _last_ts_us
    with _ts_lock:
        _last_ts_us = max(int(time.time() * 1_000_000), _last_ts_us + 1)
        return f"{_last_ts_us // 1_000_000}.{_last_ts_us % 1_000_000:06d}"


def new_trigger_id() -> str:
    """A trigger id in Slack's shape, e.g. ``13345224609.738474920.8088930838d88f008e0``."""
    return (
        f"{_random(string.digits, 11)}.{_random(string.digits, 9)}."
        f"{_random('0123456789abcdef', 21)}"
    )


def new_event_id() -> str:
    """An Events API ``event_id`` (``Ev`` + 10 upper-case alphanumerics)."""
    return "Ev" + _random(_ALNUM, 10)


def new_response_url(team_id: str = TEAM_ID, kind: str = "commands") -> str:
    """A realistic (unreachable) ``response_url``; pass ``FakeSlack.response_url()`` to record replies."""
    return (
        f"https://hooks.slack.com/{kind}/{team_id}/{_random(string.digits, 13)}/"
        f"{_random(string.ascii_letters + string.digits, 24)}"
    )


# --- signing -------------------------------------------------------------------------


def signature(body: bytes, secret: str, timestamp: int) -> str:
    """``v0=`` + hex HMAC-SHA256 of ``v0:{timestamp}:{body}`` keyed with ``secret``."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """The two headers Slack adds to every request it sends an app.

    ``timestamp`` defaults to now; pass an old one to exercise replay protection
    (Slack apps must reject requests more than 300 s old).
    """
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": signature(body, secret, ts),
    }


# --- slash commands ------------------------------------------------------------------


def slash_command(
    text: str,
    command: str = "/orchestrate",
    user_id: str = USER_ID,
    channel_id: str = CHANNEL_ID,
    team_id: str = TEAM_ID,
    response_url: str | None = None,
    trigger_id: str | None = None,
    *,
    user_name: str = USER_NAME,
    channel_name: str = CHANNEL_NAME,
    team_domain: str = TEAM_DOMAIN,
    api_app_id: str = API_APP_ID,
    token: str = VERIFICATION_TOKEN,
    enterprise_id: str | None = None,
    enterprise_name: str | None = None,
    is_enterprise_install: bool = False,
) -> tuple[bytes, str]:
    """A slash-command POST body, form-encoded with the fields (and field order) Slack sends."""
    fields: list[tuple[str, str]] = [
        ("token", token),
        ("team_id", team_id),
        ("team_domain", team_domain),
    ]
    # Slack only includes the enterprise fields for Enterprise Grid workspaces.
    if enterprise_id is not None:
        fields.append(("enterprise_id", enterprise_id))
        fields.append(("enterprise_name", enterprise_name or ""))
    fields += [
        ("channel_id", channel_id),
        ("channel_name", channel_name),
        ("user_id", user_id),
        ("user_name", user_name),
        ("command", command),
        ("text", text),
        ("api_app_id", api_app_id),
        ("is_enterprise_install", "true" if is_enterprise_install else "false"),
        ("response_url", response_url or new_response_url(team_id, "commands")),
        ("trigger_id", trigger_id or new_trigger_id()),
    ]
    return urllib.parse.urlencode(fields).encode(), FORM


# --- interactivity -------------------------------------------------------------------


def _payload_body(payload: Mapping[str, Any]) -> tuple[bytes, str]:
    # Interactions are form posts with one field, ``payload``, holding compact JSON.
    encoded = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return urllib.parse.urlencode({"payload": encoded}).encode(), FORM


def _find_element(
    blocks: Sequence[Mapping[str, Any]], action_id: str
) -> tuple[str | None, Mapping[str, Any] | None]:
    """Locate the interactive element ``action_id`` in message/view blocks → (block_id, element)."""
    for block in blocks:
        candidates: list[Any] = []
        if isinstance(block.get("elements"), list):
            candidates += block["elements"]
        if isinstance(block.get("accessory"), Mapping):
            candidates.append(block["accessory"])
        if isinstance(block.get("element"), Mapping):
            candidates.append(block["element"])
        for element in candidates:
            if isinstance(element, Mapping) and element.get("action_id") == action_id:
                return block.get("block_id"), element
    return None, None


def block_actions(
    action_id: str,
    value: str | None = None,
    user_id: str = USER_ID,
    channel_id: str = CHANNEL_ID,
    message_ts: str | None = None,
    message_blocks: Sequence[Mapping[str, Any]] | None = None,
    block_id: str | None = None,
    trigger_id: str | None = None,
    team_id: str = TEAM_ID,
    *,
    message: Mapping[str, Any] | None = None,
    message_text: str | None = None,
    button_text: str | None = None,
    action_type: str = "button",
    response_url: str | None = None,
    is_ephemeral: bool = False,
    user_name: str = USER_NAME,
    channel_name: str = CHANNEL_NAME,
    team_domain: str = TEAM_DOMAIN,
    api_app_id: str = API_APP_ID,
    bot_id: str = BOT_ID,
    bot_user_id: str = BOT_USER_ID,
    token: str = VERIFICATION_TOKEN,
    state_values: Mapping[str, Any] | None = None,
) -> tuple[bytes, str]:
    """A ``block_actions`` interaction for a click on a button in a message (slack.md §3).

    Pass ``message=`` (e.g. an entry of ``FakeSlack.messages(channel)``) to click a
    button in a message the bot really posted: ts, text and blocks come from it, and
    ``block_id``/``value``/button text are looked up from the element with
    ``action_id`` unless given explicitly, just as Slack would fill them in.
    """
    if message is not None:
        message_ts = message_ts or message.get("ts")
        message_blocks = message_blocks if message_blocks is not None else message.get("blocks")
        message_text = message_text if message_text is not None else message.get("text", "")
    blocks = list(message_blocks or [])
    message_ts = message_ts or new_ts()
    found_block_id, element = _find_element(blocks, action_id)
    if element is not None:
        if value is None:
            value = element.get("value")
        if button_text is None and isinstance(element.get("text"), Mapping):
            button_text = element["text"].get("text")
    block_id = block_id or found_block_id or _random(string.ascii_letters + string.digits, 4)

    action: dict[str, Any] = {
        "action_id": action_id,
        "block_id": block_id,
        "text": {"type": "plain_text", "text": button_text or action_id, "emoji": True},
    }
    # A button without a value arrives without the key at all.
    if value is not None:
        action["value"] = value
    action["type"] = action_type
    action["action_ts"] = new_ts()

    slack_message: dict[str, Any] = {
        "user": bot_user_id,
        "type": "message",
        "ts": message_ts,
        "bot_id": bot_id,
        "app_id": api_app_id,
        "text": message_text or "",
        "team": team_id,
        "blocks": blocks,
    }
    if message is not None and message.get("thread_ts"):
        slack_message["thread_ts"] = message["thread_ts"]

    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "api_app_id": api_app_id,
        "token": token,
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": is_ephemeral,
        },
        "trigger_id": trigger_id or new_trigger_id(),
        "team": {"id": team_id, "domain": team_domain},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": channel_name},
        "message": slack_message,
        "state": {"values": dict(state_values or {})},
        "response_url": response_url or new_response_url(team_id, "actions"),
        "actions": [action],
    }
    return _payload_body(payload)


def _state_value(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return {"type": "plain_text_input", "value": value}
    return dict(value)


def view_submission(
    callback_id: str | None,
    values: Mapping[str, Mapping[str, Any]],
    private_metadata: str | None = None,
    user_id: str = USER_ID,
    team_id: str = TEAM_ID,
    *,
    view: Mapping[str, Any] | None = None,
    view_id: str | None = None,
    title: str = "Baton",
    blocks: Sequence[Mapping[str, Any]] | None = None,
    trigger_id: str | None = None,
    response_urls: Sequence[Mapping[str, Any]] = (),
    user_name: str = USER_NAME,
    team_domain: str = TEAM_DOMAIN,
    api_app_id: str = API_APP_ID,
    bot_id: str = BOT_ID,
    token: str = VERIFICATION_TOKEN,
) -> tuple[bytes, str]:
    """A ``view_submission`` interaction (slack.md §3).

    ``values`` is ``{block_id: {action_id: value}}``; a ``str``/``None`` value becomes
    ``{"type": "plain_text_input", "value": value}`` and a mapping is sent as given
    (for selects, dates, …). Pass ``view=`` (e.g. ``FakeSlack.views_opened[-1]``) to
    submit the modal the app really opened: id, hash, blocks, title, callback_id and
    private_metadata are taken from it unless given.
    """
    base: Mapping[str, Any] = view or {}
    vid = view_id or base.get("id") or "V" + _random(_ALNUM, 10)
    state = {
        block: {action: _state_value(v) for action, v in actions.items()}
        for block, actions in values.items()
    }
    submitted: dict[str, Any] = {
        "id": vid,
        "team_id": team_id,
        "type": "modal",
        "blocks": list(blocks if blocks is not None else base.get("blocks", [])),
        "private_metadata": (
            private_metadata if private_metadata is not None else base.get("private_metadata", "")
        ),
        "callback_id": callback_id if callback_id is not None else base.get("callback_id", ""),
        "state": {"values": state},
        "hash": base.get("hash") or f"{int(time.time())}.{_random(string.ascii_letters, 8)}",
        "title": base.get("title") or {"type": "plain_text", "text": title, "emoji": True},
        "clear_on_close": bool(base.get("clear_on_close", False)),
        "notify_on_close": bool(base.get("notify_on_close", False)),
        "close": base.get("close"),
        "submit": base.get("submit") or {"type": "plain_text", "text": "Submit", "emoji": True},
        "previous_view_id": base.get("previous_view_id"),
        "root_view_id": base.get("root_view_id") or vid,
        "app_id": api_app_id,
        "external_id": base.get("external_id", ""),
        "app_installed_team_id": team_id,
        "bot_id": bot_id,
    }
    payload: dict[str, Any] = {
        "type": "view_submission",
        "team": {"id": team_id, "domain": team_domain},
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "api_app_id": api_app_id,
        "token": token,
        "trigger_id": trigger_id or new_trigger_id(),
        "view": submitted,
        "response_urls": list(response_urls),
        "is_enterprise_install": False,
        "enterprise": None,
    }
    return _payload_body(payload)


# --- Events API ----------------------------------------------------------------------

_event_time_counter = itertools.count()


def event_callback(
    event: Mapping[str, Any],
    event_id: str | None = None,
    team_id: str = TEAM_ID,
    api_app_id: str = API_APP_ID,
    authorizations: Sequence[Mapping[str, Any]] | None = None,
    *,
    event_time: int | None = None,
    bot_user_id: str = BOT_USER_ID,
    token: str = VERIFICATION_TOKEN,
) -> tuple[bytes, str]:
    """An Events API ``event_callback`` envelope around ``event`` (JSON body, slack.md §4).

    ``authorizations`` defaults to the single entry Slack sends: the bot user of this
    installation. Reuse an ``event_id`` to simulate one of Slack's retries.
    """
    envelope = {
        "token": token,
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": None,
        "api_app_id": api_app_id,
        "event": dict(event),
        "type": "event_callback",
        "event_id": event_id or new_event_id(),
        "event_time": int(time.time()) if event_time is None else event_time,
        "authorizations": [
            dict(a)
            for a in (
                authorizations
                or [
                    {
                        "enterprise_id": None,
                        "team_id": team_id,
                        "user_id": bot_user_id,
                        "is_bot": True,
                        "is_enterprise_install": False,
                    }
                ]
            )
        ],
        "is_ext_shared_channel": False,
        "event_context": "4-" + _random(string.ascii_letters + string.digits, 40),
    }
    return json.dumps(envelope).encode(), JSON


def url_verification(
    challenge: str | None = None, token: str = VERIFICATION_TOKEN
) -> tuple[bytes, str]:
    """The handshake Slack sends when a Request URL is saved; the app must echo ``challenge``."""
    body = {
        "token": token,
        "challenge": challenge or _random(string.ascii_letters + string.digits, 48),
        "type": "url_verification",
    }
    return json.dumps(body).encode(), JSON


_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")


def rich_text_blocks(text: str) -> list[dict[str, Any]]:
    """The ``rich_text`` block Slack attaches to a user's message, with ``<@U…>`` as user elements."""
    elements: list[dict[str, Any]] = []
    pos = 0
    for match in _MENTION.finditer(text):
        if match.start() > pos:
            elements.append({"type": "text", "text": text[pos : match.start()]})
        elements.append({"type": "user", "user_id": match.group(1)})
        pos = match.end()
    if pos < len(text):
        elements.append({"type": "text", "text": text[pos:]})
    return [
        {
            "type": "rich_text",
            "block_id": _random(string.ascii_letters + string.digits, 4),
            "elements": [{"type": "rich_text_section", "elements": elements}],
        }
    ]


def app_mention_event(
    text: str,
    *,
    user_id: str = USER_ID,
    channel_id: str = CHANNEL_ID,
    ts: str | None = None,
    thread_ts: str | None = None,
    team_id: str = TEAM_ID,
    mention: bool = True,
    bot_user_id: str = BOT_USER_ID,
) -> dict[str, Any]:
    """An ``app_mention`` event; ``mention=True`` prefixes ``<@bot>`` unless ``text`` already has it."""
    if mention and f"<@{bot_user_id}>" not in text:
        text = f"<@{bot_user_id}> {text}"
    ts = ts or new_ts()
    event: dict[str, Any] = {
        "type": "app_mention",
        "user": user_id,
        "text": text,
        "ts": ts,
        "client_msg_id": str(uuid.uuid4()),
        "team": team_id,
        "blocks": rich_text_blocks(text),
        "channel": channel_id,
        "event_ts": ts,
    }
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return event


def message_im_event(
    text: str,
    *,
    user_id: str = USER_ID,
    channel_id: str | None = None,
    ts: str | None = None,
    thread_ts: str | None = None,
    team_id: str = TEAM_ID,
    bot_id: str | None = None,
    subtype: str | None = None,
) -> dict[str, Any]:
    """A ``message`` event in a DM with the bot (``message.im``; ``channel_type: "im"``).

    Set ``bot_id`` (and ``user_id=BOT_USER_ID``) to model the bot's own post coming back.
    """
    ts = ts or new_ts()
    event: dict[str, Any] = {
        "type": "message",
        "user": user_id,
        "text": text,
        "ts": ts,
        "team": team_id,
        "blocks": rich_text_blocks(text),
        "channel": channel_id or dm_channel_id(user_id),
        "event_ts": ts,
        "channel_type": "im",
    }
    if bot_id is None:
        # Only human messages carry a client_msg_id.
        event["client_msg_id"] = str(uuid.uuid4())
    else:
        event["bot_id"] = bot_id
        event["app_id"] = API_APP_ID
    if subtype is not None:
        event["subtype"] = subtype
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return event


def app_home_opened_event(
    *,
    user_id: str = USER_ID,
    channel_id: str | None = None,
    tab: str = "home",
    view: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An ``app_home_opened`` event; ``view`` is present only once a Home view was published."""
    event: dict[str, Any] = {
        "type": "app_home_opened",
        "user": user_id,
        "channel": channel_id or dm_channel_id(user_id),
        "tab": tab,
        "event_ts": new_ts(),
    }
    if view is not None:
        event["view"] = dict(view)
    return event


# --- sending -------------------------------------------------------------------------


def _signed_headers(
    body: bytes,
    content_type: str,
    secret: str,
    timestamp: int | None,
    headers: Mapping[str, str] | None,
) -> dict[str, str]:
    out = {
        "Content-Type": content_type,
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        **sign(body, secret, timestamp),
    }
    out.update(headers or {})
    return out


async def post_signed(
    url: str,
    body: bytes,
    content_type: str,
    secret: str,
    *,
    timestamp: int | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109 - the HTTP client's total timeout
) -> tuple[int, str]:
    """POST ``body`` to the app the way Slack does (signed); returns ``(status, response text)``.

    Extra ``headers`` (e.g. ``X-Slack-Retry-Num``) are added after signing and may
    override the signature headers to test rejection.
    """
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
        session.post(
            url,
            data=body,
            headers=_signed_headers(body, content_type, secret, timestamp, headers),
        ) as response,
    ):
        return response.status, await response.text()


def post_signed_sync(
    url: str,
    body: bytes,
    content_type: str,
    secret: str,
    *,
    timestamp: int | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, str]:
    """Blocking twin of :func:`post_signed` (urllib, ignores proxy variables)."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers=_signed_headers(body, content_type, secret, timestamp, headers),
    )
    # An empty ProxyHandler keeps HTTP(S)_PROXY from hijacking 127.0.0.1 traffic.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")
