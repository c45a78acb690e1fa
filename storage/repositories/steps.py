"""Steps of a run: the plan's units of work and what each produced."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, bindparam, select

from storage.database import Session
from storage.models import STEPS, Step

# Statements on the engine's hot path are built once; values travel as bound parameters, so
# SQLAlchemy's compiled cache is hit every time (building a statement costs more than running
# it on SQLite).
_BY_KEY = and_(STEPS.c.run_id == bindparam("k_run"), STEPS.c.step_id == bindparam("k_step"))
_UPDATE = STEPS.update().where(_BY_KEY)
_ADD_USAGE = _UPDATE.values(
    model_calls=STEPS.c.model_calls + 1,
    tokens_in=STEPS.c.tokens_in + bindparam("d_in"),
    tokens_out=STEPS.c.tokens_out + bindparam("d_out"),
    cost_usd=STEPS.c.cost_usd + bindparam("d_cost"),
)


async def insert_steps(session: Session, *, rows: list[dict[str, Any]]) -> None:
    """Insert the steps of a plan (one executemany)."""
    if rows:
        await session.execute(STEPS.insert(), rows)


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
    await session.execute(_UPDATE, {"k_run": run_id, "k_step": step_id, **values})


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
    await session.execute(_ADD_USAGE, {**params, "d_cost": cost_usd, **(values or {})})


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
