"""Due work that ends up in Slack: approval reminders and escalations, follow-up messages,
and reports of what was missed while Baton was down.

Each handler checks its claim's fence right before posting, so a process that lost its lease
(paused, partitioned) does not post what another process now owns.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from agents.due import Claim
from agents.events import DueMissed, Event
from agents.followups import APPROVAL_ESCALATE, APPROVAL_REMIND, MESSAGE
from bot.cards import slack_user
from bot.poster import Poster, SlackAuthError, SlackChannelError, Superseded
from bot.slack_app import BotContext
from bot.views.text import escape, mention
from storage.models import DueItem
from storage.repositories import approvals, runs

log = logging.getLogger(__name__)


def register(ctx: BotContext) -> None:
    """Replace the engine's default reminder and message handlers with Slack ones."""
    work = ctx.engine.due

    async def remind(item: DueItem, claim: Claim) -> None:
        await approval_nudge(ctx, item, claim, escalate=item.kind == APPROVAL_ESCALATE)

    async def message(item: DueItem, claim: Claim) -> None:
        payload = item.payload or {}
        channel = payload.get("channel")
        if not channel or not await claim.still_held():
            return
        marker = {"event_type": FOLLOWUP_EVENT, "event_payload": {"item": str(item.id)}}
        thread = payload.get("thread_ts")
        if item.attempts > 1 and await already_posted(ctx, str(channel), thread, item, marker):
            return  # an earlier holder posted it, then stopped before recording that
        text = escape(str(payload.get("text", "")))
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}]
        with contextlib.suppress(Superseded):
            await ctx.poster.post(
                str(channel),
                text[:3000],
                blocks,
                thread,
                metadata=marker,
                still_ours=claim.still_held,
            )

    async def message_missed(item: DueItem, claim: Claim) -> None:
        payload = item.payload or {}
        user = slack_user(payload.get("requester"))
        if user and user.startswith(("U", "W")) and await claim.still_held():
            await ctx.poster.direct(
                user,
                "While I was down, a follow-up fell due and I did not post it late: "
                f"“{escape(str(payload.get('text', '')))[:500]}”",
            )

    work.register(APPROVAL_REMIND, remind)
    work.register(APPROVAL_ESCALATE, remind)
    work.register(MESSAGE, message, on_missed=message_missed)
    ctx.engine.bus.subscribe(_missed_reporter(ctx))


async def approval_nudge(ctx: BotContext, item: DueItem, claim: Claim, *, escalate: bool) -> None:
    """Remind in the approval's thread and DM the approvers (or the escalation targets)."""
    async with ctx.engine.svc.db.transaction() as session:
        approval = await approvals.get(session, approval_id=item.ref_id)
        if approval is None or approval.status != "pending":
            return
        run = await runs.get_run(session, run_id=approval.run_id)
    origin = (run.origin if run else None) or {}
    if not origin.get("slack") or not await claim.still_held():
        return
    hours = (ctx.engine.svc.clock() - approval.created_at) / 3600
    rule = ctx.slack.policy.rule(approval.risk)
    targets = sorted(rule.users) + sorted(rule.groups)
    if escalate:
        targets = list(ctx.slack.escalate_to) or targets
    who = ", ".join(_target_mention(t) for t in targets) or "anyone who can approve"
    if escalate:
        text = (
            f"⏫ Escalated: this approval has waited {hours:.1f} h. {who}, please decide "
            "(Approve, Reject or Take over above)."
        )
    else:
        text = f"⏰ Reminder: this approval has waited {hours:.1f} h for {who}."
    thread = str(origin.get("thread_ts") or "") or None
    link = f" in <#{origin['channel']}>" if origin.get("channel") else ""
    try:
        await ctx.poster.post(
            str(origin["channel"]),
            text,
            [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
            thread,
        )
    except (SlackChannelError, SlackAuthError) as exc:
        log.warning("could not post a reminder for %s: %s", approval.id, exc)
    for target in targets:
        if target.startswith(("U", "W")):
            await ctx.poster.direct(
                target,
                f"An approval{link} has waited {hours:.1f} h for you: "
                f"{escape(str((approval.action or {}).get('tool') or 'a draft'))}.",
            )
        elif target.startswith(("C", "G")) and escalate and target != origin.get("channel"):
            try:
                await ctx.poster.post(
                    target, text, [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
                )
            except (SlackChannelError, SlackAuthError) as exc:
                log.warning("could not escalate to %s: %s", target, exc)


FOLLOWUP_EVENT = "baton_followup"


async def already_posted(
    ctx: BotContext,
    channel: str,
    thread_ts: str | None,
    item: DueItem,
    marker: dict[str, Any],
) -> bool:
    """Whether a follow-up carrying ``marker`` (message metadata) is already in the channel.

    Only asked when a row is claimed again: its earlier holder may have posted and died
    before recording it. Needs the history scopes of the channel's kind.
    """
    return await marked_message_posted(
        ctx.poster, channel, thread_ts, marker, what=f"follow-up {item.id}"
    )


async def marked_message_posted(
    poster: Poster,
    channel: str,
    thread_ts: str | None,
    marker: dict[str, Any],
    *,
    what: str,
) -> bool:
    """Whether a recent message in ``channel`` (or its thread) carries ``marker`` as metadata.

    When the history cannot be read, says no: posting at least once beats never posting.
    """
    args: dict[str, Any] = {
        "channel": channel,
        "limit": 200,
        "include_all_metadata": True,
    }
    try:
        if thread_ts:
            data = await poster.call("conversations.replies", ts=thread_ts, **args)
        else:
            data = await poster.call("conversations.history", **args)
    except Exception as exc:  # cannot tell: post (at least once beats never)
        log.warning("could not check %s for %s: %s", channel, what, exc)
        return False
    wanted = marker["event_payload"]
    for message in data.get("messages") or []:
        meta = message.get("metadata") or {}
        if meta.get("event_type") == marker["event_type"] and meta.get("event_payload") == wanted:
            return True
    return False


def _target_mention(target: str) -> str:
    if target.startswith("S"):
        return f"<!subteam^{target}>"
    if target.startswith(("C", "G")):
        return f"<#{target}>"
    return mention(target)


def _missed_reporter(ctx: BotContext) -> Any:
    async def report(event: Event) -> None:
        if not isinstance(event, DueMissed) or event.item_kind == MESSAGE:
            return
        user = slack_user(event.requester)
        if user and user.startswith(("U", "W")):
            try:
                await ctx.poster.direct(user, f"⚠️ {escape(event.detail)}")
            except Exception:
                log.exception("could not report a missed item to %s", user)

    return report
