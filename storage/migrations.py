"""Schema migrations, applied in order on start, each recorded in ``schema_version``.

Rules for the next engineer: never edit a released migration; append a new one. A migration
is a function of a synchronous SQLAlchemy ``Connection`` and must be safe to run on a database
created by any earlier version (check before you alter). Replicas starting together are
serialised by ``BEGIN IMMEDIATE`` on SQLite and an advisory lock on PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import JSON, Column, Connection, Float, String, inspect, select, text
from sqlmodel import SQLModel

from storage.models import (
    APPROVALS,
    AUDIT_LOG,
    DUE_ITEMS,
    HANDOFFS,
    RUNS,
    SCHEDULES,
    SCHEMA_VERSION,
    SLACK_EVENTS,
    SLACK_MESSAGES,
    STEPS,
    TOOL_CALLS,
)

if TYPE_CHECKING:
    from storage.database import Database

Migration = Callable[[Connection], None]

# An arbitrary constant that names "Baton migrations" among PostgreSQL advisory locks.
_PG_LOCK_KEY = 0x0BA7_0001


def _v1_core_tables(conn: Connection) -> None:
    tables = [RUNS, STEPS, TOOL_CALLS, APPROVALS, HANDOFFS, AUDIT_LOG]
    SQLModel.metadata.create_all(conn, tables=tables, checkfirst=True)


def _v2_slack_tables(conn: Connection) -> None:
    SQLModel.metadata.create_all(conn, tables=[SLACK_EVENTS, SLACK_MESSAGES], checkfirst=True)


def _add_column(conn: Connection, table: str, column: Column[object]) -> None:
    existing = {c["name"] for c in inspect(conn).get_columns(table)}
    if column.name not in existing:
        ddl = column.type.compile(dialect=conn.dialect)
        conn.execute(text(f'ALTER TABLE {table} ADD COLUMN "{column.name}" {ddl}'))


def _v3_due_work(conn: Connection) -> None:
    SQLModel.metadata.create_all(conn, tables=[DUE_ITEMS, SCHEDULES], checkfirst=True)
    _add_column(conn, "steps", Column("not_before", Float()))
    _add_column(conn, "steps", Column("schedule", JSON()))


def _v4_spend_by_day(conn: Connection) -> None:
    _add_column(conn, "runs", Column("team_id", String(32)))
    for index in RUNS.indexes:
        if index.name in ("ix_runs_requester_updated", "ix_runs_team_updated"):
            index.create(conn, checkfirst=True)


MIGRATIONS: list[tuple[int, str, Migration]] = [
    (1, "core tables: runs, steps, tool calls, approvals, handoffs, audit log", _v1_core_tables),
    (2, "slack: delivered events (dedupe), posted messages", _v2_slack_tables),
    (3, "due work and schedules; follow-up steps (steps.not_before, steps.schedule)", _v3_due_work),
    (4, "budgets per day: runs.team_id; runs by requester and by workspace", _v4_spend_by_day),
]


def _apply(conn: Connection) -> list[int]:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    SQLModel.metadata.create_all(conn, tables=[SCHEMA_VERSION], checkfirst=True)
    table = SCHEMA_VERSION
    done = set(conn.execute(select(table.c.version)).scalars())
    applied = []
    for version, name, migration in MIGRATIONS:
        if version in done:
            continue
        migration(conn)
        conn.execute(table.insert().values(version=version, name=name, applied_at=time.time()))
        applied.append(version)
    return applied


async def migrate(db: Database) -> list[int]:
    """Bring the schema up to date; returns the versions applied now."""
    if db._sync_conn is not None:
        async with db._lock:
            with db._sync_conn.begin():
                return _apply(db._sync_conn)
    assert db._async_engine is not None
    async with db._async_engine.begin() as aconn:
        return await aconn.run_sync(_apply)


def current_version(conn: Connection) -> int:
    """The highest applied migration (0 for an empty database)."""
    if not inspect(conn).has_table("schema_version"):
        return 0
    table = SCHEMA_VERSION
    versions = list(conn.execute(select(table.c.version)).scalars())
    return max(versions, default=0)


LATEST_VERSION = MIGRATIONS[-1][0]
