"""Runs: create, read, update, and the lease that says which process drives a run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select

from storage.database import Session
from storage.models import RUNS, Run
from storage.repositories.steps import fetch, write

ACTIVE_STATUSES = ("planning", "running")
UNFINISHED_STATUSES = (*ACTIVE_STATUSES, "waiting")
OPEN_STATUSES = ("planning", "running", "waiting")


# Prebuilt hot-path statements (see storage.repositories.steps).
_UPDATE = RUNS.update().where(RUNS.c.id == bindparam("k_run"))
_ADD_USAGE = _UPDATE.values(
    model_calls=RUNS.c.model_calls + bindparam("d_calls"),
    tokens_in=RUNS.c.tokens_in + bindparam("d_in"),
    tokens_out=RUNS.c.tokens_out + bindparam("d_out"),
    cost_usd=RUNS.c.cost_usd + bindparam("d_cost"),
)
_INSERT = RUNS.insert()
_GET = select(RUNS).where(RUNS.c.id == bindparam("k_run"))
_TOTALS = select(
    RUNS.c.model_calls, RUNS.c.tokens_in, RUNS.c.tokens_out, RUNS.c.cost_usd, RUNS.c.created_at
).where(RUNS.c.id == bindparam("k_run"))
_CLAIM = _UPDATE.where(
    or_(
        RUNS.c.owner.is_(None),
        RUNS.c.owner == bindparam("k_owner"),
        RUNS.c.lease_until < bindparam("k_now"),
    )
).values(owner=bindparam("k_owner"), lease_until=bindparam("d_lease"))
_RELEASE = _UPDATE.where(RUNS.c.owner == bindparam("k_owner")).values(owner=None, lease_until=None)


async def create_run(session: Session, *, values: dict[str, Any]) -> None:
    """Insert a new run row."""
    await write(session, _INSERT, values)


async def get_run(session: Session, *, run_id: str) -> Run | None:
    """One run by id, or None."""
    row = (await session.execute(_GET, {"k_run": run_id})).mappings().first()
    return Run.model_validate(dict(row)) if row is not None else None


async def totals(session: Session, *, run_id: str) -> tuple[int, int, float, float] | None:
    """A run's usage so far and when it was created: ``(model_calls, tokens, cost_usd,
    created_at)``, or None if there is no such run."""
    found = await fetch(session, _TOTALS, {"k_run": run_id})
    if not found:
        return None
    row = found[0]
    return int(row[0]), int(row[1]) + int(row[2]), float(row[3]), float(row[4])


async def find_run_ids(session: Session, *, prefix: str, limit: int = 5) -> list[str]:
    """Run ids starting with ``prefix`` (people type short ids)."""
    stmt = select(RUNS.c.id).where(RUNS.c.id.startswith(prefix, autoescape=True)).limit(limit)
    return list((await session.execute(stmt)).scalars())


async def list_runs(
    session: Session,
    *,
    limit: int = 20,
    statuses: Sequence[str] | None = None,
    requester: str | None = None,
) -> list[Run]:
    """Most recent runs first."""
    stmt = select(RUNS).order_by(RUNS.c.created_at.desc()).limit(limit)
    if statuses:
        stmt = stmt.where(RUNS.c.status.in_(list(statuses)))
    if requester:
        stmt = stmt.where(RUNS.c.requester == requester)
    return [Run.model_validate(dict(r)) for r in (await session.execute(stmt)).mappings()]


async def update_run(session: Session, *, run_id: str, values: dict[str, Any]) -> None:
    """Set columns of one run."""
    await write(session, _UPDATE, {"k_run": run_id, **values})


async def set_status_if(
    session: Session, *, run_id: str, expected: Sequence[str], values: dict[str, Any]
) -> bool:
    """Compare-and-set on status: update only while the run is in one of ``expected``."""
    stmt = (
        RUNS.update()
        .where(and_(RUNS.c.id == run_id, RUNS.c.status.in_(list(expected))))
        .values(**values)
    )
    return (await session.execute(stmt)).rowcount == 1  # type: ignore[attr-defined,no-any-return]


async def add_usage(
    session: Session,
    *,
    run_id: str,
    model_calls: int,
    tokens_in: int,
    tokens_out: int,
    cost_usd: float,
) -> None:
    """Add one model call's usage to the run's totals.

    ``updated_at`` is left alone: it moves with the run's status. Bumping it here too made
    every step's commit rewrite two index entries (see :func:`spent_since`).
    """
    await write(
        session,
        _ADD_USAGE,
        {
            "k_run": run_id,
            "d_calls": model_calls,
            "d_in": tokens_in,
            "d_out": tokens_out,
            "d_cost": cost_usd,
        },
    )


async def claim(
    session: Session,
    *,
    run_id: str,
    owner: str,
    now: float,
    lease_seconds: float,
    stale_owners: Sequence[str] = (),
) -> bool:
    """Take (or renew) the lease on a run.

    Succeeds when nobody holds it, we hold it, it has expired, or its holder is one of
    ``stale_owners`` (processes known to be dead).
    """
    if not stale_owners:
        params = {"k_run": run_id, "k_owner": owner, "k_now": now, "d_lease": now + lease_seconds}
        return await write(session, _CLAIM, params) == 1
    conditions = [RUNS.c.owner.is_(None), RUNS.c.owner == owner, RUNS.c.lease_until < now]
    if stale_owners:
        conditions.append(RUNS.c.owner.in_(list(stale_owners)))
    free = or_(*conditions)
    stmt = (
        RUNS.update()
        .where(and_(RUNS.c.id == run_id, free))
        .values(owner=owner, lease_until=now + lease_seconds)
    )
    return (await session.execute(stmt)).rowcount == 1  # type: ignore[attr-defined,no-any-return]


async def release(session: Session, *, run_id: str, owner: str) -> None:
    """Give up our lease, if we still hold it."""
    await write(session, _RELEASE, {"k_run": run_id, "k_owner": owner})


async def list_claimable(
    session: Session, *, now: float, limit: int = 100
) -> list[tuple[str, str | None]]:
    """Runs that should be moving but nobody is driving: ``(run_id, owner)`` pairs."""
    stmt = (
        select(RUNS.c.id, RUNS.c.owner)
        .where(
            and_(
                RUNS.c.status.in_(ACTIVE_STATUSES),
                or_(RUNS.c.owner.is_(None), RUNS.c.lease_until < now),
            )
        )
        .order_by(RUNS.c.created_at)
        .limit(limit)
    )
    return [(str(r.id), r.owner) for r in (await session.execute(stmt)).all()]


async def list_owned_by_others(session: Session, *, owner_prefix: str) -> list[tuple[str, str]]:
    """Active runs held by other processes whose owner id starts with ``owner_prefix``."""
    stmt = select(RUNS.c.id, RUNS.c.owner).where(
        and_(RUNS.c.status.in_(ACTIVE_STATUSES), RUNS.c.owner.startswith(owner_prefix))
    )
    return [(str(r.id), r.owner) for r in (await session.execute(stmt)).all()]


async def spent_since(
    session: Session,
    *,
    since: float,
    requester: str | None = None,
    team_id: str | None = None,
) -> float:
    """Total ``cost_usd`` of the runs of ``requester`` (or of workspace ``team_id``) that are
    not finished or were created or updated at or after ``since``. Exactly one of the two
    must be given. (A run's spend moves without its ``updated_at``, so unfinished runs always
    count.)"""
    if (requester is None) == (team_id is None):
        raise ValueError("give exactly one of requester and team_id")
    who = RUNS.c.requester == requester if requester is not None else RUNS.c.team_id == team_id
    stmt = select(func.coalesce(func.sum(RUNS.c.cost_usd), 0.0)).where(
        and_(who, or_(RUNS.c.updated_at >= since, RUNS.c.status.in_(UNFINISHED_STATUSES)))
    )
    return float((await session.execute(stmt)).scalar_one())
