"""Handing a step to a person (with a summary) or to another agent."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from agents import prompts
from agents.events import HandoffRequested
from agents.ids import new_id
from agents.model import ToolCallRequest
from agents.summaries import handoff_summary
from storage.models import Step
from storage.repositories import handoffs, steps, tool_calls

if TYPE_CHECKING:
    from agents.state import RunState, Services

from typing import TYPE_CHECKING

from agents.outcomes import Done, Parked, Switch

log = logging.getLogger(__name__)

MAX_AGENT_HANDOFFS = 3


class Handoffs:
    """Handoff tools of a step (mixed into :class:`~agents.runtime.StepRunner`)."""

    # Provided by StepRunner.
    svc: Services
    state: RunState
    step: Step
    run_id: str

    if TYPE_CHECKING:

        def _opening(self, agent_name: str, context: dict[str, Any]) -> list[dict[str, Any]]: ...

        async def _close_handoff(self, handoff_id: str, expected: str) -> None: ...

    # ---- handoffs ---------------------------------------------------------------------------
    async def _handoff_to_human(
        self, call: ToolCallRequest, calls: list[ToolCallRequest], *, key: str, agent: str
    ) -> Parked | Done | list[dict[str, Any]]:
        async with self.svc.db.transaction() as session:
            existing = await handoffs.list_handoffs(
                session, run_id=self.run_id, step_id=self.step.step_id
            )
        current = next((h for h in reversed(existing) if h.ref == key), None)
        if current is None:
            try:
                args = json.loads(call.arguments or "{}")
            except json.JSONDecodeError:
                args = {}
            question = str(args.get("question") or "Please complete this step.")
            summary = await self.handoff_summary(str(args.get("summary") or ""))
            return await self.open_handoff(question, summary, agent=agent, ref=key)
        if current.status == "open":
            return Parked(current.id)
        if current.status in ("answered", "returned"):
            await self._close_handoff(current.id, current.status)
        if current.status in ("returned", "handed_back"):
            note = current.answer or "no note"
            return [
                {
                    "role": "tool",
                    "tool_call_id": c.id,
                    "content": f"The person handed the step back to you without doing it. "
                    f"Their note: {note}"
                    if c.id == call.id
                    else "Not run: the step was with a person.",
                }
                for c in calls
            ]
        return Done(current.answer or "")

    async def open_handoff(
        self, question: str, summary: str, *, agent: str | None, ref: str | None = None
    ) -> Parked:
        """Give the step to a person with ``summary``; their answer becomes the output."""
        now = self.svc.clock()
        handoff_id = new_id("h")
        async with self.svc.db.transaction() as session:
            await handoffs.insert(
                session,
                values={
                    "id": handoff_id,
                    "run_id": self.run_id,
                    "step_id": self.step.step_id,
                    "kind": "to_human",
                    "from_agent": agent,
                    "ref": ref,
                    "question": question,
                    "summary": summary,
                    "status": "open",
                    "created_at": now,
                },
            )
            await steps.update_step(
                session,
                run_id=self.run_id,
                step_id=self.step.step_id,
                values={"status": "waiting_human"},
            )
        self.step.status = "waiting_human"
        await self.svc.bus.publish(
            HandoffRequested(self.run_id, handoff_id, self.step.step_id, "human", question, summary)
        )
        return Parked(handoff_id)

    async def handoff_summary(self, agent_summary: str) -> str:
        """Goal, the step, the evidence from earlier steps, and the calls made so far."""
        async with self.svc.db.transaction() as session:
            calls = await tool_calls.list_for_run(
                session, run_id=self.run_id, step_id=self.step.step_id
            )
        return handoff_summary(
            goal=self.state.goal, step=self.step, calls=calls, agent_summary=agent_summary
        )

    async def _handoff_to_agent(
        self, call: ToolCallRequest, from_agent: str, epoch: int
    ) -> Switch | list[dict[str, Any]]:
        try:
            args = json.loads(call.arguments or "{}")
        except json.JSONDecodeError:
            args = {}
        target = str(args.get("agent") or "")
        note = str(args.get("note") or "")
        problem = None
        if target not in self.svc.registry.agents:
            problem = f"there is no agent {target!r}; agents: {', '.join(sorted(self.svc.registry.agents))}"
        elif target == from_agent:
            problem = "you cannot hand a step to yourself"
        elif epoch >= MAX_AGENT_HANDOFFS:
            problem = f"this step was already handed over {epoch} times"
        if problem:
            return [
                {
                    "role": "tool",
                    "tool_call_id": call.id,
                    "content": f"Handoff refused: {problem}. Continue the step yourself.",
                }
            ]
        context = dict(self.step.context or {})
        opening = self._opening(target, context)
        opening[-1]["content"] += "\n\n" + (
            f"Agent {from_agent} handed this step to you with this note:\n"
            + prompts.fence(note, source=f"agent {from_agent}")
        )
        now = self.svc.clock()
        async with self.svc.db.transaction() as session:
            await handoffs.insert(
                session,
                values={
                    "id": new_id("h"),
                    "run_id": self.run_id,
                    "step_id": self.step.step_id,
                    "kind": "to_agent",
                    "from_agent": from_agent,
                    "to_agent": target,
                    "summary": note,
                    "status": "closed",
                    "created_at": now,
                    "answered_at": now,
                },
            )
        await self.svc.bus.publish(
            HandoffRequested(self.run_id, "", self.step.step_id, target, "", note)
        )
        return Switch(agent=target, transcript=opening)
