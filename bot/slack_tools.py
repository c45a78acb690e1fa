"""Slack tools for agents: read a channel, and post a message (a person approves it first).

They live in ``bot`` because ``agents`` never imports Slack; ``baton run`` and ``baton serve``
add them to the registry when ``SLACK_BOT_TOKEN`` is set. A post carries its call's
idempotency key as message metadata and is not made again when a message with that key is
already in the channel (an earlier attempt that posted, then crashed before recording it).
The text is cleaned before posting (:func:`bot.hygiene.safe_mrkdwn`): broadcast and user-group
mentions (@channel, @here, @everyone, ``<!subteam^…>``) are defused, so an agent cannot page a
whole channel, and a masked link shows its real target, so it cannot disguise where it goes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from agents.registry import Registry
from agents.tools import Risk, Tool, ToolContext, make_tool
from bot.due_slack import marked_message_posted
from bot.hygiene import safe_mrkdwn
from bot.poster import Poster, SlackAuthError, SlackChannelError
from bot.views.text import defuse

#: ``event_type`` of the metadata on messages posted by ``slack_post_message``.
TOOL_POST_EVENT = "baton_tool_post"
MAX_POST_CHARS = 12_000
MAX_READ_CHARS = 2_000  # of one message read back
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
_CHANNEL_LINK = re.compile(r"^<#([CGD][A-Z0-9]+)(?:\|[^>]*)?>$")
#: How :func:`bot.hygiene.from_slack` writes a channel a person picked: ``#deals (C0123)``.
_NAMED_CHANNEL = re.compile(r"^#[^\s()]+ \(([CGD][A-Z0-9]{2,})\)$")

#: ``<!channel>``, ``<!subteam^…>`` and plain ``@channel`` as look-alikes that notify nobody.
neutralise_broadcasts = defuse


class SlackToolError(Exception):
    """A Slack tool could not do its work; the message says why and what to do."""


def register_slack_tools(registry: Registry, client_or_poster: AsyncWebClient | Poster) -> None:
    """Add ``slack_read_channel`` and ``slack_post_message`` (replacing earlier ones)."""
    poster = client_or_poster if isinstance(client_or_poster, Poster) else Poster(client_or_poster)
    for tool in slack_tools(poster):
        registry.add_tool(tool)


def register_slack_tools_from_env(registry: Registry, env: Mapping[str, str] | None = None) -> bool:
    """Add the Slack tools if ``SLACK_BOT_TOKEN`` is set. Returns whether they were added."""
    tools = slack_tools_from_env(env)
    for tool in tools:
        registry.add_tool(tool)
    return bool(tools)


def slack_tools_from_env(env: Mapping[str, str] | None = None) -> list[Tool]:
    """The Slack tools if ``SLACK_BOT_TOKEN`` is set, else none (for building a registry
    before a Bolt app exists: agents that list them are then checked against them).

    The client opens an HTTP session per call, so a short-lived command has nothing left to
    close when it exits.
    """
    env = os.environ if env is None else env
    token = env.get("SLACK_BOT_TOKEN") or ""
    if not token:
        return []
    kwargs: dict[str, Any] = {
        "token": token,
        "retry_handlers": [
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=5),
            AsyncServerErrorRetryHandler(max_retry_count=2),
        ],
    }
    if env.get("SLACK_API_BASE_URL"):
        kwargs["base_url"] = env["SLACK_API_BASE_URL"]
    return slack_tools(Poster(AsyncWebClient(**kwargs)))


def slack_tools(poster: Poster) -> list[Tool]:
    """The Slack tools, talking through ``poster``."""

    async def slack_read_channel(
        channel: Annotated[str, Field(description="The channel id, like C0123ABCD.")],
        limit: Annotated[int, Field(ge=1, le=100, description="How many recent messages.")] = 20,
    ) -> str:
        """Read the latest messages of a Slack channel Baton is a member of (oldest first,
        each with its author and timestamp)."""
        cid = channel_id(channel)
        data = await _call(poster, "conversations.history", cid, limit=limit)
        messages = list(reversed(data.get("messages") or []))
        if not messages:
            return f"<#{cid}> has no messages."
        lines = [f"The last {len(messages)} message(s) in <#{cid}>, oldest first:"]
        lines += [_message_line(m) for m in messages]
        return "\n".join(lines)

    async def slack_post_message(
        channel: Annotated[str, Field(description="The channel id, like C0123ABCD.")],
        text: Annotated[str, Field(description="The message (Slack mrkdwn).")],
        thread_ts: Annotated[
            str | None, Field(description="Reply in this thread (a message's ts).")
        ] = None,
        *,
        ctx: ToolContext,
    ) -> str:
        """Post a message in a Slack channel as Baton. A person approves every post first;
        @channel, @here, @everyone and user groups are defused, and a link shows its real
        address (a link cannot be labelled with another one)."""
        cid = channel_id(channel)
        body = safe_mrkdwn(text).strip()
        if not body:
            raise SlackToolError("The message is empty.")
        if len(body) > MAX_POST_CHARS:
            raise SlackToolError(
                f"The message is {len(body)} characters; keep it under {MAX_POST_CHARS}."
            )
        marker = {"event_type": TOOL_POST_EVENT, "event_payload": {"key": ctx.idempotency_key}}
        where = f"<#{cid}>" + (" (in the thread)" if thread_ts else "")
        if await marked_message_posted(
            poster, cid, thread_ts, marker, what=f"post {ctx.idempotency_key}"
        ):
            return (
                f"Already posted in {where} by an earlier attempt of this call; not posted again."
            )
        await poster.pacer.wait(cid)
        args: dict[str, Any] = {
            "text": body,
            "metadata": marker,
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if thread_ts:
            args["thread_ts"] = thread_ts
        data = await _call(poster, "chat.postMessage", cid, **args)
        return f"Posted in {where} (ts {data.get('ts', '?')})."

    return [
        make_tool(slack_read_channel, risk=Risk.READ_ONLY, idempotent=True),
        make_tool(slack_post_message, risk=Risk.EXTERNAL, idempotent=False, outbound=("text",)),
    ]


def channel_id(raw: str) -> str:
    """A channel id from ``C0123ABCD``, ``#C0123ABCD``, ``<#C0123ABCD|name>`` or
    ``#name (C0123ABCD)`` (a channel picked in Slack, as goals and inputs store it)."""
    value = raw.strip()
    link = _CHANNEL_LINK.match(value) or _NAMED_CHANNEL.match(value)
    if link:
        return link.group(1)
    value = value.lstrip("#")
    if _CHANNEL_ID.match(value):
        return value
    raise SlackToolError(
        f"{raw[:80]!r} is not a channel id. Give the id (like C0123ABCD): in Slack, open "
        "the channel's details; the id is at the bottom."
    )


