"""Handoffs: steps handed to a person or another agent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, select

from storage.database import Session
from storage.models import HANDOFFS, Handoff


async def insert(session: Session, *, values: dict[str, Any]) -> None:
    """Record a handoff."""
    await session.execute(HANDOFFS.insert().values(**values))


async def get(session: Session, *, handoff_id: str) -> Handoff | None:
    """One handoff by id, or None."""
    stmt = select(HANDOFFS).where(HANDOFFS.c.id == handoff_id)
    row = (await session.execute(stmt)).mappings().first()
    return Handoff.model_validate(dict(row)) if row is not None else None


async def list_handoffs(
    session: Session,
    *,
    run_id: str | None = None,
    step_id: str | None = None,
    statuses: Sequence[str] | None = None,
    limit: int = 100,
) -> list[Handoff]:
    """Handoffs filtered by run, step and status, oldest first."""
    stmt = select(HANDOFFS).order_by(HANDOFFS.c.created_at).limit(limit)
    if run_id is not None:
        stmt = stmt.where(HANDOFFS.c.run_id == run_id)
    if step_id is not None:
        stmt = stmt.where(HANDOFFS.c.step_id == step_id)
    if statuses:
        stmt = stmt.where(HANDOFFS.c.status.in_(list(statuses)))
    return [Handoff.model_validate(dict(r)) for r in (await session.execute(stmt)).mappings()]


async def close_if(
    session: Session, *, handoff_id: str, expected: str, values: dict[str, Any]
) -> bool:
    """Compare-and-set on status: one answer wins."""
    stmt = (
        HANDOFFS.update()
        .where(and_(HANDOFFS.c.id == handoff_id, HANDOFFS.c.status == expected))
        .values(**values)
    )
    return (await session.execute(stmt)).rowcount == 1  # type: ignore[attr-defined,no-any-return]
