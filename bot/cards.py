"""From storage rows to the view models the Slack views render (no I/O here)."""

from __future__ import annotations

from collections.abc import Sequence

from agents.approvals import was_edited, was_overridden
from bot.views.cards import ApprovalCard, HandoffCard, RunCard, StepLine
from storage.models import Approval, Handoff, Run, Step


def slack_user(actor: str | None) -> str | None:
    """``slack:U123`` → ``U123``; other actors (``cli:alice``) stay as they are."""
    if actor and actor.startswith("slack:"):
        return actor[len("slack:") :]
    return actor


def run_card(run: Run, steps: Sequence[Step], refusals: Sequence[str] = ()) -> RunCard:
    """The status card's model for a run and its steps (and its refused calls, if read)."""
    lines = []
    for s in steps:
        took = (s.finished_at - s.started_at) if s.finished_at and s.started_at else None
        lines.append(
            StepLine(
                step_id=s.step_id,
                title=s.title,
                who=s.agent or f"tool {s.tool}",
                status=s.status,
                duration_s=took,
            )
        )
    return RunCard(
        run_id=run.id,
        goal=run.goal,
        requester=slack_user(run.requester),
        status=run.status,
        steps=tuple(lines),
        tokens=run.tokens_in + run.tokens_out,
        cost_usd=run.cost_usd,
        error=run.error,
        source=run.source,
        playbook=run.playbook,
        refusals=tuple(refusals),
    )


def approval_card(approval: Approval, step_title: str) -> ApprovalCard:
    """The approval message's model."""
    return ApprovalCard(
        approval_id=approval.id,
        run_id=approval.run_id,
        step_id=approval.step_id,
        step_title=step_title,
        kind=approval.kind,
        action=approval.action or {},
        digest=approval.digest,
        risk=approval.risk,
        status=approval.status,
        decided_by=slack_user(approval.decided_by),
        decided_at=approval.decided_at,
        reason=approval.reason,
        edited=was_edited(approval.edited),
        overridden=was_overridden(approval.edited),
        claims=tuple(((approval.action or {}).get("grounding") or {}).get("claims") or ()),
    )


def handoff_card(handoff: Handoff, step_title: str) -> HandoffCard:
    """The handoff message's model."""
    return HandoffCard(
        handoff_id=handoff.id,
        run_id=handoff.run_id,
        step_id=handoff.step_id,
        step_title=step_title,
        question=handoff.question or "",
        summary=handoff.summary or "",
        status=handoff.status,
        answered_by=slack_user(handoff.answered_by),
        answer=handoff.answer,
    )
