"""Buttons: Approve, Reject, Edit, Take over, Send back to the writer, Send anyway, Submit
result, Return to agent, Show full output.

Each click is acked at once. Who may decide is checked against the policy on every click; a
refused click changes nothing, tells the person why (ephemeral) and is written to the audit
log. Two people clicking at once: the engine's compare-and-set lets one decision win and the
other person is told who decided.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from agents.approvals import DecisionRequest, send_back_reason
from agents.emails import action_is_email
from agents.errors import BatonError
from agents.flags import flags_of
from bot.cards import approval_card
from bot.slack_app import BotContext
from bot.views import (
    edit_arguments_modal,
    edit_draft_modal,
    edit_email_modal,
    full_output_modal,
    reject_modal,
    result_modal,
    return_modal,
    send_anyway_modal,
)
from bot.views.approval import what_happens
from storage.models import Approval, Handoff, Run
from storage.repositories import approvals, handoffs, runs, steps

log = logging.getLogger(__name__)

SLACK_ACTOR = re.compile(r"slack:([UW][A-Z0-9]+)")


def register(app: AsyncApp, ctx: BotContext) -> None:
    """Register the button listeners."""

    @app.action("baton_approve")
    async def approve(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        found = await approval_for_click(ctx, body)
        if found is None:
            return
        approval, digest, user = found
        await decide(
            ctx, body, DecisionRequest(approval.id, "approve", f"slack:{user}", digest=digest)
        )

    @app.action("baton_reject")
    async def reject(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        found = await approval_for_click(ctx, body)
        if found is None:
            return
        approval, digest, _user = found
        await open_modal(ctx, body, reject_modal(approval.id, digest))

    @app.action("baton_edit")
    async def edit(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        found = await approval_for_click(ctx, body)
        if found is None:
            return
        approval, digest, _user = found
        action = approval.action or {}
        try:
            if approval.kind == "step_output":
                view = edit_draft_modal(approval.id, digest, str(action.get("draft", "")))
            elif action_is_email(action):
                view = edit_email_modal(approval.id, digest, dict(action.get("arguments") or {}))
            else:
                view = edit_arguments_modal(
                    approval.id,
                    digest,
                    str(action.get("tool")),
                    dict(action.get("arguments") or {}),
                )
        except ValueError:
            await tell(
                ctx,
                body,
                "These arguments are too long to edit in Slack; "
                "use `baton approve --arguments` from the command line.",
            )
            return
        await open_modal(ctx, body, view)

    @app.action("baton_send_back")
    async def send_back(ack: AsyncAck, body: dict[str, Any]) -> None:
        # A rejection whose reason lists every flag: the writer sees exactly what to fix.
        await ack()
        found = await approval_for_click(ctx, body)
        if found is None:
            return
        approval, digest, user = found
        reason = send_back_reason(approval.action)
        await decide(
            ctx,
            body,
            DecisionRequest(approval.id, "reject", f"slack:{user}", reason=reason, digest=digest),
        )

    @app.action("baton_send_anyway")
    async def send_anyway(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        found = await approval_for_click(ctx, body)
        if found is None:
            return
        approval, digest, _user = found
        flags = flags_of(approval.action)
        if ctx.engine.svc.settings.grounding_override == "never":
            await tell(
                ctx,
                body,
                "Sending a flagged action anyway is turned off here "
                "(BATON_GROUNDING_OVERRIDE=never): send it back to the writer or edit it.",
            )
            return
        if not flags:
            await tell(ctx, body, "Nothing is flagged on this one any more; look at it again.")
            return
        what = what_happens(approval_card(approval, approval.step_id))
        await open_modal(ctx, body, send_anyway_modal(approval.id, digest, what, flags))

    @app.action("baton_takeover")
    async def take_over(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        found = await approval_for_click(ctx, body)
        if found is None:
            return
        approval, digest, user = found
        try:
            await ctx.engine.take_over(approval.id, actor=f"slack:{user}", digest=digest)
        except BatonError as exc:
            await tell(ctx, body, already_message(str(exc)))

    @app.action("baton_submit_result")
    async def submit_result(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        handoff = await handoff_for_click(ctx, body)
        if handoff is not None:
            await open_modal(
                ctx, body, result_modal(handoff.id, handoff.question or "", handoff.summary or "")
            )

    @app.action("baton_return")
    async def give_back(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        handoff = await handoff_for_click(ctx, body)
        if handoff is not None:
            await open_modal(ctx, body, return_modal(handoff.id))

    @app.action("baton_show_output")
    async def show_output(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        run_id, _, step_id = button_value(body).partition("|")
        async with ctx.engine.svc.db.transaction() as session:
            if step_id == "_run":
                run = await runs.get_run(session, run_id=run_id)
                rows = await steps.get_steps(session, run_id=run_id)
                needed = {d for s in rows for d in s.depends_on or []}
                text = "\n\n".join(s.output or "" for s in rows if s.step_id not in needed)
                title = f"Run {run_id}" if run else "Run"
            else:
                step = await steps.get_step(session, run_id=run_id, step_id=step_id)
                text, title = (step.output or "", step.title) if step else ("", "Step")
        if not text:
            await tell(ctx, body, "That output is no longer available.")
            return
        await open_modal(ctx, body, full_output_modal(title, text))


def button_value(body: dict[str, Any]) -> str:
    """The clicked button's value."""
    actions = body.get("actions") or [{}]
    return str(actions[0].get("value") or "")


