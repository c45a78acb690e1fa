"""``FakeSlack``: a stand-in for Slack's Web API at the network boundary.

A real aiohttp server on ``127.0.0.1`` (ephemeral port) in its own thread and event
loop, so sync tests, async tests and ``baton`` subprocesses can all talk to it. Point
the real client at it::

    with FakeSlack() as fake:
        client = AsyncWebClient(token="xoxb-test", base_url=fake.base_url)
        await client.chat_postMessage(channel=CHANNEL_ID, text="hi")
        assert fake.messages(CHANNEL_ID)[0]["text"] == "hi"

What it models (see ``shared/research/slack.md`` §6–7):

* every transport slack_sdk uses: JSON bodies (chat.*, views.*), form bodies,
  query strings (GET readers, ``auth.test``, ``reactions.add``, ``files.*``),
  multipart, and the raw-bytes POST to a ``files.getUploadURLExternal`` upload URL;
* ``Authorization: Bearer`` checks (``not_authed``, ``invalid_auth``, revoked tokens,
  ``not_allowed_token_type`` for ``xapp-`` vs ``xoxb-``);
* realistic state: channels with messages, threads, edits, reactions, DMs, users
  with time zones, user groups, modals and Home tabs, uploaded files, and
  ``response_url`` endpoints (what Bolt's ``respond()`` posts to);
* Slack's documented limits, answered with Slack's error codes and its
  ``response_metadata.messages`` wording (``"[ERROR] … [json-pointer:/blocks/0/…]"``);
* scripted faults: ``fail``, ``rate_limit`` (429 + ``Retry-After``), ``fail_http``,
  ``delay`` and enforced per-channel posting pace (``enforce_post_rate``).

Every request is recorded (``calls``) with its parsed arguments, so tests can
assert on what the app sent, whatever the transport.

State is guarded by one lock: the server thread mutates it, test threads read
snapshots (deep copies), so reads are always consistent.

Deliberate simplifications: triggers never expire on their own (use
``expire_trigger``), workspace-wide rate tiers are not modelled (script them with
``rate_limit``), file shares and message posts take effect immediately.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import inspect
import itertools
import json
import math
import random
import re
import socket
import string
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

from aiohttp import web

from tests.support.slack_requests import (
    API_APP_ID,
    BOT_ID,
    BOT_NAME,
    BOT_USER_ID,
    CHANNEL_ID,
    CHANNEL_NAME,
    OTHER_USER_ID,
    OTHER_USER_NAME,
    TEAM_DOMAIN,
    TEAM_ID,
    TEAM_NAME,
    USER_ID,
    USER_NAME,
    dm_channel_id,
)

__all__ = [
    "RESPONSE_URL_METHOD",
    "UPLOAD_METHOD",
    "FakeSlack",
    "RecordedCall",
    "SlackChannel",
    "SlackUser",
]

# --- Slack's documented limits (slack.md §7) -----------------------------------------

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100  # modals and Home tabs alike
MAX_MESSAGE_TEXT = 40_000
MAX_UPDATE_TEXT = 4_000  # chat.update answers msg_too_long beyond this (slack.md §6)
MAX_SECTION_TEXT = 3_000
MAX_SECTION_FIELDS = 10
MAX_FIELD_TEXT = 2_000
MAX_HEADER_TEXT = 150
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2_000
MAX_URL = 3_000
MAX_ID = 255  # action_id, block_id, callback_id, external_id
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_MARKDOWN_TEXT = 12_000
MAX_VIEW_TITLE = 24  # title, submit and close
MAX_PRIVATE_METADATA = 3_000
# "Views are limited to 250kb"; decimal kB is the stricter reading, so code that
# passes here passes at Slack.
MAX_VIEW_BYTES = 250_000
MAX_MODAL_STACK = 3
MAX_RESPONSE_URL_USES = 5

#: ``RecordedCall.method`` of a POST to an upload URL from files.getUploadURLExternal.
UPLOAD_METHOD = "upload"
#: ``RecordedCall.method`` of a POST to a URL from :meth:`FakeSlack.response_url`
#: (``args`` is the JSON payload plus ``url``).
RESPONSE_URL_METHOD = "response_url"

_FIRST_TS_US = 1_732_450_000_000_100  # → "1732450000.000100"
_TS_STEP_US = 100
_TS_RE = re.compile(r"^\d{10}\.\d{6}$")
_EMOJI_RE = re.compile(r"^[a-z0-9_+'\-]+(::skin-tone-[2-6])?$")
_ID_CHARS = string.ascii_uppercase + string.digits
# Slack fills in missing block_id/action_id values with short random strings.
_GENERATED_ID_CHARS = string.ascii_letters + string.digits + "+/="

# Arguments that arrive as JSON strings in form/query transports.
_JSON_ARGS = ("blocks", "attachments", "view", "metadata", "files")

_BLOCK_TYPES = frozenset(
    {
        "actions",
        "call",
        "context",
        "context_actions",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "markdown",
        "rich_text",
        "section",
        "table",
        "video",
    }
)
_SELECTS = frozenset(
    {
        "static_select",
        "external_select",
        "users_select",
        "conversations_select",
        "channels_select",
        "multi_static_select",
        "multi_external_select",
        "multi_users_select",
        "multi_conversations_select",
        "multi_channels_select",
    }
)
_PICKERS = frozenset({"datepicker", "timepicker", "datetimepicker"})
_TEXT_INPUTS = frozenset(
    {
        "plain_text_input",
        "email_text_input",
        "url_text_input",
        "number_input",
        "rich_text_input",
        "file_input",
    }
)
_ACTIONS_ELEMENTS = (
    frozenset({"button", "overflow", "checkboxes", "radio_buttons", "workflow_button"})
    | _SELECTS
    | _PICKERS
    | frozenset({"rich_text_input", "feedback_buttons", "icon_button"})
)
_ACCESSORY_ELEMENTS = (
    frozenset({"button", "overflow", "checkboxes", "radio_buttons", "image", "workflow_button"})
    | _SELECTS
    | _PICKERS
)
_INPUT_ELEMENTS = _SELECTS | _PICKERS | _TEXT_INPUTS | frozenset({"checkboxes", "radio_buttons"})
_TEXT_TYPES = frozenset({"plain_text", "mrkdwn"})


# --- public records ------------------------------------------------------------------


@dataclass(frozen=True)
class SlackUser:
    """A member of the fake workspace, as ``users.info`` describes it."""

    id: str
    name: str
    real_name: str = ""
    tz: str = "America/Los_Angeles"
    tz_label: str = "Pacific Standard Time"
    tz_offset: int = -28_800  # seconds east of UTC, as Slack reports it
    is_bot: bool = False
    is_admin: bool = False
    deleted: bool = False
    email: str | None = None
    bot_id: str | None = None

    def to_api(self, team_id: str) -> dict[str, Any]:
        """The ``user`` object of a ``users.info`` answer."""
        real = self.real_name or self.name.title()
        profile: dict[str, Any] = {
            "real_name": real,
            "real_name_normalized": real,
            "display_name": self.name,
            "display_name_normalized": self.name,
            "team": team_id,
            "image_48": f"https://avatars.slack-edge.com/{self.id}_48.png",
        }
        if self.email:
            profile["email"] = self.email
        if self.bot_id:
            profile["bot_id"] = self.bot_id
            profile["always_active"] = True
        return {
            "id": self.id,
            "team_id": team_id,
            "name": self.name,
            "deleted": self.deleted,
            "color": "9f69e7",
            "real_name": real,
            "tz": self.tz,
            "tz_label": self.tz_label,
            "tz_offset": self.tz_offset,
            "profile": profile,
            "is_admin": self.is_admin,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "updated": 1_732_400_000,
        }


@dataclass
class SlackChannel:
    """A conversation in the fake workspace.

    ``is_member`` is whether the *bot* is in it: posting to a public channel the bot
    is not in answers ``not_in_channel``, a private one ``channel_not_found``
    (slack.md §2). An empty ``members`` means "anyone"; otherwise
    ``chat.postEphemeral`` to someone not listed answers ``user_not_in_channel``.
    """

    id: str
    name: str = ""
    is_private: bool = False
    is_im: bool = False
    is_member: bool = True
    is_archived: bool = False
    user: str | None = None  # the other party of an IM
    members: set[str] = field(default_factory=set)
    created: int = 1_700_000_000

    def to_api(self, creator: str) -> dict[str, Any]:
        """The ``channel`` object of a ``conversations.info`` answer."""
        if self.is_im:
            return {
                "id": self.id,
                "created": self.created,
                "is_im": True,
                "is_org_shared": False,
                "user": self.user,
                "is_user_deleted": False,
                "priority": 0,
                "is_open": True,
            }
        return {
            "id": self.id,
            "name": self.name,
            "name_normalized": self.name,
            "is_channel": not self.is_private,
            "is_group": self.is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": self.is_private,
            "is_archived": self.is_archived,
            "is_general": self.name == "general",
            "is_shared": False,
            "is_org_shared": False,
            "is_ext_shared": False,
            "is_member": self.is_member,
            "created": self.created,
            "creator": creator,
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
        }


@dataclass(frozen=True)
class RecordedCall:
    """One request the fake answered.

    ``args`` merges query, form and JSON arguments (body wins), with JSON-string
    arguments (``blocks``, ``view``, ``files``, …) decoded so assertions look the
    same whatever transport the client used. ``transport`` says how they arrived:
    ``"json"``, ``"form"``, ``"multipart"``, ``"query"``, ``"raw"`` or ``"none"``.
    """

    method: str
    args: dict[str, Any]
    headers: dict[str, str]
    http_method: str
    transport: str
    at: float  # time.monotonic() on arrival
    status: int
    response: Any  # the JSON body sent (dict), or the text body
    response_headers: dict[str, str]
    token: str | None
    uploads: dict[str, bytes] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the app would see success (HTTP 200 and ``"ok": true``)."""
        if self.status != 200:
            return False
        return not isinstance(self.response, dict) or bool(self.response.get("ok"))

    @property
    def error(self) -> str | None:
        """Slack's ``error`` code, if the answer carried one."""
        if isinstance(self.response, dict):
            return self.response.get("error")
        return None

    def summary(self) -> str:
        """A one-line description for failure dumps."""
        keys = ("channel", "channel_id", "user", "ts", "thread_ts", "trigger_id", "view_id")
        bits = [f"{k}={self.args[k]!r}" for k in keys if self.args.get(k) not in (None, "")]
        text = self.args.get("text")
        if isinstance(text, str) and text:
            bits.append(f"text={(text[:60] + '…') if len(text) > 60 else text!r}")
        if isinstance(self.args.get("blocks"), list):
            bits.append(f"blocks={len(self.args['blocks'])}")
        outcome = "ok" if self.ok else (self.error or f"HTTP {self.status}")
        return f"{self.method}({', '.join(bits)}) -> {self.status} {outcome}"


