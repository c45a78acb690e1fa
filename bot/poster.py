"""Talking to Slack's Web API politely: pacing per channel, and errors sorted by what to do.

- ``ratelimited`` (429) is retried by slack_sdk's rate-limit handler, honouring Retry-After.
- ``invalid_auth``, ``token_revoked``, ``account_inactive`` are never retried: the workspace is
  marked dead and its runs are stopped by the caller.
- ``channel_not_found``, ``not_in_channel``, ``is_archived`` are tried once; the requester is
  told what to do.

Every message and view is passed through :func:`bot.hygiene.clean_payload` on its way out:
whatever text reaches Slack through Baton, no masked link hides its target and no broadcast
or user-group mention pings anyone (only the approver groups configured for reminders).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.hygiene import clean_payload

log = logging.getLogger(__name__)

AUTH_ERRORS = frozenset({"invalid_auth", "token_revoked", "account_inactive", "not_authed"})
CHANNEL_ERRORS = frozenset({"channel_not_found", "not_in_channel", "is_archived"})


class SlackAuthError(Exception):
    """The token no longer works for this workspace."""


class Superseded(Exception):
    """Another process took this work over before it was posted; nothing was posted."""


class SlackChannelError(Exception):
    """Baton cannot post in the channel."""

    def __init__(self, error: str, channel: str) -> None:
        super().__init__(error)
        self.error = error
        self.channel = channel


def make_client(token: str, base_url: str | None = None) -> AsyncWebClient:
    """A Web API client that waits out 429s and retries 5xx and dropped connections."""
    kwargs: dict[str, Any] = {
        "token": token,
        "retry_handlers": [
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=5),
            AsyncServerErrorRetryHandler(max_retry_count=2),
        ],
    }
    if base_url:
        kwargs["base_url"] = base_url
    try:
        import aiohttp

        asyncio.get_running_loop()
        # One pooled session for every call (slack_sdk otherwise opens one per call).
        kwargs["session"] = aiohttp.ClientSession()
    except RuntimeError:
        pass  # no running loop: slack_sdk makes a session per call
    return AsyncWebClient(**kwargs)


class ChannelPacer:
    """A token bucket per channel: short bursts, then about one post per second."""

    def __init__(self, rate_per_s: float = 1.0, burst: int = 3) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self._state: dict[str, tuple[float, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def wait(self, channel: str) -> None:
        """Wait until ``channel`` may receive another post."""
        lock = self._locks.setdefault(channel, asyncio.Lock())
        async with lock:
            now = time.monotonic()
            tokens, last = self._state.get(channel, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < 1.0:
                await asyncio.sleep((1.0 - tokens) / self.rate)
                now = time.monotonic()
                tokens = 1.0
            self._state[channel] = (tokens - 1.0, now)


class Poster:
    """Posts and edits messages; raises :class:`SlackAuthError`/:class:`SlackChannelError`."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        on_auth_error: Callable[[str], Awaitable[None]] | None = None,
        pacer: ChannelPacer | None = None,
    ) -> None:
        self.client = client
        self.pacer = pacer or ChannelPacer()
        self.on_auth_error = on_auth_error
        self.dead = False
        #: User groups Baton itself may mention (approvers, escalation targets): configured
        #: by an admin, never taken from text. Every other ``<!subteam^…>`` is defused.
        self.allowed_groups: frozenset[str] = frozenset()

    async def call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        """One Web API call, with errors sorted."""
        if self.dead:
            raise SlackAuthError("the Slack token was rejected earlier; not calling again")
        kwargs = clean_payload(method, kwargs, self.allowed_groups)
        try:
            # The typed methods send each call the way Slack expects (JSON, form or query).
            response = await getattr(self.client, method.replace(".", "_"))(**kwargs)
        except SlackApiError as exc:
            error = str(exc.response.get("error", "")) if exc.response is not None else ""
            if error in AUTH_ERRORS:
                self.dead = True
                log.error("Slack rejected the token (%s); stopping this workspace's runs", error)
                if self.on_auth_error is not None:
                    await self.on_auth_error(error)
                raise SlackAuthError(error) from None
            if error in CHANNEL_ERRORS:
                raise SlackChannelError(error, str(kwargs.get("channel", ""))) from None
            raise
        return dict(response.data) if isinstance(response.data, dict) else {}

    async def post(
        self,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]],
        thread_ts: str | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        still_ours: Callable[[], Awaitable[bool]] | None = None,
    ) -> str:
        """Post a message (link previews off); returns its ``ts``.

        ``still_ours`` is asked after pacing, right before the call: a claim on due work may
        have been lost meanwhile (:class:`Superseded` is raised then, nothing is posted).
        """
        await self.pacer.wait(channel)
        if still_ours is not None and not await still_ours():
            raise Superseded(channel)
        kwargs: dict[str, Any] = {
            "channel": channel,
            "text": text,
            "blocks": blocks,
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        if metadata:
            kwargs["metadata"] = metadata
        data = await self.call("chat.postMessage", **kwargs)
        return str(data.get("ts", ""))

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        """Edit a message in place."""
        await self.call("chat.update", channel=channel, ts=ts, text=text, blocks=blocks)

    async def ephemeral(
        self, channel: str, user: str, text: str, thread_ts: str | None = None
    ) -> None:
        """A message only ``user`` sees; falls back to a DM when the channel is out of reach."""
        kwargs: dict[str, Any] = {"channel": channel, "user": user, "text": text}
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        try:
            await self.call("chat.postEphemeral", **kwargs)
        except (SlackChannelError, SlackApiError):
            await self.direct(user, text)

    async def direct(self, user: str, text: str) -> None:
        """A direct message to ``user``."""
        try:
            opened = await self.call("conversations.open", users=user)
            channel = str((opened.get("channel") or {}).get("id", ""))
            if channel:
                await self.call(
                    "chat.postMessage",
                    channel=channel,
                    text=text,
                    unfurl_links=False,
                    unfurl_media=False,
                )
        except (SlackApiError, SlackChannelError) as exc:
            log.warning("could not DM %s: %s", user, exc)
