"""Recurring goals."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, select

from storage.database import Session
from storage.models import SCHEDULES, Schedule


async def insert(session: Session, *, values: dict[str, Any]) -> None:
    """Add a schedule."""
    await session.execute(SCHEDULES.insert().values(**values))


async def get(session: Session, *, schedule_id: str) -> Schedule | None:
    """One schedule, or None."""
    row = (
        (await session.execute(select(SCHEDULES).where(SCHEDULES.c.id == schedule_id)))
        .mappings()
        .first()
    )
    return Schedule.model_validate(dict(row)) if row is not None else None


async def list_active(session: Session, *, requester: str | None = None) -> list[Schedule]:
    """Active schedules, soonest next firing first."""
    cond = SCHEDULES.c.status == "active"
    if requester is not None:
        cond = and_(cond, SCHEDULES.c.requester == requester)
    stmt = select(SCHEDULES).where(cond).order_by(SCHEDULES.c.next_fire_at)
    return [Schedule.model_validate(dict(r)) for r in (await session.execute(stmt)).mappings()]


async def update(session: Session, *, schedule_id: str, values: dict[str, Any]) -> None:
    """Set columns of a schedule."""
    await session.execute(SCHEDULES.update().where(SCHEDULES.c.id == schedule_id).values(**values))
