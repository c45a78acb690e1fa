"""``/orchestrate``: start a goal or a playbook, check status, cancel, get help.

Every request is acknowledged at once; malformed ones get an ephemeral explanation with an
example in the ack itself. Work happens after the ack.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from agents import notices
from agents.engine import clean_goal
from agents.errors import BatonError, PlaybookError
from agents.plan import Plan
from agents.playbook import bind, find_playbook, load_playbook
from bot.cards import run_card
from bot.hygiene import from_slack, slack_words
from bot.poster import SlackAuthError, SlackChannelError
from bot.renderer import channel_help
from bot.slack_app import BotContext
from bot.views import help_text, status_card, usage_error
from bot.views.cards import RunCard
from storage.repositories import runs, slack, steps

log = logging.getLogger(__name__)


def register(app: AsyncApp, ctx: BotContext) -> None:
    """Register ``/orchestrate``."""

    @app.command("/orchestrate")
    async def orchestrate(ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        raw = str(command.get("text", ""))
        text = slack_text(raw)
        # Commands with key=value words are split before Slack's markup is made plain, so a
        # value made of a channel or a link ("#deals (C0123)") stays one value.
        parts = raw.split(None, 1)
        raw_rest = parts[1] if len(parts) > 1 else ""
        user = str(command.get("user_id", ""))
        channel = str(command.get("channel_id", ""))
        team = command.get("team_id")
        word, _, rest = text.partition(" ")
        word = word.lower()
        try:
            if word in ("", "help"):
                await ack(text=help_text())
                return
            if word == "status":
                await ack()
                await respond(**await status_reply(ctx, user, rest.strip()))
                return
            if word == "cancel":
                await cancel(ctx, ack, respond, user, rest.strip())
                return
            if word == "schedule":
                await ack()
                await respond(**await schedule_reply(ctx, user, channel, team, raw_rest))
                return
            if word == "schedules":
                await ack(**await schedules_reply(ctx, user))
                return
            if word == "unschedule":
                await ack(text=await unschedule_reply(ctx, user, rest.strip()))
                return
            if word == "playbook":
                goal, plan, name, inputs = parse_playbook_command(ctx, raw_rest)
                await ack()
                await start(
                    ctx,
                    respond,
                    team=team,
                    channel=channel,
                    user=user,
                    goal=goal,
                    plan=plan,
                    playbook=name,
                    inputs=inputs,
                )
                return
            goal = clean_goal(text, ctx.settings.limits.max_goal_chars)
        except BatonError as exc:
            message, blocks = usage_error(str(exc))
            await ack(text=message, blocks=blocks)
            return
        await ack()
        await start(ctx, respond, team=team, channel=channel, user=user, goal=goal)


def slack_text(text: str) -> str:
    """Slack's text as plain text, once at the edge for goals and inputs alike: entities and
    smart quotes undone, links unwrapped to their targets, broadcasts defused
    (:func:`bot.hygiene.from_slack`)."""
    return from_slack(text)


_LINK = re.compile(r"<(?:mailto:([^|<>\s]+)|(https?://[^|<>\s]+))(?:\|[^<>]*)?>")


def unlink(value: str) -> str:
    """Slack turns URLs and email addresses people type into links (``<https://a.example>``,
    ``<mailto:ada@a.example|ada@a.example>``); an input wants the plain URL or address."""
    return _LINK.sub(lambda m: m.group(1) or m.group(2), value)


def parse_playbook_command(ctx: BotContext, rest: str) -> tuple[str, Plan, str, dict[str, str]]:
    """``NAME key=value …`` (as Slack sent it) → (goal, plan, name, inputs), or a clear
    :class:`PlaybookError`. Each word is made plain text (:func:`bot.hygiene.slack_words`)."""
    try:
        words = slack_words(rest)
    except ValueError as exc:
        raise PlaybookError(f"I could not read that ({exc}). Quote values with spaces.") from None
    if not words:
        raise PlaybookError(
            "Which playbook? For example: /orchestrate playbook account_brief account=Acme"
        )
    name, pairs = words[0], words[1:]
    inputs: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise PlaybookError(
                f"Inputs are key=value, got {pair!r}. Quote a value that has spaces: "
                'key="two words".'
            )
        inputs[key] = unlink(value)
    path = find_playbook(name, ctx.settings.playbook_dir)
    playbook = load_playbook(path)
    goal, plan = bind(
        playbook, inputs, ctx.engine.svc.registry, max_steps=ctx.settings.limits.max_steps
    )
    return goal, plan, playbook.name, inputs


async def start(
    ctx: BotContext,
    respond: AsyncRespond | None,
    *,
    team: str | None,
    channel: str,
    user: str,
    goal: str,
    plan: Plan | None = None,
    playbook: str | None = None,
    inputs: dict[str, str] | None = None,
) -> str | None:
    """Post the run's card (the thread's root), then start the run with that thread."""
    card = RunCard(
        run_id="…",
        goal=goal,
        requester=user,
        status="planning" if plan is None else "running",
        steps=(),
        source="goal" if plan is None else "playbook",
        playbook=playbook,
    )
    text, blocks = status_card(card)
    try:
        ts = await ctx.poster.post(channel, text, blocks)
    except SlackChannelError as exc:
        message = channel_help(exc.error, channel)
        if respond is not None:
            await respond(text=message, response_type="ephemeral")
        else:
            await ctx.poster.direct(user, message)
        return None
    except SlackAuthError:
        return None
    origin = {"slack": True, "team_id": team, "channel": channel, "thread_ts": ts, "user": user}
    requester = f"slack:{user}"
    if plan is None:
        run_id = await ctx.engine.start_goal(goal, requester=requester, origin=origin)
    else:
        run_id = await ctx.engine.start_plan(
            goal, plan, playbook=playbook, inputs=inputs, requester=requester, origin=origin
        )
    async with ctx.engine.svc.db.transaction() as session:
        await slack.save_message(
            session,
            kind="card",
            ref_id=run_id,
            channel=channel,
            ts=ts,
            now=time.time(),
            run_id=run_id,
            team_id=team,
        )
    ctx.renderer.touch(run_id)
    return run_id


async def status_reply(ctx: BotContext, user: str, run_ref: str) -> dict[str, Any]:
    """One run's card, or the user's recent runs, as an ephemeral reply."""
    db = ctx.engine.svc.db
    async with db.transaction() as session:
        if run_ref:
            ids = [run_ref] if await runs.get_run(session, run_id=run_ref) else []
            ids = ids or await runs.find_run_ids(session, prefix=run_ref)
            if len(ids) != 1:
                return {
                    "text": f"I found no single run matching `{_short(run_ref)}`. "
                    "Try `/orchestrate status` to list yours."
                }
            run = await runs.get_run(session, run_id=ids[0])
            rows = await steps.get_steps(session, run_id=ids[0])
            noticed = await notices.for_run(session, ids[0])
            assert run is not None
            refused = [n.text for n in noticed if n.kind == "refused"]
            text, blocks = status_card(run_card(run, rows, refused))
            return {"text": text, "blocks": blocks, "response_type": "ephemeral"}
        recent = await runs.list_runs(session, limit=10, requester=f"slack:{user}")
    if not recent:
        return {"text": "You have no runs yet. Start one: `/orchestrate research Acme`"}
    lines = [f"• `{r.id}` {r.status}: {_short(r.goal)}" for r in recent]
    return {"text": "Your recent runs:\n" + "\n".join(lines), "response_type": "ephemeral"}


def _short(goal: str) -> str:
    from bot.views.text import escape, trim

    return escape(trim(" ".join(goal.split()), 80))


async def cancel(
    ctx: BotContext, ack: AsyncAck, respond: AsyncRespond, user: str, run_ref: str
) -> None:
    """Cancel a run: its requester, or anyone allowed to approve writes, may."""
    if not run_ref:
        message, blocks = usage_error("Which run? For example: /orchestrate cancel r-3f9a1c2b7d")
        await ack(text=message, blocks=blocks)
        return
    async with ctx.engine.svc.db.transaction() as session:
        run = await runs.get_run(session, run_id=run_ref)
        if run is None:
            ids = await runs.find_run_ids(session, prefix=run_ref)
            run = await runs.get_run(session, run_id=ids[0]) if len(ids) == 1 else None
    if run is None:
        await ack(text=f"There is no run `{_short(run_ref)}`. `/orchestrate status` lists yours.")
        return
    if run.requester != f"slack:{user}":
        refusal = await ctx.slack.policy.refusal(
            risk="writes",
            user_id=user,
            team_id=None,
            run_team_id=None,
            requester=run.requester,
            members_of=ctx.groups.members,
        )
        if refusal:
            await ctx.audit(f"slack:{user}", "run.cancel_refused", run_id=run.id, subject=run.id)
            await ack(text=f"You can't cancel `{run.id}`: {refusal}")
            return
    await ack(text=f"Cancelling `{run.id}`…")
    summary = await ctx.engine.cancel(run.id, actor=f"slack:{user}")
    await respond(text=f"Run `{run.id}` is {summary.status}.", response_type="ephemeral")


SCHEDULE_EXAMPLE = (
    '/orchestrate schedule "every monday 9am" research new sign-ups\n'
    '/orchestrate schedule "daily 17:30" playbook account_brief account=Acme'
)


async def user_zone(ctx: BotContext, user: str) -> str:
    """The person's time zone from their Slack profile (UTC if Slack does not say)."""
    try:
        data = await ctx.poster.call("users.info", user=user)
    except Exception:
        return "UTC"
    return str((data.get("user") or {}).get("tz") or "UTC")