# --- internals -----------------------------------------------------------------------


class _SlackError(Exception):
    """Raised by method handlers; becomes ``{"ok": false, "error": …}``."""

    def __init__(
        self,
        error: str,
        *,
        status: int = 200,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})


@dataclass
class _Reply:
    status: int
    body: Any  # dict → JSON, str → text/plain
    headers: dict[str, str] = field(default_factory=dict)

    def to_response(self) -> web.Response:
        if isinstance(self.body, dict):
            return web.json_response(self.body, status=self.status, headers=self.headers)
        content_type = self.headers.pop("Content-Type", "text/plain")
        return web.Response(
            text=str(self.body), status=self.status, headers=self.headers, content_type=content_type
        )


def _ok(payload: Mapping[str, Any]) -> _Reply:
    return _Reply(200, {"ok": True, **payload})


def _err(error: _SlackError) -> _Reply:
    return _Reply(error.status, {"ok": False, "error": error.error, **error.extra}, error.headers)


@dataclass
class _Rule:
    kind: Literal["fail", "rate_limit", "http", "delay"]
    method: str
    remaining: int | None  # None: forever
    channel: str | None
    error: str = ""
    retry_after: int = 1
    status: int = 200
    body: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class _Call:
    method: str
    args: dict[str, Any]
    token: str
    token_kind: str


@dataclass
class _Hook:
    channel: str
    user: str
    message_ts: str | None
    thread_ts: str | None
    uses: int = 0


class _BadRequest(Exception):
    pass


def _problem_lines(problems: list[tuple[str, str]]) -> list[str]:
    return [f"{message} [json-pointer:{pointer}]" for message, pointer in problems]


def _invalid(error: str, problems: list[tuple[str, str]], *, with_errors: bool) -> _SlackError:
    lines = _problem_lines(problems)
    extra: dict[str, Any] = {"response_metadata": {"messages": [f"[ERROR] {x}" for x in lines]}}
    # chat.* also lists the problems under "errors"; views.* only in response_metadata.
    if with_errors:
        extra["errors"] = lines
    return _SlackError(error, extra=extra)