def clicker(body: dict[str, Any]) -> tuple[str, str | None]:
    """(user id, team id) of whoever clicked."""
    user = body.get("user") or {}
    team = (body.get("team") or {}).get("id") or user.get("team_id")
    return str(user.get("id", "")), team


async def tell(ctx: BotContext, body: dict[str, Any], text: str) -> None:
    """An ephemeral note to the person who clicked, where they clicked."""
    user, _team = clicker(body)
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
        "channel_id"
    )
    message = body.get("message") or {}
    thread = message.get("thread_ts")
    if channel:
        await ctx.poster.ephemeral(str(channel), user, text, thread)
    else:
        await ctx.poster.direct(user, text)


def already_message(text: str) -> str:
    """Turn "already approved by slack:U1." into a message with a mention."""
    return SLACK_ACTOR.sub(r"<@\1>", text)


async def approval_for_click(
    ctx: BotContext, body: dict[str, Any], value: str | None = None
) -> tuple[Approval, str, str] | None:
    """The approval a click is about, if the clicker may decide it (else they are told why)."""
    approval_id, _, digest = (value or button_value(body)).partition("|")
    user, team = clicker(body)
    async with ctx.engine.svc.db.transaction() as session:
        approval = await approvals.get(session, approval_id=approval_id)
        run = await runs.get_run(session, run_id=approval.run_id) if approval else None
    if approval is None or run is None:
        await tell(ctx, body, "I can't find that approval any more.")
        return None
    refusal = await refusal_for(ctx, approval.risk, user, team, run)
    if refusal is not None:
        await ctx.audit(
            f"slack:{user}",
            "approval.refused",
            run_id=run.id,
            subject=approval.id,
            reason=refusal,
            team_id=team,
        )
        await tell(ctx, body, f"You can't decide this: {refusal} Nothing was changed.")
        return None
    if approval.status != "pending":
        who = f" by {approval.decided_by}" if approval.decided_by else ""
        status = approval.status.replace("_", " ")
        await tell(ctx, body, already_message(f"This was already {status}{who}."))
        return None
    return approval, digest or approval.digest, user


async def refusal_for(
    ctx: BotContext, risk: str, user: str, team: str | None, run: Run
) -> str | None:
    """Why ``user`` may not act on ``run``'s checkpoints of ``risk``, or None."""
    return await ctx.slack.policy.refusal(
        risk=risk,
        user_id=user,
        team_id=team,
        run_team_id=(run.origin or {}).get("team_id"),
        requester=run.requester,
        members_of=ctx.groups.members,
    )


async def handoff_for_click(
    ctx: BotContext, body: dict[str, Any], handoff_id: str | None = None
) -> Handoff | None:
    """The open handoff a click is about, if the clicker is in the run's workspace."""
    handoff_id = handoff_id or button_value(body)
    user, team = clicker(body)
    async with ctx.engine.svc.db.transaction() as session:
        handoff = await handoffs.get(session, handoff_id=handoff_id)
        run = await runs.get_run(session, run_id=handoff.run_id) if handoff else None
    if handoff is None or run is None:
        await tell(ctx, body, "I can't find that handoff any more.")
        return None
    refusal = await refusal_for(ctx, "writes", user, team, run)
    if refusal is not None:
        await ctx.audit(
            f"slack:{user}", "handoff.refused", run_id=run.id, subject=handoff.id, reason=refusal
        )
        await tell(ctx, body, f"You can't act on this: {refusal} Nothing was changed.")
        return None
    if handoff.status != "open":
        await tell(ctx, body, f"This handoff was already {handoff.status}.")
        return None
    return handoff


async def decide(ctx: BotContext, body: dict[str, Any], request: DecisionRequest) -> None:
    """Decide through the engine; tell the clicker if someone else was faster."""
    try:
        await ctx.engine.decide(request)
    except BatonError as exc:
        await tell(ctx, body, already_message(str(exc)))


async def open_modal(ctx: BotContext, body: dict[str, Any], view: dict[str, Any]) -> None:
    """Open a modal for the click's trigger (valid for 3 s, once)."""
    trigger = body.get("trigger_id")
    if not trigger:
        return
    try:
        await ctx.poster.call("views.open", trigger_id=trigger, view=view)
    except Exception as exc:  # an expired trigger: say so rather than fail silently
        log.warning("views.open failed: %s", exc)
        await tell(ctx, body, "Slack took too long to open that form; please click again.")


def pretty(arguments: dict[str, Any]) -> str:
    """Arguments as people read them."""
    return json.dumps(arguments, indent=2, ensure_ascii=False)
