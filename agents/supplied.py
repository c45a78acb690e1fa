"""What a run was given by people, and what its tools found: the ground the code-only guards
on recipients (:mod:`agents.recipients`) and on fetches (:mod:`agents.egress`) stand on.

A person's words are the goal, the playbook's inputs, answers to handoffs, arguments typed
into an approval's Edit form and, for a run of a playbook (a person wrote it; a planner's
plan is a model's), the step templates. Everything a
tool returned is in the ledger; which of it counts for what is the guards' business.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from storage.models import ToolCall
from storage.repositories import approvals, handoffs, runs, tool_calls

if TYPE_CHECKING:
    from agents.state import RunState, Services

#: Handoffs a person has answered (their answer is the person's text).
ANSWERED = ("answered", "closed", "returned", "handed_back")


@dataclass(frozen=True)
class RunMaterial:
    """A run's person-supplied text and its ledger, read once for one guard decision."""

    #: The goal, input values, handoff answers, edits and (playbook runs) step templates.
    person: tuple[str, ...]
    #: Every call of the run in the ledger, oldest first (all steps, every status).
    calls: tuple[ToolCall, ...]
    #: Outputs of the steps that finished (a model's words about what the run found).
    outputs: tuple[str, ...] = ()

    def finished(self, tool: str | None = None) -> Iterator[ToolCall]:
        """Calls that returned a result (of ``tool`` only, if given)."""
        for call in self.calls:
            if call.status == "done" and (tool is None or call.tool == tool):
                yield call


async def load(svc: Services, state: RunState) -> RunMaterial:
    """Read what the guards need of run ``state`` (three small queries)."""
    async with svc.db.transaction() as session:
        run = await runs.get_run(session, run_id=state.run_id)
        answered = await handoffs.list_handoffs(
            session, run_id=state.run_id, statuses=list(ANSWERED), limit=1000
        )
        calls = await tool_calls.list_for_run(session, run_id=state.run_id)
        decided = await approvals.list_approvals(
            session, run_id=state.run_id, statuses=["approved"], limit=1000
        )
    person = [state.goal, *(str(v) for v in state.inputs.values())]
    person += [h.answer for h in answered if h.kind == "to_human" and h.answer and h.answered_by]
    # Arguments a person typed into an approval's Edit form are theirs (checked again).
    for a in decided:
        edit = (a.edited or {}).get("arguments")
        if a.decided_by and isinstance(edit, dict):
            person.append(json.dumps(edit, ensure_ascii=False))
    if run is not None and run.source == "playbook":
        for step in state.steps.values():
            person.append(step.instructions or "")
            if step.arguments:
                person.append(json.dumps(step.arguments, ensure_ascii=False))
    outputs = tuple(state.outputs().values())
    return RunMaterial(tuple(p for p in person if p), tuple(calls), outputs)


def json_values(text: str, *, limit: int = 1000) -> Iterator[Any]:
    """The JSON values in a tool result: one document, or several one after the other (an MCP
    server's text blocks are joined by line breaks), skipping text between them."""
    decoder = json.JSONDecoder()
    text = text or ""
    at, found = 0, 0
    while found < limit:
        starts = [i for i in (text.find("{", at), text.find("[", at)) if i >= 0]
        if not starts:
            return
        at = min(starts)
        try:
            value, end = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            at += 1
            continue
        yield value
        found += 1
        at = end
