"""What a run's driver commits: steps' starts and completions together, and the run's end.

Nothing is shown (events) or acted on (the next model call) before its commit: a step's
completion is applied in memory, then committed with the start of every step it makes ready
and published after. The run's end commits the last completions with it and closes what
the run left open (due work, approvals, handoffs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import and_, bindparam

from agents.events import (
    ApprovalDecided,
    EventBus,
    RunFinished,
    StepFinished,
    StepStarted,
    ToolCalled,
)
from agents.notices import REFUSED
from agents.outcomes import Done
from agents.runtime import opening, step_context
from agents.secrets import redact
from agents.state import (
    FinalTurn,
    RunState,
    RunSummary,
    Services,
    StepState,
    ToolDone,
    count_model_call,
    sinks,
)
from storage.database import Session
from storage.models import APPROVALS, DUE_ITEMS, HANDOFFS, Step
from storage.repositories import audit, runs, steps, tool_calls

# What finishing a run closes, built once (values travel as bound parameters).
_END_DUE = (
    DUE_ITEMS.update()
    .where(and_(DUE_ITEMS.c.run_id == bindparam("k_run"), DUE_ITEMS.c.status == "pending"))
    .values(status="cancelled")
)
_END_APPROVALS = (
    APPROVALS.update()
    .where(and_(APPROVALS.c.run_id == bindparam("k_run"), APPROVALS.c.status == "pending"))
    .values(
        status="expired",
        decided_by="baton",
        decided_at=bindparam("d_now"),
        reason=bindparam("d_reason"),
    )
    .returning(APPROVALS.c.id, APPROVALS.c.step_id)
)
_END_HANDOFFS = (
    HANDOFFS.update()
    .where(and_(HANDOFFS.c.run_id == bindparam("k_run"), HANDOFFS.c.status == "open"))
    .values(status="ended", answer=bindparam("d_answer"), answered_at=bindparam("d_now"))
)

#: A step's completion waiting to be committed: the step, its outcome, when it finished.
Ended = tuple[StepState, Done, float]


class RunWrites:
    """Commits of a run's driver (mixed into :class:`~agents.run_loop.RunLoop`)."""

    # Provided by Engine.
    svc: Services
    bus: EventBus
    _let_go: set[str]

    def _start_values(self, state: RunState, step: StepState, now: float) -> dict[str, Any]:
        """The columns that start ``step`` now (its context; an agent's opening messages)."""
        row = cast(Step, step)  # the runtime's helpers read a StepState like a row
        context = step_context(state, row)
        values: dict[str, Any] = {"status": "running", "context": context, "started_at": now}
        if step.agent and not step.transcript:
            # The agent's opening messages are committed with the start: one write, not two.
            values["transcript"] = opening(self.svc, state, row, step.agent, context)
        return values

    async def _commit(
        self, state: RunState, ends: list[Ended], starts: Sequence[StepState]
    ) -> None:
        """Commit steps' completions and starts in one transaction, then say so (events).

        ``ends`` are already applied in memory (so what they make ready can start here) and
        are emptied once committed.
        """
        if not ends and not starts:
            return
        now = self.svc.clock()
        began = [(step, self._start_values(state, step, now)) for step in starts]
        async with self.svc.db.transaction() as session:
            await self._write_ends(session, state, ends, now)
            for step, values in began:
                await steps.update_step(
                    session, run_id=state.run_id, step_id=step.step_id, values=values
                )
        for step, values in began:
            step.status, step.context, step.started_at = "running", values["context"], now
            step.transcript = values.get("transcript", step.transcript)
        committed = list(ends)
        ends.clear()
        if self.bus.subscribers:
            await self._announce_ends(state, committed)
            for step in starts:
                await self.bus.publish(
                    StepStarted(state.run_id, step.step_id, step.title, step.agent, step.tool)
                )

    async def _write_ends(
        self, session: Session, state: RunState, ends: Sequence[Ended], now: float
    ) -> None:
        for step, outcome, finished_at in ends:
            done = {"status": "done", "output": outcome.output, "finished_at": finished_at}
            if isinstance(outcome, FinalTurn) and outcome.reply is not None:
                # The step's last model turn, its usage and its completion: one statement.
                reply = outcome.reply
                await steps.add_usage(
                    session,
                    run_id=state.run_id,
                    step_id=step.step_id,
                    tokens_in=reply.tokens_in,
                    tokens_out=reply.tokens_out,
                    cost_usd=reply.cost_usd,
                    values={"transcript": outcome.transcript, **done},
                )
                await count_model_call(session, run_id=state.run_id, reply=reply)
            elif outcome.finished_at is None:
                if isinstance(outcome, ToolDone) and outcome.ledger is not None:
                    # The tool call's result and the step's completion: one transaction.
                    ledger = outcome.ledger
                    await tool_calls.record_result(
                        session, key=ledger.key, values=ledger.values, row=ledger.row
                    )
                await steps.update_step(
                    session, run_id=state.run_id, step_id=step.step_id, values=done
                )
            # else: the runner committed it already

    async def _announce_ends(self, state: RunState, ends: Sequence[Ended]) -> None:
        for step, outcome, finished_at in ends:
            if isinstance(outcome, ToolDone) and outcome.ledger is not None:
                ledger = outcome.ledger
                await self.bus.publish(
                    ToolCalled(
                        state.run_id,
                        step.step_id,
                        ledger.tool,
                        ledger.arguments or {},
                        True,
                        outcome.output[:200],
                    )
                )
            await self.bus.publish(
                StepFinished(
                    state.run_id,
                    step.step_id,
                    step.title,
                    outcome.output,
                    finished_at - (step.started_at or finished_at),
                    step.tokens_in + step.tokens_out,
                    step.cost_usd,
                )
            )

    async def _finish(
        self,
        state: RunState,
        status: str,
        error: str | None,
        pending: list[Ended] | None = None,
    ) -> RunSummary:
        """End the run (and let go of it), committing ``pending`` completions with it."""
        error = redact(error) if error else error  # a crash's message may quote a secret
        now = self.svc.clock()
        pending = pending if pending is not None else []
        output = (
            "\n\n".join(state.steps[s].output or "" for s in sinks(state))
            if status == "done"
            else None
        )
        unfinished = [
            s
            for s in state.steps.values()
            if s.status not in ("done", "failed", "rejected", "skipped")
        ]
        async with self.svc.db.transaction() as session:
            await self._write_ends(session, state, pending, now)
            await runs.update_run(
                session,
                run_id=state.run_id,
                values={
                    "status": status,
                    "error": error,
                    "finished_at": now,
                    "updated_at": now,
                    "owner": None,
                    "lease_until": None,
                },
            )
            for step in unfinished:
                await steps.update_step(
                    session,
                    run_id=state.run_id,
                    step_id=step.step_id,
                    values={"status": "cancelled"},
                )
            key = {"k_run": state.run_id}
            await steps.write(session, _END_DUE, key)
            # Nothing can be decided on an ended run: close its open checkpoints, so their
            # buttons go away (the events below) and a late click is told so.
            closed = await steps.fetch(
                session, _END_APPROVALS, {**key, "d_now": now, "d_reason": f"the run was {status}"}
            )
            expired = [(str(r[0]), str(r[1])) for r in closed]
            await steps.write(
                session, _END_HANDOFFS, {**key, "d_now": now, "d_answer": f"(the run was {status})"}
            )
            # Only the RunFinished event shows the totals: read them only for a listener.
            totals = (
                await runs.totals(session, run_id=state.run_id) if self.bus.subscribers else None
            )
            refused = (  # a run that ended with refused calls must say so (agents.notices)
                (await audit.count_by_run(session, run_ids=[state.run_id], action=REFUSED)).get(
                    state.run_id, 0
                )
                if totals is not None
                else 0
            )
        for step in unfinished:
            step.status = "cancelled"
        committed = list(pending)
        pending.clear()
        self._let_go.add(state.run_id)
        if totals is None:
            return RunSummary(state.run_id, status, error)
        await self._announce_ends(state, committed)
        for approval_id, step_id in expired:
            await self.bus.publish(
                ApprovalDecided(
                    state.run_id,
                    approval_id,
                    step_id,
                    "expired",
                    "baton",
                    f"the run was {status}",
                    False,
                )
            )
        model_calls, tokens, cost_usd, created_at = totals
        await self.bus.publish(
            RunFinished(
                state.run_id,
                status,
                error,
                output,
                model_calls,
                tokens,
                cost_usd,
                now - created_at,
                refused,
            )
        )
        return RunSummary(state.run_id, status, error)