async def schedule_reply(
    ctx: BotContext, user: str, channel: str, team: str | None, rest: str
) -> dict[str, Any]:
    """Create a recurring goal or playbook in the requester's time zone."""
    from agents.recurring import create_schedule
    from bot.console import when

    try:
        words = slack_words(rest)
    except ValueError:
        words = []
    if len(words) < 2:
        message, blocks = usage_error(
            "Say when (in quotes) and what. For example:\n" + SCHEDULE_EXAMPLE
        )
        return {"text": message, "blocks": blocks, "response_type": "ephemeral"}
    spec, what = words[0], words[1:]
    tz = await user_zone(ctx, user)
    goal: str | None = None
    playbook: str | None = None
    inputs: dict[str, str] | None = None
    if what[0].lower() == "playbook" and len(what) > 1:
        playbook = what[1]
        inputs = {}
        for pair in what[2:]:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                message, blocks = usage_error(f"Inputs are key=value, got {pair!r}.")
                return {"text": message, "blocks": blocks, "response_type": "ephemeral"}
            inputs[key] = value
    else:
        goal = clean_goal(" ".join(what), ctx.settings.limits.max_goal_chars)
    try:
        found = await create_schedule(
            ctx.engine,
            spec=spec,
            timezone=tz,
            goal=goal,
            playbook=playbook,
            inputs=inputs,
            requester=f"slack:{user}",
            origin={"slack": True, "team_id": team, "channel": channel, "user": user},
        )
    except BatonError as exc:
        message, blocks = usage_error(f"{exc}\nFor example:\n{SCHEDULE_EXAMPLE}")
        return {"text": message, "blocks": blocks, "response_type": "ephemeral"}
    assert found.next_fire_at is not None
    return {
        "text": f"Scheduled `{found.id}`: {_short(found.spec)} ({found.timezone}). "
        f"Next run: <!date^{int(found.next_fire_at)}^{{date_short_pretty}} {{time}}|"
        f"{when(found.next_fire_at)}>. Stop it with `/orchestrate unschedule {found.id}`.",
        "response_type": "ephemeral",
    }


