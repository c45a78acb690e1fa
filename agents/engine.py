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
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agents.budget import RunBudget
from agents.due import DueWork, Timer
from agents.errors import (
    LimitExceeded,
    ModelError,
    NotFound,
    PlanError,
)
from agents.events import (
    PlanReady,
    RunStarted,
    StepInfo,
    StepRetrying,
    StepStarted,
)
from agents.followups import register_handlers
from agents.ids import new_id
from agents.model import ModelReply
from agents.people import PeopleActions
from agents.plan import Plan, step_schedule
from agents.planner import make_plan
from agents.retry import with_retries
from agents.run_loop import RunLoop
from agents.state import (
    TERMINAL,
    RunState,
    RunSummary,
    Services,
    StepState,
    count_model_call,
    load_state,
)
from storage.database import DatabaseUnavailable
from storage.repositories import runs, steps

if TYPE_CHECKING:
    from agents.mcp.hub import McpHub

log = logging.getLogger(__name__)


class Engine(RunLoop, PeopleActions):
    """Runs goals and playbooks durably. One per process."""

    def __init__(self, svc: Services, *, owner: str | None = None) -> None:
        self.svc = svc
        self.bus = svc.bus
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{new_id('p')[2:]}"
        self._drivers: dict[str, asyncio.Task[RunSummary]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._slots = asyncio.Semaphore(max(1, svc.settings.concurrency))
        #: Runs whose lease was given up in the same transaction that finished or parked them.
        self._let_go: set[str] = set()
        #: Runs whose driver was woken from outside since it last looked.
        self._poked: set[str] = set()
        # A burst of new goals plans a few at a time, so it cannot starve running steps.
        self._planning = asyncio.Semaphore(max(1, min(4, svc.settings.concurrency)))
        self.due = DueWork(
            svc.db,
            self.owner,
            clock=svc.clock,
            lease_s=svc.settings.lease_s,
            grace_s=svc.settings.missed_grace_s,
        )
        self.timer: Timer | None = None
        #: MCP servers whose tools are registered (closed with the engine); see open_engine.
        self.mcp: McpHub | None = None
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
        return await self._create(
            goal, "goal", requester, origin, plan=None, playbook=None, run_id=run_id
        )

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
        return await self._create(
            goal,
            "playbook",
            requester,
            origin,
            plan=plan,
            playbook=playbook,
            inputs=inputs,
            run_id=run_id,
        )

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
        """Record the run, already claimed by this process, with the start of the steps that
        can start at once, in one transaction; then drive it from memory (no read back)."""
        now = self.svc.clock()
        fixed = run_id is not None
        run_id = run_id or new_id("r")
        lim = self.svc.settings.limits
        team_id = (origin or {}).get("team_id")  # for per-workspace budgets
        plan_json = plan.model_dump(mode="json") if plan else None
        budget = RunBudget(lim)
        # A new run has no approved raises yet, and its workspace is known: nothing to read.
        budget.raised, budget.team_id = {}, team_id
        state = RunState(
            run_id,
            goal,
            requester,
            lim,
            budget,
            inputs={str(k): str(v) for k, v in ((plan_json or {}).get("inputs") or {}).items()},
            created_at=now,
        )
        rows = _step_rows(run_id, plan) if plan is not None else []
        state.steps = {str(r["step_id"]): StepState.from_row(r) for r in rows}
        started = [
            s
            for s in state.steps.values()
            if not s.depends_on and not s.schedule and s.not_before is None
        ]
        for row in rows:
            row.update(context=None, started_at=None, transcript=None)
        for step in started:
            values = self._start_values(state, step, now)
            rows[step.position].update(values)
            step.status, step.context, step.started_at = "running", values["context"], now
            step.transcript = values.get("transcript")
        async with self.svc.db.transaction() as session:
            if fixed and await runs.get_run(session, run_id=run_id) is not None:
                self.drive(run_id)  # already started (a retried firing): resume it if needed
                return run_id
            await runs.create_run(
                session,
                values={
                    "id": run_id,
                    "goal": goal,
                    "status": "planning" if plan is None else "running",
                    "source": source,
                    "playbook": playbook,
                    "inputs": inputs,
                    "plan": plan_json,
                    "requester": requester,
                    "origin": origin,
                    "team_id": team_id,
                    "limits": lim.__dict__,
                    "created_at": now,
                    "updated_at": now,
                    "model_calls": 0,
                    "tokens_in": 0,
                    "tokens_out": 0,
                    "cost_usd": 0.0,
                    "cancel_requested": False,
                    # Claimed in the same commit: no other process can take it meanwhile.
                    "owner": self.owner,
                    "lease_until": now + self.svc.settings.lease_s,
                },
            )
            await steps.insert_steps(session, rows=rows)
        if self.bus.subscribers:
            await self.bus.publish(RunStarted(run_id, goal, source, requester, origin))
            if plan is not None:
                await self.bus.publish(PlanReady(run_id, _infos(plan)))
            for step in started:
                await self.bus.publish(
                    StepStarted(run_id, step.step_id, step.title, step.agent, step.tool)
                )
        self.drive(run_id, state=state, started=started)
        return run_id

    # ---- driving ----------------------------------------------------------------------------
    def drive(
        self,
        run_id: str,
        *,
        state: RunState | None = None,
        started: Sequence[StepState] = (),
    ) -> asyncio.Task[RunSummary]:
        """Make sure this process drives ``run_id`` (if it can claim it); returns the task.

        ``state`` (with ``started``): a run this process just created, claimed and started.
        """
        task = self._drivers.get(run_id)
        if task is not None and not task.done():
            self._poked.add(run_id)
            self._wake.setdefault(run_id, asyncio.Event()).set()
            return task
        self._wake[run_id] = asyncio.Event()
        self._poked.discard(run_id)
        task = asyncio.create_task(self._drive(run_id, state, started), name=f"baton-run-{run_id}")
        self._drivers[run_id] = task
        task.add_done_callback(functools.partial(self._forget, run_id))
        return task

    def _forget(self, run_id: str, task: asyncio.Task[RunSummary]) -> None:
        if self._drivers.get(run_id) is task:
            del self._drivers[run_id]
            self._wake.pop(run_id, None)
            poked = run_id in self._poked
            self._poked.discard(run_id)
            if poked and not task.cancelled():
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
            settled = (
                self._drivers.get(run_id) is None
                and task.done()
                and not task.cancelled()
                and task.exception() is None
            )
            if settled and task.result().status != "running":
                return task.result()  # what the driver committed last; no re-read

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
            try:
                async with self.svc.db.transaction() as session:
                    await runs.claim(
                        session,
                        run_id=run_id,
                        owner=self.owner,
                        now=self.svc.clock(),
                        lease_seconds=self.svc.settings.lease_s,
                    )
            except DatabaseUnavailable as exc:
                # Keep beating: a blip must not end the heartbeat while the run goes on.
                log.warning("could not renew the lease on %s: %s", run_id, exc)

    async def _drive(
        self, run_id: str, fresh: RunState | None = None, started: Sequence[StepState] = ()
    ) -> RunSummary:
        if fresh is None and not await self._claim(run_id):
            return await self.summary(run_id)
        heartbeat = asyncio.create_task(self._heartbeat(run_id))
        try:
            if fresh is not None:  # created and claimed by this process a moment ago
                if not fresh.steps:
                    planned = await self._plan(fresh)
                    if planned is not None:
                        return planned
                return await self._execute(fresh, started)
            async with self.svc.db.transaction() as session:
                run = await runs.get_run(session, run_id=run_id)
                rows = await steps.get_step_rows(session, run_id=run_id)
            if run is None:
                raise NotFound(f"There is no run {run_id!r}.")
            if run.status in TERMINAL:
                return RunSummary(run.id, run.status, run.error)
            state = load_state(run, rows)
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
                rows = await steps.get_step_rows(session, run_id=run_id)
            assert run is not None
            return await self._finish(
                load_state(run, rows), "failed", f"Internal error: {type(exc).__name__}: {exc}"
            )
        finally:
            heartbeat.cancel()
            if run_id not in self._let_go:  # finishing and parking already released it
                with contextlib.suppress(Exception):
                    async with self.svc.db.transaction() as session:
                        await runs.release(session, run_id=run_id, owner=self.owner)
            self._let_go.discard(run_id)

    async def _plan(self, state: RunState) -> RunSummary | None:
        settings = self.svc.settings
        model = settings.planner_model or settings.model

        async def on_retry(attempt: int, delay: float, exc: ModelError) -> None:
            await self.bus.publish(StepRetrying(state.run_id, "plan", attempt, delay, str(exc)))

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
                on_retry=on_retry,
            )
            state.budget.add(tokens=reply.tokens_in + reply.tokens_out, cost_usd=reply.cost_usd)
            async with self.svc.db.transaction() as session:
                await count_model_call(session, run_id=state.run_id, reply=reply)
            return reply

        try:
            async with self._planning:
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
            state.steps[row["step_id"]] = StepState.from_row(row)
        await self.bus.publish(PlanReady(state.run_id, _infos(plan)))
        return None

    async def close(self) -> None:
        """Stop driving (runs stay resumable) and wait for drivers to let go."""
        if self.timer is not None:
            await self.timer.shutdown()
            self.timer = None
        tasks = list(self._drivers.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.mcp is not None:
            await self.mcp.close()
            self.mcp = None


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
