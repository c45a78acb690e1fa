"""SQLite transactions and their group commit (storage/database.py).

Callers that open a transaction in the same loop turn share one SQLite transaction and one
COMMIT; each still returns only once its writes are durable, and one caller's failure undoes
its own writes only. Checked on a real file, with a second plain sqlite3 connection as the
outside observer and the driver's trace counting COMMITs.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from storage.database import Database

pytestmark = pytest.mark.asyncio


class Boom(Exception):
    """A caller's own failure inside its transaction."""


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(f"sqlite:///{tmp_path / 'baton.db'}")
    async with database.transaction() as s:
        await s.execute(text("CREATE TABLE notes (caller INTEGER PRIMARY KEY)"))
    yield database
    await database.close()


def _outside(db: Database) -> list[int]:
    """What another connection sees: committed rows only."""
    path = db.url.split(":///", 1)[1]
    with sqlite3.connect(path) as conn:
        return sorted(r[0] for r in conn.execute("SELECT caller FROM notes"))


def _count_commits(db: Database) -> list[str]:
    seen: list[str] = []
    driver = db._driver()
    driver.set_trace_callback(
        lambda sql: seen.append(sql) if sql.strip().upper().startswith("COMMIT") else None
    )
    return seen


async def _note(db: Database, caller: int, *, fail: bool = False) -> list[int]:
    """Write a row; return what an outside connection sees right after the transaction."""
    async with db.transaction() as s:
        await s.execute(text("INSERT INTO notes VALUES (:c)"), {"c": caller})
        if fail:
            raise Boom(caller)
    return _outside(db)


async def test_callers_of_one_turn_share_one_commit_and_return_committed(db: Database) -> None:
    commits = _count_commits(db)
    seen_after = await asyncio.gather(*(_note(db, i) for i in range(10)))
    assert len(commits) == 1
    # Every caller returned after the COMMIT: each saw all ten rows from outside.
    assert all(seen == list(range(10)) for seen in seen_after)


async def test_sequential_callers_each_commit(db: Database) -> None:
    commits = _count_commits(db)
    for i in range(3):
        assert await _note(db, i) == list(range(i + 1))
    assert len(commits) == 3


async def test_a_failing_caller_loses_only_its_own_writes(db: Database) -> None:
    results = await asyncio.gather(
        _note(db, 1), _note(db, 2, fail=True), _note(db, 3), return_exceptions=True
    )
    assert isinstance(results[1], Boom)
    assert _outside(db) == [1, 3]


async def test_the_first_caller_failing_leaves_the_others_a_fresh_transaction(
    db: Database,
) -> None:
    results = await asyncio.gather(
        _note(db, 1, fail=True), _note(db, 2), _note(db, 3), return_exceptions=True
    )
    assert isinstance(results[0], Boom)
    assert _outside(db) == [2, 3]


async def test_a_failed_commit_fails_every_caller_of_the_batch(db: Database) -> None:
    async with db.transaction() as s:
        await s.execute(text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
        await s.execute(
            text(
                "CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER "
                "REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)"
            )
        )

    async def orphan() -> None:
        # Checked only at COMMIT: the caller's own statements all succeed.
        async with db.transaction() as s:
            await s.execute(text("INSERT INTO child VALUES (1, 42)"))

    results = await asyncio.gather(_note(db, 1), orphan(), return_exceptions=True)
    assert all(isinstance(r, IntegrityError) for r in results), results
    assert _outside(db) == []
    assert await _note(db, 2) == [2]  # the connection is usable again


async def test_a_caller_cancelled_while_waiting_cancels_no_one_else(db: Database) -> None:
    first = asyncio.create_task(_note(db, 1))
    second = asyncio.create_task(_note(db, 2))
    await asyncio.sleep(0)  # both have written and wait for the COMMIT of the next turn
    first.cancel()
    assert await second == [1, 2]  # the cancelled caller's write was already in the batch
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_two_databases_on_one_file_in_one_loop_do_not_block_each_other(
    db: Database,
) -> None:
    other = await Database.open(db.url)
    try:
        # The second BEGIN IMMEDIATE would wait for the first batch's COMMIT, which only this
        # loop can run: the first is committed before the second begins.
        await asyncio.gather(*(_note(d, i) for i, d in enumerate([db, other, db, other])))
        assert _outside(db) == [0, 1, 2, 3]
    finally:
        await other.close()


async def test_a_caller_awaiting_inside_its_transaction_is_committed_when_it_leaves(
    db: Database,
) -> None:
    async def slow(caller: int) -> list[int]:
        async with db.transaction() as s:
            await s.execute(text("INSERT INTO notes VALUES (:c)"), {"c": caller})
            await asyncio.sleep(0.01)  # the COMMIT comes due meanwhile and must wait
        return _outside(db)

    commits = _count_commits(db)
    # The second caller joins once the first leaves; the COMMIT then covers both.
    assert await asyncio.gather(slow(1), _note(db, 2)) == [[1, 2], [1, 2]]
    assert len(commits) == 1
