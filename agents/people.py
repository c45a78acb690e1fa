"""People acting on runs: decisions, handoff answers, take-overs, expiry, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from agents import approvals as approval_rules
from agents.errors import (
    ApprovalError,
    BatonError,
    NotFound,
)
from agents.events import (
    ApprovalDecided,
    EventBus,
    HandoffAnswered,
    HandoffRequested,
)
from agents.ids import new_id
from agents.state import (
    TERMINAL,
    RunSummary,
    Services,
)
from agents.summaries import handoff_summary
from storage.models import Approval, Handoff
from storage.repositories import approvals, audit, due, handoffs, runs, steps, tool_calls

log = logging.getLogger(__name__)


class PeopleActions:
    """What people (and expiry) do to runs; each ends by letting the run continue."""

    # Provided by Engine.
    svc: Services
    bus: EventBus
    owner: str
    _wake: dict[str, asyncio.Event]
    _slots: asyncio.Semaphore

    if TYPE_CHECKING:

        def drive(self, run_id: str) -> asyncio.Task[RunSummary]: ...

        async def summary(self, run_id: str) -> RunSummary: ...

        def poke(self, due_at: float) -> None: ...

    # ---- people acting on a run -------------------------------------------------------------
    async def decide(self, request: approval_rules.DecisionRequest) -> Approval:
        """Decide an approval (single use, bound to its digest), then continue the run here."""
        async with self.svc.db.transaction() as session:
            approval = await approval_rules.decide(
                session,
                request,
                registry=self.svc.registry,
                now=self.svc.clock(),
                override_policy=self.svc.settings.grounding_override,
            )
        await self.bus.publish(
            ApprovalDecided(
                approval.run_id,
                approval.id,
                approval.step_id,
                approval.status,
                request.actor,
                approval.reason,
                approval_rules.was_edited(approval.edited),
                override=approval_rules.was_overridden(approval.edited),
            )
        )
        self.drive(approval.run_id)
        return approval

    async def answer_handoff(self, handoff_id: str, *, actor: str, answer: str) -> Handoff:
        """A person's answer to a handoff becomes the step's output; the run continues here."""
        answer = answer.strip()
        if not answer:
            raise ApprovalError("The answer is empty; write what the step should return.")
        now = self.svc.clock()
        async with self.svc.db.transaction() as session:
            handoff = await handoffs.get(session, handoff_id=handoff_id)
            if handoff is None:
                raise NotFound(f"There is no handoff {handoff_id!r}.")
            won = await handoffs.close_if(
                session,
                handoff_id=handoff_id,
                expected="open",
                values={
                    "status": "answered",
                    "answered_by": actor,
                    "answer": answer,
                    "answered_at": now,
                },
            )
            if not won:
                raise ApprovalError(
                    f"This handoff was already {_said(handoff.status)}"
                    + (f" by {handoff.answered_by}." if handoff.answered_by else ".")
                )
            await audit.append(
                session,
                at=now,
                actor=actor,
                action="handoff.answered",
                run_id=handoff.run_id,
                subject=handoff_id,
            )
            await runs.set_status_if(
                session, run_id=handoff.run_id, expected=["waiting"], values={"status": "running"}
            )
        await self.bus.publish(HandoffAnswered(handoff.run_id, handoff_id, handoff.step_id, actor))
        self.drive(handoff.run_id)
        return handoff

    async def take_over(
        self, approval_id: str, *, actor: str, digest: str | None = None
    ) -> Handoff:
        """A person takes a waiting action over: the step is theirs, with a full summary.

        Their result (``answer_handoff``) becomes the step's output; ``return_handoff`` gives
        the step back to the agent with their note.
        """
        now = self.svc.clock()
        async with self.svc.db.transaction() as session:
            approval = await approvals.get(session, approval_id=approval_id)
            if approval is None:
                raise NotFound(f"There is no approval {approval_id!r}.")
            won = await approvals.decide(
                session,
                approval_id=approval_id,
                digest=digest or approval.digest,
                values={
                    "status": "taken_over",
                    "decided_by": actor,
                    "decided_at": now,
                    "consumed_at": now,
                },
            )
            if not won:
                latest = await approvals.get(session, approval_id=approval_id)
                assert latest is not None
                if latest.status == "pending":
                    raise ApprovalError("The action changed since it was shown to you; look again.")
                who = f" by {latest.decided_by}" if latest.decided_by else ""
                raise ApprovalError(f"This was already {latest.status}{who}.")
            run = await runs.get_run(session, run_id=approval.run_id)
            step = await steps.get_step(session, run_id=approval.run_id, step_id=approval.step_id)
            assert run is not None
            assert step is not None
            calls = await tool_calls.list_for_run(
                session, run_id=approval.run_id, step_id=approval.step_id
            )
            handoff_id = new_id("h")
            summary = handoff_summary(
                goal=run.goal, step=step, calls=calls, pending_action=approval.action
            )
            values = {
                "id": handoff_id,
                "run_id": approval.run_id,
                "step_id": approval.step_id,
                "kind": "to_human",
                "from_agent": step.agent,
                "ref": f"takeover:{approval_id}",
                "question": f"{actor} took over '{step.title}': do it and submit the result, "
                "or return it to the agent.",
                "summary": summary,
                "status": "open",
                "created_at": now,
            }
            await handoffs.insert(session, values=values)
            await steps.update_step(
                session,
                run_id=approval.run_id,
                step_id=approval.step_id,
                values={"status": "waiting_human"},
            )
            await due.cancel(session, ref_id=approval_id)
            await audit.append(
                session,
                at=now,
                actor=actor,
                action="approval.taken_over",
                run_id=approval.run_id,
                subject=approval_id,
            )
        await self.bus.publish(
            ApprovalDecided(
                approval.run_id, approval_id, approval.step_id, "taken_over", actor, None, False
            )
        )
        await self.bus.publish(
            HandoffRequested(
                approval.run_id,
                handoff_id,
                approval.step_id,
                "human",
                str(values["question"]),
                summary,
            )
        )
        self.drive(approval.run_id)
        return Handoff.model_validate(values)

    async def expire_approval(self, approval_id: str) -> bool:
        """Fail a still-pending approval closed: nothing is done, and the run is told."""
        now = self.svc.clock()
        async with self.svc.db.transaction() as session:
            approval = await approvals.get(session, approval_id=approval_id)
            if approval is None or approval.status != "pending":
                return False
            waited = (now - approval.created_at) / 3600
            reason = f"nobody decided within {waited:.3g} h, so it expired and nothing was done"
            won = await approvals.decide(
                session,
                approval_id=approval_id,
                digest=approval.digest,
                values={
                    "status": "expired",
                    "decided_by": "baton",
                    "decided_at": now,
                    "reason": reason,
                },
            )
            if not won:
                return False
            await due.cancel(session, ref_id=approval_id)
            await audit.append(
                session,
                at=now,
                actor="baton",
                action="approval.expired",
                run_id=approval.run_id,
                subject=approval_id,
            )
            await runs.set_status_if(
                session, run_id=approval.run_id, expected=["waiting"], values={"status": "running"}
            )
        await self.bus.publish(
            ApprovalDecided(
                approval.run_id, approval_id, approval.step_id, "expired", "baton", reason, False
            )
        )
        self.drive(approval.run_id)
        return True

    async def return_handoff(self, handoff_id: str, *, actor: str, note: str = "") -> Handoff:
        """Give a handed-off step back to its agent, with an optional note."""
        now = self.svc.clock()
        async with self.svc.db.transaction() as session:
            handoff = await handoffs.get(session, handoff_id=handoff_id)
            if handoff is None:
                raise NotFound(f"There is no handoff {handoff_id!r}.")
            won = await handoffs.close_if(
                session,
                handoff_id=handoff_id,
                expected="open",
                values={
                    "status": "returned",
                    "answered_by": actor,
                    "answer": note.strip() or None,
                    "answered_at": now,
                },
            )
            if not won:
                raise ApprovalError(
                    f"This handoff was already {_said(handoff.status)}"
                    + (f" by {handoff.answered_by}." if handoff.answered_by else ".")
                )
            await audit.append(
                session,
                at=now,
                actor=actor,
                action="handoff.returned",
                run_id=handoff.run_id,
                subject=handoff_id,
            )
            await runs.set_status_if(
                session, run_id=handoff.run_id, expected=["waiting"], values={"status": "running"}
            )
        await self.bus.publish(HandoffAnswered(handoff.run_id, handoff_id, handoff.step_id, actor))
        self.drive(handoff.run_id)
        return handoff

    async def cancel(self, run_id: str, *, actor: str) -> RunSummary:
        """Ask a run to stop. A parked run stops at once; a running one at its next check."""
        now = self.svc.clock()
        async with self.svc.db.transaction() as session:
            run = await runs.get_run(session, run_id=run_id)
            if run is None:
                raise NotFound(f"There is no run {run_id!r}.")
            if run.status in TERMINAL:
                return RunSummary(run.id, run.status, run.error)
            await runs.update_run(
                session, run_id=run_id, values={"cancel_requested": True, "updated_at": now}
            )
            await audit.append(session, at=now, actor=actor, action="run.cancel", run_id=run_id)
            await runs.set_status_if(
                session, run_id=run_id, expected=["waiting"], values={"status": "running"}
            )
        task = self.drive(run_id)
        with contextlib.suppress(asyncio.CancelledError, BatonError):
            await asyncio.shield(task)
        return await self.summary(run_id)


def _said(status: str) -> str:
    """A handoff's state as people say it."""
    return {"closed": "answered", "handed_back": "returned", "ended": "closed: the run ended"}.get(
        status, status
    )