def _as_bool(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True", "TRUE")


def _as_int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _text_of(value: Any) -> str | None:
    """A message ``text`` argument as sent, or None when absent/empty."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text != "" else None


def _bearer(headers: Mapping[str, str]) -> str | None:
    for key, value in headers.items():
        if key.lower() == "authorization" and value.lower().startswith("bearer "):
            token = value[7:].strip()
            return token or None
    return None


def _token_kind(token: str) -> str | None:
    for prefix, kind in (("xoxb-", "bot"), ("xoxp-", "user"), ("xapp-", "app")):
        if token.startswith(prefix) and len(token) > len(prefix):
            return kind
    return None


def _cursor(offset: int) -> str:
    return base64.b64encode(f"next_offset:{offset}".encode()).decode()


def _offset(cursor: Any) -> int:
    if not cursor:
        return 0
    try:
        decoded = base64.b64decode(str(cursor)).decode()
        return int(decoded.split(":", 1)[1])
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise _SlackError("invalid_cursor") from exc


def _ts_key(ts: str) -> tuple[int, int]:
    head, _, tail = ts.partition(".")
    return (_as_int(head, 0), _as_int(tail.ljust(6, "0")[:6], 0))


# --- Block Kit checks ----------------------------------------------------------------


class _BlockChecker:
    """Collects Block Kit problems as ``(message, json-pointer)`` in Slack's wording."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []
        self._block_ids: set[str] = set()

    def add(self, message: str, pointer: str) -> None:
        self.problems.append((message, pointer))

    def missing(self, name: str, pointer: str) -> None:
        self.add(f"missing required field: {name}", pointer)

    def string(self, obj: Mapping[str, Any], key: str, pointer: str, limit: int) -> None:
        """Optional string ``obj[key]`` of at most ``limit`` characters."""
        value = obj.get(key)
        if value is None:
            return
        if not isinstance(value, str):
            self.add("must provide a string", f"{pointer}/{key}")
        elif len(value) > limit:
            self.add(f"must be less than {limit + 1} characters", f"{pointer}/{key}")

    def text(
        self,
        obj: Any,
        pointer: str,
        limit: int,
        *,
        plain_only: bool = False,
        name: str = "text",
        parent: str = "",
        required: bool = True,
    ) -> None:
        """A text object (``{"type": "plain_text"|"mrkdwn", "text": …}``)."""
        if obj is None:
            if required:
                self.missing(name, parent)
            return
        if not isinstance(obj, Mapping):
            self.add("must provide an object", pointer)
            return
        kind = obj.get("type")
        if kind not in _TEXT_TYPES or (plain_only and kind != "plain_text"):
            self.add("must be a valid enum value", f"{pointer}/type")
        text = obj.get("text")
        if not isinstance(text, str):
            self.add("must provide a string", f"{pointer}/text")
        elif text == "":
            self.add("must be more than 0 characters", f"{pointer}/text")
        elif len(text) > limit:
            self.add(f"must be less than {limit + 1} characters", f"{pointer}/text")

    def items(self, value: Any, pointer: str, limit: int, *, name: str, parent: str) -> list[Any]:
        """A required array of at most ``limit`` items; returns it (or [] when invalid)."""
        if value is None:
            self.missing(name, parent)
            return []
        if not isinstance(value, list):
            self.add("must provide an array", pointer)
            return []
        if len(value) > limit:
            self.add(f"no more than {limit} items allowed", pointer)
        return value

    def blocks(self, blocks: Any, pointer: str, limit: int) -> None:
        """A ``blocks`` array (message: 50, modal/Home: 100)."""
        if not isinstance(blocks, list):
            self.add("must provide an array", pointer)
            return
        if len(blocks) > limit:
            # Slack stops here: the count is checked before the blocks themselves.
            self.add(f"no more than {limit} items allowed", pointer)
            return
        for index, block in enumerate(blocks):
            self.block(block, f"{pointer}/{index}")

    def block(self, block: Any, ptr: str) -> None:
        if not isinstance(block, Mapping):
            self.add("must provide an object", ptr)
            return
        kind = block.get("type")
        if kind is None:
            self.missing("type", ptr)
            return
        if kind not in _BLOCK_TYPES:
            self.add(f"unsupported block type: {kind}", f"{ptr}/type")
            return
        self.string(block, "block_id", ptr, MAX_ID)
        block_id = block.get("block_id")
        if isinstance(block_id, str):
            if block_id in self._block_ids:
                self.add(f"duplicate block_id: {block_id}", f"{ptr}/block_id")
            self._block_ids.add(block_id)

        if kind == "section":
            if block.get("text") is None and block.get("fields") is None:
                self.missing("text", ptr)
            if block.get("text") is not None:
                self.text(block["text"], f"{ptr}/text", MAX_SECTION_TEXT)
            if block.get("fields") is not None:
                fields = self.items(
                    block["fields"], f"{ptr}/fields", MAX_SECTION_FIELDS, name="fields", parent=ptr
                )
                for i, item in enumerate(fields):
                    self.text(item, f"{ptr}/fields/{i}", MAX_FIELD_TEXT)
            if block.get("accessory") is not None:
                self.element(block["accessory"], f"{ptr}/accessory", _ACCESSORY_ELEMENTS)
        elif kind == "header":
            self.text(
                block.get("text"), f"{ptr}/text", MAX_HEADER_TEXT, plain_only=True, parent=ptr
            )
        elif kind == "context":
            elements = self.items(
                block.get("elements"),
                f"{ptr}/elements",
                MAX_CONTEXT_ELEMENTS,
                name="elements",
                parent=ptr,
            )
            for i, element in enumerate(elements):
                eptr = f"{ptr}/elements/{i}"
                if isinstance(element, Mapping) and element.get("type") == "image":
                    self.image(element, eptr)
                else:
                    self.text(element, eptr, MAX_SECTION_TEXT)
        elif kind == "actions":
            elements = self.items(
                block.get("elements"),
                f"{ptr}/elements",
                MAX_ACTIONS_ELEMENTS,
                name="elements",
                parent=ptr,
            )
            self.action_ids(elements, f"{ptr}/elements")
            for i, element in enumerate(elements):
                self.element(element, f"{ptr}/elements/{i}", _ACTIONS_ELEMENTS)
        elif kind == "input":
            self.text(
                block.get("label"), f"{ptr}/label", 2_000, plain_only=True, name="label", parent=ptr
            )
            self.text(block.get("hint"), f"{ptr}/hint", 2_000, plain_only=True, required=False)
            if block.get("element") is None:
                self.missing("element", ptr)
            else:
                self.element(block["element"], f"{ptr}/element", _INPUT_ELEMENTS)
        elif kind == "image":
            self.image(block, ptr)
            self.text(block.get("title"), f"{ptr}/title", 2_000, plain_only=True, required=False)
        elif kind == "markdown":
            text = block.get("text")
            if text is None:
                self.missing("text", ptr)
            else:
                self.string(block, "text", ptr, MAX_MARKDOWN_TEXT)

    def action_ids(self, elements: list[Any], pointer: str) -> None:
        seen: set[str] = set()
        for i, element in enumerate(elements):
            if isinstance(element, Mapping) and isinstance(element.get("action_id"), str):
                if element["action_id"] in seen:
                    self.add(
                        f"duplicate action_id: {element['action_id']}", f"{pointer}/{i}/action_id"
                    )
                seen.add(element["action_id"])

    def image(self, obj: Mapping[str, Any], ptr: str) -> None:
        if obj.get("image_url") is None and obj.get("slack_file") is None:
            self.missing("image_url", ptr)
        self.string(obj, "image_url", ptr, MAX_URL)
        if obj.get("alt_text") is None:
            self.missing("alt_text", ptr)
        self.string(obj, "alt_text", ptr, 2_000)

    def element(self, element: Any, ptr: str, allowed: frozenset[str]) -> None:
        if not isinstance(element, Mapping):
            self.add("must provide an object", ptr)
            return
        kind = element.get("type")
        if kind is None:
            self.missing("type", ptr)
            return
        if kind not in allowed:
            self.add(f"unsupported element type: {kind}", f"{ptr}/type")
            return
        self.string(element, "action_id", ptr, MAX_ID)
        if kind == "button":
            self.text(
                element.get("text"), f"{ptr}/text", MAX_BUTTON_TEXT, plain_only=True, parent=ptr
            )
            self.string(element, "value", ptr, MAX_BUTTON_VALUE)
            self.string(element, "url", ptr, MAX_URL)
            if element.get("style") is not None and element["style"] not in ("primary", "danger"):
                self.add("must be a valid enum value", f"{ptr}/style")
        elif kind == "image":
            self.image(element, ptr)
        elif kind in _SELECTS:
            self.text(
                element.get("placeholder"),
                f"{ptr}/placeholder",
                150,
                plain_only=True,
                required=False,
            )
            if element.get("options") is not None:
                options = self.items(
                    element["options"], f"{ptr}/options", 100, name="options", parent=ptr
                )
                self.options(options, f"{ptr}/options", plain_only=True)
        elif kind == "overflow":
            options = self.items(
                element.get("options"), f"{ptr}/options", 5, name="options", parent=ptr
            )
            self.options(options, f"{ptr}/options", plain_only=True)
        elif kind in ("checkboxes", "radio_buttons"):
            options = self.items(
                element.get("options"), f"{ptr}/options", 10, name="options", parent=ptr
            )
            self.options(options, f"{ptr}/options", plain_only=False)
        elif kind == "plain_text_input":
            self.text(
                element.get("placeholder"),
                f"{ptr}/placeholder",
                150,
                plain_only=True,
                required=False,
            )
            for key in ("max_length", "min_length"):
                value = element.get(key)
                if value is not None and (not isinstance(value, int) or value > 3_000):
                    self.add("must be less than 3001", f"{ptr}/{key}")
        if element.get("confirm") is not None:
            self.confirm(element["confirm"], f"{ptr}/confirm")

    def options(self, options: list[Any], ptr: str, *, plain_only: bool) -> None:
        for i, option in enumerate(options):
            optr = f"{ptr}/{i}"
            if not isinstance(option, Mapping):
                self.add("must provide an object", optr)
                continue
            self.text(option.get("text"), f"{optr}/text", 75, plain_only=plain_only, parent=optr)
            if option.get("value") is None:
                self.missing("value", optr)
            self.string(option, "value", optr, 150)

    def confirm(self, confirm: Any, ptr: str) -> None:
        if not isinstance(confirm, Mapping):
            self.add("must provide an object", ptr)
            return
        self.text(
            confirm.get("title"), f"{ptr}/title", 100, plain_only=True, name="title", parent=ptr
        )
        self.text(confirm.get("text"), f"{ptr}/text", 300, parent=ptr)
        self.text(
            confirm.get("confirm"),
            f"{ptr}/confirm",
            30,
            plain_only=True,
            name="confirm",
            parent=ptr,
        )
        self.text(confirm.get("deny"), f"{ptr}/deny", 30, plain_only=True, name="deny", parent=ptr)


# --- the fake ------------------------------------------------------------------------

_Handler = Callable[[_Call], dict[str, Any]]
Predicate = Callable[..., Any]


#: Every FakeSlack alive, so a suite-wide check can scan what reached "Slack".
_LIVE: weakref.WeakSet[FakeSlack] = weakref.WeakSet()


def live_fakes() -> list[FakeSlack]:
    """The FakeSlack instances still alive."""
    return list(_LIVE)


class FakeSlack:
    """Slack's Web API on ``127.0.0.1``, with state, limits, faults and a call log.

    Use as a context manager or call :meth:`start` / :meth:`stop`. The defaults
    describe the workspace of ``tests.support.slack_requests`` (team ``TEAM_ID``,
    bot ``BOT_USER_ID``/``BOT_ID``, users ``USER_ID`` and ``OTHER_USER_ID``, channel
    ``CHANNEL_ID`` "#general").

    Channels not configured are created on first use unless ``strict_channels``
    (then they are ``channel_not_found``). Users are a closed set: unknown users are
    ``user_not_found`` (``users.info``, ``conversations.open``) or
    ``user_not_in_channel`` (``chat.postEphemeral``); add more with :meth:`add_user`.
    """

    def __init__(
        self,
        *,
        team_id: str = TEAM_ID,
        team_domain: str = TEAM_DOMAIN,
        team_name: str = TEAM_NAME,
        bot_user_id: str = BOT_USER_ID,
        bot_id: str = BOT_ID,
        bot_name: str = BOT_NAME,
        app_id: str = API_APP_ID,
        users: Iterable[SlackUser] | None = None,
        channels: Iterable[SlackChannel] | None = None,
        strict_channels: bool = False,
        home_tab_enabled: bool = True,
    ) -> None:
        _LIVE.add(self)  # the canary check scans what every FakeSlack received
        self.team_id = team_id
        self.team_domain = team_domain
        self.team_name = team_name
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.bot_name = bot_name
        self.app_id = app_id
        self.strict_channels = strict_channels
        self.home_tab_enabled = home_tab_enabled
        #: token → error answered for it (``"invalid_auth"``, ``"token_revoked"``, …).
        self.revoked_tokens: dict[str, str] = {}

        self._lock = threading.RLock()
        self._rng = random.Random(1234)  # deterministic generated ids
        self._ts_counter = itertools.count()
        self._users: dict[str, SlackUser] = {}
        self._channels: dict[str, SlackChannel] = {}
        self._usergroups: dict[str, dict[str, Any]] = {}
        default_users = [
            SlackUser(
                bot_user_id,
                bot_name,
                real_name="Baton",
                is_bot=True,
                bot_id=bot_id,
                tz="America/Los_Angeles",
            ),
            SlackUser(USER_ID, USER_NAME, real_name="Alice Example", email="alice@example.com"),
            SlackUser(
                OTHER_USER_ID,
                OTHER_USER_NAME,
                real_name="Bob Example",
                tz="Asia/Kolkata",
                tz_label="India Standard Time",
                tz_offset=19_800,
                email="bob@example.com",
            ),
        ]
        for user in default_users if users is None else [default_users[0], *users]:
            self._users[user.id] = user
        for channel in channels or [
            SlackChannel(CHANNEL_ID, CHANNEL_NAME, members={bot_user_id, USER_ID, OTHER_USER_ID})
        ]:
            self._channels[channel.id] = channel
        self._configured_channels = set(self._channels)
        self._init_state()

        self._handlers: dict[str, _Handler] = {
            "api.test": self._api_test,
            "auth.test": self._auth_test,
            "apps.connections.open": self._apps_connections_open,
            "chat.postMessage": self._chat_post_message,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.getPermalink": self._chat_get_permalink,
            "views.open": self._views_open,
            "views.push": self._views_push,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroups_users_list,
            "conversations.info": self._conversations_info,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "conversations.open": self._conversations_open,
            "reactions.add": self._reactions_add,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
        }

        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _init_state(self) -> None:
        """Recorded/derived state that :meth:`reset` clears (configuration survives)."""
        self._calls: list[RecordedCall] = []
        self._rules: list[_Rule] = []
        self._messages: dict[str, list[dict[str, Any]]] = {}
        self._ephemerals: list[dict[str, Any]] = []
        self._views: dict[str, dict[str, Any]] = {}
        self._views_opened: list[dict[str, Any]] = []
        self._home_views: dict[str, dict[str, Any]] = {}
        self._modal_stack: list[str] = []
        self._used_triggers: set[str] = set()
        self._expired_triggers: set[str] = set()
        self._files: dict[str, dict[str, Any]] = {}
        self._hooks: dict[str, _Hook] = {}
        self._post_rate: tuple[float, int] | None = None
        self._buckets: dict[str, tuple[float, float]] = {}
        # Channels auto-created by use are forgotten; configured ones stay.
        for cid in [
            c for c in getattr(self, "_channels", {}) if c not in self._configured_channels
        ]:
            del self._channels[cid]

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> Self:
        """Start serving (idempotent); returns self."""
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            # A short shutdown timeout: a test that scripted a long delay must not hang stop().
            runner = web.AppRunner(self._build_app(), access_log=None, shutdown_timeout=0.5)
            try:
                loop.run_until_complete(runner.setup())
                loop.run_until_complete(web.SockSite(runner, sock).start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(runner.cleanup())
                loop.close()

        self._thread = threading.Thread(target=serve, name=f"FakeSlack:{self._port}", daemon=True)
        self._thread.start()
        if not ready.wait(10) or failure:
            self._thread = None
            raise RuntimeError("FakeSlack failed to start") from (failure[0] if failure else None)
        return self

    def stop(self) -> None:
        """Stop serving and join the server thread (idempotent)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._thread = None
        self._loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The TCP port the fake listens on."""
        if self._port is None:
            raise RuntimeError("FakeSlack is not started")
        return self._port

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The ``base_url`` for ``AsyncWebClient``/``WebClient`` (ends with ``/api/``)."""
        return f"{self.root_url}/api/"

    # --- configuration ---------------------------------------------------------------

    def add_user(self, user: SlackUser) -> SlackUser:
        """Add (or replace) a workspace member."""
        with self._lock:
            self._users[user.id] = user
        return user

    def add_channel(self, channel: SlackChannel) -> SlackChannel:
        """Add (or replace) a conversation; it survives :meth:`reset`."""
        with self._lock:
            self._channels[channel.id] = channel
            self._configured_channels.add(channel.id)
        return channel

    def add_usergroup(self, usergroup_id: str, handle: str, users: Iterable[str]) -> None:
        """Add a user group (``S…``) answered by ``usergroups.users.list``."""
        with self._lock:
            self._usergroups[usergroup_id] = {
                "id": usergroup_id,
                "handle": handle,
                "users": list(users),
            }

    def revoke(self, token: str, error: str = "token_revoked") -> None:
        """Make every call with ``token`` fail with ``error`` (``invalid_auth``, ``token_revoked``, …)."""
        self.revoked_tokens[token] = error

    def expire_trigger(self, trigger_id: str) -> None:
        """Make ``views.open``/``views.push`` with this trigger answer ``expired_trigger_id``."""
        with self._lock:
            self._expired_triggers.add(trigger_id)

    def dm_channel(self, user_id: str) -> str:
        """The id of the bot's DM with ``user_id`` (opening it, as ``conversations.open`` would)."""
        with self._lock:
            return self._open_dm(user_id).id

    def add_message(
        self,
        channel: str,
        text: str,
        *,
        user: str = USER_ID,
        thread_ts: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Seed a message written by a person (not the bot); returns it (with its ``ts``)."""
        with self._lock:
            chan = self._resolve_channel(channel)
            message = self._store_message(
                chan.id, text=text, blocks=blocks, user=user, bot=False, thread_ts=thread_ts
            )
            return copy.deepcopy(message)

    def response_url(
        self,
        channel: str = CHANNEL_ID,
        user: str = USER_ID,
        *,
        message_ts: str | None = None,
        thread_ts: str | None = None,
    ) -> str:
        """A ``response_url`` served by the fake, for slash commands or interactions.

        POSTs to it (what Bolt's ``respond()`` sends) are recorded as
        ``RESPONSE_URL_METHOD`` calls and applied: ``in_channel`` posts as the bot,
        the default ``ephemeral`` lands in :meth:`ephemerals`,
        ``replace_original``/``delete_original`` act on ``message_ts``. Like Slack,
        each URL works at most 5 times.
        """
        with self._lock:
            token = "".join(
                self._rng.choice(string.ascii_letters + string.digits) for _ in range(24)
            )
            self._hooks[token] = _Hook(channel, user, message_ts, thread_ts)
        return f"{self.root_url}/hooks/{self.team_id}/{token}"

    # --- fault injection -------------------------------------------------------------

    def _add_rule(self, rule: _Rule) -> None:
        with self._lock:
            self._rules.append(rule)

    def fail(
        self,
        method: str,
        error: str = "channel_not_found",
        times: int | None = 1,
        channel: str | None = None,
        *,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (to ``channel``, if given) with
        HTTP 200 ``{"ok": false, "error": error, **extra}``. ``times=None``: always.

        ``UPLOAD_METHOD`` and ``RESPONSE_URL_METHOD`` answer in plain text, so for them
        a scripted failure is HTTP 400 with ``error`` as the body.
        """
        self._add_rule(_Rule("fail", method, times, channel, error=error, extra=dict(extra or {})))

    def rate_limit(
        self,
        method: str,
        retry_after: int = 2,
        times: int | None = 1,
        channel: str | None = None,
    ) -> None:
        """Answer HTTP 429, ``Retry-After: <retry_after>``, ``{"ok": false, "error": "ratelimited"}``."""
        self._add_rule(_Rule("rate_limit", method, times, channel, retry_after=int(retry_after)))

    def fail_http(
        self,
        method: str,
        status: int = 503,
        times: int | None = 1,
        channel: str | None = None,
        *,
        error: str | None = None,
        body: str | None = None,
    ) -> None:
        """Answer with HTTP ``status``: a JSON error (``service_unavailable`` for 503,
        else ``internal_error``) or, with ``body``, that text as ``text/html``."""
        default = "service_unavailable" if status == 503 else "internal_error"
        self._add_rule(
            _Rule("http", method, times, channel, status=status, error=error or default, body=body)
        )

    def delay(
        self, method: str, seconds: float, times: int | None = 1, channel: str | None = None
    ) -> None:
        """Hold the next ``times`` answers to ``method`` for ``seconds`` (other calls proceed)."""
        self._add_rule(_Rule("delay", method, times, channel, seconds=seconds))

    def enforce_post_rate(self, per_second: float | None = 1.0, burst: int = 1) -> None:
        """Pace ``chat.postMessage`` per channel like Slack (~1/s with short bursts).

        A token bucket of ``burst`` posts refilled at ``per_second``; a post that finds
        it empty is answered 429 with ``Retry-After`` = whole seconds until the next
        token. ``per_second=None`` turns pacing off.
        """
        with self._lock:
            self._post_rate = None if per_second is None else (float(per_second), int(burst))
            self._buckets.clear()

    def clear_faults(self) -> None:
        """Drop every scripted fault and the posting pace."""
        with self._lock:
            self._rules.clear()
            self._post_rate = None
            self._buckets.clear()

    def reset(self) -> None:
        """Forget calls, messages, views, files, faults, pacing and auto-created channels.

        Configured users, channels, user groups and revoked tokens stay; timestamps
        keep increasing so old and new ``ts`` values never collide.
        """
        with self._lock:
            self._init_state()

    # --- reading the log and the state (thread-safe snapshots) -----------------------

    @property
    def calls(self) -> list[RecordedCall]:
        """Every call answered so far, oldest first."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[RecordedCall]:
        """The calls of one method (``UPLOAD_METHOD``/``RESPONSE_URL_METHOD`` included)."""
        with self._lock:
            return [c for c in self._calls if c.method == method]

    def count(self, method: str) -> int:
        """How many calls of ``method`` were answered (successful or not)."""
        return len(self.calls_to(method))

    def last_call(self, method: str) -> RecordedCall:
        """The latest call of ``method``; AssertionError if there was none."""
        calls = self.calls_to(method)
        if not calls:
            raise AssertionError(f"no {method} call was made\n{self.dump()}")
        return calls[-1]

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """The channel's current messages, oldest first, edits applied, replies included.

        Each is Slack's message object plus ``channel``; ``thread_ts`` (None outside
        threads) and ``blocks`` (``[]`` when none) are always present.
        """
        with self._lock:
            cid = self._peek_channel_id(channel)
            return [self._snapshot(cid, m) for m in self._messages.get(cid, [])]

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """The parent (if it exists) and replies of a thread, oldest first."""
        return [
            m for m in self.messages(channel) if m["ts"] == thread_ts or m["thread_ts"] == thread_ts
        ]

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        """One message by ``ts``, or None."""
        return next((m for m in self.messages(channel) if m["ts"] == ts), None)

    def ephemerals(self, user: str | None = None) -> list[dict[str, Any]]:
        """Ephemeral messages (chat.postEphemeral and response_url), optionally for one user."""
        with self._lock:
            return [copy.deepcopy(e) for e in self._ephemerals if user is None or e["user"] == user]

    @property
    def views_opened(self) -> list[dict[str, Any]]:
        """Modals opened with ``views.open``, as opened (Slack's view objects), oldest first."""
        with self._lock:
            return copy.deepcopy(self._views_opened)

    @property
    def home_views(self) -> dict[str, dict[str, Any]]:
        """The latest published Home view per user id."""
        with self._lock:
            return copy.deepcopy(self._home_views)

    def view(self, view_id: str) -> dict[str, Any] | None:
        """The current state of any view (after updates), or None."""
        with self._lock:
            found = self._views.get(view_id)
            return copy.deepcopy(found) if found else None

    @property
    def files(self) -> list[dict[str, Any]]:
        """Files reserved/uploaded/shared via the external upload flow (``content`` is bytes)."""
        with self._lock:
            return copy.deepcopy(list(self._files.values()))

    def dump(self, last: int = 20) -> str:
        """The most recent calls, one per line, for assertion messages."""
        calls = self.calls[-last:]
        if not calls:
            return "  (no calls recorded)"
        return "\n".join(f"  {c.summary()}" for c in calls)

    # --- waiting ---------------------------------------------------------------------

    def _evaluate(self, predicate: Predicate) -> Any:
        try:
            wants_fake = len(inspect.signature(predicate).parameters) > 0
        except (TypeError, ValueError):
            wants_fake = True
        return predicate(self) if wants_fake else predicate()

    def _timeout_error(
        self, predicate: Predicate, timeout: float, last: BaseException | None
    ) -> AssertionError:
        name = getattr(predicate, "__name__", repr(predicate))
        note = f" (last attempt raised {last!r})" if last else ""
        return AssertionError(
            f"condition {name} not met within {timeout:.1f}s{note}; recent calls:\n{self.dump()}"
        )

    def wait_for(self, predicate: Predicate, timeout: float = 5.0, interval: float = 0.01) -> Any:
        """Poll until ``predicate(fake)`` (or ``predicate()``) is truthy; return its value.

        Exceptions raised by the predicate count as "not yet", so
        ``lambda f: f.messages(C)[0]["text"] == "x"`` is fine. On timeout raises
        AssertionError listing the recent calls. Blocking: call from sync code only.
        """
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while True:
            try:
                value = self._evaluate(predicate)
                if value:
                    return value
            except Exception as exc:
                last = exc
            if time.monotonic() >= deadline:
                raise self._timeout_error(predicate, timeout, last)
            time.sleep(interval)

    async def await_for(
        self,
        predicate: Predicate,
        timeout: float = 5.0,  # noqa: ASYNC109 - mirrors wait_for(); it is a polling deadline
        interval: float = 0.01,
    ) -> Any:
        """Async twin of :meth:`wait_for` (yields to the caller's event loop while polling)."""
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while True:
            try:
                value = self._evaluate(predicate)
                if inspect.isawaitable(value):
                    value = await value
                if value:
                    return value
            except Exception as exc:
                last = exc
            if time.monotonic() >= deadline:
                raise self._timeout_error(predicate, timeout, last)
            await asyncio.sleep(interval)

    # --- HTTP layer ------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._on_api)
        app.router.add_post("/upload/v1/{file_id}", self._on_upload)
        app.router.add_post("/hooks/{team}/{token}", self._on_hook)
        return app

    @staticmethod
    async def _read_args(
        request: web.Request,
    ) -> tuple[dict[str, Any], str, dict[str, bytes], bytes]:
        """Parse query + body the way Slack accepts them → (args, transport, uploads, raw)."""
        args: dict[str, Any] = dict(request.query.items())
        transport = "query" if args else "none"
        uploads: dict[str, bytes] = {}
        raw = b""
        ctype = request.content_type
        if ctype.startswith("multipart/"):
            # Must not read() first: the multipart reader consumes the stream itself.
            transport = "multipart"
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, str):
                    args[key] = value
                elif isinstance(value, web.FileField):
                    uploads[key] = value.file.read()
                    args.setdefault("filename", value.filename)
                else:
                    uploads[key] = bytes(value)
            return args, transport, uploads, raw
        raw = await request.read()
        if not raw:
            return args, transport, uploads, raw
        if ctype == "application/json":
            transport = "json"
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise _BadRequest("invalid_json") from exc
            if not isinstance(body, dict):
                raise _BadRequest("invalid_json")
            args.update(body)
        elif ctype == "application/x-www-form-urlencoded":
            transport = "form"
            args.update(
                urllib.parse.parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
            )
        else:
            transport = "raw"
        return args, transport, uploads, raw

    @staticmethod
    def _decode_json_args(args: dict[str, Any]) -> None:
        # Form and query transports carry structured arguments as JSON strings.
        for key in _JSON_ARGS:
            value = args.get(key)
            if isinstance(value, str) and value[:1] in ("[", "{"):
                with contextlib.suppress(ValueError):
                    args[key] = json.loads(value)

    async def _on_api(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        method = request.match_info["method"]
        headers = dict(request.headers)
        try:
            args, transport, uploads, _raw = await self._read_args(request)
            bad: str | None = None
        except _BadRequest as exc:
            args, transport, uploads, bad = {}, "invalid", {}, str(exc)
        self._decode_json_args(args)
        await self._apply_delay(method, args)
        with self._lock:
            if bad is not None:
                reply = _err(_SlackError(bad))
            else:
                reply = self._answer(method, args, headers)
            self._record(method, args, headers, request.method, transport, arrived, reply, uploads)
        return reply.to_response()

    async def _apply_delay(self, method: str, args: Mapping[str, Any]) -> None:
        with self._lock:
            rule = self._take_rule(method, args, kinds=("delay",))
        if rule is not None:
            await asyncio.sleep(rule.seconds)

    def _record(
        self,
        method: str,
        args: dict[str, Any],
        headers: dict[str, str],
        http_method: str,
        transport: str,
        arrived: float,
        reply: _Reply,
        uploads: dict[str, bytes],
        token: str | None = None,
    ) -> None:
        self._calls.append(
            RecordedCall(
                method=method,
                args=copy.deepcopy(args),
                headers=headers,
                http_method=http_method,
                transport=transport,
                at=arrived,
                status=reply.status,
                response=copy.deepcopy(reply.body),
                response_headers=dict(reply.headers),
                token=token if token is not None else (_bearer(headers) or args.get("token")),
                uploads=uploads,
            )
        )

    def _answer(self, method: str, args: dict[str, Any], headers: Mapping[str, str]) -> _Reply:
        handler = self._handlers.get(method)
        if handler is None:
            return _Reply(200, {"ok": False, "error": "unknown_method", "req_method": method})
        if method == "api.test":
            # The one method Slack answers without a token.
            return _ok(handler(_Call(method, args, "", "none")))
        token = _bearer(headers) or _text_of(args.get("token"))
        if not token:
            return _err(_SlackError("not_authed"))
        if token in self.revoked_tokens:
            return _err(_SlackError(self.revoked_tokens[token]))
        kind = _token_kind(token)
        if kind is None:
            return _err(_SlackError("invalid_auth"))
        # App-level tokens only open Socket Mode connections, and only they can.
        if (method == "apps.connections.open") != (kind == "app"):
            return _err(_SlackError("not_allowed_token_type"))
        scripted = self._scripted_reply(method, args)
        if scripted is not None:
            return scripted
        if method == "chat.postMessage":
            paced = self._pace(args)
            if paced is not None:
                return paced
        try:
            return _ok(handler(_Call(method, args, token, kind)))
        except _SlackError as exc:
            return _err(exc)

    def _rule_channel(self, args: Mapping[str, Any]) -> str | None:
        raw = args.get("channel") or args.get("channel_id")
        return self._peek_channel_id(str(raw)) if raw else None

    def _take_rule(
        self, method: str, args: Mapping[str, Any], kinds: tuple[str, ...]
    ) -> _Rule | None:
        channel = self._rule_channel(args)
        for rule in self._rules:
            if rule.kind not in kinds or rule.method != method:
                continue
            if rule.channel is not None and self._peek_channel_id(rule.channel) != channel:
                continue
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self._rules.remove(rule)
            return rule
        return None

    def _scripted_reply(self, method: str, args: Mapping[str, Any]) -> _Reply | None:
        rule = self._take_rule(method, args, kinds=("fail", "rate_limit", "http"))
        if rule is None:
            return None
        if rule.kind == "rate_limit":
            return _Reply(
                429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(rule.retry_after)}
            )
        if rule.kind == "http":
            if rule.body is not None:
                return _Reply(rule.status, rule.body, {"Content-Type": "text/html"})
            return _Reply(rule.status, {"ok": False, "error": rule.error})
        return _Reply(200, {"ok": False, "error": rule.error, **rule.extra})

    def _scripted_text_reply(self, method: str, args: Mapping[str, Any]) -> _Reply | None:
        """Scripted faults for the file host and response_url, which answer in plain text."""
        reply = self._scripted_reply(method, args)
        if reply is not None and reply.status == 200 and isinstance(reply.body, dict):
            # A scripted ``fail``: these hosts report errors as a 400 with the code as text.
            reply = _Reply(400, str(reply.body.get("error")))
        return reply

    def _pace(self, args: Mapping[str, Any]) -> _Reply | None:
        if self._post_rate is None:
            return None
        rate, burst = self._post_rate
        key = self._rule_channel(args) or ""
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (float(burst), now))
        tokens = min(float(burst), tokens + (now - last) * rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return None
        self._buckets[key] = (tokens, now)
        retry_after = max(1, math.ceil((1.0 - tokens) / rate))
        return _Reply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)})

    async def _on_upload(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        file_id = request.match_info["file_id"]
        headers = dict(request.headers)
        args, transport, uploads, raw = await self._read_args(request)
        content = next(iter(uploads.values())) if uploads else raw
        if transport != "multipart":
            transport = "raw"
            args = {}
        args["file_id"] = file_id
        await self._apply_delay(UPLOAD_METHOD, args)
        with self._lock:
            reply = self._scripted_text_reply(UPLOAD_METHOD, args)
            if reply is None:
                entry = self._files.get(file_id)
                if entry is None:
                    reply = _Reply(404, "file_not_found")
                else:
                    entry["content"] = content
                    entry["size"] = len(content)
                    # slack_sdk only checks for 200; the file host answers in plain text.
                    reply = _Reply(200, f"OK - {len(content)}")
            self._record(
                UPLOAD_METHOD,
                args,
                headers,
                request.method,
                transport,
                arrived,
                reply,
                {"file": content},
                token="",
            )
        return reply.to_response()

    async def _on_hook(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        token = request.match_info["token"]
        headers = dict(request.headers)
        try:
            args, transport, uploads, _raw = await self._read_args(request)
            if "payload" in args and isinstance(args["payload"], str):
                args = json.loads(args["payload"])
        except (_BadRequest, ValueError):
            args, transport, uploads = {}, "invalid", {}
        args["url"] = str(request.url)
        await self._apply_delay(RESPONSE_URL_METHOD, args)
        with self._lock:
            reply = self._scripted_text_reply(RESPONSE_URL_METHOD, args)
            if reply is None:
                try:
                    reply = self._respond(token, args, transport)
                except _SlackError as exc:
                    reply = _Reply(exc.status, exc.error)
            self._record(
                RESPONSE_URL_METHOD,
                args,
                headers,
                request.method,
                transport,
                arrived,
                reply,
                uploads,
                token="",
            )
        return reply.to_response()

    def _respond(self, token: str, payload: dict[str, Any], transport: str) -> _Reply:
        hook = self._hooks.get(token)
        if hook is None:
            raise _SlackError("no_service", status=404)
        if transport == "invalid":
            raise _SlackError("invalid_payload", status=400)
        hook.uses += 1
        if hook.uses > MAX_RESPONSE_URL_USES:
            raise _SlackError("used_url", status=404)
        channel = self._resolve_channel(hook.channel)
        if _as_bool(payload.get("delete_original")):
            if hook.message_ts is None or self._find(channel.id, hook.message_ts) is None:
                raise _SlackError("message_not_found", status=404)
            self._remove_message(channel.id, hook.message_ts)
            return _Reply(200, "ok")
        try:
            text, blocks = self._message_content(payload, MAX_MESSAGE_TEXT, require=True)
        except _SlackError as exc:
            raise _SlackError(exc.error, status=400) from exc
        if _as_bool(payload.get("replace_original")) and hook.message_ts is not None:
            message = self._find(channel.id, hook.message_ts)
            if message is None:
                raise _SlackError("message_not_found", status=404)
            self._edit(message, text, blocks, user=self.bot_user_id)
            return _Reply(200, "ok")
        thread_ts = payload.get("thread_ts") or hook.thread_ts
        if payload.get("response_type") == "in_channel":
            self._store_message(
                channel.id,
                text=text,
                blocks=blocks,
                user=self.bot_user_id,
                bot=True,
                thread_ts=thread_ts,
            )
        else:
            self._ephemerals.append(
                {
                    "channel": channel.id,
                    "user": hook.user,
                    "text": text or "",
                    "blocks": self._normalize_blocks(blocks) if blocks else [],
                    "thread_ts": thread_ts,
                    "message_ts": self._next_ts(),
                    "source": RESPONSE_URL_METHOD,
                }
            )
        return _Reply(200, "ok")

    # --- state helpers (call with the lock held) -------------------------------------

    def _next_ts(self) -> str:
        micros = _FIRST_TS_US + next(self._ts_counter) * _TS_STEP_US
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _new_id(self, prefix: str, n: int = 10) -> str:
        return prefix + "".join(self._rng.choice(_ID_CHARS) for _ in range(n))

    def _generated_id(self) -> str:
        return "".join(self._rng.choice(_GENERATED_ID_CHARS) for _ in range(4))

    def _peek_channel_id(self, raw: str) -> str:
        """Resolve names/user ids to a channel id without creating anything."""
        if raw.startswith("#"):
            name = raw[1:]
            return next((c.id for c in self._channels.values() if c.name == name), raw)
        if raw[:1] in ("U", "W") and raw in self._users:
            return dm_channel_id(raw)
        if raw not in self._channels:
            by_name = next((c.id for c in self._channels.values() if c.name == raw), None)
            if by_name:
                return by_name
        return raw

    def _resolve_channel(self, raw: Any) -> SlackChannel:
        """A channel id, ``#name``, name or user id (→ DM) → the conversation."""
        value = _text_of(raw)
        if value is None:
            raise _SlackError("channel_not_found")
        if value[:1] in ("U", "W"):
            if value not in self._users:
                raise _SlackError("channel_not_found")
            return self._open_dm(value)
        cid = self._peek_channel_id(value)
        channel = self._channels.get(cid)
        if channel is not None:
            return channel
        if self.strict_channels or not re.fullmatch(r"[CGD][A-Z0-9]{2,}", cid):
            raise _SlackError("channel_not_found")
        channel = SlackChannel(
            cid, name=cid.lower(), is_private=cid.startswith("G"), is_im=cid.startswith("D")
        )
        self._channels[cid] = channel
        return channel

    def _writable_channel(self, raw: Any) -> SlackChannel:
        channel = self._resolve_channel(raw)
        if not channel.is_member:
            raise _SlackError("channel_not_found" if channel.is_private else "not_in_channel")
        if channel.is_archived:
            raise _SlackError("is_archived")
        return channel

    def _readable_channel(self, raw: Any) -> SlackChannel:
        channel = self._resolve_channel(raw)
        if not channel.is_member:
            raise _SlackError("channel_not_found" if channel.is_private else "not_in_channel")
        return channel

    def _open_dm(self, user_id: str) -> SlackChannel:
        if user_id not in self._users:
            raise _SlackError("user_not_found")
        cid = dm_channel_id(user_id)
        channel = self._channels.get(cid)
        if channel is None:
            channel = SlackChannel(
                cid, is_im=True, user=user_id, members={user_id, self.bot_user_id}
            )
            self._channels[cid] = channel
        return channel

    def _find(self, channel_id: str, ts: str) -> dict[str, Any] | None:
        return next((m for m in self._messages.get(channel_id, []) if m["ts"] == ts), None)

    def _snapshot(self, channel_id: str, message: Mapping[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(dict(message))
        out.setdefault("thread_ts", None)
        out.setdefault("blocks", [])
        out["channel"] = channel_id
        return out

    def _normalize_blocks(self, blocks: list[Any]) -> list[Any]:
        """Stored copy of blocks, with the ids Slack fills in when they are missing."""
        out = copy.deepcopy(blocks)
        for block in out:
            if not isinstance(block, dict):
                continue
            block.setdefault("block_id", self._generated_id())
            elements: list[Any] = []
            if block.get("type") == "actions" and isinstance(block.get("elements"), list):
                elements += block["elements"]
            for key in ("accessory", "element"):
                if isinstance(block.get(key), dict):
                    elements.append(block[key])
            for element in elements:
                if isinstance(element, dict) and element.get("type") != "image":
                    element.setdefault("action_id", self._generated_id())
        return out

    def _message_content(
        self, args: Mapping[str, Any], max_text: int, *, require: bool
    ) -> tuple[str | None, list[Any] | None]:
        """Validate text/blocks of a message write the way chat.* do → (text, blocks)."""
        text = _text_of(args.get("text")) or _text_of(args.get("markdown_text"))
        blocks = args.get("blocks")
        if isinstance(blocks, str):
            # Form transport whose blocks are not valid JSON.
            raise _SlackError("invalid_blocks_format")
        if blocks is not None and not isinstance(blocks, list):
            raise _SlackError("invalid_blocks_format")
        has_attachments = bool(args.get("attachments"))
        if require and text is None and not blocks and not has_attachments:
            raise _SlackError("no_text")
        if text is not None and len(text) > max_text:
            raise _SlackError("msg_too_long")
        if blocks:
            checker = _BlockChecker()
            checker.blocks(blocks, "/blocks", MAX_MESSAGE_BLOCKS)
            if checker.problems:
                raise _invalid("invalid_blocks", checker.problems, with_errors=True)
        return text, blocks

    def _bot_profile(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "app_id": self.app_id,
            "name": self.bot_name,
            "deleted": False,
            "team_id": self.team_id,
        }

    def _store_message(
        self,
        channel_id: str,
        *,
        text: str | None,
        blocks: list[Any] | None,
        user: str,
        bot: bool,
        thread_ts: Any = None,
        broadcast: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        ts = self._next_ts()
        message: dict[str, Any] = {"type": "message", "text": text or "", "user": user, "ts": ts}
        if bot:
            message.update(bot_id=self.bot_id, app_id=self.app_id)
        if blocks is not None:
            message["blocks"] = self._normalize_blocks(blocks)
        message["team"] = self.team_id
        if bot:
            message["bot_profile"] = self._bot_profile()
        message.update(extra or {})
        if thread_ts not in (None, ""):
            # JSON numbers (a float thread_ts) survive as their text and match nothing,
            # which is how Slack "accepts" them: ok, but no reply appears (sdk#840).
            parent_ts = str(thread_ts)
            parent = self._find(channel_id, parent_ts)
            if parent is not None and parent.get("thread_ts") not in (None, parent["ts"]):
                # Replying to a reply threads under the root, as in Slack.
                parent_ts = parent["thread_ts"]
                parent = self._find(channel_id, parent_ts)
            message["thread_ts"] = parent_ts
            if parent is not None:
                message["parent_user_id"] = parent.get("user")
                parent["thread_ts"] = parent["ts"]
                parent["reply_count"] = parent.get("reply_count", 0) + 1
                users = parent.setdefault("reply_users", [])
                if user not in users:
                    users.append(user)
                parent["reply_users_count"] = len(users)
                parent["latest_reply"] = ts
            if broadcast:
                message["subtype"] = "thread_broadcast"
        self._messages.setdefault(channel_id, []).append(message)
        return message

    def _remove_message(self, channel_id: str, ts: str) -> None:
        messages = self._messages.get(channel_id, [])
        message = self._find(channel_id, ts)
        if message is None:
            return
        if message.get("reply_count"):
            # A thread parent with replies stays behind as a tombstone, as in Slack.
            for key in ("blocks", "bot_id", "app_id", "bot_profile", "files", "reactions"):
                message.pop(key, None)
            message.update(subtype="tombstone", text="This message was deleted.", user="USLACKBOT")
            return
        messages.remove(message)
        root = message.get("thread_ts")
        if root and root != ts:
            parent = self._find(channel_id, root)
            if parent is not None and parent.get("reply_count"):
                parent["reply_count"] -= 1
                replies = [m for m in messages if m.get("thread_ts") == root and m["ts"] != root]
                parent["latest_reply"] = replies[-1]["ts"] if replies else root

    def _edit(
        self, message: dict[str, Any], text: str | None, blocks: list[Any] | None, *, user: str
    ) -> None:
        # Omitted fields keep their value; an empty blocks array removes blocks.
        if text is not None:
            message["text"] = text
        if blocks is not None:
            if blocks:
                message["blocks"] = self._normalize_blocks(blocks)
            else:
                message.pop("blocks", None)
        message["edited"] = {"user": user, "ts": self._next_ts()}

    def _check_trigger(self, args: Mapping[str, Any]) -> None:
        trigger = _text_of(args.get("trigger_id")) or _text_of(args.get("interactivity_pointer"))
        if trigger is None:
            raise _invalid(
                "invalid_arguments", [("missing required field: trigger_id", "")], with_errors=False
            )
        if trigger in self._expired_triggers:
            raise _SlackError("expired_trigger_id")
        if trigger in self._used_triggers:
            raise _SlackError("exchanged_trigger_id")
        self._used_triggers.add(trigger)

    def _check_view(self, view: Any, types: tuple[str, ...]) -> dict[str, Any]:
        """Validate a view payload like views.* do; returns it as a dict."""
        if view is None:
            raise _invalid(
                "invalid_arguments", [("missing required field: view", "")], with_errors=False
            )
        if isinstance(view, str):
            raise _invalid(
                "invalid_arguments", [("must provide an object", "/view")], with_errors=False
            )
        if len(json.dumps(view, separators=(",", ":")).encode()) > MAX_VIEW_BYTES:
            raise _SlackError("view_too_large")
        if not isinstance(view, dict):
            raise _invalid(
                "invalid_arguments", [("must provide an object", "/view")], with_errors=False
            )
        checker = _BlockChecker()
        kind = view.get("type")
        if kind is None:
            checker.missing("type", "/view")
        elif kind not in types:
            checker.add("must be a valid enum value", "/view/type")
        if kind == "modal":
            checker.text(
                view.get("title"),
                "/view/title",
                MAX_VIEW_TITLE,
                plain_only=True,
                name="title",
                parent="/view",
            )
            for key in ("submit", "close"):
                checker.text(
                    view.get(key), f"/view/{key}", MAX_VIEW_TITLE, plain_only=True, required=False
                )
            blocks = view.get("blocks")
            has_inputs = isinstance(blocks, list) and any(
                isinstance(b, Mapping) and b.get("type") == "input" for b in blocks
            )
            if has_inputs and view.get("submit") is None:
                checker.missing("submit", "/view")
        checker.string(view, "callback_id", "/view", MAX_ID)
        checker.string(view, "external_id", "/view", MAX_ID)
        checker.string(view, "private_metadata", "/view", MAX_PRIVATE_METADATA)
        if view.get("blocks") is None:
            checker.missing("blocks", "/view")
        else:
            checker.blocks(view["blocks"], "/view/blocks", MAX_VIEW_BLOCKS)
        if checker.problems:
            raise _invalid("invalid_arguments", checker.problems, with_errors=False)
        return view

    def _make_view(
        self,
        view: Mapping[str, Any],
        *,
        view_id: str | None = None,
        previous: Mapping[str, Any] | None = None,
        root: str | None = None,
    ) -> dict[str, Any]:
        vid = view_id or self._new_id("V")
        made: dict[str, Any] = {
            "id": vid,
            "team_id": self.team_id,
            "type": view["type"],
            "blocks": self._normalize_blocks(list(view.get("blocks", []))),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{self._generated_id()}{self._generated_id()}",
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "close": view.get("close"),
            "submit": view.get("submit"),
            "previous_view_id": (previous or {}).get("previous_view_id"),
            "root_view_id": root or (previous or {}).get("root_view_id") or vid,
            "app_id": self.app_id,
            "external_id": view.get("external_id", ""),
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        if "title" in view:
            made["title"] = view["title"]
        self._views[vid] = made
        return made

    # --- Web API methods (lock held) -------------------------------------------------

    def _api_test(self, call: _Call) -> dict[str, Any]:
        return {"args": {k: v for k, v in call.args.items() if k != "token"}}

    def _auth_test(self, call: _Call) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_name,
            "user": self.bot_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
        }
        if call.token_kind == "bot":
            answer["bot_id"] = self.bot_id
        else:
            answer.update(user=USER_NAME, user_id=USER_ID)
        answer["is_enterprise_install"] = False
        return answer

    def _apps_connections_open(self, call: _Call) -> dict[str, Any]:
        # No websocket is served; the URL only has Slack's shape.
        ticket = self._new_id("", 16).lower()
        return {"url": f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"}

    def _chat_post_message(self, call: _Call) -> dict[str, Any]:
        channel = self._writable_channel(call.args.get("channel"))
        text, blocks = self._message_content(call.args, MAX_MESSAGE_TEXT, require=True)
        extra = {k: call.args[k] for k in ("attachments", "metadata") if call.args.get(k)}
        message = self._store_message(
            channel.id,
            text=text,
            blocks=blocks,
            user=self.bot_user_id,
            bot=True,
            thread_ts=call.args.get("thread_ts"),
            broadcast=_as_bool(call.args.get("reply_broadcast")),
            extra=extra,
        )
        return {"channel": channel.id, "ts": message["ts"], "message": copy.deepcopy(message)}

    def _chat_post_ephemeral(self, call: _Call) -> dict[str, Any]:
        channel = self._writable_channel(call.args.get("channel"))
        user = _text_of(call.args.get("user"))
        if (
            user is None
            or user not in self._users
            or (channel.members and user not in channel.members)
        ):
            raise _SlackError("user_not_in_channel")
        text, blocks = self._message_content(call.args, MAX_MESSAGE_TEXT, require=True)
        ts = self._next_ts()
        self._ephemerals.append(
            {
                "channel": channel.id,
                "user": user,
                "text": text or "",
                "blocks": self._normalize_blocks(blocks) if blocks else [],
                "thread_ts": _text_of(call.args.get("thread_ts")),
                "message_ts": ts,
                "source": "chat.postEphemeral",
            }
        )
        return {"message_ts": ts}

    def _chat_update(self, call: _Call) -> dict[str, Any]:
        channel = self._writable_channel(call.args.get("channel"))
        ts = _text_of(call.args.get("ts"))
        message = self._find(channel.id, ts) if ts else None
        if message is None:
            raise _SlackError("message_not_found")
        if message.get("bot_id") != self.bot_id:
            raise _SlackError("cant_update_message")
        text, blocks = self._message_content(call.args, MAX_UPDATE_TEXT, require=True)
        self._edit(message, text, blocks, user=self.bot_user_id)
        return {
            "channel": channel.id,
            "ts": message["ts"],
            "text": message["text"],
            "message": copy.deepcopy(message),
        }

    def _chat_delete(self, call: _Call) -> dict[str, Any]:
        channel = self._writable_channel(call.args.get("channel"))
        ts = _text_of(call.args.get("ts"))
        message = self._find(channel.id, ts) if ts else None
        if message is None:
            raise _SlackError("message_not_found")
        if message.get("bot_id") != self.bot_id:
            raise _SlackError("cant_delete_message")
        self._remove_message(channel.id, message["ts"])
        return {"channel": channel.id, "ts": message["ts"]}

    def _chat_get_permalink(self, call: _Call) -> dict[str, Any]:
        channel = self._resolve_channel(call.args.get("channel"))
        ts = _text_of(call.args.get("message_ts"))
        message = self._find(channel.id, ts) if ts else None
        if message is None:
            raise _SlackError("message_not_found")
        link = f"https://{self.team_domain}.slack.com/archives/{channel.id}/p{message['ts'].replace('.', '')}"
        root = message.get("thread_ts")
        if root and root != message["ts"]:
            link += f"?thread_ts={root}&cid={channel.id}"
        return {"channel": channel.id, "permalink": link}

    def _views_open(self, call: _Call) -> dict[str, Any]:
        view = self._check_view(call.args.get("view"), ("modal",))
        self._check_trigger(call.args)
        made = self._make_view(view)
        self._modal_stack = [made["id"]]
        self._views_opened.append(copy.deepcopy(made))
        return {"view": copy.deepcopy(made)}

    def _views_push(self, call: _Call) -> dict[str, Any]:
        view = self._check_view(call.args.get("view"), ("modal",))
        self._check_trigger(call.args)
        if len(self._modal_stack) >= MAX_MODAL_STACK:
            raise _SlackError("push_limit_reached")
        previous = self._views.get(self._modal_stack[-1]) if self._modal_stack else None
        made = self._make_view(view, root=previous["root_view_id"] if previous else None)
        made["previous_view_id"] = previous["id"] if previous else None
        self._modal_stack.append(made["id"])
        return {"view": copy.deepcopy(made)}

    def _views_update(self, call: _Call) -> dict[str, Any]:
        view_id = _text_of(call.args.get("view_id"))
        external_id = _text_of(call.args.get("external_id"))
        if view_id is None and external_id is None:
            raise _invalid(
                "invalid_arguments",
                [("must provide either view_id or external_id", "")],
                with_errors=False,
            )
        current = (
            self._views.get(view_id)
            if view_id
            else next(
                (v for v in self._views.values() if v.get("external_id") == external_id), None
            )
        )
        if current is None:
            raise _SlackError("not_found")
        view = self._check_view(call.args.get("view"), (current["type"],))
        expected = _text_of(call.args.get("hash"))
        if expected is not None and expected != current["hash"]:
            raise _SlackError("hash_conflict")
        made = self._make_view(view, view_id=current["id"], previous=current)
        for user, home in list(self._home_views.items()):
            if home["id"] == made["id"]:
                self._home_views[user] = made
        return {"view": copy.deepcopy(made)}

    def _views_publish(self, call: _Call) -> dict[str, Any]:
        if not self.home_tab_enabled:
            raise _SlackError("not_enabled")
        user = _text_of(call.args.get("user_id"))
        if user is None or user not in self._users:
            raise _SlackError("user_not_found")
        view = self._check_view(call.args.get("view"), ("home",))
        current = self._home_views.get(user)
        expected = _text_of(call.args.get("hash"))
        if expected is not None and current is not None and expected != current["hash"]:
            raise _SlackError("hash_conflict")
        made = self._make_view(view, view_id=current["id"] if current else None)
        self._home_views[user] = made
        return {"view": copy.deepcopy(made)}

    def _users_info(self, call: _Call) -> dict[str, Any]:
        user = self._users.get(str(call.args.get("user", "")))
        if user is None:
            raise _SlackError("user_not_found")
        return {"user": user.to_api(self.team_id)}

    def _usergroups_users_list(self, call: _Call) -> dict[str, Any]:
        group = self._usergroups.get(str(call.args.get("usergroup", "")))
        if group is None:
            raise _SlackError("no_such_subteam")
        return {"users": list(group["users"])}

    def _conversations_info(self, call: _Call) -> dict[str, Any]:
        channel = self._resolve_channel(call.args.get("channel"))
        return {"channel": channel.to_api(USER_ID)}

    def _page(
        self, items: list[dict[str, Any]], args: Mapping[str, Any], default_limit: int
    ) -> dict[str, Any]:
        start = _offset(args.get("cursor"))
        limit = max(1, min(_as_int(args.get("limit"), default_limit), 999))
        page = items[start : start + limit]
        more = start + limit < len(items)
        return {
            "messages": [copy.deepcopy(m) for m in page],
            "has_more": more,
            "response_metadata": {"next_cursor": _cursor(start + limit) if more else ""},
        }

    def _in_window(self, message: Mapping[str, Any], args: Mapping[str, Any]) -> bool:
        inclusive = _as_bool(args.get("inclusive"))
        key = _ts_key(message["ts"])
        oldest, latest = _text_of(args.get("oldest")), _text_of(args.get("latest"))
        if oldest is not None and (
            key < _ts_key(oldest) or (key == _ts_key(oldest) and not inclusive)
        ):
            return False
        return not (
            latest is not None
            and (key > _ts_key(latest) or (key == _ts_key(latest) and not inclusive))
        )

    def _conversations_history(self, call: _Call) -> dict[str, Any]:
        channel = self._readable_channel(call.args.get("channel"))
        top_level = [
            m
            for m in self._messages.get(channel.id, [])
            if m.get("thread_ts") in (None, m["ts"]) or m.get("subtype") == "thread_broadcast"
        ]
        newest_first = [m for m in reversed(top_level) if self._in_window(m, call.args)]
        return self._page(newest_first, call.args, 100)

    def _conversations_replies(self, call: _Call) -> dict[str, Any]:
        channel = self._readable_channel(call.args.get("channel"))
        ts = _text_of(call.args.get("ts"))
        message = self._find(channel.id, ts) if ts else None
        if message is None:
            raise _SlackError("thread_not_found")
        root = message.get("thread_ts") or message["ts"]
        thread = [
            m
            for m in self._messages.get(channel.id, [])
            if (m["ts"] == root or m.get("thread_ts") == root) and self._in_window(m, call.args)
        ]
        return self._page(thread, call.args, 1000)

    def _conversations_open(self, call: _Call) -> dict[str, Any]:
        channel_arg = _text_of(call.args.get("channel"))
        users = [u for u in str(call.args.get("users") or "").split(",") if u]
        if channel_arg:
            channel = self._resolve_channel(channel_arg)
            existed = True
        elif len(users) == 1:
            existed = dm_channel_id(users[0]) in self._channels
            channel = self._open_dm(users[0])
        elif users:
            for user in users:
                if user not in self._users:
                    raise _SlackError("user_not_found")
            digest = hashlib.sha1(",".join(sorted(users)).encode()).hexdigest()
            cid = "G" + digest[:10].upper()
            existed = cid in self._channels
            channel = self._channels.setdefault(
                cid,
                SlackChannel(
                    cid, name="mpdm-" + "--".join(users), is_private=True, members=set(users)
                ),
            )
        else:
            raise _SlackError("users_list_not_supplied")
        answer: dict[str, Any] = {
            "channel": channel.to_api(USER_ID)
            if _as_bool(call.args.get("return_im"))
            else {"id": channel.id}
        }
        if existed:
            answer.update(no_op=True, already_open=True)
        return answer

    def _reactions_add(self, call: _Call) -> dict[str, Any]:
        channel = self._readable_channel(call.args.get("channel"))
        ts = _text_of(call.args.get("timestamp"))
        message = self._find(channel.id, ts) if ts else None
        if message is None:
            raise _SlackError("message_not_found")
        name = str(call.args.get("name") or "")
        if not _EMOJI_RE.match(name):
            raise _SlackError("invalid_name")
        reactions = message.setdefault("reactions", [])
        entry = next((r for r in reactions if r["name"] == name), None)
        if entry is None:
            entry = {"name": name, "users": [], "count": 0}
            reactions.append(entry)
        if self.bot_user_id in entry["users"]:
            raise _SlackError("already_reacted")
        entry["users"].append(self.bot_user_id)
        entry["count"] += 1
        return {}

    def _files_get_upload_url(self, call: _Call) -> dict[str, Any]:
        filename = _text_of(call.args.get("filename"))
        length = call.args.get("length")
        problems = []
        if filename is None:
            problems.append(("missing required field: filename", ""))
        if length is None or _as_int(length, -1) < 0:
            problems.append(("missing required field: length", ""))
        if problems:
            raise _invalid("invalid_arguments", problems, with_errors=False)
        file_id = self._new_id("F")
        self._files[file_id] = {
            "id": file_id,
            "name": filename,
            "title": filename,
            "length": _as_int(length, 0),
            "alt_txt": call.args.get("alt_txt"),
            "snippet_type": call.args.get("snippet_type"),
            "content": None,
            "size": None,
            "completed": False,
            "channels": [],
            "thread_ts": None,
            "initial_comment": None,
        }
        return {"upload_url": f"{self.root_url}/upload/v1/{file_id}", "file_id": file_id}

    def _files_complete_upload(self, call: _Call) -> dict[str, Any]:
        files = call.args.get("files")
        if not isinstance(files, list) or not files:
            raise _invalid(
                "invalid_arguments", [("must provide an array", "/files")], with_errors=False
            )
        entries = []
        for item in files:
            entry = self._files.get(str(item.get("id"))) if isinstance(item, Mapping) else None
            if entry is None or entry["content"] is None:
                raise _SlackError("file_not_found")
            entries.append((entry, item))
        targets: list[SlackChannel] = []
        for raw in [call.args.get("channel_id"), *str(call.args.get("channels") or "").split(",")]:
            if _text_of(raw):
                targets.append(self._writable_channel(raw))
        thread_ts = _text_of(call.args.get("thread_ts"))
        comment = _text_of(call.args.get("initial_comment"))
        answered = []
        for entry, item in entries:
            entry["title"] = item.get("title") or entry["name"]
            entry["completed"] = True
            entry["channels"] = [c.id for c in targets]
            entry["thread_ts"] = thread_ts
            entry["initial_comment"] = comment
            answered.append({"id": entry["id"], "title": entry["title"]})
        shared = [
            {
                "id": e["id"],
                "name": e["name"],
                "title": e["title"],
                "size": e["size"],
                "mode": "hosted",
            }
            for e, _ in entries
        ]
        for channel in targets:
            self._store_message(
                channel.id,
                text=comment,
                blocks=None,
                user=self.bot_user_id,
                bot=True,
                thread_ts=thread_ts,
                extra={"files": copy.deepcopy(shared), "upload": True, "display_as_bot": False},
            )
        # Slack answers with just id and title; sharing into channels happens after.
        return {"files": answered}
