"""Due work's few round trips, and that they keep the fences: fence checks answered locally
inside the lease, finishes written in groups, bulk scheduling, a poke during a running tick,
and a PostgreSQL connection that died in the pool (no pre-ping: its transaction fails as
``DatabaseUnavailable`` and the next one works). On SQLite and PostgreSQL unless said
otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from agents.due import Claim, DueWork, Timer
from storage.database import Database, DatabaseUnavailable
from storage.models import DueItem
from storage.repositories import due


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextlib.asynccontextmanager
async def _databases(url: str, n: int = 1) -> AsyncIterator[list[Database]]:
    dbs = [await Database.open(url) for _ in range(n)]
    try:
        yield dbs
    finally:
        for db in dbs:
            await db.close()


async def _add(db: Database, ref: str, due_at: float) -> None:
    async with db.transaction() as s:
        assert await due.add(s, kind="message", ref_id=ref, due_at=due_at, now=0)


async def _rows(db: Database) -> dict[str, DueItem]:
    async with db.transaction() as s:
        return {i.ref_id: i for i in await due.list_items(s)}


async def _poll(check: Callable[[], Any], within: float) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


async def test_finish_many_completes_only_the_claims_still_held(db_url: str):
    async with _databases(db_url, 2) as (a, b):
        for i in range(4):
            await _add(a, f"r{i}", 1000.0)
        async with a.transaction() as s:
            mine = await due.claim(s, now=1000.0, owner="a", lease_s=5, limit=10)
        async with b.transaction() as s:  # a's lease ran out; b took every row over
            theirs = await due.claim(s, now=1006.0, owner="b", lease_s=5, limit=2)
        taken = {i.id for i in theirs}
        async with a.transaction() as s:
            held = [(i.id or 0, i.fence) for i in mine]
            finished = await due.finish_many(s, owner="a", held=held, status="done", now=1007.0)
        assert finished == {i.id for i in mine} - taken
        rows = await _rows(a)
        assert sorted(r.status for r in rows.values()) == ["claimed", "claimed", "done", "done"]
        assert {r.owner for r in rows.values() if r.status == "claimed"} == {"b"}
        async with a.transaction() as s:  # finishing again does nothing
            assert await due.finish_many(s, owner="a", held=held, status="done", now=1008) == set()


async def test_a_fence_check_inside_the_lease_needs_no_database(db_url: str):
    clock = Clock()
    async with _databases(db_url) as (db,):
        await _add(db, "m1", 1000.0)
        async with db.transaction() as s:
            [item] = await due.claim(s, now=1000.0, owner="a", lease_s=30, limit=1)
    # The database is closed now: only a local answer can come back.
    claim = Claim(item.id or 0, "a", item.fence, db, 1025.0, time.monotonic() + 60, clock)
    assert await claim.still_held()
    clock.advance(25)  # past the trusted window: the database is asked
    with pytest.raises(DatabaseUnavailable):
        await claim.still_held()
    claim = Claim(item.id or 0, "a", item.fence, db, 1100.0, time.monotonic() - 1, clock)
    with pytest.raises(DatabaseUnavailable):  # the monotonic clock says the window is over
        await claim.still_held()


async def test_a_paused_handler_past_its_lease_asks_the_database_and_does_not_act(
    db_url: str,
):
    clock = Clock()
    async with _databases(db_url, 2) as (db_a, db_b):
        answers: list[tuple[str, bool]] = []
        inside = asyncio.Event()
        resume = asyncio.Event()

        async def slow(item: DueItem, claim: Claim) -> None:
            answers.append(("inside", await claim.still_held()))
            inside.set()
            await resume.wait()
            answers.append(("after", await claim.still_held()))

        async def quick(item: DueItem, claim: Claim) -> None:
            answers.append(("b", await claim.still_held()))

        a = DueWork(db_a, "a", clock=clock, lease_s=30)
        a.register("message", slow)
        b = DueWork(db_b, "b", clock=clock, lease_s=30)
        b.register("message", quick)
        await _add(db_a, "m1", 1000.0)

        tick_a = asyncio.create_task(a.tick())
        await asyncio.wait_for(inside.wait(), 5)
        clock.advance(31)  # a's lease ran out (a paused); b takes the row and finishes it
        assert await b.tick() == 1
        resume.set()
        assert await tick_a == 1
        assert answers == [("inside", True), ("b", True), ("after", False)]
        row = (await _rows(db_b))["m1"]
        assert (row.status, row.fence, row.attempts) == ("done", 2, 2)


async def test_many_handlers_finish_in_groups_and_each_row_once(db_url: str):
    clock = Clock()
    async with _databases(db_url, 2) as dbs:
        handled: list[str] = []
        workers = []
        for name, db in zip("ab", dbs, strict=True):

            async def handle(item: DueItem, claim: Claim) -> None:
                await asyncio.sleep(0)
                handled.append(item.ref_id)

            work = DueWork(db, name, clock=clock, batch=40)
            work.register("message", handle)
            workers.append(work)
        async with dbs[0].transaction() as s:
            for i in range(200):
                await due.add(s, kind="message", ref_id=f"m{i}", due_at=1000 + i / 100, now=0)
        clock.advance(5)
        assert sum(await asyncio.gather(*(w.tick() for w in workers))) == 200
        assert sorted(handled) == sorted(f"m{i}" for i in range(200))
        rows = await _rows(dbs[0])
        assert {r.status for r in rows.values()} == {"done"}
        assert {r.owner for r in rows.values()} == {None}


async def test_a_poke_during_a_running_tick_is_not_lost(db_url: str):
    """The tick reads the next due time in its claim transaction; a row written (and poked)
    while the tick's handlers run must still wake the timer, not wait ``max_idle_s``."""
    async with _databases(db_url) as (db,):
        handled: list[str] = []
        started, release = asyncio.Event(), asyncio.Event()

        async def handle(item: DueItem, claim: Claim) -> None:
            if item.ref_id == "first":
                started.set()
                await release.wait()
            handled.append(item.ref_id)

        work = DueWork(db, "w", max_idle_s=60)
        work.register("message", handle)
        await _add(db, "first", time.time())
        timer = Timer(work)
        timer.start()
        try:
            await asyncio.wait_for(started.wait(), 5)
            await _add(db, "second", time.time())
            timer.poke(time.time())
            release.set()

            async def both() -> bool:
                return handled == ["first", "second"]

            assert await _poll(both, within=10), handled
        finally:
            await timer.shutdown()


