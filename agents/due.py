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

Database round trips per row are few, so that a burst of rows does not queue on the
connection pool: a fence check well inside the lease is answered locally (nobody can take a
row over before its lease ends, see :class:`Claim`), finished rows are written in groups
(:class:`_Finisher`), and a tick's claim transaction also reads when to wake next. A message
handler then holds no connection while it posts, so ``concurrency`` is not bounded by the
pool: it is how many posts wait on Slack at once (bounding it by the pool's 10 connections
made p99 lateness 5.7 s instead of 0.56 s in bench/due.py on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import logging
import math
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
    #: Until when, on ``clock``, nobody else can have taken the row over: its lease end less
    #: a margin for clock skew between hosts. None: always ask the database.
    trusted_until: float | None = None
    #: The same instant on this process's monotonic clock (a wall-clock jump cannot stretch it).
    trusted_until_mono: float = math.inf
    clock: Callable[[], float] = time.time

    async def still_held(self) -> bool:
        """True while nobody else has re-claimed the row (call right before a side effect).

        Inside the trusted window the answer needs no round trip: other processes claim a
        row only once its lease has run out on their clock, and only this process finishes
        or releases it. Past the window (a pause, a slow handler) the database decides.
        """
        if (
            self.trusted_until is not None
            and self.clock() < self.trusted_until
            and time.monotonic() < self.trusted_until_mono
        ):
            return True
        async with self.db.transaction() as session:
            return await due.holds(
                session, item_id=self.item_id, owner=self.owner, fence=self.fence
            )


class _Finisher:
    """Writes finished claims in groups: the first finish writes at once, and the ones that
    arrive while it is in flight go together in the next transaction (a group commit). Under
    load that is one transaction for many rows; when quiet, no finish waits for another."""

    def __init__(self, db: Database, clock: Callable[[], float]) -> None:
        self.db = db
        self.clock = clock
        self._queue: list[tuple[Claim, str, str | None, asyncio.Future[bool]]] = []
        self._writing = False

    async def finish(self, claim: Claim, status: str, error: str | None) -> bool:
        """Complete ``claim``; False if the fence moved on (another process holds the row)."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((claim, status, error, done))
        if not self._writing:
            self._writing = True
            try:
                while self._queue:
                    group, self._queue = self._queue, []
                    await self._write(group)
            finally:
                self._writing = False
                for *_, waiting in self._queue:  # the writer was cancelled: so are they
                    waiting.cancel()
                self._queue = []
        return await done

    async def _write(
        self, group: list[tuple[Claim, str, str | None, asyncio.Future[bool]]]
    ) -> None:
        outcome: dict[tuple[str, str, str | None], list[tuple[int, int]]] = {}
        for claim, status, error, _ in group:
            outcome.setdefault((claim.owner, status, error), []).append(
                (claim.item_id, claim.fence)
            )
        finished: set[int] = set()
        try:
            async with self.db.transaction() as session:
                now = self.clock()
                for (owner, status, error), held in outcome.items():
                    finished |= await due.finish_many(
                        session, owner=owner, held=held, status=status, now=now, error=error
                    )
        except asyncio.CancelledError:
            for *_, waiting in group:
                waiting.cancel()
            raise
        except Exception as exc:  # each waiter handles it (DatabaseUnavailable: retried later)
            for *_, waiting in group:
                if not waiting.done():
                    waiting.set_exception(exc)
            return
        for claim, *_, waiting in group:
            if not waiting.done():
                waiting.set_result(claim.item_id in finished)


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
    #: At most this much of a lease is given up to clock skew between hosts (and at most a
    #: third of the lease): inside the rest, :meth:`Claim.still_held` needs no round trip.
    trust_margin_s: float = 5.0
    kinds: dict[str, _Kind] = field(default_factory=dict)
    _next_at: float | None = field(default=None, init=False, repr=False)
    _finisher: _Finisher = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._finisher = _Finisher(self.db, lambda: self.clock())

    def register(
        self, kind: str, handler: Handler, *, on_missed: Handler | None = None, always: bool = False
    ) -> None:
        """Run ``handler`` for rows of ``kind``; ``on_missed`` for those past the grace period."""
        self.kinds[kind] = _Kind(handler, on_missed, always)

    async def tick(self) -> int:
        """Claim and run everything due now; returns how many rows were handled."""
        handled = 0
        slots = asyncio.Semaphore(self.concurrency)
        margin = min(self.trust_margin_s, self.lease_s / 3)
        while True:
            now, mono = self.clock(), time.monotonic()
            async with self.db.transaction() as session:
                items = await due.claim(
                    session, now=now, owner=self.owner, lease_s=self.lease_s, limit=self.batch
                )
                if len(items) < self.batch:  # the last round: read when to wake up next too
                    self._next_at = await due.next_due_at(session)
            if not items:
                return handled

            async def run(item: DueItem, until: float, until_mono: float) -> None:
                async with slots:
                    await self._run(item, until, until_mono)

            until = (now + self.lease_s - margin, mono + self.lease_s - margin)
            await asyncio.gather(*(run(i, *until) for i in items))
            handled += len(items)
            if len(items) < self.batch:
                return handled

    async def run_due(self) -> float:
        """:meth:`tick`, then the seconds until something may fall due (at most
        ``max_idle_s``), known from the tick's last claim without another transaction."""
        self._next_at = None
        await self.tick()
        if self._next_at is None:
            return self.max_idle_s
        return max(0.0, min(self.max_idle_s, self._next_at - self.clock()))

    async def _run(self, item: DueItem, trusted_until: float, trusted_until_mono: float) -> None:
        assert item.id is not None
        claim = Claim(
            item.id, self.owner, item.fence, self.db, trusted_until, trusted_until_mono, self.clock
        )
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
            # The tick read the next due time before this row was given back.
            self._next_at = retry_at if self._next_at is None else min(self._next_at, retry_at)

    async def _finish(self, claim: Claim, status: str, error: str | None) -> None:
        if not await self._finisher.finish(claim, status, error):
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
    #: Ticks start at least this far apart: when rows fall due every millisecond or two, one
    #: tick takes the few that fell due meanwhile instead of a tick (and its claim
    #: transaction) for each row.
    MIN_GAP_S = 0.02

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
        self._poked: float | None = None  # the soonest poke during the running tick
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
        # A running tick may have read the next due time before this row was written.
        self._poked = due_at if self._poked is None else min(self._poked, due_at)
        if self._next is None or due_at < self._next:
            self._arm(max(0.0, due_at - time.time()))

    def _fire(self) -> None:
        if self._task is not None and not self._task.done():
            return  # a tick is still running; it re-arms the timer when it ends
        self._task = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        self.ticks += 1
        started = time.monotonic()
        self._poked = None
        delay = self.work.max_idle_s
        try:
            delay = await self.work.run_due()
        except asyncio.CancelledError:
            # Shutting down mid-tick: claimed rows are re-claimed when their lease ends.
            return
        except DatabaseUnavailable as exc:
            log.warning("due work paused, database unavailable: %s", exc)
        except Exception:
            log.exception("due work tick failed")
        if self._poked is not None:
            delay = min(delay, max(0.0, self._poked - time.time()))
        self._arm(max(delay, self.MIN_GAP_S - (time.monotonic() - started)))

    async def shutdown(self) -> None:
        """Stop the scheduler and any tick in progress (rows stay in the database; a claim
        cut short is taken again when its lease ends)."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
