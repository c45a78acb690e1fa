"""Recurring goals: a schedule row plus one due row for its next firing.

Firing starts a normal run (a goal for the planner, or a playbook) with the schedule's
requester and origin, then adds the due row of the following firing in the same
transaction that completes this one, so restarts never duplicate a schedule.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

from agents.due import Claim
from agents.errors import BatonError, NotFound
from agents.events import DueMissed, ScheduleFired
from agents.ids import new_id
from agents.playbook import bind, find_playbook, load_playbook
from agents.schedules import next_fire, to_cron, zone
from storage.models import DueItem, Schedule
from storage.repositories import due, schedules

if TYPE_CHECKING:
    from agents.engine import Engine

log = logging.getLogger(__name__)

SCHEDULE_FIRE = "schedule_fire"


async def create_schedule(
    engine: Engine,
    *,
    spec: str,
    timezone: str,
    goal: str | None = None,
    playbook: str | None = None,
    inputs: dict[str, str] | None = None,
    requester: str | None = None,
    origin: dict[str, Any] | None = None,
) -> Schedule:
    """Validate everything now (when, zone, goal or playbook), then store the schedule."""
    cron = to_cron(spec)
    zone(timezone)
    if bool(goal) == bool(playbook):
        raise BatonError("A schedule runs either a goal or a playbook.")
    if playbook:
        settings = engine.svc.settings
        bind(
            load_playbook(find_playbook(playbook, settings.playbook_dir)),
            inputs or {},
            engine.svc.registry,
            max_steps=settings.limits.max_steps,
        )
    now = engine.svc.clock()
    first = next_fire(cron, timezone, now)
    values = {
        "id": new_id("s"),
        "spec": spec.strip()[:200],
        "cron": cron,
        "timezone": timezone,
        "goal": goal,
        "playbook": playbook,
        "inputs": inputs,
        "requester": requester,
        "origin": origin,
        "status": "active",
        "next_fire_at": first,
        "created_at": now,
    }
    async with engine.svc.db.transaction() as session:
        await schedules.insert(session, values=values)
        await due.add(session, kind=SCHEDULE_FIRE, ref_id=str(values["id"]), due_at=first, now=now)
    engine.poke(first)
    return Schedule.model_validate(values)


async def remove_schedule(engine: Engine, schedule_id: str, *, actor: str) -> Schedule:
    """Stop a schedule; its pending firing is cancelled."""
    async with engine.svc.db.transaction() as session:
        found = await schedules.get(session, schedule_id=schedule_id)
        if found is None or found.status != "active":
            raise NotFound(f"There is no active schedule {schedule_id!r}.")
        await schedules.update(session, schedule_id=schedule_id, values={"status": "removed"})
        await due.cancel(session, kind=SCHEDULE_FIRE, ref_id=schedule_id)
    return found


def register_schedule_handler(engine: Engine) -> None:
    """Fire schedules; report firings missed while Baton was down (and arm the next)."""

    async def fire(item: DueItem, claim: Claim) -> None:
        found = await _arm_next(engine, item)
        if found is None:
            return
        if not await claim.still_held():
            return  # another process took this firing over
        # One run per firing, even if this firing is retried after a crash.
        run_id = "r-" + hashlib.sha256(f"{found.id}@{item.due_at}".encode()).hexdigest()[:10]
        goal = found.goal or ""
        if found.playbook:
            settings = engine.svc.settings
            goal, plan = bind(
                load_playbook(find_playbook(found.playbook, settings.playbook_dir)),
                dict(found.inputs or {}),
                engine.svc.registry,
                max_steps=settings.limits.max_steps,
            )
            run_id = await engine.start_plan(
                goal,
                plan,
                playbook=found.playbook,
                inputs=dict(found.inputs or {}),
                requester=found.requester,
                origin=_origin(found),
                run_id=run_id,
            )
        else:
            run_id = await engine.start_goal(
                goal, requester=found.requester, origin=_origin(found), run_id=run_id
            )
        await engine.bus.publish(ScheduleFired(run_id, found.id, found.next_fire_at))

    async def missed(item: DueItem, claim: Claim) -> None:
        found = await _arm_next(engine, item)
        if found is None:
            return
        await engine.bus.publish(
            DueMissed(
                "",
                item.kind,
                item.ref_id,
                item.due_at,
                found.requester,
                f"schedule {found.id} ({found.spec}) did not run while Baton was down",
            )
        )

    engine.due.register(SCHEDULE_FIRE, fire, on_missed=missed)


async def _arm_next(engine: Engine, item: DueItem) -> Schedule | None:
    now = engine.svc.clock()
    async with engine.svc.db.transaction() as session:
        found = await schedules.get(session, schedule_id=item.ref_id)
        if found is None or found.status != "active":
            return None
        following = next_fire(found.cron, found.timezone, max(now, item.due_at))
        await due.add(session, kind=SCHEDULE_FIRE, ref_id=found.id, due_at=following, now=now)
        await schedules.update(
            session,
            schedule_id=found.id,
            values={"next_fire_at": following, "last_fired_at": now},
        )
    engine.poke(following)
    found.next_fire_at = following
    return found


def _origin(found: Schedule) -> dict[str, Any] | None:
    origin = dict(found.origin or {})
    if origin.get("slack"):
        # Each firing gets its own thread: the bot posts a fresh card for it.
        origin.pop("thread_ts", None)
        origin["schedule_id"] = found.id
    return origin or None
