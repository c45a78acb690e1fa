"""Human checkpoints: the digest that binds a decision to one exact action, and deciding.

``decide`` is a single-use compare-and-set: it succeeds only while the approval is pending and
its action still has the digest the person saw. Edited arguments are validated against the
tool's schema before they count as an approval.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from agents import prompts
from agents.errors import ApprovalError, NotFound, ToolArgumentsError
from agents.registry import Registry
from storage.database import Session
from storage.models import Approval
from storage.repositories import approvals, audit, due, runs

Decision = Literal["approve", "reject"]
MAX_REASON_CHARS = 2_000


def action_digest(action: dict[str, Any]) -> str:
    """SHA-256 of the action's canonical JSON."""
    return hashlib.sha256(prompts.dumps(action).encode()).hexdigest()


@dataclass(frozen=True)
class DecisionRequest:
    """A person's decision on one approval."""

    approval_id: str
    decision: Decision
    actor: str
    reason: str | None = None
    #: Approve with these tool arguments instead (validated against the tool's schema).
    arguments: dict[str, Any] | None = None
    #: Approve with this text instead of the agent's draft.
    draft: str | None = None
    #: The digest the person was shown; a mismatch means the action changed meanwhile.
    digest: str | None = None


async def decide(
    session: Session, request: DecisionRequest, *, registry: Registry, now: float
) -> Approval:
    """Record the decision, or raise :class:`ApprovalError` saying why it cannot count."""
    approval = await approvals.get(session, approval_id=request.approval_id)
    if approval is None:
        raise NotFound(f"There is no approval {request.approval_id!r}.")
    if approval.status != "pending":
        who = f" by {approval.decided_by}" if approval.decided_by else ""
        raise ApprovalError(f"This was already {approval.status}{who}.")
    if approval.expires_at is not None and now > approval.expires_at:
        raise ApprovalError("This approval has expired; nothing was done.")
    if request.digest is not None and request.digest != approval.digest:
        raise ApprovalError("The action changed since it was shown to you; look at it again.")
    edited: dict[str, Any] | None = None
    if request.decision == "approve":
        edited = _edited(approval, request, registry)
    reason = (request.reason or "").strip()[:MAX_REASON_CHARS] or None
    status = "approved" if request.decision == "approve" else "rejected"
    won = await approvals.decide(
        session,
        approval_id=approval.id,
        digest=approval.digest,
        values={
            "status": status,
            "decided_by": request.actor,
            "decided_at": now,
            "reason": reason,
            "edited": edited,
        },
    )
    if not won:
        latest = await approvals.get(session, approval_id=approval.id)
        who = f" by {latest.decided_by}" if latest and latest.decided_by else ""
        raise ApprovalError(f"This was already decided{who}.")
    await due.cancel(session, ref_id=approval.id)
    await audit.append(
        session,
        at=now,
        actor=request.actor,
        action=f"approval.{status}",
        run_id=approval.run_id,
        subject=approval.id,
        detail={"edited": edited is not None, "reason": reason, "digest": approval.digest},
    )
    await runs.set_status_if(
        session, run_id=approval.run_id, expected=["waiting"], values={"status": "running"}
    )
    approval.status, approval.decided_by, approval.reason, approval.edited = (
        status,
        request.actor,
        reason,
        edited,
    )
    return approval


def _edited(
    approval: Approval, request: DecisionRequest, registry: Registry
) -> dict[str, Any] | None:
    action = approval.action or {}
    if request.arguments is not None:
        if approval.kind != "tool_call":
            raise ApprovalError("Only a tool call's arguments can be edited.")
        tool = registry.tool(str(action.get("tool")))
        try:
            arguments = tool.validate(request.arguments)
        except ToolArgumentsError as exc:
            raise ApprovalError(f"{exc}. Nothing was approved.") from None
        return None if arguments == action.get("arguments") else {"arguments": arguments}
    if request.draft is not None:
        if approval.kind != "step_output":
            raise ApprovalError("Only a draft can be edited as text.")
        draft = request.draft.strip()
        if not draft:
            raise ApprovalError("The edited draft is empty. Nothing was approved.")
        return None if draft == action.get("draft") else {"draft": draft}
    return None
