"""The tool-call ledger: an intent before every side effect, its result after."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, bindparam, select

from storage.database import Session
from storage.models import TOOL_CALLS, ToolCall
from storage.repositories.steps import write


async def get_by_key(session: Session, *, key: str) -> ToolCall | None:
    """The call recorded under an idempotency key, or None."""
    stmt = select(TOOL_CALLS).where(TOOL_CALLS.c.idempotency_key == key)
    row = (await session.execute(stmt)).mappings().first()
    return ToolCall.model_validate(dict(row)) if row is not None else None


# Built once: values travel as bound parameters (the ledger is written on every tool step).
_INSERT = TOOL_CALLS.insert()
_FINISH = TOOL_CALLS.update().where(TOOL_CALLS.c.idempotency_key == bindparam("k_key"))


async def insert(session: Session, *, values: dict[str, Any]) -> None:
    """Record a call (an intent, or a finished read-only call)."""
    await write(session, _INSERT, values)


async def finish(session: Session, *, key: str, values: dict[str, Any]) -> None:
    """Record the outcome of a call."""
    await write(session, _FINISH, {"k_key": key, **values})


async def record_result(
    session: Session, *, key: str, values: dict[str, Any], row: dict[str, Any] | None
) -> None:
    """Finish the intent recorded under ``key`` with ``values``; or, given the whole ``row``
    (a call that needed no intent), insert it finished."""
    if row is None:
        await finish(session, key=key, values=values)
    else:
        await insert(session, values=row)


async def list_for_run(
    session: Session, *, run_id: str, step_id: str | None = None
) -> list[ToolCall]:
    """Calls of a run (optionally one step), oldest first."""
    cond = TOOL_CALLS.c.run_id == run_id
    if step_id is not None:
        cond = and_(cond, TOOL_CALLS.c.step_id == step_id)
    stmt = select(TOOL_CALLS).where(cond).order_by(TOOL_CALLS.c.id)
    return [ToolCall.model_validate(dict(r)) for r in (await session.execute(stmt)).mappings()]
