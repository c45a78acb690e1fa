"""Events API retries and redeliveries are dropped by ``event_id`` (a unique row), not by the
retry headers, which Socket Mode redeliveries do not always carry."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse

from bot.slack_app import BotContext
from storage.repositories import slack


def register(app: AsyncApp, ctx: BotContext) -> None:
    """Add the dedupe middleware."""

    @app.middleware
    async def dedupe_events(
        body: dict[str, Any], resp: BoltResponse, next: Callable[[], Awaitable[None]]
    ) -> BoltResponse | None:
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id:
            async with ctx.engine.svc.db.transaction() as session:
                first = await slack.remember_event(
                    session, event_id=str(event_id), team_id=body.get("team_id"), now=time.time()
                )
            if not first:
                # Acknowledge with 200 (anything else makes Slack retry again), run nothing.
                return BoltResponse(status=200, body="")
        await next()
        return None
