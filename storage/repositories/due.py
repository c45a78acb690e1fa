"""Due work: rows that fall due at a time, claimed with a lease and a fence number.

Claiming is a storage guarantee, not a policy: on PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets
replicas take disjoint rows; on SQLite the claim runs inside ``BEGIN IMMEDIATE`` (every Baton
transaction on SQLite is), so two processes on one file take turns. Completing or failing a
claim checks the fence: a process whose lease expired (and whose row was re-claimed) cannot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, func, or_, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from storage.database import Session
from storage.models import DUE_ITEMS, DueItem


async def add(
    session: Session,
    *,
    kind: str,
    ref_id: str,
    due_at: float,
    now: float,
    run_id: str | None = None,
    payload: dict[str, Any] | None = None,
) -> bool:
    """Schedule one item; False if the same (kind, ref, time) exists (restarts add nothing)."""
    insert = postgresql.insert if session.dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(DUE_ITEMS)
        .values(
            kind=kind,
            ref_id=ref_id,
            due_at=due_at,
            status="pending",
            run_id=run_id,
            payload=payload,
            fence=0,
            attempts=0,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["kind", "ref_id", "due_at"])
        .returning(DUE_ITEMS.c.id)
    )
    return (await session.execute(stmt)).first() is not None


async def add_many(session: Session, *, items: Sequence[dict[str, Any]], now: float) -> int:
    """Schedule many items in one statement, each a dict of ``add``'s keyword arguments
    (``kind``, ``ref_id``, ``due_at``; optional ``run_id``, ``payload``); returns how many
    were new (the same kind, ref and time is added once)."""
    if not items:
        return 0
    insert = postgresql.insert if session.dialect == "postgresql" else sqlite.insert
    rows = [
        {
            "kind": i["kind"],
            "ref_id": i["ref_id"],
            "due_at": i["due_at"],
            "status": "pending",
            "run_id": i.get("run_id"),
            "payload": i.get("payload"),
            "fence": 0,
            "attempts": 0,
            "created_at": now,
        }
        for i in items
    ]
    stmt = (
        insert(DUE_ITEMS)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["kind", "ref_id", "due_at"])
        .returning(DUE_ITEMS.c.id)
    )
    return len((await session.execute(stmt)).all())


def _claimable(now: float) -> Any:
    return or_(
        and_(DUE_ITEMS.c.status == "pending", DUE_ITEMS.c.due_at <= now),
        and_(DUE_ITEMS.c.status == "claimed", DUE_ITEMS.c.lease_until < now),
    )


async def claim(
    session: Session, *, now: float, owner: str, lease_s: float, limit: int = 100
) -> list[DueItem]:
    """Take up to ``limit`` due rows (oldest first) for ``owner``; each gets a new fence."""
    pick = select(DUE_ITEMS.c.id).where(_claimable(now)).order_by(DUE_ITEMS.c.due_at).limit(limit)
    if session.dialect == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    ids = list((await session.execute(pick)).scalars())
    if not ids:
        return []
    stmt = (
        DUE_ITEMS.update()
        .where(and_(DUE_ITEMS.c.id.in_(ids), _claimable(now)))
        .values(
            status="claimed",
            owner=owner,
            lease_until=now + lease_s,
            fence=DUE_ITEMS.c.fence + 1,
            attempts=DUE_ITEMS.c.attempts + 1,
        )
        .returning(*DUE_ITEMS.c)
    )
    rows = (await session.execute(stmt)).mappings().all()
    return sorted((DueItem.model_validate(dict(r)) for r in rows), key=lambda d: d.due_at)


async def holds(session: Session, *, item_id: int, owner: str, fence: int) -> bool:
    """Whether ``owner`` still holds the claim with ``fence`` (check right before acting)."""
    stmt = select(DUE_ITEMS.c.id).where(
        and_(
            DUE_ITEMS.c.id == item_id,
            DUE_ITEMS.c.owner == owner,
            DUE_ITEMS.c.fence == fence,
            DUE_ITEMS.c.status == "claimed",
        )
    )
    return (await session.execute(stmt)).first() is not None


async def finish(
    session: Session,
    *,
    item_id: int,
    owner: str,
    fence: int,
    status: str,
    now: float,
    error: str | None = None,
) -> bool:
    """Complete a claim (done, missed, cancelled); False if the fence moved on."""
    stmt = (
        DUE_ITEMS.update()
        .where(
            and_(
                DUE_ITEMS.c.id == item_id,
                DUE_ITEMS.c.owner == owner,
                DUE_ITEMS.c.fence == fence,
                DUE_ITEMS.c.status == "claimed",
            )
        )
        .values(status=status, done_at=now, last_error=error, owner=None, lease_until=None)
    )
    return (await session.execute(stmt)).rowcount == 1  # type: ignore[attr-defined,no-any-return]


async def finish_many(
    session: Session,
    *,
    owner: str,
    held: Sequence[tuple[int, int]],
    status: str,
    now: float,
    error: str | None = None,
) -> set[int]:
    """Complete many claims of ``owner`` at once, given as (item id, fence) pairs; returns
    the ids completed (a pair whose fence moved on is left alone)."""
    if not held:
        return set()
    stmt = (
        DUE_ITEMS.update()
        .where(
            and_(
                tuple_(DUE_ITEMS.c.id, DUE_ITEMS.c.fence).in_([tuple(h) for h in held]),
                DUE_ITEMS.c.owner == owner,
                DUE_ITEMS.c.status == "claimed",
            )
        )
        .values(status=status, done_at=now, last_error=error, owner=None, lease_until=None)
        .returning(DUE_ITEMS.c.id)
    )
    return {int(i) for i in (await session.execute(stmt)).scalars()}


async def release(
    session: Session, *, item_id: int, owner: str, fence: int, retry_at: float, error: str
) -> None:
    """Give a claim back to be tried again at ``retry_at`` (a transient failure)."""
    await session.execute(
        DUE_ITEMS.update()
        .where(
            and_(DUE_ITEMS.c.id == item_id, DUE_ITEMS.c.owner == owner, DUE_ITEMS.c.fence == fence)
        )
        .values(status="pending", due_at=retry_at, owner=None, lease_until=None, last_error=error)
    )


async def cancel(
    session: Session,
    *,
    kind: str | None = None,
    ref_id: str | None = None,
    run_id: str | None = None,
) -> None:
    """Cancel pending items by kind/ref or by run (an approval was decided, a run ended)."""
    cond = DUE_ITEMS.c.status == "pending"
    if kind is not None:
        cond = and_(cond, DUE_ITEMS.c.kind == kind)
    if ref_id is not None:
        cond = and_(cond, DUE_ITEMS.c.ref_id == ref_id)
    if run_id is not None:
        cond = and_(cond, DUE_ITEMS.c.run_id == run_id)
    await session.execute(DUE_ITEMS.update().where(cond).values(status="cancelled"))


async def next_due_at(session: Session) -> float | None:
    """When the next pending item falls due (or a claim's lease runs out), if any."""
    pending = select(func.min(DUE_ITEMS.c.due_at)).where(DUE_ITEMS.c.status == "pending")
    leased = select(func.min(DUE_ITEMS.c.lease_until)).where(DUE_ITEMS.c.status == "claimed")
    a = (await session.execute(pending)).scalar()
    b = (await session.execute(leased)).scalar()
    times = [float(t) for t in (a, b) if t is not None]
    return min(times) if times else None


async def list_items(
    session: Session,
    *,
    statuses: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    run_id: str | None = None,
    limit: int = 1000,
) -> list[DueItem]:
    """Items, soonest first."""
    stmt = select(DUE_ITEMS).order_by(DUE_ITEMS.c.due_at).limit(limit)
    if statuses:
        stmt = stmt.where(DUE_ITEMS.c.status.in_(list(statuses)))
    if kinds:
        stmt = stmt.where(DUE_ITEMS.c.kind.in_(list(kinds)))
    if run_id is not None:
        stmt = stmt.where(DUE_ITEMS.c.run_id == run_id)
    return [DueItem.model_validate(dict(r)) for r in (await session.execute(stmt)).mappings()]
