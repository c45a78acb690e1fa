"""The audit log: append-only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select

from storage.database import Session
from storage.models import AUDIT_LOG, AuditEntry


async def append(
    session: Session,
    *,
    at: float,
    actor: str,
    action: str,
    run_id: str | None = None,
    subject: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add one entry."""
    await session.execute(
        AUDIT_LOG.insert().values(
            at=at, actor=actor, action=action, run_id=run_id, subject=subject, detail=detail
        )
    )


async def list_entries(
    session: Session, *, run_id: str | None = None, limit: int = 200
) -> list[AuditEntry]:
    """Entries, oldest first."""
    stmt = select(AUDIT_LOG).order_by(AUDIT_LOG.c.id).limit(limit)
    if run_id is not None:
        stmt = stmt.where(AUDIT_LOG.c.run_id == run_id)
    return [AuditEntry.model_validate(dict(r)) for r in (await session.execute(stmt)).mappings()]


async def list_for_run(
    session: Session, *, run_id: str, actions: Sequence[str] | None = None, limit: int = 1_000
) -> list[AuditEntry]:
    """A run's entries (only those whose action is in ``actions``, when given), oldest first."""
    stmt = select(AUDIT_LOG).where(AUDIT_LOG.c.run_id == run_id)
    if actions is not None:
        stmt = stmt.where(AUDIT_LOG.c.action.in_(list(actions)))
    stmt = stmt.order_by(AUDIT_LOG.c.id).limit(limit)
    return [AuditEntry.model_validate(dict(r)) for r in (await session.execute(stmt)).mappings()]


async def count_by_run(session: Session, *, run_ids: Sequence[str], action: str) -> dict[str, int]:
    """How many entries with ``action`` each of ``run_ids`` has (runs with none are left out)."""
    if not run_ids:
        return {}
    stmt = (
        select(AUDIT_LOG.c.run_id, func.count())
        .where(AUDIT_LOG.c.run_id.in_(list(run_ids)), AUDIT_LOG.c.action == action)
        .group_by(AUDIT_LOG.c.run_id)
    )
    rows: list[Any] = list((await session.execute(stmt)).all())
    return {str(row[0]): int(row[1]) for row in rows}