async def _call(poster: Poster, method: str, channel: str, **kwargs: Any) -> dict[str, Any]:
    """One Web API call; Slack's errors as sentences that say what to do."""
    try:
        return await poster.call(method, channel=channel, **kwargs)
    except SlackChannelError as exc:
        if exc.error == "not_in_channel":
            raise SlackToolError(
                f"Baton is not a member of <#{channel}>: invite it (/invite @Baton), then "
                "try again."
            ) from None
        if exc.error == "is_archived":
            raise SlackToolError(f"<#{channel}> is archived.") from None
        raise SlackToolError(
            f"Baton cannot see channel {channel}: check the id, and invite Baton if the "
            "channel is private."
        ) from None
    except SlackAuthError as exc:
        raise SlackToolError(f"Slack rejected Baton's token ({exc}).") from None
    except SlackApiError as exc:
        response = exc.response
        error = str(response.get("error", "")) if response is not None else ""
        if error == "missing_scope":
            needed = response.get("needed", "") if response is not None else ""
            raise SlackToolError(
                f"Baton's Slack app lacks the scope {needed or 'this call needs'}: add it "
                "and reinstall the app."
            ) from None
        raise SlackToolError(f"Slack refused {method}: {error or exc}.") from None


def _message_line(message: Mapping[str, Any]) -> str:
    if message.get("user"):
        who = f"<@{message['user']}>"
    else:
        profile = message.get("bot_profile") or {}
        who = f"bot {profile.get('name') or message.get('username') or message.get('bot_id')}"
    text = str(message.get("text") or "").strip()
    if len(text) > MAX_READ_CHARS:
        text = text[:MAX_READ_CHARS] + " […]"
    replies = message.get("reply_count")
    thread = f" ({replies} replies in thread)" if replies else ""
    return f"[{message.get('ts', '?')}] {who}: {text}{thread}"
