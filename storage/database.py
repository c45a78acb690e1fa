"""The database: one URL, SQLite by default, PostgreSQL for several replicas.

Why two execution paths behind one ``Session``:

* SQLite is a local file. A commit in WAL mode with ``synchronous=NORMAL`` (which survives a
  process crash) costs tens of microseconds, far less than a hop to a worker thread. So SQLite
  statements run inline on the event loop through synchronous SQLAlchemy Core, one connection
  per process, transactions serialised by an asyncio lock and opened with ``BEGIN IMMEDIATE``
  so that two processes on one file queue on the write lock instead of failing to upgrade.
* PostgreSQL is a network round trip, so it goes through SQLAlchemy's async engine (psycopg 3).

Either way a repository function receives a ``Session`` and awaits ``session.execute(stmt)``.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import Result
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql import Executable

from storage import json_text

DEFAULT_URL = "sqlite:///baton.db"


class DatabaseUnavailable(Exception):
    """The database could not be reached or written (after a short retry)."""


class Session(Protocol):
    """An open transaction. Repositories take one explicitly and never commit it."""

    dialect: str

    async def execute(self, statement: Executable, params: Any = None) -> Result[Any]:
        """Run one statement inside the transaction (``params``: bound values, or a list of
        them for an executemany)."""
        ...


@dataclass
class _SyncSession:
    connection: Connection
    dialect: str = "sqlite"

    async def execute(self, statement: Executable, params: Any = None) -> Result[Any]:
        return self.connection.execute(statement, params)


@dataclass
class _AsyncSession:
    connection: AsyncConnection
    dialect: str = "postgresql"

    async def execute(self, statement: Executable, params: Any = None) -> Result[Any]:
        return await self.connection.execute(statement, params)


def normalise_url(url: str) -> str:
    """Accept the URLs people paste (``postgres://``, ``postgresql://``) and pick our drivers."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if parsed.get_backend_name() == "sqlite":
        return parsed.set(drivername="sqlite").render_as_string(hide_password=False)
    raise ValueError(
        f"BATON_DATABASE_URL must be sqlite:///path or postgresql://..., got {parsed.drivername}://"
    )


def redact_url(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


class Database:
    """Owns the connection(s) and opens transactions. Create with :meth:`open`."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.dialect = make_url(self.url).get_backend_name()
        self._sync_engine: Engine | None = None
        self._sync_conn: Connection | None = None
        self._async_engine: AsyncEngine | None = None
        self._lock = asyncio.Lock()
        #: SQLite: the transaction open right now, shared by the callers of this loop turn.
        self._batch: _Batch | None = None

    @classmethod
    async def open(cls, url: str | None = None, *, migrate: bool = True) -> Database:
        """Connect to ``url`` (default: ``BATON_DATABASE_URL`` or ``./baton.db``) and migrate."""
        db = cls(url or os.environ.get("BATON_DATABASE_URL") or DEFAULT_URL)
        db._connect()
        if migrate:
            from storage.migrations import migrate as run_migrations

            await run_migrations(db)
        return db

    def _connect(self) -> None:
        if self.dialect == "sqlite":
            database = make_url(self.url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(self.url, json_serializer=json_text.dumps)

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, _record: Any) -> None:
                # Let us issue BEGIN ourselves (the driver's implicit BEGIN is DEFERRED).
                dbapi_conn.isolation_level = None
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA busy_timeout=10000")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn: Connection) -> None:
                # SQLAlchemy begins on its first statement inside one of our transactions,
                # which the driver has already opened (see ``transaction``): nothing to send.
                # Outside one (migrations), open it the way every write must: IMMEDIATE.
                driver = conn.connection.driver_connection
                if not driver.in_transaction:  # type: ignore[union-attr]
                    _driver_sql(driver, "BEGIN IMMEDIATE")

            self._sync_engine = engine
            self._sync_conn = engine.connect()
        else:
            # Transactions are short; a small pool per process keeps several replicas (and
            # their tests) well inside PostgreSQL's max_connections.
            pool = int(os.environ.get("BATON_DB_POOL", "5") or 5)
            # No pre-ping: it doubled the round trips of every transaction. A connection that
            # died meanwhile (server restart, idle timeout) fails its transaction with
            # DatabaseUnavailable instead, which callers already retry, and SQLAlchemy then
            # drops the pool's older connections. Recycling bounds a connection's age, so
            # proxies that close idle connections after some minutes rarely catch one.
            self._async_engine = create_async_engine(
                self.url,
                pool_size=pool,
                max_overflow=pool,
                pool_recycle=300,
                json_serializer=json_text.dumps,
            )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Session]:
        """Open a transaction; commit on success, roll back on error.

        Nothing read or written inside is visible to others, or acted on, until it commits.
        """
        if self._sync_conn is None and self._async_engine is None:
            raise DatabaseUnavailable("the database connection is closed")
        if self._sync_conn is not None:
            batch = await self._join()
            try:
                yield _SyncSession(self._sync_conn)
            except BaseException as exc:
                self._leave(batch, failed=True)
                if isinstance(exc, OperationalError) and _is_unavailable(exc):
                    raise DatabaseUnavailable(str(exc.orig)) from exc
                raise
            waiter = self._leave(batch, failed=False)
            # Nothing written inside is acted on before it is durable: wait for the COMMIT.
            # Each caller has its own future, so one cancelled caller cancels no one else.
            assert waiter is not None
            await waiter
        else:
            assert self._async_engine is not None
            try:
                async with self._async_engine.begin() as aconn:
                    yield _AsyncSession(aconn)
            except OperationalError as exc:
                if _is_unavailable(exc):
                    raise DatabaseUnavailable(str(exc.orig)) from exc
                raise

    # ---- SQLite: group commit -------------------------------------------------------------
    # Callers that open a transaction in the same event-loop turn share one SQLite
    # transaction and one COMMIT (the COMMIT is most of a small transaction's cost). The first
    # opens it with BEGIN IMMEDIATE and schedules the COMMIT for the next turn; each later one
    # runs inside a savepoint, so its failure undoes only its own writes. Every caller still
    # waits for the COMMIT before ``transaction`` returns: nothing is acted on before it is
    # durable. Under load more callers share a commit; a caller with nothing else ready to run
    # in the loop commits at once (see _leave).
    async def _join(self) -> _Batch:
        await self._lock.acquire()
        try:
            driver = self._driver()
            batch = self._batch
            if batch is None:
                # Another Database of this process (several engines in one test, say) holding
                # the file's write lock until its next turn would block BEGIN below, and with
                # it the loop that is to commit it: commit those first.
                for other in [o for o in _OPEN if o is not self and o._batch is not None]:
                    other._flush(other._batch)  # type: ignore[arg-type]
                _unavailable_as_such(_driver_sql, driver, "BEGIN IMMEDIATE")
                loop = asyncio.get_running_loop()
                batch = self._batch = _Batch(loop)
                _OPEN.add(self)
                batch.scheduled = loop.call_soon(self._flush, batch)
            else:
                _unavailable_as_such(_driver_sql, driver, "SAVEPOINT baton_member")
            batch.members += 1
            return batch
        except BaseException:
            self._lock.release()
            raise

    def _leave(self, batch: _Batch, *, failed: bool) -> asyncio.Future[None] | None:
        """End a caller's part of ``batch``; the future to wait on for its COMMIT (None when
        the caller failed: its writes are undone, the others' kept)."""
        try:
            if failed:
                try:
                    if batch.members == 1:
                        # The first caller, alone in it (later ones wait on the lock).
                        self._batch = None
                        _OPEN.discard(self)
                        self._rollback()
                    else:
                        _driver_sql(self._driver(), "ROLLBACK TO baton_member")
                        _driver_sql(self._driver(), "RELEASE baton_member")
                except Exception as exc:  # e.g. SQLite already rolled it all back
                    self._abandon(batch, exc)  # the caller's own error is the one raised
                return None
            if batch.members > 1:
                try:
                    _driver_sql(self._driver(), "RELEASE baton_member")
                except DBAPIError as exc:
                    self._abandon(batch, exc)
                    raise
            waiter: asyncio.Future[None] = batch.loop.create_future()
            batch.waiters.append(waiter)
            return waiter
        finally:
            self._lock.release()
            if batch.flush_wanted:
                batch.loop.call_soon(self._flush, batch)
            elif not failed and _nothing_else_ready(batch.loop):
                # No other callback runs before the scheduled COMMIT, so nobody else can join
                # this batch: commit now and spare the caller two loop turns (a chain of steps
                # commits this way; busy moments still share their COMMITs).
                self._flush(batch)

    def _flush(self, batch: _Batch) -> None:
        """COMMIT ``batch`` (scheduled when it opens) and release its callers."""
        if self._batch is not batch:
            return  # rolled back meanwhile
        if self._lock.locked():
            batch.flush_wanted = True  # a caller is inside: the last one out flushes
            return
        self._batch = None
        _OPEN.discard(self)
        if batch.scheduled is not None:
            batch.scheduled.cancel()  # when committed early (see _leave)
        try:
            conn = self._sync_conn
            assert conn is not None
            if conn.get_transaction() is not None:  # SQLAlchemy began too (a statement went
                conn.commit()  # through it): its COMMIT, so that it knows
            else:
                _driver_sql(self._driver(), "COMMIT")
        except Exception as exc:
            self._abandon(batch, exc)
            return
        for waiter in batch.waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _abandon(self, batch: _Batch, exc: BaseException) -> None:
        """Roll ``batch`` back and fail every caller waiting for its COMMIT."""
        if self._batch is batch:
            self._batch = None
            _OPEN.discard(self)
        try:
            self._rollback()
        except Exception:  # the error that matters is ``exc``
            pass
        error: BaseException = exc
        if isinstance(exc, OperationalError):
            error = DatabaseUnavailable(f"the transaction was lost: {exc.orig}")
        for waiter in batch.waiters:
            if not waiter.done():
                waiter.set_exception(error)
        batch.waiters.clear()

    def _rollback(self) -> None:
        conn = self._sync_conn
        if conn is None:
            return
        if conn.get_transaction() is not None:  # even one SQLAlchemy saw fail
            conn.rollback()
        if self._driver().in_transaction:
            _driver_sql(self._driver(), "ROLLBACK")

    def _driver(self) -> sqlite3.Connection:
        assert self._sync_conn is not None
        driver = self._sync_conn.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        return driver

    async def close(self) -> None:
        """Release every connection (committing what is already written)."""
        if self._batch is not None and not self._lock.locked():
            self._flush(self._batch)
        if self._sync_conn is not None:
            self._sync_conn.close()
            self._sync_conn = None
        if self._sync_engine is not None:
            self._sync_engine.dispose()
            self._sync_engine = None
        if self._async_engine is not None:
            await self._async_engine.dispose()
            self._async_engine = None


#: SQLite databases of this process with a transaction open (waiting for its COMMIT).
_OPEN: set[Database] = set()


@dataclass(eq=False)
class _Batch:
    """One SQLite transaction shared by the callers that open theirs in the same loop turn."""

    loop: asyncio.AbstractEventLoop
    members: int = 0
    #: One future per caller that finished its part: set when the COMMIT is done.
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    #: The COMMIT came due while a caller was inside: the caller runs it when it leaves.
    flush_wanted: bool = False
    #: The COMMIT scheduled for the next loop turn.
    scheduled: asyncio.Handle | None = None


def _nothing_else_ready(loop: asyncio.AbstractEventLoop) -> bool:
    """True if at most one callback (the batch's own COMMIT) waits to run in this loop turn.

    Reads CPython's ``BaseEventLoop._ready`` queue; on a loop without it (uvloop) the answer
    is False and every COMMIT waits for its turn, which is only slower.
    """
    ready = getattr(loop, "_ready", None)
    return ready is not None and len(ready) <= 1


def _driver_sql(driver: Any, sql: str) -> None:
    """One transaction-control statement straight to sqlite3, errors as SQLAlchemy raises them
    (``OperationalError`` for a locked or missing file, ``IntegrityError`` for a deferred
    constraint that fails at COMMIT, ...)."""
    try:
        driver.execute(sql)
    except sqlite3.Error as exc:
        raise DBAPIError.instance(sql, None, exc, sqlite3.Error) from exc


def _unavailable_as_such(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except OperationalError as exc:
        if _is_unavailable(exc):
            raise DatabaseUnavailable(str(exc.orig)) from exc
        raise


def _is_unavailable(exc: OperationalError) -> bool:
    text = str(exc.orig).lower()
    return any(
        marker in text
        for marker in (
            "database is locked",
            "unable to open",
            "connection refused",
            "could not connect",
            "server closed the connection",
            "terminating connection",
            "connection is closed",
            "the database system is",
        )
    )
