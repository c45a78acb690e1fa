"""Approvals: pending human checkpoints and the single decision on each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, select

from storage.database import Session
from storage.models import APPROVALS, Approval


async def insert(session: Session, *, values: dict[str, Any]) -> None:
    """Record a new pending approval."""
    await session.execute(APPROVALS.insert().values(**values))


async def get(session: Session, *, approval_id: str) -> Approval | None:
    """One approval by id, or None."""
    stmt = select(APPROVALS).where(APPROVALS.c.id == approval_id)
    row = (await session.execute(stmt)).mappings().first()
    return Approval.model_validate(dict(row)) if row is not None else None


async def find_for_step(
    session: Session, *, run_id: str, step_id: str, kind: str, tool_call_key: str | None
) -> list[Approval]:
    """Approvals of one step and kind (and call), oldest first."""
    cond = and_(
        APPROVALS.c.run_id == run_id,
        APPROVALS.c.step_id == step_id,
        APPROVALS.c.kind == kind,
    )
    if tool_call_key is not None:
        cond = and_(cond, APPROVALS.c.tool_call_key == tool_call_key)
    stmt = select(APPROVALS).where(cond).order_by(APPROVALS.c.created_at)
    return [Approval.model_validate(dict(r)) for r in (await session.execute(stmt)).mappings()]


async def list_approvals(
    session: Session,
    *,
    run_id: str | None = None,
    statuses: Sequence[str] | None = None,
    limit: int = 100,
) -> list[Approval]:
    """Approvals filtered by run and status, oldest first."""
    stmt = select(APPROVALS).order_by(APPROVALS.c.created_at).limit(limit)
    if run_id is not None:
        stmt = stmt.where(APPROVALS.c.run_id == run_id)
    if statuses:
        stmt = stmt.where(APPROVALS.c.status.in_(list(statuses)))
    return [Approval.model_validate(dict(r)) for r in (await session.execute(stmt)).mappings()]


async def decide(
    session: Session,
    *,
    approval_id: str,
    digest: str,
    values: dict[str, Any],
) -> bool:
    """Compare-and-set: decide a pending approval whose action still has ``digest``.

    Returns False when someone else decided first or the action changed.
    """
    stmt = (
        APPROVALS.update()
        .where(
            and_(
                APPROVALS.c.id == approval_id,
                APPROVALS.c.status == "pending",
                APPROVALS.c.digest == digest,
            )
        )
        .values(**values)
    )
    return (await session.execute(stmt)).rowcount == 1  # type: ignore[attr-defined,no-any-return]


async def consume(session: Session, *, approval_id: str, now: float) -> bool:
    """Mark an approved action as used; single use, so a second consume returns False."""
    stmt = (
        APPROVALS.update()
        .where(and_(APPROVALS.c.id == approval_id, APPROVALS.c.consumed_at.is_(None)))
        .values(consumed_at=now)
    )
    return (await session.execute(stmt)).rowcount == 1  # type: ignore[attr-defined,no-any-return]
