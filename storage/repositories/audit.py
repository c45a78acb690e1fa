"""The audit log: append-only."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

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
