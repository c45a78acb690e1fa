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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import Result
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql import Executable

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
            engine = create_engine(self.url)

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
                # Straight to the driver: through exec_driver_sql this one statement cost more
                # than the transaction's own work. Errors are wrapped as SQLAlchemy would.
                try:
                    conn.connection.driver_connection.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
                except sqlite3.Error as exc:
                    raise OperationalError("BEGIN IMMEDIATE", None, exc) from exc

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
                self.url, pool_size=pool, max_overflow=pool, pool_recycle=300
            )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Session]:
        """Open a transaction; commit on success, roll back on error.

        Nothing read or written inside is visible to others, or acted on, until it commits.
        """
        if self._sync_conn is None and self._async_engine is None:
            raise DatabaseUnavailable("the database connection is closed")
        if self._sync_conn is not None:
            async with self._lock:
                conn = self._sync_conn
                try:
                    with conn.begin():
                        yield _SyncSession(conn)
                except OperationalError as exc:
                    if _is_unavailable(exc):
                        raise DatabaseUnavailable(str(exc.orig)) from exc
                    raise
        else:
            assert self._async_engine is not None
            try:
                async with self._async_engine.begin() as aconn:
                    yield _AsyncSession(aconn)
            except OperationalError as exc:
                if _is_unavailable(exc):
                    raise DatabaseUnavailable(str(exc.orig)) from exc
                raise

    async def close(self) -> None:
        """Release every connection."""
        if self._sync_conn is not None:
            self._sync_conn.close()
            self._sync_conn = None
        if self._sync_engine is not None:
            self._sync_engine.dispose()
            self._sync_engine = None
        if self._async_engine is not None:
            await self._async_engine.dispose()
            self._async_engine = None


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
