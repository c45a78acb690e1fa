"""The engine: starts runs, drives them through their plans, parks them, resumes them.

One *driver* task per run owns the run through a lease row (so two processes never drive the
same run). The driver starts every step whose dependencies are done (bounded by a semaphore),
and reacts to each step's outcome. When nothing can move until a person acts, the run is
parked (``waiting``) and the lease released; deciding an approval or answering a handoff sets
the run ``running`` again and any process's engine picks it up (``drive``/``resume_all``).

Every state change is committed before its event is published.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, select

from agents import approvals as approval_rules
from agents.budget import RunBudget
from agents.due import DueWork, Timer
from agents.errors import (
    ApprovalError,
    BatonError,
    LimitExceeded,
    ModelError,
    NotFound,
    PlanError,
)
from agents.events import (
    ApprovalDecided,
    EventBus,
    HandoffAnswered,
    HandoffRequested,
    PlanReady,
    RunFinished,
    RunStarted,
    RunWaiting,
    StepFailed,
    StepFinished,
    StepInfo,
    StepScheduled,
    StepSkipped,
    StepStarted,
)
from agents.followups import STEP_WAKE, register_handlers
from agents.ids import new_id
from agents.model import ModelClient, ModelReply
from agents.plan import Plan, step_schedule
from agents.planner import make_plan
from agents.registry import Registry
from agents.retry import with_retries
from agents.runtime import Done, Failed, Outcome, Parked, StepRunner, step_context
from agents.settings import Limits, Settings
from agents.summaries import handoff_summary
from agents.timing import condition_holds
from storage.database import Database, DatabaseUnavailable
from storage.models import APPROVALS, HANDOFFS, STEPS, Approval, Handoff, Run, Step
from storage.repositories import approvals, audit, due, handoffs, runs, steps, tool_calls

log = logging.getLogger(__name__)

TERMINAL = ("done", "failed", "cancelled", "rejected")
WAITING_STEP = ("waiting_approval", "waiting_human", "outcome_unknown")
#: A follow-up step waiting for its time (woken by due work, not by a person).
SCHEDULED_STEP = "scheduled"
FINISHED_STEP = ("done", "skipped")
POLL_S = 1.0
#: Handoff states that carry news for the step (a result, or the step given back).
HANDED_BACK = ("answered", "returned")


@dataclass
class Services:
    """What every part of a run needs from the outside."""

    db: Database
    registry: Registry
    settings: Settings
    model: ModelClient
    bus: EventBus
    clock: Callable[[], float] = time.time
    #: Wakes this process's timer for something newly due (set by the engine).
    poke: Callable[[float], None] = lambda _at: None


@dataclass
class RunState:
    """A run as its driver holds it in memory (mirrors what is committed)."""

    run_id: str
    goal: str
    requester: str | None
    limits: Limits
    budget: RunBudget
    steps: dict[str, Step] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def outputs(self) -> dict[str, str]:
        """Outputs of finished steps by id."""
        return {k: s.output or "" for k, s in self.steps.items() if s.status == "done"}


@dataclass(frozen=True)
class RunSummary:
    """Where a run stands after its driver stopped."""

    run_id: str
    status: str
    error: str | None = None


class Engine:
    """Runs goals and playbooks durably. One per process."""

    def __init__(self, svc: Services, *, owner: str | None = None) -> None:
        self.svc = svc
        self.bus = svc.bus
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{new_id('p')[2:]}"
        self._drivers: dict[str, asyncio.Task[RunSummary]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._slots = asyncio.Semaphore(max(1, svc.settings.concurrency))
        self.due = DueWork(
            svc.db,
            self.owner,
            clock=svc.clock,
            lease_s=svc.settings.lease_s,
            grace_s=svc.settings.missed_grace_s,
        )
        self.timer: Timer | None = None
        svc.poke = self.poke
        register_handlers(self)

    # ---- time -------------------------------------------------------------------------------
    def start_timer(self) -> Timer:
        """Start waking up for due work (follow-ups, reminders, schedules) in this process."""
        if self.timer is None:
            self.timer = Timer(self.due)
            self.timer.start()
        return self.timer

    def poke(self, due_at: float) -> None:
        """Something was scheduled for ``due_at``: make sure this process wakes up for it."""
        if self.timer is not None:
            self.timer.poke(due_at)

    # ---- starting runs ----------------------------------------------------------------------
    async def start_goal(
        self,
        goal: str,
        *,
        requester: str | None = None,
        origin: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> str:
        """Record a new run for ``goal`` (to be planned by the model) and start driving it.

        With ``run_id`` given, starting the same run twice starts it once.
        """
        goal = clean_goal(goal, self.svc.settings.limits.max_goal_chars)
        run_id = await self._create(
            goal, "goal", requester, origin, plan=None, playbook=None, run_id=run_id
        )
        self.drive(run_id)
        return run_id

    async def start_plan(
        self,
        goal: str,
        plan: Plan,
        *,
        playbook: str | None = None,
        inputs: dict[str, str] | None = None,
        requester: str | None = None,
        origin: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> str:
        """Record a run with a ready plan (a playbook's) and start driving it."""
        goal = clean_goal(goal, self.svc.settings.limits.max_goal_chars)
        run_id = await self._create(
            goal,
            "playbook",
            requester,
            origin,
            plan=plan,
            playbook=playbook,
            inputs=inputs,
            run_id=run_id,
        )
        self.drive(run_id)
        return run_id

    async def _create(
        self,
        goal: str,
        source: str,
        requester: str | None,
        origin: dict[str, Any] | None,
        *,
        plan: Plan | None,
        playbook: str | None,
        inputs: dict[str, str] | None = None,
        run_id: str | None = None,
    ) -> str:
        now = self.svc.clock()
        fixed = run_id is not None
        run_id = run_id or new_id("r")
        lim = self.svc.settings.limits
        async with self.svc.db.transaction() as session:
            if fixed and await runs.get_run(session, run_id=run_id) is not None:
                return run_id  # already started (a retried firing)
            await runs.create_run(
                session,
                values={
                    "id": run_id,
                    "goal": goal,
                    "status": "planning" if plan is None else "running",
                    "source": source,
                    "playbook": playbook,
                    "inputs": inputs,
                    "plan": plan.model_dump(mode="json") if plan else None,
                    "requester": requester,
                    "origin": origin,
                    "limits": lim.__dict__,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            if plan is not None:
                await steps.insert_steps(session, rows=_step_rows(run_id, plan))
        await self.bus.publish(RunStarted(run_id, goal, source, requester, origin))
        if plan is not None:
            await self.bus.publish(PlanReady(run_id, _infos(plan)))
        return run_id

    # ---- driving ----------------------------------------------------------------------------
    def drive(self, run_id: str) -> asyncio.Task[RunSummary]:
        """Make sure this process drives ``run_id`` (if it can claim it); returns the task."""
        task = self._drivers.get(run_id)
        if task is not None and not task.done():
            self._wake.setdefault(run_id, asyncio.Event()).set()
            return task
        self._wake[run_id] = asyncio.Event()
        task = asyncio.create_task(self._drive(run_id), name=f"baton-run-{run_id}")
        self._drivers[run_id] = task
        task.add_done_callback(functools.partial(self._forget, run_id))
        return task

    def _forget(self, run_id: str, task: asyncio.Task[RunSummary]) -> None:
        if self._drivers.get(run_id) is task:
            del self._drivers[run_id]
            wake = self._wake.pop(run_id, None)
            if wake is not None and wake.is_set() and not task.cancelled():
                # A decision arrived while the driver was parking: go round again.
                self.drive(run_id)

    async def wait(self, run_id: str) -> RunSummary:
        """Wait until this process stops driving ``run_id`` (finished or parked)."""
        while True:
            task = self._drivers.get(run_id)
            if task is None:
                return await self.summary(run_id)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)
            await asyncio.sleep(0)

    async def summary(self, run_id: str) -> RunSummary:
        """The run's committed status."""
        async with self.svc.db.transaction() as session:
            run = await runs.get_run(session, run_id=run_id)
        if run is None:
            raise NotFound(f"There is no run {run_id!r}.")
        return RunSummary(run.id, run.status, run.error)

    async def resume_all(self) -> list[str]:
        """Drive every run that should be moving and that no live process holds."""
        now = self.svc.clock()
        async with self.svc.db.transaction() as session:
            free = await runs.list_claimable(session, now=now)
            local = await runs.list_owned_by_others(
                session, owner_prefix=socket.gethostname() + ":"
            )
        ids = [r for r, _ in free]
        ids += [r for r, owner in local if owner != self.owner and _owner_dead(owner)]
        for run_id in ids:
            self.drive(run_id)
        return ids

    async def _claim(self, run_id: str) -> bool:
        now = self.svc.clock()
        async with self.svc.db.transaction() as session:
            if await runs.claim(
                session,
                run_id=run_id,
                owner=self.owner,
                now=now,
                lease_seconds=self.svc.settings.lease_s,
            ):
                return True
            run = await runs.get_run(session, run_id=run_id)
            if run is None or run.owner is None or not _owner_dead(run.owner):
                return False
            return await runs.claim(
                session,
                run_id=run_id,
                owner=self.owner,
                now=now,
                lease_seconds=self.svc.settings.lease_s,
                stale_owners=[run.owner],
            )

    async def _heartbeat(self, run_id: str) -> None:
        while True:
            await asyncio.sleep(self.svc.settings.lease_s / 3)
            async with self.svc.db.transaction() as session:
                await runs.claim(
                    session,
                    run_id=run_id,
                    owner=self.owner,
                    now=self.svc.clock(),
                    lease_seconds=self.svc.settings.lease_s,
                )

    async def _drive(self, run_id: str) -> RunSummary:
        if not await self._claim(run_id):
            return await self.summary(run_id)
        heartbeat = asyncio.create_task(self._heartbeat(run_id))
        try:
            async with self.svc.db.transaction() as session:
                run = await runs.get_run(session, run_id=run_id)
                rows = await steps.get_steps(session, run_id=run_id)
            if run is None:
                raise NotFound(f"There is no run {run_id!r}.")
            if run.status in TERMINAL:
                return RunSummary(run.id, run.status, run.error)
            state = _state(run, rows)
            if run.cancel_requested:
                return await self._finish(state, "cancelled", "Cancelled on request.")
            if run.status == "waiting":
                async with self.svc.db.transaction() as session:
                    await runs.update_run(session, run_id=run_id, values={"status": "running"})
            if not state.steps:
                planned = await self._plan(state)
                if planned is not None:
                    return planned
            return await self._execute(state)
        except asyncio.CancelledError:
            raise
        except DatabaseUnavailable as exc:
            # Nothing can be recorded now; the run stays as committed and resumes later.
            log.warning("run %s interrupted, database unavailable: %s", run_id, exc)
            return RunSummary(run_id, "interrupted", f"The database is unavailable: {exc}")
        except Exception as exc:  # never leave a run spinning on a bug: fail it, say why
            log.exception("run %s crashed", run_id)
            async with self.svc.db.transaction() as session:
                run = await runs.get_run(session, run_id=run_id)
                rows = await steps.get_steps(session, run_id=run_id)
            assert run is not None
            return await self._finish(
                _state(run, rows), "failed", f"Internal error: {type(exc).__name__}: {exc}"
            )
        finally:
            heartbeat.cancel()
            with contextlib.suppress(Exception):
                async with self.svc.db.transaction() as session:
                    await runs.release(session, run_id=run_id, owner=self.owner)

    async def _plan(self, state: RunState) -> RunSummary | None:
        settings = self.svc.settings
        model = settings.planner_model or settings.model

        async def call(messages: list[dict[str, Any]], fmt: dict[str, Any]) -> ModelReply:
            state.budget.check()
            reply = await with_retries(
                lambda: self.svc.model.complete(
                    model=model,
                    messages=messages,
                    response_format=fmt,
                    timeout_s=settings.model_timeout_s,
                ),
                retries=settings.model_retries,
                base=settings.retry_base_s,
                cap=settings.retry_max_s,
            )
            state.budget.add(tokens=reply.tokens_in + reply.tokens_out, cost_usd=reply.cost_usd)
            async with self.svc.db.transaction() as session:
                await runs.add_usage(
                    session,
                    run_id=state.run_id,
                    model_calls=1,
                    tokens_in=reply.tokens_in,
                    tokens_out=reply.tokens_out,
                    cost_usd=reply.cost_usd,
                    now=self.svc.clock(),
                )
            return reply

        try:
            plan = await make_plan(
                state.goal, self.svc.registry, call, max_steps=state.limits.max_steps
            )
        except (PlanError, ModelError, LimitExceeded) as exc:
            return await self._finish(state, "failed", f"Planning failed: {exc}")
        rows = _step_rows(state.run_id, plan)
        async with self.svc.db.transaction() as session:
            await steps.insert_steps(session, rows=rows)
            await runs.update_run(
                session,
                run_id=state.run_id,
                values={
                    "plan": plan.model_dump(mode="json"),
                    "status": "running",
                    "updated_at": self.svc.clock(),
                },
            )
        for row in rows:
            state.steps[row["step_id"]] = Step.model_validate(row)
        await self.bus.publish(PlanReady(state.run_id, _infos(plan)))
        return None

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
                        tasks[sid] = self._spawn(state, step)
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
                if parked_now or woken:
                    if await self._cancel_requested(state.run_id):
                        return await self._finish(state, "cancelled", "Cancelled on request.")
                    recheck |= await self._decided(state.run_id) & parked_now
                    await self._refresh_scheduled(state)
        finally:
            for task in tasks.values():
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks.values(), return_exceptions=True)

    def _spawn(self, state: RunState, step: Step) -> asyncio.Task[Outcome]:
        async def run() -> Outcome:
            async with self._slots:
                return await StepRunner(self.svc, state, step).run()

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
        async with self.svc.db.transaction() as session:
            await steps.update_step(
                session,
                run_id=state.run_id,
                step_id=step.step_id,
                values={"status": "running", "context": context, "started_at": now},
            )
        step.status, step.context, step.started_at = "running", context, now
        await self.bus.publish(
            StepStarted(state.run_id, step.step_id, step.title, step.agent, step.tool)
        )

    async def _on_outcome(self, state: RunState, step: Step, outcome: Outcome) -> RunSummary | None:
        now = self.svc.clock()
        if isinstance(outcome, Parked):
            return None
        if isinstance(outcome, Done):
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
        await self.bus.publish(RunWaiting(state.run_id, pending_ids, open_ids))
        return RunSummary(state.run_id, "waiting")

    async def _finish(self, state: RunState, status: str, error: str | None) -> RunSummary:
        now = self.svc.clock()
        sinks = _sinks(state)
        output = (
            "\n\n".join(state.steps[s].output or "" for s in sinks) if status == "done" else None
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
            if status == "cancelled":
                await session.execute(
                    APPROVALS.update()
                    .where(
                        and_(APPROVALS.c.run_id == state.run_id, APPROVALS.c.status == "pending")
                    )
                    .values(status="expired", reason="the run was cancelled")
                )
            run = await runs.get_run(session, run_id=state.run_id)
        assert run is not None
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

    # ---- people acting on a run -------------------------------------------------------------
    async def decide(self, request: approval_rules.DecisionRequest) -> Approval:
        """Decide an approval (single use, bound to its digest), then continue the run here."""
        async with self.svc.db.transaction() as session:
            approval = await approval_rules.decide(
                session, request, registry=self.svc.registry, now=self.svc.clock()
            )
        await self.bus.publish(
            ApprovalDecided(
                approval.run_id,
                approval.id,
                approval.step_id,
                approval.status,
                request.actor,
                approval.reason,
                approval.edited is not None,
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
                    f"This handoff was already {handoff.status}"
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
                    f"This handoff was already {handoff.status}"
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

    async def close(self) -> None:
        """Stop driving (runs stay resumable) and wait for drivers to let go."""
        if self.timer is not None:
            self.timer.shutdown()
            self.timer = None
        tasks = list(self._drivers.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def clean_goal(goal: str, limit: int) -> str:
    """The goal, stripped; a clear :class:`PlanError` if it is empty or too long."""
    goal = (goal or "").strip()
    if not goal:
        raise PlanError("The goal is empty: say what you want done, e.g. 'research Acme'.")
    if len(goal) > limit:
        raise PlanError(
            f"The goal is {len(goal)} characters; the limit is {limit} (BATON_MAX_GOAL_CHARS). "
            "Put long material in a file or a playbook input instead."
        )
    return goal


def _step_rows(run_id: str, plan: Plan) -> list[dict[str, Any]]:
    return [
        {
            "run_id": run_id,
            "step_id": s.id,
            "position": i,
            "title": s.title,
            "agent": s.agent,
            "tool": s.tool,
            "instructions": s.instructions,
            "arguments": s.arguments,
            "depends_on": list(s.depends_on),
            "needs_approval": s.needs_approval,
            "schedule": step_schedule(s),
            "status": "pending",
            "attempts": 0,
            "model_calls": 0,
            "tokens_in": 0,
            "tokens_out": 0,
            "cost_usd": 0.0,
        }
        for i, s in enumerate(plan.steps)
    ]


def _infos(plan: Plan) -> tuple[StepInfo, ...]:
    return tuple(
        StepInfo(s.id, s.title, s.agent, s.tool, tuple(s.depends_on), s.needs_approval)
        for s in plan.steps
    )


def _state(run: Run, rows: list[Step]) -> RunState:
    limits = Limits(**(run.limits or {}))
    budget = RunBudget(
        limits,
        model_calls=run.model_calls,
        tokens=run.tokens_in + run.tokens_out,
        cost_usd=run.cost_usd,
    )
    return RunState(run.id, run.goal, run.requester, limits, budget, {s.step_id: s for s in rows})


def _sinks(state: RunState) -> list[str]:
    needed = {d for s in state.steps.values() for d in s.depends_on or []}
    return [k for k in state.steps if k not in needed]


def _owner_dead(owner: str) -> bool:
    """True if ``owner`` names a process on this host that no longer exists."""
    try:
        host, pid, _ = owner.split(":", 2)
        if host != socket.gethostname():
            return False
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (ValueError, PermissionError, OSError):
        return False
    return False