async def test_a_postgresql_connection_that_died_in_the_pool_fails_once_then_works(
    pg_url: str,
):
    async with _databases(pg_url) as (db,):
        async with db.transaction() as s:
            pid = (await s.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        with psycopg.connect(pg_url, autocommit=True) as admin:  # a server restart, say
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(DatabaseUnavailable):
            async with db.transaction() as s:
                await s.execute(text("SELECT 1"))
        async with db.transaction() as s:  # a fresh connection: no pre-ping needed
            assert (await s.execute(text("SELECT 1"))).scalar_one() == 1

        # The due work timer rides over the same: it pauses and ticks again.
        async with db.transaction() as s:
            pid = (await s.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        handled: list[str] = []

        async def handle(item: DueItem, claim: Claim) -> None:
            handled.append(item.ref_id)

        work = DueWork(db, "w", max_idle_s=0.2)
        work.register("message", handle)
        with contextlib.suppress(DatabaseUnavailable):
            await work.tick()  # the dead connection (if the pool hands it out first)
        await _add(db, "m1", time.time())
        timer = Timer(work)
        timer.start()
        try:

            async def done() -> bool:
                return handled == ["m1"]

            assert await _poll(done, within=10), handled
        finally:
            await timer.shutdown()


async def test_add_many_schedules_each_kind_ref_and_time_once(db_url: str):
    async with _databases(db_url) as (db,):
        await _add(db, "m0", 1000.0)
        items: list[dict[str, Any]] = [
            {"kind": "message", "ref_id": f"m{i}", "due_at": 1000.0, "payload": {"i": i}}
            for i in range(3)
        ]
        async with db.transaction() as s:
            assert await due.add_many(s, items=items, now=1.0) == 2  # m0 was there
            assert await due.add_many(s, items=items, now=2.0) == 0
            assert await due.add_many(s, items=[], now=3.0) == 0
        rows = await _rows(db)
        assert sorted(rows) == ["m0", "m1", "m2"]
        assert (rows["m2"].status, rows["m2"].payload, rows["m2"].created_at) == (
            "pending",
            {"i": 2},
            1.0,
        )
