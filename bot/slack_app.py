"""The Slack app: an async Bolt app wired to the engine.

Listeners are thin: they ack at once, then hand work to the engine or the renderer. Views are
pure functions in ``bot.views``; listeners live one concern per module in ``bot.listeners``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from slack_bolt.async_app import AsyncApp

from agents.engine import Engine
from agents.settings import Settings
from bot.policy import GroupCache
from bot.poster import Poster, make_client
from bot.renderer import SlackRenderer
from bot.settings import SlackSettings
from storage.repositories import audit

log = logging.getLogger(__name__)


@dataclass
class BotContext:
    """What every listener needs."""

    engine: Engine
    settings: Settings
    slack: SlackSettings
    poster: Poster
    renderer: SlackRenderer
    groups: GroupCache
    bot_user_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    async def audit(
        self, actor: str, action: str, *, run_id: str | None, subject: str | None, **detail: Any
    ) -> None:
        """Write an audit row (refused clicks, decisions made from Slack)."""
        async with self.engine.svc.db.transaction() as session:
            await audit.append(
                session,
                at=time.time(),
                actor=actor,
                action=action,
                run_id=run_id,
                subject=subject,
                detail=detail or None,
            )


def build_app(
    engine: Engine, settings: Settings, slack: SlackSettings, *, socket: bool
) -> AsyncApp:
    """The Bolt app with every listener registered and the renderer subscribed."""
    assert slack.bot_token is not None
    client = make_client(slack.bot_token, slack.api_base_url)
    app = AsyncApp(
        client=client,
        signing_secret=slack.signing_secret or "",
        # Socket Mode requests are not signed; HTTP ones are verified before any listener.
        request_verification_enabled=not socket,
        process_before_response=False,
        ignoring_self_events_enabled=True,
    )
    poster = Poster(client)
    poster.allowed_groups = frozenset(  # reminders may mention the approver groups
        [g for r in slack.policy.rules.values() for g in r.groups]
        + [t for t in slack.escalate_to if t.startswith("S")]
    )
    renderer = SlackRenderer(engine, poster)
    poster.on_auth_error = renderer.stop_workspace
    engine.bus.subscribe(renderer.on_event)

    async def members(group: str) -> set[str]:
        data = await poster.call("usergroups.users.list", usergroup=group)
        return set(data.get("users") or [])

    ctx = BotContext(engine, settings, slack, poster, renderer, GroupCache(members))
    from bot import due_slack
    from bot.listeners import register_all

    register_all(app, ctx)
    due_slack.register(ctx)
    app_any: Any = app
    app_any.baton = ctx  # reachable from tests and `baton serve`
    return app
