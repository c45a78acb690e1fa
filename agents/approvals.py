"""Human checkpoints: the digest that binds a decision to one exact action, and deciding.

``decide`` is a single-use compare-and-set: it succeeds only while the approval is pending and
its action still has the digest the person saw. Edited arguments are validated against the
tool's schema (and an email's fields as addresses and one-line text) before they count.

A flagged action (:func:`agents.flags.is_flagged`) cannot be sent by a plain Approve, however
quickly someone clicks: it can be sent back to the writer (a rejection whose reason lists the
flags, :func:`send_back_reason`), edited (the checkpoint grounds the edit again before it can
go), or sent anyway with ``override=True``, which ``BATON_GROUNDING_OVERRIDE=never`` forbids
and which is audited as ``approval.override`` with who overrode which flags.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from agents import emails, prompts
from agents.errors import ApprovalError, NotFound, ToolArgumentsError
from agents.flags import Flag, flags_of
from agents.flags import dump as dump_flags
from agents.registry import Registry
from storage.database import Session
from storage.models import Approval
from storage.repositories import approvals, audit, due, runs

Decision = Literal["approve", "reject"]
#: BATON_GROUNDING_OVERRIDE: may a person send a flagged action anyway (with a confirmation)?
OverridePolicy = Literal["never", "confirm"]
MAX_REASON_CHARS = 2_000
#: Flags listed in a send-back reason (the rest are counted), and characters of each.
SEND_BACK_FLAGS = 10
SEND_BACK_FLAG_CHARS = 160
#: How a send-back's reason starts (cards say "Sent back" instead of "Rejected").
SEND_BACK_LEAD = "Sent back to the writer"


class FlaggedAction(ApprovalError):
    """A plain approve of a flagged action: it must be sent back, edited or sent anyway."""


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
    #: "Send anyway": approve a flagged action as it is, after a confirmation that listed its
    #: flags. Refused under BATON_GROUNDING_OVERRIDE=never; audited as ``approval.override``.
    override: bool = False


async def decide(
    session: Session,
    request: DecisionRequest,
    *,
    registry: Registry,
    now: float,
    override_policy: str = "confirm",
) -> Approval:
    """Record the decision, or raise :class:`ApprovalError` saying why it cannot count.

    ``override_policy`` is ``Settings.grounding_override`` (``never`` | ``confirm``).
    """
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
    flags = flags_of(approval.action)
    overriding = False
    if request.decision == "approve":
        edited = _edited(approval, request, registry)
        overriding = _check_flags(approval, request, flags, edited, override_policy)
        if overriding:
            edited = {"override": {"flags": len(flags)}}
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
        detail={
            "edited": was_edited(edited),
            "override": overriding,
            "reason": reason,
            "digest": approval.digest,
        },
    )
    if overriding:
        # Who sent what anyway, despite which flags: the record a reviewer looks for.
        await audit.append(
            session,
            at=now,
            actor=request.actor,
            action="approval.override",
            run_id=approval.run_id,
            subject=approval.id,
            detail={
                "tool": (approval.action or {}).get("tool"),
                "flags": dump_flags(flags),
                "digest": approval.digest,
            },
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


def was_edited(edited: dict[str, Any] | None) -> bool:
    """Whether a decision's ``edited`` record changed the action (arguments or draft)."""
    return bool(edited) and ("arguments" in (edited or {}) or "draft" in (edited or {}))


def was_overridden(edited: dict[str, Any] | None) -> bool:
    """Whether a decision's ``edited`` record says the action was sent despite its flags."""
    return bool((edited or {}).get("override"))


def flagged_message(action: dict[str, Any] | None) -> str:
    """Why a plain Approve does not send a flagged action, and what can be done instead."""
    flags = flags_of(action)
    n = len(flags)
    claims = all(f.kind in ("claim", "not_checked", "backstop") for f in flags)
    what = f"flagged {'claim' if claims else 'problem'}{'' if n == 1 else 's'}"
    tool = str((action or {}).get("tool") or "")
    subject = "This email" if emails.action_is_email(action) else f"This call to {tool}"
    return (
        f"{subject} has {n} {what}: send it back to the writer, edit it, or send it anyway. "
        "Nothing was sent."
    )


def send_back_reason(action: dict[str, Any] | None, note: str | None = None) -> str:
    """The reason of a "Send back to the writer": every flag, so the writer sees what to fix."""
    flags = flags_of(action)
    lines = [f"{SEND_BACK_LEAD}: fix these before it can go."]
    for f in flags[:SEND_BACK_FLAGS]:
        lines.append(f"- {_short(f.text)}: {_short(f.problem)}")
    if len(flags) > SEND_BACK_FLAGS:
        lines.append(f"- …and {len(flags) - SEND_BACK_FLAGS} more")
    if note and note.strip():
        lines.append(f"The reviewer adds: {_short(note.strip(), 600)}")
    lines.append(
        "Remove or rephrase what is flagged so that every fact comes from the evidence "
        "gathered in this run, and address only the recipients you were given."
    )
    return "\n".join(lines)[:MAX_REASON_CHARS]


def _short(text: str, limit: int = SEND_BACK_FLAG_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_flags(
    approval: Approval,
    request: DecisionRequest,
    flags: list[Flag],
    edited: dict[str, Any] | None,
    policy: str,
) -> bool:
    """Whether this approve overrides flags; raises when a flagged action cannot go this way.

    Edited arguments may go (the checkpoint grounds them again and asks again if they are
    still flagged); the action as it is needs ``override``, which the policy may forbid.
    """
    if not flags:
        return False  # nothing to override: a plain approve
    if request.override:
        if policy == "never":
            raise ApprovalError(
                "Sending a flagged action anyway is turned off here "
                "(BATON_GROUNDING_OVERRIDE=never): send it back to the writer or edit it. "
                "Nothing was sent."
            )
        if edited is not None:
            raise ApprovalError(
                "Send anyway sends the action as it was shown; an edit is checked again "
                "instead. Do one or the other. Nothing was sent."
            )
        return True
    if edited is not None and "arguments" in edited:
        return False  # grounded again before it can go (agents.checkpoints)
    raise FlaggedAction(flagged_message(approval.action))


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
        if emails.is_email(tool.name, arguments):
            wrong = emails.problems(arguments)
            if wrong:
                said = "; ".join(f"{name}: {why}" for name, why in wrong.items())
                raise ApprovalError(f"The edited email cannot go ({said}). Nothing was approved.")
        return None if arguments == action.get("arguments") else {"arguments": arguments}
    if request.draft is not None:
        if approval.kind != "step_output":
            raise ApprovalError("Only a draft can be edited as text.")
        draft = request.draft.strip()
        if not draft:
            raise ApprovalError("The edited draft is empty. Nothing was approved.")
        return None if draft == action.get("draft") else {"draft": draft}
    return None
