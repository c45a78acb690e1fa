"""Steps of a run: the plan's units of work and what each produced."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import JSON, RowMapping, and_, bindparam, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable

from storage import json_text
from storage.database import Session
from storage.models import STEPS, Step

#: A prebuilt statement compiled for SQLite: the compiled form (kept so that the statement's
#: id() stays taken), its SQL, the values it carries itself (literals such as ``+ 1``), and
#: its parameters in order, each with SQLAlchemy's own conversion for the driver (e.g. JSON).
_Plan = tuple[Any, str, dict[str, Any], list[tuple[str, Callable[[Any], Any] | None]]]
_PLANS: dict[tuple[int, tuple[str, ...]], _Plan | None] = {}  # None: SQLAlchemy's path


async def write(session: Session, statement: Executable, params: Any) -> int:
    """Execute a prebuilt write (``params``: one dict, or a list for an executemany) inside
    the session's transaction; returns the number of rows it touched.

    On SQLite the statement goes straight to the driver, compiled once per set of parameter
    names: SQLAlchemy's execution path (result objects, events, cache-key work) cost several
    times the statement itself on the engine's hot path. Same SQL, same conversions, same
    transaction; errors are raised as SQLAlchemy would raise them. PostgreSQL: as usual.
    """
    got = await _direct(session, statement, params)
    if got is None:
        return int((await session.execute(statement, params)).rowcount)  # type: ignore[attr-defined]
    return int(got.rowcount)


async def fetch(session: Session, statement: Executable, params: dict[str, Any]) -> list[Any]:
    """Rows of a prebuilt query (or a write with RETURNING), as :func:`write` runs it.

    The values are the driver's own: use it for text and number columns only.
    """
    got = await _direct(session, statement, params)
    if got is None:
        return list(await session.execute(statement, params))
    return list(got.fetchall())


def _processor(compiled: Any, name: str, procs: dict[str, Any]) -> Callable[[Any], Any] | None:
    # JSON values go to the same encoder SQLAlchemy's JSON type would call, minus its wrapper.
    bind = compiled.binds.get(name)
    if bind is not None and isinstance(bind.type, JSON) and name in procs:
        return json_text.dumps
    return procs.get(name)


async def _direct(session: Session, statement: Executable, params: Any) -> Any:
    """The driver's cursor after running ``statement`` on SQLite; None: not taken this way."""
    if session.dialect != "sqlite":
        return None
    rows = params if isinstance(params, list) else [params]
    if not rows:
        return None
    conn = session.connection  # type: ignore[attr-defined]
    key = (id(statement), tuple(rows[0]))
    if key not in _PLANS:
        compiled: Any = statement.compile(dialect=conn.dialect, column_keys=list(rows[0]))  # type: ignore[attr-defined]
        # Python-side column defaults, expanding IN lists: SQLAlchemy's path is needed.
        special = compiled.insert_prefetch or compiled.update_prefetch
        if compiled.positiontup is None or compiled.post_compile_params or special:
            _PLANS[key] = None
        else:
            procs = compiled._bind_processors
            given = compiled.construct_params(rows[0])  # raises if a value is missing
            fixed = {n: v for n, v in given.items() if n not in rows[0]}
            spec = [(n, _processor(compiled, n, procs)) for n in compiled.positiontup]
            _PLANS[key] = (compiled, compiled.string, fixed, spec)
    plan = _PLANS[key]
    if plan is None:
        return None
    _, sql, fixed, spec = plan
    args = []
    for row in rows:
        values = {**fixed, **row} if fixed else row
        args.append(tuple([f(values[n]) if f else values[n] for n, f in spec]))
    driver = conn.connection.driver_connection
    try:
        if len(args) == 1:
            return driver.execute(sql, args[0])
        return driver.executemany(sql, args)
    except sqlite3.Error as exc:
        raise DBAPIError.instance(sql, args, exc, sqlite3.Error) from exc


# Statements on the engine's hot path are built once; values travel as bound parameters, so
# SQLAlchemy's compiled cache is hit every time (building a statement costs more than running
# it on SQLite).
_BY_KEY = and_(STEPS.c.run_id == bindparam("k_run"), STEPS.c.step_id == bindparam("k_step"))
_UPDATE = STEPS.update().where(_BY_KEY)
_INSERT = STEPS.insert()
_ADD_USAGE = _UPDATE.values(
    model_calls=STEPS.c.model_calls + 1,
    tokens_in=STEPS.c.tokens_in + bindparam("d_in"),
    tokens_out=STEPS.c.tokens_out + bindparam("d_out"),
    cost_usd=STEPS.c.cost_usd + bindparam("d_cost"),
)


async def insert_steps(session: Session, *, rows: list[dict[str, Any]]) -> None:
    """Insert the steps of a plan (one executemany)."""
    if rows:
        await write(session, _INSERT, rows)


_OF_RUN = select(STEPS).where(STEPS.c.run_id == bindparam("k_run")).order_by(STEPS.c.position)


async def get_step_rows(session: Session, *, run_id: str) -> Sequence[RowMapping]:
    """All steps of a run in plan order, as plain column mappings (no row objects built)."""
    return (await session.execute(_OF_RUN, {"k_run": run_id})).mappings().all()


async def get_steps(session: Session, *, run_id: str) -> list[Step]:
    """All steps of a run in plan order."""
    stmt = select(STEPS).where(STEPS.c.run_id == run_id).order_by(STEPS.c.position)
    return [Step.model_validate(dict(r)) for r in (await session.execute(stmt)).mappings()]


async def get_step(session: Session, *, run_id: str, step_id: str) -> Step | None:
    """One step, or None."""
    stmt = select(STEPS).where(and_(STEPS.c.run_id == run_id, STEPS.c.step_id == step_id))
    row = (await session.execute(stmt)).mappings().first()
    return Step.model_validate(dict(row)) if row is not None else None


async def update_step(
    session: Session, *, run_id: str, step_id: str, values: dict[str, Any]
) -> None:
    """Set columns of one step."""
    await write(session, _UPDATE, {"k_run": run_id, "k_step": step_id, **values})


async def add_usage(
    session: Session,
    *,
    run_id: str,
    step_id: str,
    tokens_in: int,
    tokens_out: int,
    cost_usd: float,
    values: dict[str, Any] | None = None,
) -> None:
    """Add one model call's usage to a step, setting ``values`` in the same statement."""
    params = {"k_run": run_id, "k_step": step_id, "d_in": tokens_in, "d_out": tokens_out}
    await write(session, _ADD_USAGE, {**params, "d_cost": cost_usd, **(values or {})})


async def set_status_if(
    session: Session, *, run_id: str, step_id: str, expected: list[str], values: dict[str, Any]
) -> bool:
    """Compare-and-set on a step's status."""
    stmt = (
        STEPS.update()
        .where(
            and_(
                STEPS.c.run_id == run_id,
                STEPS.c.step_id == step_id,
                STEPS.c.status.in_(expected),
            )
        )
        .values(**values)
    )
    return (await session.execute(stmt)).rowcount == 1  # type: ignore[attr-defined,no-any-return]
