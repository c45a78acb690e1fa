"""Driving one run: start ready steps, react to outcomes, park, finish."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, select

from agents.events import (
    ApprovalDecided,
    EventBus,
    RunFinished,
    RunWaiting,
    StepFailed,
    StepFinished,
    StepScheduled,
    StepSkipped,
    StepStarted,
)
from agents.followups import STEP_WAKE
from agents.outcomes import Done, Failed, Outcome, Parked
from agents.runtime import StepRunner, opening, step_context
from agents.state import (
    FINISHED_STEP,
    HANDED_BACK,
    POLL_S,
    SCHEDULED_STEP,
    WAITING_STEP,
    RunState,
    RunSummary,
    Services,
    sinks,
)
from agents.timing import condition_holds
from storage.models import APPROVALS, HANDOFFS, STEPS, Step
from storage.repositories import due, runs, steps

log = logging.getLogger(__name__)


class RunLoop:
    """The loop of a run's driver (mixed into :class:`~agents.engine.Engine`)."""

    # Provided by Engine.
    svc: Services
    bus: EventBus
    owner: str
    _wake: dict[str, asyncio.Event]
    _slots: asyncio.Semaphore
    _let_go: set[str]

    if TYPE_CHECKING:

        def drive(self, run_id: str) -> asyncio.Task[RunSummary]: ...

        async def summary(self, run_id: str) -> RunSummary: ...

        def poke(self, due_at: float) -> None: ...

    async def _execute(self, state: RunState) -> RunSummary:
        tasks: dict[str, asyncio.Task[Outcome]] = {}
        recheck = {k for k, s in state.steps.items() if s.status in WAITING_STEP}
        wake = self._wake.setdefault(state.run_id, asyncio.Event())
        try:
            while True:
                for step in state.steps.values():
                    sid = step.step_id
                    if sid in tasks:
                        continue
                    if step.status == "pending" and self._ready(state, step):
                        if await self._hold_or_skip(state, step):
                            continue
                        await self._start_step(state, step)
                        tasks[sid] = self._spawn(state, step, fresh=True)
                    elif step.status == "running":
                        await self.bus.publish(
                            StepStarted(state.run_id, sid, step.title, step.agent, step.tool, True)
                        )
                        tasks[sid] = self._spawn(state, step)
                    elif step.status in WAITING_STEP and sid in recheck:
                        recheck.discard(sid)
                        tasks[sid] = self._spawn(state, step)
                if not tasks:
                    if all(s.status in FINISHED_STEP for s in state.steps.values()):
                        return await self._finish(state, "done", None)
                    if any(
                        s.status == "pending" and self._ready(state, s)
                        for s in state.steps.values()
                    ):
                        continue  # a skip just made more steps ready
                    parked = await self._park(state)
                    if parked is not None:
                        return parked
                    recheck = {k for k, s in state.steps.items() if s.status in WAITING_STEP}
                    await self._refresh_scheduled(state)
                    continue
                waiter = asyncio.create_task(wake.wait())
                done, _ = await asyncio.wait(
                    [*tasks.values(), waiter], timeout=POLL_S, return_when=asyncio.FIRST_COMPLETED
                )
                waiter.cancel()
                woken = wake.is_set()
                wake.clear()
                for sid, task in list(tasks.items()):
                    if task not in done:
                        continue
                    del tasks[sid]
                    ended = await self._on_outcome(state, state.steps[sid], task.result())
                    if ended is not None:
                        return ended
                parked_now = {
                    k for k, s in state.steps.items() if s.status in WAITING_STEP and k not in tasks
                }
                # Each poll (or wake) also checks for a cancel made from another process.
                if parked_now or woken or not done:
                    if await self._cancel_requested(state.run_id):
                        return await self._finish(state, "cancelled", "Cancelled on request.")
                    recheck |= await self._decided(state.run_id) & parked_now
                    await self._refresh_scheduled(state)
        finally:
            for task in tasks.values():
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks.values(), return_exceptions=True)

    def _spawn(self, state: RunState, step: Step, *, fresh: bool = False) -> asyncio.Task[Outcome]:
        async def run() -> Outcome:
            async with self._slots:
                return await StepRunner(self.svc, state, step, fresh=fresh).run()

        return asyncio.create_task(run(), name=f"baton-step-{state.run_id}-{step.step_id}")

    def _ready(self, state: RunState, step: Step) -> bool:
        return all(
            state.steps[d].status in FINISHED_STEP
            for d in step.depends_on or []
            if d in state.steps
        )

    async def _hold_or_skip(self, state: RunState, step: Step) -> bool:
        """For a ready step: skip it (a dependency was skipped, or its condition fails), or
        hold it until its follow-up time. True if it must not start now."""
        now = self.svc.clock()
        plan = step.schedule or {}
        reason = None
        skipped_deps = [
            d
            for d in step.depends_on or []
            if d in state.steps and state.steps[d].status == "skipped"
        ]
        if skipped_deps:
            reason = f"it depends on skipped step {skipped_deps[0]!r}"
        elif plan.get("only_if"):
            test = plan["only_if"]
            source = state.steps.get(str(test.get("step")))
            if source is not None and not condition_holds(test, source.output or ""):
                reason = f"its condition on step {test.get('step')!r} did not hold"
        if reason is not None:
            async with self.svc.db.transaction() as session:
                await steps.update_step(
                    session,
                    run_id=state.run_id,
                    step_id=step.step_id,
                    values={"status": "skipped", "error": reason, "finished_at": now},
                )
            step.status, step.error = "skipped", reason
            await self.bus.publish(StepSkipped(state.run_id, step.step_id, step.title, reason))
            return True
        if step.not_before is not None and step.not_before <= now:
            return False
        wake_at = step.not_before
        if wake_at is None and plan.get("after_s") is not None:
            wake_at = now + float(plan["after_s"])
        elif wake_at is None and plan.get("at") is not None:
            wake_at = float(plan["at"])
        if wake_at is None or wake_at <= now:
            return False
        async with self.svc.db.transaction() as session:
            await steps.update_step(
                session,
                run_id=state.run_id,
                step_id=step.step_id,
                values={"status": SCHEDULED_STEP, "not_before": wake_at},
            )
            await due.add(
                session,
                kind=STEP_WAKE,
                ref_id=f"{state.run_id}:{step.step_id}",
                due_at=wake_at,
                now=now,
                run_id=state.run_id,
            )
        step.status, step.not_before = SCHEDULED_STEP, wake_at
        self.poke(wake_at)
        await self.bus.publish(StepScheduled(state.run_id, step.step_id, step.title, wake_at))
        return True

    async def _refresh_scheduled(self, state: RunState) -> None:
        """Pick up follow-up steps another process (or our timer) has woken or skipped."""
        waiting = [s for s in state.steps.values() if s.status == SCHEDULED_STEP]
        if not waiting:
            return
        async with self.svc.db.transaction() as session:
            fresh = {s.step_id: s for s in await steps.get_steps(session, run_id=state.run_id)}
        for step in waiting:
            row = fresh.get(step.step_id)
            if row is not None and row.status != SCHEDULED_STEP:
                step.status, step.error = row.status, row.error

    async def _start_step(self, state: RunState, step: Step) -> None:
        now = self.svc.clock()
        context = step_context(state, step)
        values: dict[str, Any] = {"status": "running", "context": context, "started_at": now}
        if step.agent and not step.transcript:
            # The agent's opening messages are committed with the start: one write, not two.
            values["transcript"] = opening(self.svc, state, step, step.agent, context)
        async with self.svc.db.transaction() as session:
            await steps.update_step(
                session, run_id=state.run_id, step_id=step.step_id, values=values
            )
        step.status, step.context, step.started_at = "running", context, now
        step.transcript = values.get("transcript", step.transcript)
        await self.bus.publish(
            StepStarted(state.run_id, step.step_id, step.title, step.agent, step.tool)
        )

    async def _on_outcome(self, state: RunState, step: Step, outcome: Outcome) -> RunSummary | None:
        now = self.svc.clock()
        if isinstance(outcome, Parked):
            return None
        if isinstance(outcome, Done):
            if outcome.finished_at is not None:
                now = outcome.finished_at  # committed by the runner with the last turn
            else:
                async with self.svc.db.transaction() as session:
                    await steps.update_step(
                        session,
                        run_id=state.run_id,
                        step_id=step.step_id,
                        values={"status": "done", "output": outcome.output, "finished_at": now},
                    )
            step.status, step.output, step.finished_at = "done", outcome.output, now
            await self.bus.publish(
                StepFinished(
                    state.run_id,
                    step.step_id,
                    step.title,
                    outcome.output,
                    now - (step.started_at or now),
                    step.tokens_in + step.tokens_out,
                    step.cost_usd,
                )
            )
            return None
        status = "failed" if isinstance(outcome, Failed) else "rejected"
        why = outcome.error if isinstance(outcome, Failed) else outcome.reason
        async with self.svc.db.transaction() as session:
            await steps.update_step(
                session,
                run_id=state.run_id,
                step_id=step.step_id,
                values={"status": status, "error": why, "finished_at": now},
            )
        step.status = status
        await self.bus.publish(StepFailed(state.run_id, step.step_id, step.title, why))
        if isinstance(outcome, Failed):
            return await self._finish(state, "failed", f"Step '{step.title}' failed: {why}")
        return await self._finish(state, "rejected", f"Step '{step.title}' was rejected: {why}")

    async def _decided(self, run_id: str) -> set[str]:
        """Steps of ``run_id`` with a decision or answer not yet acted on."""
        async with self.svc.db.transaction() as session:
            a = await session.execute(
                select(APPROVALS.c.step_id).where(
                    and_(
                        APPROVALS.c.run_id == run_id,
                        APPROVALS.c.status != "pending",
                        APPROVALS.c.consumed_at.is_(None),
                    )
                )
            )
            h = await session.execute(
                select(HANDOFFS.c.step_id).where(
                    and_(HANDOFFS.c.run_id == run_id, HANDOFFS.c.status.in_(HANDED_BACK))
                )
            )
            return set(a.scalars()) | set(h.scalars())

    async def _cancel_requested(self, run_id: str) -> bool:
        async with self.svc.db.transaction() as session:
            run = await runs.get_run(session, run_id=run_id)
        return run is not None and run.cancel_requested

    async def _park(self, state: RunState) -> RunSummary | None:
        """Mark the run waiting and let go of it, unless a decision arrived meanwhile."""
        async with self.svc.db.transaction() as session:
            # Lock the run row first, so a concurrent decision either lands before our check
            # (we see it) or after our commit (it sets the run running again).
            moved = await runs.set_status_if(
                session,
                run_id=state.run_id,
                expected=["running", "waiting"],
                values={
                    "status": "waiting",
                    "owner": None,
                    "lease_until": None,
                    "updated_at": self.svc.clock(),
                },
            )
            run = await runs.get_run(session, run_id=state.run_id)
            pending_a = await session.execute(
                select(APPROVALS.c.id).where(
                    and_(APPROVALS.c.run_id == state.run_id, APPROVALS.c.status == "pending")
                )
            )
            open_h = await session.execute(
                select(HANDOFFS.c.id).where(
                    and_(HANDOFFS.c.run_id == state.run_id, HANDOFFS.c.status == "open")
                )
            )
            unacted = await session.execute(
                select(func.count())
                .select_from(APPROVALS)
                .where(
                    and_(
                        APPROVALS.c.run_id == state.run_id,
                        APPROVALS.c.status != "pending",
                        APPROVALS.c.consumed_at.is_(None),
                    )
                )
            )
            answered = await session.execute(
                select(func.count())
                .select_from(HANDOFFS)
                .where(and_(HANDOFFS.c.run_id == state.run_id, HANDOFFS.c.status.in_(HANDED_BACK)))
            )
            woken = await session.execute(
                select(func.count())
                .select_from(STEPS)
                .where(
                    and_(
                        STEPS.c.run_id == state.run_id,
                        STEPS.c.not_before.is_not(None),
                        STEPS.c.status == "pending",
                    )
                )
            )
            pending_ids = tuple(pending_a.scalars())
            open_ids = tuple(open_h.scalars())
            news = int(unacted.scalar_one()) + int(answered.scalar_one()) + int(woken.scalar_one())
            cancel = run is not None and run.cancel_requested
            if news or cancel or not moved:
                # Undo: keep driving (the transaction still commits, so restore the claim).
                await runs.update_run(
                    session,
                    run_id=state.run_id,
                    values={
                        "status": "running",
                        "owner": self.owner,
                        "lease_until": self.svc.clock() + self.svc.settings.lease_s,
                    },
                )
        if cancel:
            return await self._finish(state, "cancelled", "Cancelled on request.")
        if not moved:
            return await self.summary(state.run_id)
        if news:
            return None
        self._let_go.add(state.run_id)
        await self.bus.publish(RunWaiting(state.run_id, pending_ids, open_ids))
        return RunSummary(state.run_id, "waiting")

    async def _finish(self, state: RunState, status: str, error: str | None) -> RunSummary:
        now = self.svc.clock()
        ends = sinks(state)
        output = (
            "\n\n".join(state.steps[s].output or "" for s in ends) if status == "done" else None
        )
        async with self.svc.db.transaction() as session:
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
            for step in state.steps.values():
                if step.status not in ("done", "failed", "rejected", "skipped"):
                    await steps.update_step(
                        session,
                        run_id=state.run_id,
                        step_id=step.step_id,
                        values={"status": "cancelled"},
                    )
                    step.status = "cancelled"
            await due.cancel(session, run_id=state.run_id)
            # Nothing can be decided on an ended run: close its open checkpoints, so their
            # buttons go away (the events below) and a late click is told so.
            closed = await session.execute(
                APPROVALS.update()
                .where(and_(APPROVALS.c.run_id == state.run_id, APPROVALS.c.status == "pending"))
                .values(
                    status="expired",
                    decided_by="baton",
                    decided_at=now,
                    reason=f"the run was {status}",
                )
                .returning(APPROVALS.c.id, APPROVALS.c.step_id)
            )
            expired = [(str(r.id), str(r.step_id)) for r in closed]
            await session.execute(
                HANDOFFS.update()
                .where(and_(HANDOFFS.c.run_id == state.run_id, HANDOFFS.c.status == "open"))
                .values(status="ended", answer=f"(the run was {status})", answered_at=now)
            )
            run = await runs.get_run(session, run_id=state.run_id)
        assert run is not None
        self._let_go.add(state.run_id)
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
        await self.bus.publish(
            RunFinished(
                state.run_id,
                status,
                error,
                output,
                run.model_calls,
                run.tokens_in + run.tokens_out,
                run.cost_usd,
                now - run.created_at,
            )
        )
        return RunSummary(state.run_id, status, error)
