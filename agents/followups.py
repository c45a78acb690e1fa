"""What happens when due work falls due: follow-up steps wake, approvals get reminders,
escalate and expire, recurring goals fire. Each handler is idempotent against its own row:
it re-reads state and acts only if the thing it is about is still waiting.

The Slack bot replaces the reminder and message handlers with ones that post; without Slack,
reminders are events (the CLI prints them).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from agents.due import Claim
from agents.events import DueMissed, ReminderDue, StepSkipped
from agents.settings import Settings
from storage.database import Session
from storage.models import Approval, DueItem
from storage.repositories import approvals, due, runs, steps

if TYPE_CHECKING:
    from agents.engine import Engine

log = logging.getLogger(__name__)

STEP_WAKE = "step_wake"
APPROVAL_REMIND = "approval_remind"
APPROVAL_ESCALATE = "approval_escalate"
APPROVAL_EXPIRE = "approval_expire"
SCHEDULE_FIRE = "schedule_fire"
MESSAGE = "message"


def register_handlers(engine: Engine) -> None:
    """Register the engine's own kinds of due work."""
    work = engine.due

    async def wake(item: DueItem, claim: Claim) -> None:
        run_id, _, step_id = item.ref_id.partition(":")
        async with engine.svc.db.transaction() as session:
            woke = await steps.set_status_if(
                session,
                run_id=run_id,
                step_id=step_id,
                expected=["scheduled"],
                values={"status": "pending"},
            )
            if woke:
                await runs.set_status_if(
                    session, run_id=run_id, expected=["waiting"], values={"status": "running"}
                )
        if woke:
            engine.drive(run_id)

    async def wake_missed(item: DueItem, claim: Claim) -> None:
        run_id, _, step_id = item.ref_id.partition(":")
        reason = (
            f"missed: it was due at {_when(item.due_at)} while Baton was down, more than "
            f"{engine.svc.settings.missed_grace_s / 3600:g} h ago, so it was not run late"
        )
        async with engine.svc.db.transaction() as session:
            skipped = await steps.set_status_if(
                session,
                run_id=run_id,
                step_id=step_id,
                expected=["scheduled"],
                values={"status": "skipped", "error": reason},
            )
            run = await runs.get_run(session, run_id=run_id)
            if skipped:
                await runs.set_status_if(
                    session, run_id=run_id, expected=["waiting"], values={"status": "running"}
                )
        if not skipped or run is None:
            return
        step_title = step_id
        await engine.bus.publish(StepSkipped(run_id, step_id, step_title, reason))
        await engine.bus.publish(
            DueMissed(run_id, item.kind, item.ref_id, item.due_at, run.requester, reason)
        )
        engine.drive(run_id)

    async def remind(item: DueItem, claim: Claim) -> None:
        approval = await _pending_approval(engine, item.ref_id)
        if approval is not None:
            level = "escalate" if item.kind == APPROVAL_ESCALATE else "remind"
            await engine.bus.publish(
                ReminderDue(
                    approval.run_id, approval.id, level, engine.svc.clock() - approval.created_at
                )
            )

    async def expire(item: DueItem, claim: Claim) -> None:
        await engine.expire_approval(item.ref_id)

    async def message_missed(item: DueItem, claim: Claim) -> None:
        payload = item.payload or {}
        await engine.bus.publish(
            DueMissed(
                item.run_id or "",
                item.kind,
                item.ref_id,
                item.due_at,
                payload.get("requester"),
                f"missed follow-up: {payload.get('text', '')}"[:500],
            )
        )

    async def message(item: DueItem, claim: Claim) -> None:
        log.info("follow-up due (no Slack here to post it): %s", (item.payload or {}).get("text"))

    work.register(STEP_WAKE, wake, on_missed=wake_missed)
    work.register(APPROVAL_REMIND, remind)
    work.register(APPROVAL_ESCALATE, remind)
    work.register(APPROVAL_EXPIRE, expire, always=True)
    work.register(MESSAGE, message, on_missed=message_missed)

    from agents.recurring import register_schedule_handler

    register_schedule_handler(engine)


async def _pending_approval(engine: Engine, approval_id: str) -> Approval | None:
    async with engine.svc.db.transaction() as session:
        approval = await approvals.get(session, approval_id=approval_id)
    return approval if approval is not None and approval.status == "pending" else None


async def schedule_checkpoint(
    settings: Settings, session: Session, *, approval_id: str, run_id: str, risk: str, now: float
) -> float | None:
    """Add the reminder, escalation and expiry rows of a new approval; returns its expiry."""
    timings = settings.checkpoint_timings.get(risk)
    if timings is None:
        return None
    for kind, after in (
        (APPROVAL_REMIND, timings.remind_s),
        (APPROVAL_ESCALATE, timings.escalate_s),
        (APPROVAL_EXPIRE, timings.expire_s),
    ):
        if after > 0:
            await due.add(
                session, kind=kind, ref_id=approval_id, due_at=now + after, now=now, run_id=run_id
            )
    return now + timings.expire_s if timings.expire_s > 0 else None


def _when(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


async def schedule_message(
    engine: Engine,
    *,
    text: str,
    due_at: float,
    channel: str,
    thread_ts: str | None = None,
    requester: str | None = None,
    run_id: str | None = None,
    ref_id: str | None = None,
) -> bool:
    """A follow-up message to post into ``channel`` (a thread) at ``due_at``, exactly once.

    ``ref_id`` names it for dedupe (the same ref and time is added once); a fresh one is
    made when omitted.
    """
    from agents.ids import new_id

    async with engine.svc.db.transaction() as session:
        added = await due.add(
            session,
            kind=MESSAGE,
            ref_id=ref_id or new_id("m"),
            due_at=due_at,
            now=engine.svc.clock(),
            run_id=run_id,
            payload={
                "text": text,
                "channel": channel,
                "thread_ts": thread_ts,
                "requester": requester,
            },
        )
    engine.poke(due_at)
    return added
