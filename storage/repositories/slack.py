"""Slack bookkeeping: delivered events (for dedupe) and messages Baton may edit later."""

from __future__ import annotations

from sqlalchemy import and_, select
from sqlalchemy.dialects import postgresql, sqlite

from storage.database import Session
from storage.models import SLACK_EVENTS, SLACK_MESSAGES, SlackMessage


async def remember_event(
    session: Session, *, event_id: str, team_id: str | None, now: float
) -> bool:
    """Record a delivery; False when this ``event_id`` was seen before (a unique insert)."""
    insert = postgresql.insert if session.dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(SLACK_EVENTS)
        .values(event_id=event_id, team_id=team_id, received_at=now)
        .on_conflict_do_nothing(index_elements=["event_id"])
        # RETURNING tells whether the row was inserted (rowcount is -1 for inserts on psycopg).
        .returning(SLACK_EVENTS.c.event_id)
    )
    return (await session.execute(stmt)).first() is not None


async def forget_events_before(session: Session, *, cutoff: float) -> None:
    """Drop dedupe rows older than any retry Slack would still send."""
    await session.execute(SLACK_EVENTS.delete().where(SLACK_EVENTS.c.received_at < cutoff))


async def save_message(
    session: Session,
    *,
    kind: str,
    ref_id: str,
    channel: str,
    ts: str,
    now: float,
    run_id: str | None = None,
    team_id: str | None = None,
) -> None:
    """Remember where a card, approval or handoff message was posted."""
    insert = postgresql.insert if session.dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(SLACK_MESSAGES)
        .values(
            kind=kind,
            ref_id=ref_id,
            channel=channel,
            ts=ts,
            run_id=run_id,
            team_id=team_id,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["kind", "ref_id"])
    )
    await session.execute(stmt)


async def get_message(session: Session, *, kind: str, ref_id: str) -> SlackMessage | None:
    """Where the message for ``(kind, ref_id)`` was posted, or None."""
    stmt = select(SLACK_MESSAGES).where(
        and_(SLACK_MESSAGES.c.kind == kind, SLACK_MESSAGES.c.ref_id == ref_id)
    )
    row = (await session.execute(stmt)).mappings().first()
    return SlackMessage.model_validate(dict(row)) if row is not None else None
