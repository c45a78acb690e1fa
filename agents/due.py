"""Due work: the database says what falls due when; APScheduler only wakes this process up.

Each process runs its own ``AsyncIOScheduler`` with one in-memory job (never a shared job
store: APScheduler's FAQ warns that two schedulers on one store duplicate or drop jobs). The
job claims due rows (``storage.repositories.due.claim``: SKIP LOCKED on PostgreSQL, a
conditional update under ``BEGIN IMMEDIATE`` on SQLite), runs the handler registered for each
row's kind, and completes the row only if it still holds the row's fence. Then it re-arms
itself for the next due time (or ``max_idle_s``, so rows added by other processes are seen).

Rows that fell due more than ``grace_s`` ago (Baton was down) are not run late: they are
marked ``missed`` and their ``on_missed`` handler reports them. Kinds registered with
``always=True`` (an approval's expiry) run however late they are.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from storage.database import Database, DatabaseUnavailable
from storage.models import DueItem
from storage.repositories import due

log = logging.getLogger(__name__)

Handler = Callable[[DueItem, "Claim"], Awaitable[None]]


@dataclass(frozen=True)
class Claim:
    """Proof of holding a due row; ``still_held()`` is the fence check before acting."""

    item_id: int
    owner: str
    fence: int
    db: Database

    async def still_held(self) -> bool:
        """True while nobody else has re-claimed the row (call right before a side effect)."""
        async with self.db.transaction() as session:
            return await due.holds(
                session, item_id=self.item_id, owner=self.owner, fence=self.fence
            )


@dataclass
class _Kind:
    handler: Handler
    on_missed: Handler | None
    always: bool


@dataclass
class DueWork:
    """Claims and runs due rows. One per process; handlers are registered per kind."""

    db: Database
    owner: str
    clock: Callable[[], float] = time.time
    lease_s: float = 30.0
    grace_s: float = 3600.0
    max_idle_s: float = 5.0
    batch: int = 200
    concurrency: int = 32
    kinds: dict[str, _Kind] = field(default_factory=dict)

    def register(
        self, kind: str, handler: Handler, *, on_missed: Handler | None = None, always: bool = False
    ) -> None:
        """Run ``handler`` for rows of ``kind``; ``on_missed`` for those past the grace period."""
        self.kinds[kind] = _Kind(handler, on_missed, always)

    async def tick(self) -> int:
        """Claim and run everything due now; returns how many rows were handled."""
        handled = 0
        slots = asyncio.Semaphore(self.concurrency)
        while True:
            now = self.clock()
            async with self.db.transaction() as session:
                items = await due.claim(
                    session, now=now, owner=self.owner, lease_s=self.lease_s, limit=self.batch
                )
            if not items:
                return handled

            async def run(item: DueItem) -> None:
                async with slots:
                    await self._run(item)

            await asyncio.gather(*(run(i) for i in items))
            handled += len(items)
            if len(items) < self.batch:
                return handled

    async def _run(self, item: DueItem) -> None:
        assert item.id is not None
        claim = Claim(item.id, self.owner, item.fence, self.db)
        kind = self.kinds.get(item.kind)
        now = self.clock()
        if kind is None:
            await self._finish(claim, "failed", f"no handler for {item.kind!r}")
            return
        late = now - item.due_at > self.grace_s and not kind.always
        try:
            if late:
                if kind.on_missed is not None:
                    await kind.on_missed(item, claim)
                await self._finish(claim, "missed", None)
                return
            await kind.handler(item, claim)
            await self._finish(claim, "done", None)
        except asyncio.CancelledError:
            raise
        except DatabaseUnavailable:
            log.warning("database unavailable while handling due item %s", item.id)
        except Exception as exc:
            log.exception("due item %s (%s) failed", item.id, item.kind)
            if item.attempts >= 5:
                await self._finish(claim, "failed", f"{type(exc).__name__}: {exc}")
                return
            retry_at = self.clock() + min(300.0, 2.0**item.attempts)
            async with self.db.transaction() as session:
                await due.release(
                    session,
                    item_id=claim.item_id,
                    owner=claim.owner,
                    fence=claim.fence,
                    retry_at=retry_at,
                    error=f"{type(exc).__name__}: {exc}",
                )

    async def _finish(self, claim: Claim, status: str, error: str | None) -> None:
        async with self.db.transaction() as session:
            ok = await due.finish(
                session,
                item_id=claim.item_id,
                owner=claim.owner,
                fence=claim.fence,
                status=status,
                now=self.clock(),
                error=error,
            )
        if not ok:
            log.warning("due item %s was re-claimed by another process meanwhile", claim.item_id)

    async def next_wait(self) -> float:
        """Seconds until something may fall due (at most ``max_idle_s``)."""
        async with self.db.transaction() as session:
            at = await due.next_due_at(session)
        if at is None:
            return self.max_idle_s
        return max(0.0, min(self.max_idle_s, at - self.clock()))


class Timer:
    """Wakes :class:`DueWork` with APScheduler: one re-armed date job, this process only."""

    JOB_ID = "baton-due-tick"

    def __init__(self, work: DueWork) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self.work = work
        # No misfire grace (None = run however late): lateness is decided from the rows,
        # not by APScheduler's 1-second default.
        from apscheduler.executors.debug import DebugExecutor

        # The job itself is a plain function run on the event loop's thread (DebugExecutor
        # calls it in place); it starts a task we own, so shutdown can cancel and await it
        # instead of leaving APScheduler to report a cancelled coroutine job.
        self.scheduler: Any = AsyncIOScheduler(
            timezone=UTC,
            executors={"default": DebugExecutor()},
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
        )
        self._next: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.ticks = 0

    def start(self) -> None:
        """Start the scheduler and run the first tick at once (catching up after downtime)."""
        self.scheduler.start()
        self._arm(0.0)

    def _arm(self, delay: float) -> None:
        at = time.time() + delay
        self._next = at
        self.scheduler.add_job(
            self._fire,
            trigger="date",
            run_date=datetime.fromtimestamp(at, UTC),
            id=self.JOB_ID,
            replace_existing=True,
        )

    def poke(self, due_at: float) -> None:
        """Something new falls due at ``due_at``: wake earlier if that is sooner."""
        if self._next is None or due_at < self._next:
            self._arm(max(0.0, due_at - time.time()))

    def _fire(self) -> None:
        if self._task is not None and not self._task.done():
            return  # a tick is still running; it re-arms the timer when it ends
        self._task = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        self.ticks += 1
        delay = self.work.max_idle_s
        try:
            await self.work.tick()
            delay = await self.work.next_wait()
        except asyncio.CancelledError:
            # Shutting down mid-tick: claimed rows are re-claimed when their lease ends.
            return
        except DatabaseUnavailable as exc:
            log.warning("due work paused, database unavailable: %s", exc)
        except Exception:
            log.exception("due work tick failed")
        self._arm(delay)

    async def shutdown(self) -> None:
        """Stop the scheduler and any tick in progress (rows stay in the database; a claim
        cut short is taken again when its lease ends)."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
