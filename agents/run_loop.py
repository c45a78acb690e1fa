"""Driving one run: start ready steps, react to outcomes, park, finish (what it commits is
in :mod:`agents.run_writes`)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from sqlalchemy import and_, func, select

from agents.events import (
    EventBus,
    RunWaiting,
    StepFailed,
    StepScheduled,
    StepSkipped,
    StepStarted,
)
from agents.followups import STEP_WAKE
from agents.outcomes import Done, Failed, Outcome, Parked
from agents.run_writes import Ended, RunWrites
from agents.runtime import StepRunner
from agents.state import (
    FINISHED_STEP,
    HANDED_BACK,
    POLL_S,
    SCHEDULED_STEP,
    WAITING_STEP,
    FinalTurn,
    RunState,
    RunSummary,
    Services,
    StepState,
)
from agents.timing import condition_holds
from storage.models import APPROVALS, HANDOFFS, STEPS, Step
from storage.repositories import due, runs, steps

log = logging.getLogger(__name__)


def _after_skip(state: RunState, step: StepState) -> bool:
    """True if a dependency of ``step`` was skipped (so it is skipped too)."""
    found = state.steps
    return any(found[d].status == "skipped" for d in step.depends_on or [] if d in found)


class RunLoop(RunWrites):
    """The loop of a run's driver (mixed into :class:`~agents.engine.Engine`)."""

    # Provided by Engine.
    svc: Services
    bus: EventBus
    owner: str
    _wake: dict[str, asyncio.Event]
    #: Runs whose driver was woken from outside (a decision, a cancel, a follow-up).
    _poked: set[str]
    _slots: asyncio.Semaphore
    _let_go: set[str]

    if TYPE_CHECKING:

        def drive(
            self,
            run_id: str,
            *,
            state: RunState | None = None,
            started: Sequence[StepState] = (),
        ) -> asyncio.Task[RunSummary]: ...

        async def summary(self, run_id: str) -> RunSummary: ...

        def poke(self, due_at: float) -> None: ...

    async def _execute(self, state: RunState, started: Sequence[StepState] = ()) -> RunSummary:
        """Drive ``state`` until it finishes or parks. ``started``: steps whose start was
        committed with the run's creation (they run as fresh steps)."""
        run_id = state.run_id
        tasks: dict[str, asyncio.Task[Outcome]] = {}
        # One waiter for the whole run: a step's task ending, a poke from outside and the poll
        # timer all set ``wake``; what happened is in ``finished`` / ``_poked`` / ``polls``.
        finished: list[str] = []
        wake = self._wake.setdefault(run_id, asyncio.Event())
        loop = asyncio.get_running_loop()
        polls: list[asyncio.TimerHandle] = []  # [the armed handle]; fired → polling due
        due_poll = False

        def ended(sid: str, _task: asyncio.Task[Outcome]) -> None:
            finished.append(sid)
            wake.set()

        def spawn(step: StepState, fresh: bool) -> None:
            task = self._spawn(state, step, fresh=fresh)
            task.add_done_callback(functools.partial(ended, step.step_id))
            tasks[step.step_id] = task

        def poll() -> None:
            # Each poll checks for a cancel made from another process (and for decisions).
            nonlocal due_poll
            due_poll = True
            wake.set()
            polls[0] = loop.call_later(POLL_S, poll)

        polls.append(loop.call_later(POLL_S, poll))
        recheck = {k for k, s in state.steps.items() if s.status in WAITING_STEP}
        ends: list[Ended] = []  # completions not committed yet (with the next starts)
        for step in started:
            spawn(step, True)
        try:
            while True:
                starts: list[StepState] = []
                for step in state.steps.values():
                    sid = step.step_id
                    if sid in tasks:
                        continue
                    status = step.status
                    if status == "pending":
                        if not self._ready(state, step):
                            continue
                        if step.schedule or step.not_before is not None or _after_skip(state, step):
                            # Rare: skipping or holding commits on its own, after what is due.
                            await self._commit(state, ends, ())
                            if await self._hold_or_skip(state, step):
                                continue
                        starts.append(step)
                    elif status == "running":
                        if self.bus.subscribers:
                            await self.bus.publish(
                                StepStarted(run_id, sid, step.title, step.agent, step.tool, True)
                            )
                        spawn(step, False)
                    elif status in WAITING_STEP and sid in recheck:
                        recheck.discard(sid)
                        spawn(step, False)
                if not tasks and not starts:
                    if all(s.status in FINISHED_STEP for s in state.steps.values()):
                        return await self._finish(state, "done", None, ends)
                    if any(
                        s.status == "pending" and self._ready(state, s)
                        for s in state.steps.values()
                    ):
                        continue  # a skip just made more steps ready
                    await self._commit(state, ends, ())
                    parked = await self._park(state)
                    if parked is not None:
                        return parked
                    recheck = {k for k, s in state.steps.items() if s.status in WAITING_STEP}
                    await self._refresh_scheduled(state)
                    continue
                if starts or ends:
                    # The completions and the starts they made possible: one transaction.
                    await self._commit(state, ends, starts)
                    for step in starts:
                        spawn(step, True)
                poked = run_id in self._poked
                if not finished and not poked and not due_poll:
                    wake.clear()
                    await wake.wait()
                    poked = run_id in self._poked
                self._poked.discard(run_id)
                polled, due_poll = due_poll, False
                while finished:
                    sid = finished.pop(0)
                    task = tasks.pop(sid)
                    result = await self._on_outcome(state, state.steps[sid], task.result(), ends)
                    if result is not None:
                        return result
                parked_now = {
                    k for k, s in state.steps.items() if s.status in WAITING_STEP and k not in tasks
                }
                if parked_now or poked or polled:
                    await self._commit(state, ends, ())
                    if await self._cancel_requested(run_id):
                        return await self._finish(state, "cancelled", "Cancelled on request.")
                    recheck |= await self._decided(run_id) & parked_now
                    await self._refresh_scheduled(state)
        finally:
            polls[0].cancel()
            for task in tasks.values():
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks.values(), return_exceptions=True)

    def _spawn(
        self, state: RunState, step: StepState, *, fresh: bool = False
    ) -> asyncio.Task[Outcome]:
        # The runner's mixins are typed against the ``steps`` row model; a StepState has the
        # same fields, and the runner only reads and sets those.
        row = cast(Step, step)

        async def run() -> Outcome:
            async with self._slots:
                return await StepRunner(self.svc, state, row, fresh=fresh).run()

        return asyncio.create_task(run(), name=f"baton-step-{state.run_id}-{step.step_id}")

    def _ready(self, state: RunState, step: StepState) -> bool:
        deps = step.depends_on
        if not deps:
            return True
        all_steps = state.steps
        for d in deps:
            dep = all_steps.get(d)
            if dep is not None and dep.status not in FINISHED_STEP:
                return False
        return True

    async def _hold_or_skip(self, state: RunState, step: StepState) -> bool:
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
            rows = await steps.get_step_rows(session, run_id=state.run_id)
        fresh = {r["step_id"]: r for r in rows}
        for step in waiting:
            row = fresh.get(step.step_id)
            if row is not None and row["status"] != SCHEDULED_STEP:
                step.status, step.error = row["status"], row["error"]
                step.output = row["output"]
        state.forget_outputs()

    async def _on_outcome(
        self, state: RunState, step: StepState, outcome: Outcome, ends: list[Ended]
    ) -> RunSummary | None:
        if isinstance(outcome, Parked):
            return None
        if isinstance(outcome, Done):
            # Applied in memory now, committed with what comes next (see _commit); nothing
            # is shown or acted on before that commit.
            now = outcome.finished_at if outcome.finished_at is not None else self.svc.clock()
            if isinstance(outcome, FinalTurn) and outcome.reply is not None:
                reply = outcome.reply
                step.transcript = outcome.transcript
                step.model_calls += 1
                step.tokens_in += reply.tokens_in
                step.tokens_out += reply.tokens_out
                step.cost_usd += reply.cost_usd
            state.done(step, outcome.output, now)
            ends.append((step, outcome, now))
            return None
        await self._commit(state, ends, ())
        now = self.svc.clock()
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