async def schedules_reply(ctx: BotContext, user: str) -> dict[str, Any]:
    """The requester's active schedules with their next firing."""
    from storage.repositories import schedules

    async with ctx.engine.svc.db.transaction() as session:
        rows = await schedules.list_active(session, requester=f"slack:{user}")
    if not rows:
        return {"text": "You have no schedules. For example:\n" + SCHEDULE_EXAMPLE}
    lines = []
    for r in rows:
        what = f"playbook {r.playbook}" if r.playbook else _short(r.goal or "")
        nxt = (
            f"<!date^{int(r.next_fire_at)}^{{date_short_pretty}} {{time}}|soon>"
            if r.next_fire_at
            else "-"
        )
        lines.append(f"• `{r.id}` {_short(r.spec)} ({r.timezone}), next {nxt}: {what}")
    return {"text": "Your schedules:\n" + "\n".join(lines)}


async def unschedule_reply(ctx: BotContext, user: str, schedule_id: str) -> str:
    """Stop one of the requester's schedules."""
    from agents.recurring import remove_schedule
    from storage.repositories import schedules

    if not schedule_id:
        return "Which schedule? `/orchestrate schedules` lists yours."
    async with ctx.engine.svc.db.transaction() as session:
        found = await schedules.get(session, schedule_id=schedule_id)
    if found is None or found.status != "active":
        return f"There is no active schedule `{_short(schedule_id)}`."
    if found.requester != f"slack:{user}":
        return "Only the person who created a schedule can remove it."
    await remove_schedule(ctx.engine, schedule_id, actor=f"slack:{user}")
    return f"Schedule `{schedule_id}` removed."
