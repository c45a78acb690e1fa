"""Events: an @mention or a direct message starts a goal; opening the Home tab shows the
viewer's pending approvals and recent runs."""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncApp

from agents.engine import clean_goal
from agents.errors import BatonError
from bot.cards import approval_card, run_card
from bot.listeners.commands import slack_text, start
from bot.policy import RISKS
from bot.slack_app import BotContext
from bot.views import help_text, home_view
from storage.repositories import approvals, runs, steps

log = logging.getLogger(__name__)

MENTION = re.compile(r"<@[UW][A-Z0-9]+(?:\|[^>]*)?>")


def register(app: AsyncApp, ctx: BotContext) -> None:
    """Register the event listeners."""

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], body: dict[str, Any]) -> None:
        await _goal_from_message(ctx, event, body)

    @app.event("message")
    async def on_message(event: dict[str, Any], body: dict[str, Any]) -> None:
        # Only plain direct messages from people: not edits, joins, or bots (ours included).
        if event.get("channel_type") != "im" or event.get("subtype") or event.get("bot_id"):
            return
        await _goal_from_message(ctx, event, body)

    @app.event("app_home_opened")
    async def on_home(event: dict[str, Any], body: dict[str, Any]) -> None:
        if event.get("tab") not in (None, "home"):
            return
        await publish_home(ctx, str(event.get("user", "")), body.get("team_id"))


async def _goal_from_message(ctx: BotContext, event: dict[str, Any], body: dict[str, Any]) -> None:
    user = str(event.get("user", ""))
    channel = str(event.get("channel", ""))
    if not user or not channel:
        return
    text = slack_text(_without_bot_mention(ctx, event.get("text", ""), body))
    if text.lower() in ("", "help"):
        await ctx.poster.ephemeral(channel, user, help_text(), event.get("thread_ts"))
        return
    try:
        goal = clean_goal(text, ctx.settings.limits.max_goal_chars)
    except BatonError as exc:
        await ctx.poster.ephemeral(channel, user, str(exc), event.get("thread_ts"))
        return
    await start(ctx, None, team=body.get("team_id"), channel=channel, user=user, goal=goal)


def _without_bot_mention(ctx: BotContext, text: str, body: dict[str, Any]) -> str:
    """The text minus Baton's own mention (other people mentioned in it stay, as ``@U…``)."""
    ours = {ctx.bot_user_id} | {a.get("user_id") for a in body.get("authorizations") or []}
    ours.discard(None)
    if ours:
        return MENTION.sub(lambda m: "" if _mentioned(m.group(0)) in ours else m.group(0), text)
    return MENTION.sub("", text, count=1) if MENTION.match(text.lstrip()) else text


def _mentioned(token: str) -> str:
    return token[2:-1].split("|", 1)[0]


async def publish_home(ctx: BotContext, user: str, team: str | None) -> None:
    """Build and publish the Home tab for ``user``."""
    if not user:
        return
    async with ctx.engine.svc.db.transaction() as session:
        pending = await approvals.list_approvals(session, statuses=["pending"], limit=200)
        recent = await runs.list_runs(session, limit=10, requester=f"slack:{user}")
        cards = []
        for run in recent:
            cards.append(run_card(run, await steps.get_steps(session, run_id=run.id)))
        mine = []
        for a in pending:
            owner = await runs.get_run(session, run_id=a.run_id)
            if owner is None or not (owner.origin or {}).get("slack"):
                continue
            refusal = await ctx.slack.policy.refusal(
                risk=a.risk if a.risk in RISKS else "external",
                user_id=user,
                team_id=team,
                run_team_id=(owner.origin or {}).get("team_id"),
                requester=owner.requester,
                members_of=ctx.groups.members,
            )
            if refusal is None:
                step = await steps.get_step(session, run_id=a.run_id, step_id=a.step_id)
                mine.append(approval_card(a, step.title if step else a.step_id))
    await ctx.poster.call("views.publish", user_id=user, view=home_view(mine, cards))
