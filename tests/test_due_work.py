"""Due work in process: rows claimed with a lease and a fence, follow-up steps, approval
reminders and expiry, recurring schedules, restarts. On SQLite and PostgreSQL.

Most tests drive time with an injectable clock (``DueWork(db, owner, clock=...)``; an engine's
``svc.clock`` and ``due.clock``) and call ``tick()`` by hand, so nothing waits on the wall
clock. A few run the real APScheduler :class:`~agents.due.Timer` with short intervals. The
last ones put the real Slack app (bot/due_slack.py handlers) in front of FakeSlack.

Two ``Database`` objects on one URL stand for two processes: on SQLite they are two
connections to one file (each transaction ``BEGIN IMMEDIATE``), on PostgreSQL two pools.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from agents.approvals import DecisionRequest
from agents.bootstrap import open_engine
from agents.due import Claim, DueWork, Timer
from agents.engine import Engine
from agents.errors import ApprovalError
from agents.events import (
    ApprovalDecided,
    DueMissed,
    Event,
    ReminderDue,
    ScheduleFired,
    StepScheduled,
    StepSkipped,
)
from agents.followups import (
    APPROVAL_ESCALATE,
    APPROVAL_EXPIRE,
    APPROVAL_REMIND,
    MESSAGE,
    SCHEDULE_FIRE,
    STEP_WAKE,
    schedule_message,
)
from agents.plan import Plan, PlanStep
from agents.recurring import create_schedule, remove_schedule
from agents.schedules import ScheduleError, next_fire, to_cron, zone
from agents.settings import RISKS, CheckpointTimings, Settings
from bot.settings import SlackSettings
from bot.slack_app import build_app
from storage.database import Database
from storage.models import RUNS, SCHEDULES, DueItem
from storage.repositories import approvals, audit, due, runs, steps
from tests.support.slack_api import FakeSlack
from tests.support.slack_requests import USER_ID, dm_channel_id

REPO = Path(__file__).resolve().parents[1]
PLAYBOOKS = REPO / "tests" / "playbooks"
#: Monday 2 March 2026, 08:59:00 UTC (before the US and EU summer-time changes).
MONDAY_0859 = datetime(2026, 3, 2, 8, 59, tzinfo=UTC).timestamp()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: float = MONDAY_0859) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class Crash(BaseException):
    """Stands for SIGKILL inside a handler: not an ``Exception``, so DueWork cannot handle it
    and the row stays claimed (as it would in a killed process)."""


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ledger.txt"
    monkeypatch.setenv("BATON_TEST_LEDGER", str(path))
    return path


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# ---- helpers ----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _databases(url: str, n: int = 1) -> AsyncIterator[list[Database]]:
    dbs = [await Database.open(url) for _ in range(n)]
    try:
        yield dbs
    finally:
        for db in dbs:
            await db.close()


async def _add(db: Database, kind: str, ref: str, due_at: float, now: float, **kw: Any) -> None:
    async with db.transaction() as s:
        assert await due.add(s, kind=kind, ref_id=ref, due_at=due_at, now=now, **kw)


async def _items(db: Database, **kw: Any) -> list[DueItem]:
    async with db.transaction() as s:
        return await due.list_items(s, **kw)


async def _status_of(db: Database) -> dict[str, str]:
    return {i.ref_id: i.status for i in await _items(db)}


def _timings(**external: float) -> dict[str, CheckpointTimings]:
    timings = {r: CheckpointTimings() for r in RISKS}
    timings["external"] = CheckpointTimings(**external)
    return timings


def _settings(url: str, **kw: Any) -> Settings:
    base: dict[str, Any] = {
        "database_url": url,
        "plugins": ("tests.plugins.ledger",),
        "playbook_dir": str(PLAYBOOKS),
        "lease_s": 5.0,
    }
    base.update(kw)
    return Settings(**base)


async def _engine(url: str, clock: Callable[[], float] | None = None, **kw: Any) -> Engine:
    engine = await open_engine(_settings(url, **kw))
    if clock is not None:
        engine.svc.clock = clock
        engine.due.clock = clock
    return engine


async def _close(*engines: Engine) -> None:
    for e in engines:
        await e.close()
        await e.svc.db.close()


def _record(engine: Engine) -> list[Event]:
    seen: list[Event] = []

    async def keep(event: Event) -> None:
        seen.append(event)

    engine.bus.subscribe(keep)
    return seen


async def _settle(engine: Engine, run_id: str, within: float = 10.0) -> str:
    """Wait until this engine stops driving ``run_id``; its committed status."""
    return (await asyncio.wait_for(engine.wait(run_id), within)).status


async def _poll(check: Callable[[], Any], within: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)


async def _run_status(engine: Engine, run_id: str) -> str:
    return (await engine.summary(run_id)).status


async def _count(db: Database, table: Any, *where: Any) -> int:
    async with db.transaction() as s:
        stmt = select(func.count()).select_from(table)
        for cond in where:
            stmt = stmt.where(cond)
        return int((await s.execute(stmt)).scalar_one())


async def _pending_fires(db: Database) -> list[DueItem]:
    return await _items(db, statuses=["pending"], kinds=[SCHEDULE_FIRE])


def _step(step_id: str, **kw: Any) -> PlanStep:
    kw.setdefault("title", step_id.title())
    kw.setdefault("tool", "lookup")
    kw.setdefault("arguments", {"topic": step_id})
    return PlanStep(id=step_id, **kw)


def _send_plan() -> Plan:
    return Plan(
        steps=[
            _step(
                "send",
                title="Send",
                tool="send_message",
                arguments={"to": "cto@acme.test", "body": "hello"},
            )
        ]
    )


# ---- claims, leases and fences ------------------------------------------------------------------


async def test_claims_are_disjoint_and_each_claim_gets_a_new_fence(db_url: str):
    async with _databases(db_url, 2) as (a, b):
        t = 1000.0
        for i in range(10):
            await _add(a, "k", f"r{i}", t + i, t)
        await _add(a, "k", "later", t + 100, t)
        async with a.transaction() as s:
            mine = await due.claim(s, now=t + 9, owner="a", lease_s=10, limit=4)
        async with b.transaction() as s:
            theirs = await due.claim(s, now=t + 9, owner="b", lease_s=10, limit=100)
        assert [i.ref_id for i in mine] == ["r0", "r1", "r2", "r3"]  # oldest first
        assert [i.ref_id for i in theirs] == [f"r{i}" for i in range(4, 10)]  # not "later"
        assert {i.fence for i in mine + theirs} == {1}
        assert all(i.status == "claimed" and i.attempts == 1 for i in mine + theirs)
        assert {i.owner for i in mine} == {"a"} and {i.owner for i in theirs} == {"b"}
        async with b.transaction() as s:
            assert await due.claim(s, now=t + 19, owner="b", lease_s=10) == []  # leases live
            assert await due.next_due_at(s) == t + 19  # the first lease to run out


async def test_a_reclaimed_row_cannot_be_finished_or_released_by_its_old_owner(db_url: str):
    async with _databases(db_url, 2) as (a, b):
        t = 1000.0
        await _add(a, "k", "x", t, t)
        async with a.transaction() as s:
            [old] = await due.claim(s, now=t, owner="a", lease_s=5)
        old_claim = Claim(old.id or 0, "a", old.fence, a)
        assert await old_claim.still_held()

        async with b.transaction() as s:
            assert await due.claim(s, now=t + 4.9, owner="b", lease_s=5) == []
            [new] = await due.claim(s, now=t + 5.1, owner="b", lease_s=5)  # a's lease ran out
        new_claim = Claim(new.id or 0, "b", new.fence, b)
        assert (new.id, new.fence, new.attempts) == (old.id, old.fence + 1, 2)
        assert not await old_claim.still_held()
        assert await new_claim.still_held()

        async with a.transaction() as s:  # the old owner wakes up and tries to act
            assert not await due.finish(
                s, item_id=old.id or 0, owner="a", fence=old.fence, status="done", now=t + 6
            )
            await due.release(
                s, item_id=old.id or 0, owner="a", fence=old.fence, retry_at=t + 60, error="x"
            )
        [row] = await _items(a)
        assert (row.status, row.owner, row.fence, row.due_at) == ("claimed", "b", 2, t)

        async with b.transaction() as s:
            assert await due.finish(
                s, item_id=new.id or 0, owner="b", fence=new.fence, status="done", now=t + 6
            )
        [row] = await _items(a)
        assert (row.status, row.owner, row.done_at) == ("done", None, t + 6)
        assert not await new_claim.still_held()  # a finished row is held by nobody
        async with b.transaction() as s:  # and finishing twice does nothing
            assert not await due.finish(
                s, item_id=new.id or 0, owner="b", fence=new.fence, status="done", now=t + 7
            )


async def test_a_handler_that_lost_its_lease_does_not_act(db_url: str):
    """A paused process (SIGSTOP, a long GC) comes back after another took its row over."""
    clock = Clock(1000.0)
    async with _databases(db_url, 2) as (db_a, db_b):
        acted: list[str] = []
        paused = asyncio.Event()
        resume = asyncio.Event()

        async def slow(item: DueItem, claim: Claim) -> None:
            paused.set()
            await resume.wait()
            if await claim.still_held():  # the fence check right before the side effect
                acted.append("a")

        async def quick(item: DueItem, claim: Claim) -> None:
            if await claim.still_held():
                acted.append("b")

        a = DueWork(db_a, "a", clock=clock, lease_s=3)
        b = DueWork(db_b, "b", clock=clock, lease_s=3)
        a.register("message", slow)
        b.register("message", quick)
        await _add(db_a, "message", "m1", 1000.0, 1000.0)

        tick_a = asyncio.create_task(a.tick())
        await asyncio.wait_for(paused.wait(), 5)
        assert await b.tick() == 0  # a's lease is live: nothing for b
        clock.advance(3.5)
        assert await b.tick() == 1  # a's lease ran out: b takes the row and acts
        resume.set()
        assert await tick_a == 1
        assert acted == ["b"]
        [row] = await _items(db_a)
        assert (row.status, row.fence, row.attempts) == ("done", 2, 2)


async def test_two_workers_ticking_together_handle_each_row_once(db_url: str):
    clock = Clock(1000.0)
    async with _databases(db_url, 2) as dbs:
        handled: list[tuple[str, str]] = []
        workers = []
        for name, db in zip("ab", dbs, strict=True):

            async def handle(item: DueItem, claim: Claim, name: str = name) -> None:
                await asyncio.sleep(0)
                handled.append((name, item.ref_id))

            work = DueWork(db, name, clock=clock, lease_s=30, batch=25, concurrency=8)
            work.register("message", handle)
            workers.append(work)
        async with dbs[0].transaction() as s:
            for i in range(300):
                await due.add(s, kind="message", ref_id=f"m{i}", due_at=1000.0 + i / 100, now=0)
        clock.advance(3)
        totals = await asyncio.gather(*(w.tick() for w in workers for _ in range(3)))
        assert sum(totals) == 300
        refs = [ref for _, ref in handled]
        assert sorted(refs) == sorted(f"m{i}" for i in range(300))  # each exactly once
        assert {i.status for i in await _items(dbs[0])} == {"done"}


async def test_past_the_grace_period_items_are_missed_and_reported_but_always_kinds_run(
    db_url: str,
):
    clock = Clock(10_000.0)
    async with _databases(db_url) as (db,):
        ran: list[str] = []
        reported: list[str] = []

        async def handler(item: DueItem, claim: Claim) -> None:
            ran.append(item.ref_id)

        async def on_missed(item: DueItem, claim: Claim) -> None:
            assert await claim.still_held()  # the report is fenced like any side effect
            reported.append(item.ref_id)

        work = DueWork(db, "w", clock=clock, grace_s=60)
        work.register("message", handler, on_missed=on_missed)
        work.register("quiet", handler)  # no on_missed: marked missed silently
        work.register("expiry", handler, always=True)
        now = clock()
        await _add(db, "message", "on-time", now - 1, 0)
        await _add(db, "message", "late-within-grace", now - 59, 0)
        await _add(db, "message", "too-late", now - 61, 0)
        await _add(db, "quiet", "quiet-too-late", now - 3600, 0)
        await _add(db, "expiry", "expiry-days-late", now - 3 * 86400, 0)
        await _add(db, "mystery", "no-handler", now - 1, 0)
        await _add(db, "message", "not-yet", now + 1, 0)

        assert await work.tick() == 6
        assert sorted(ran) == ["expiry-days-late", "late-within-grace", "on-time"]
        assert reported == ["too-late"]
        assert await _status_of(db) == {
            "on-time": "done",
            "late-within-grace": "done",
            "too-late": "missed",
            "quiet-too-late": "missed",
            "expiry-days-late": "done",
            "no-handler": "failed",
            "not-yet": "pending",
        }
        [failed] = await _items(db, statuses=["failed"])
        assert "no handler" in (failed.last_error or "")


async def test_a_failing_handler_is_retried_with_backoff_then_given_up(db_url: str):
    clock = Clock(1000.0)
    async with _databases(db_url) as (db,):
        calls: list[float] = []
        fail_until = {"flaky": 2, "broken": 99}

        async def handler(item: DueItem, claim: Claim) -> None:
            calls.append(clock())
            if item.attempts <= fail_until[item.ref_id]:
                raise RuntimeError(f"{item.ref_id} attempt {item.attempts}")

        work = DueWork(db, "w", clock=clock)
        work.register("k", handler)
        await _add(db, "k", "flaky", 1000.0, 0)
        await _add(db, "k", "broken", 1000.0, 0)
        for _ in range(8):
            await work.tick()
            clock.advance(40)  # beyond every backoff so far (2, 4, 8, 16, 32 s)
        status = {i.ref_id: i for i in await _items(db)}
        assert status["flaky"].status == "done" and status["flaky"].attempts == 3
        assert status["broken"].status == "failed" and status["broken"].attempts == 5
        assert "RuntimeError: broken attempt 5" in (status["broken"].last_error or "")


async def test_next_wait_covers_pending_rows_and_leases_running_out(db_url: str):
    clock = Clock(1000.0)
    async with _databases(db_url) as (db,):
        work = DueWork(db, "w", clock=clock, lease_s=3, max_idle_s=5)
        assert await work.next_wait() == 5  # nothing due: idle wake-up only
        await _add(db, "k", "soon", 1002.0, 0)
        assert await work.next_wait() == pytest.approx(2.0)
        await _add(db, "k", "now", 1000.0, 0)
        async with db.transaction() as s:
            await due.claim(s, now=1000.0, owner="x", lease_s=1, limit=1)  # a stalled replica
        assert await work.next_wait() == pytest.approx(1.0)  # wake when its lease runs out
        clock.advance(100)
        assert await work.next_wait() == 0


# ---- follow-up steps (after / only_if) ----------------------------------------------------------


async def test_a_follow_up_step_parks_the_run_until_its_time(db_url: str, ledger: Path):
    clock = Clock()
    engine = await _engine(db_url, clock)
    seen = _record(engine)
    try:
        plan = Plan(
            steps=[_step("look"), _step("follow", depends_on=["look"], after="2s")],
        )
        start = clock()
        run_id = await engine.start_plan("follow up", plan)
        assert await _settle(engine, run_id) == "waiting"
        async with engine.svc.db.transaction() as s:
            follow = await steps.get_step(s, run_id=run_id, step_id="follow")
        assert follow is not None
        assert (follow.status, follow.not_before) == ("scheduled", start + 2)
        [wake] = await _items(engine.svc.db, statuses=["pending"])
        assert (wake.kind, wake.ref_id, wake.due_at) == (STEP_WAKE, f"{run_id}:follow", start + 2)
        assert any(isinstance(e, StepScheduled) and e.at == start + 2 for e in seen)

        clock.advance(1.9)
        assert await engine.due.tick() == 0  # not yet
        clock.advance(0.1)
        assert await engine.due.tick() == 1
        assert await _settle(engine, run_id) == "done"
        async with engine.svc.db.transaction() as s:
            follow = await steps.get_step(s, run_id=run_id, step_id="follow")
        assert follow is not None and follow.status == "done"
        assert follow.started_at is not None and follow.started_at >= start + 2
        assert [i.status for i in await _items(engine.svc.db)] == ["done"]
    finally:
        await _close(engine)


async def test_only_if_false_skips_the_step_and_its_dependants(db_url: str, ledger: Path):
    engine = await _engine(db_url, Clock())
    seen = _record(engine)
    try:
        plan = Plan(
            steps=[
                _step("look", arguments={"topic": "acme"}),  # → "facts about acme"
                _step("gate", depends_on=["look"], only_if={"step": "look", "contains": "zebra"}),
                _step("after_gate", depends_on=["gate"]),
                _step("yes", depends_on=["look"], only_if={"step": "look", "contains": "ACME"}),
                _step(
                    "nope",
                    depends_on=["look"],
                    only_if={"step": "look", "not_contains": "acme"},
                ),
            ]
        )
        run_id = await engine.start_plan("conditions", plan)
        assert await _settle(engine, run_id) == "done"
        async with engine.svc.db.transaction() as s:
            rows = {r.step_id: r for r in await steps.get_steps(s, run_id=run_id)}
        assert {k: r.status for k, r in rows.items()} == {
            "look": "done",
            "gate": "skipped",
            "after_gate": "skipped",
            "yes": "done",
            "nope": "skipped",
        }
        assert "condition on step 'look' did not hold" in (rows["gate"].error or "")
        assert "depends on skipped step 'gate'" in (rows["after_gate"].error or "")
        skipped = [e.step_id for e in seen if isinstance(e, StepSkipped)]
        assert sorted(skipped) == ["after_gate", "gate", "nope"]
        assert rows["after_gate"].started_at is None  # never started
    finally:
        await _close(engine)


async def test_a_follow_up_step_past_the_grace_period_is_skipped_and_reported(
    db_url: str, ledger: Path
):
    clock = Clock()
    engine = await _engine(db_url, clock, missed_grace_s=60)
    seen = _record(engine)
    try:
        plan = Plan(
            steps=[
                _step("look"),
                _step("follow", depends_on=["look"], after="2s"),
                _step("then", depends_on=["follow"]),
            ]
        )
        run_id = await engine.start_plan("follow up", plan, requester="slack:U0ALICE01")
        assert await _settle(engine, run_id) == "waiting"
        clock.advance(2 + 3600)  # Baton was down for an hour
        assert await engine.due.tick() == 1
        assert await _settle(engine, run_id) == "done"
        async with engine.svc.db.transaction() as s:
            rows = {r.step_id: r for r in await steps.get_steps(s, run_id=run_id)}
        assert rows["follow"].status == "skipped" and "missed" in (rows["follow"].error or "")
        assert rows["then"].status == "skipped"
        [missed] = [e for e in seen if isinstance(e, DueMissed)]
        assert (missed.run_id, missed.item_kind, missed.requester) == (
            run_id,
            STEP_WAKE,
            "slack:U0ALICE01",
        )
        assert [i.status for i in await _items(engine.svc.db)] == ["missed"]
    finally:
        await _close(engine)


# ---- approvals: reminders, escalation, expiry ----------------------------------------------------


async def _pending_approval(engine: Engine, run_id: str) -> Any:
    async with engine.svc.db.transaction() as s:
        [approval] = await approvals.list_approvals(s, run_id=run_id, statuses=["pending"])
    return approval


async def test_an_approval_is_reminded_escalated_then_expires_closed(db_url: str, ledger: Path):
    clock = Clock()
    engine = await _engine(
        db_url, clock, checkpoint_timings=_timings(remind_s=10, escalate_s=20, expire_s=30)
    )
    seen = _record(engine)
    try:
        start = clock()
        run_id = await engine.start_plan("send hello", _send_plan())
        assert await _settle(engine, run_id) == "waiting"
        approval = await _pending_approval(engine, run_id)
        assert approval.expires_at == start + 30
        rows = await _items(engine.svc.db, statuses=["pending"])
        assert [(i.kind, i.due_at) for i in rows] == [
            (APPROVAL_REMIND, start + 10),
            (APPROVAL_ESCALATE, start + 20),
            (APPROVAL_EXPIRE, start + 30),
        ]

        clock.advance(10)
        assert await engine.due.tick() == 1
        clock.advance(10)
        assert await engine.due.tick() == 1
        reminders = [e for e in seen if isinstance(e, ReminderDue)]
        assert [(e.approval_id, e.level, e.waited_s) for e in reminders] == [
            (approval.id, "remind", 10),
            (approval.id, "escalate", 20),
        ]
        assert _lines(ledger) == []

        clock.advance(10)
        assert await engine.due.tick() == 1
        assert await _settle(engine, run_id) == "rejected"
        summary = await engine.summary(run_id)
        assert "expired" in (summary.error or "") and "nothing was done" in (summary.error or "")
        async with engine.svc.db.transaction() as s:
            after = await approvals.get(s, approval_id=approval.id)
            entries = await audit.list_entries(s, run_id=run_id)
        assert after is not None and (after.status, after.decided_by) == ("expired", "baton")
        assert ("baton", "approval.expired") in [(e.actor, e.action) for e in entries]
        decided = [e for e in seen if isinstance(e, ApprovalDecided)]
        assert [(e.decision, e.actor) for e in decided] == [("expired", "baton")]
        assert _lines(ledger) == []  # failed closed: nothing was sent
        assert not await _items(engine.svc.db, statuses=["pending", "claimed"])

        # A click after expiry is refused and changes nothing.
        with pytest.raises(ApprovalError, match="expired"):
            await engine.decide(
                DecisionRequest(approval.id, "approve", "slack:U1", digest=approval.digest)
            )
        assert _lines(ledger) == []
    finally:
        await _close(engine)


async def test_deciding_an_approval_cancels_its_reminders_and_expiry(db_url: str, ledger: Path):
    clock = Clock()
    engine = await _engine(
        db_url, clock, checkpoint_timings=_timings(remind_s=10, escalate_s=20, expire_s=30)
    )
    seen = _record(engine)
    try:
        run_id = await engine.start_plan("send hello", _send_plan())
        assert await _settle(engine, run_id) == "waiting"
        approval = await _pending_approval(engine, run_id)
        clock.advance(5)
        await engine.decide(
            DecisionRequest(approval.id, "approve", "slack:U1", digest=approval.digest)
        )
        assert await _settle(engine, run_id) == "done"
        assert len(_lines(ledger)) == 1
        clock.advance(100)
        assert await engine.due.tick() == 0
        assert not [e for e in seen if isinstance(e, ReminderDue)]
        assert {i.status for i in await _items(engine.svc.db)} == {"cancelled"}
    finally:
        await _close(engine)


async def test_after_a_long_downtime_reminders_are_missed_but_the_expiry_still_fails_closed(
    db_url: str, ledger: Path
):
    clock = Clock()
    engine = await _engine(
        db_url,
        clock,
        missed_grace_s=60,
        checkpoint_timings=_timings(remind_s=10, escalate_s=20, expire_s=30),
    )
    seen = _record(engine)
    try:
        run_id = await engine.start_plan("send hello", _send_plan())
        assert await _settle(engine, run_id) == "waiting"
        approval = await _pending_approval(engine, run_id)
        clock.advance(7 * 86400)  # down for a week
        assert await engine.due.tick() == 3
        assert await _settle(engine, run_id) == "rejected"
        assert not [e for e in seen if isinstance(e, ReminderDue)]  # stale nudges are not sent
        kinds = {i.kind: i.status for i in await _items(engine.svc.db)}
        assert kinds == {
            APPROVAL_REMIND: "missed",
            APPROVAL_ESCALATE: "missed",
            APPROVAL_EXPIRE: "done",
        }
        async with engine.svc.db.transaction() as s:
            after = await approvals.get(s, approval_id=approval.id)
        assert after is not None and after.status == "expired"
        assert _lines(ledger) == []
    finally:
        await _close(engine)


# ---- recurring schedules ------------------------------------------------------------------------


async def _schedule(engine: Engine, spec: str = "every 15 minutes", tz: str = "UTC") -> Any:
    return await create_schedule(
        engine,
        spec=spec,
        timezone=tz,
        playbook="followup_lookup",
        inputs={"topic": "acme"},
        requester="cli:tester",
    )


async def _runs(db: Database) -> int:
    return await _count(db, RUNS)


async def test_a_schedule_fires_once_when_due_and_arms_exactly_one_next_firing(
    db_url: str, ledger: Path
):
    clock = Clock()
    engine = await _engine(db_url, clock)
    seen = _record(engine)
    db = engine.svc.db
    try:
        found = await _schedule(engine)
        nine = MONDAY_0859 + 60
        assert (found.cron, found.next_fire_at) == ("*/15 * * * *", nine)
        assert [i.due_at for i in await _pending_fires(db)] == [nine]

        assert await engine.due.tick() == 0
        clock.advance(59.9)
        assert await engine.due.tick() == 0
        assert await _runs(db) == 0

        clock.advance(0.2)
        assert await engine.due.tick() == 1
        fired = [e for e in seen if isinstance(e, ScheduleFired)]
        assert len(fired) == 1 and fired[0].schedule_id == found.id
        assert fired[0].next_at == nine + 900
        assert await _settle(engine, fired[0].run_id) == "done"
        assert await _runs(db) == 1
        assert [i.due_at for i in await _pending_fires(db)] == [nine + 900]
        for _ in range(3):  # ticking again changes nothing
            assert await engine.due.tick() == 0
        assert await _runs(db) == 1
        async with db.transaction() as s:
            run = await runs.get_run(s, run_id=fired[0].run_id)
            [row] = (await s.execute(select(SCHEDULES))).mappings().all()
        assert run is not None
        assert (run.source, run.playbook, run.requester) == (
            "playbook",
            "followup_lookup",
            "cli:tester",
        )
        assert (row["next_fire_at"], row["last_fired_at"]) == (nine + 900, clock())

        clock.advance(900)
        assert await engine.due.tick() == 1
        assert await _runs(db) == 2
        assert [i.due_at for i in await _pending_fires(db)] == [nine + 1800]

        await remove_schedule(engine, found.id, actor="cli:tester")
        assert await _pending_fires(db) == []
        clock.advance(3600)
        assert await engine.due.tick() == 0
        assert await _runs(db) == 2
    finally:
        await _close(engine)


async def test_a_schedule_missed_while_down_is_reported_and_the_next_firing_armed(
    db_url: str, ledger: Path
):
    clock = Clock()
    engine = await _engine(db_url, clock, missed_grace_s=300)
    seen = _record(engine)
    db = engine.svc.db
    try:
        found = await _schedule(engine, "hourly")
        clock.advance(5 * 3600)  # down for five hours: five firings fell due
        assert await engine.due.tick() == 1  # one row, reported once (not five runs)
        assert await _runs(db) == 0
        [missed] = [e for e in seen if isinstance(e, DueMissed)]
        assert (missed.item_kind, missed.ref_id, missed.requester) == (
            SCHEDULE_FIRE,
            found.id,
            "cli:tester",
        )
        assert "did not run while Baton was down" in missed.detail
        [nxt] = await _pending_fires(db)
        assert nxt.due_at == MONDAY_0859 + 60 + 5 * 3600  # 14:00, the next on the hour
        clock.advance(61)
        assert await engine.due.tick() == 1
        assert await _runs(db) == 1
    finally:
        await _close(engine)


@pytest.mark.parametrize(
    ("spec", "tz", "now", "expected"),
    [
        # 09:00 in New York is 14:00 UTC in early March (EST), 13:00 UTC after 8 March (EDT).
        ("weekdays 9:00", "America/New_York", MONDAY_0859, "2026-03-02T14:00"),
        ("weekdays 9am", "America/New_York", datetime(2026, 3, 9, tzinfo=UTC), "2026-03-09T13:00"),
        # Paris moves to summer time on 29 March: Monday 30 March 9:00 is 07:00 UTC.
        ("every monday 9am", "Europe/Paris", datetime(2026, 3, 27, tzinfo=UTC), "2026-03-30T07:00"),
        ("daily 17:30", "Asia/Kolkata", MONDAY_0859, "2026-03-02T12:00"),
        ("0 9 * * 1", "UTC", datetime(2026, 3, 3, tzinfo=UTC), "2026-03-09T09:00"),  # 1 = Monday
        ("0 9 * * 0", "UTC", MONDAY_0859, "2026-03-08T09:00"),  # 0 = Sunday (standard cron)
        ("every 2 hours", "UTC", MONDAY_0859, "2026-03-02T10:00"),
    ],
)
def test_plain_and_cron_schedules_fire_at_the_right_instant_in_their_zone(
    spec: str, tz: str, now: Any, expected: str
):
    after = now if isinstance(now, float) else now.timestamp()
    at = datetime.fromtimestamp(next_fire(to_cron(spec), tz, after), UTC)
    assert at.strftime("%Y-%m-%dT%H:%M") == expected


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("every blursday", "every monday 9am"),
        ("0 9 * * 1 2026 5", "5 fields"),
        ("0 9 * *", "every monday 9am"),
        ("61 9 * * *", "not a valid cron"),
        ("daily 25:00", "not a time of day"),
        ("every 90 minutes", "1 to 59"),
        ("", "every monday 9am"),
    ],
)
def test_bad_schedules_are_refused_with_an_example(spec: str, words: str):
    with pytest.raises(ScheduleError, match=words):
        to_cron(spec)


def test_an_unknown_time_zone_is_refused_with_an_example():
    with pytest.raises(ScheduleError, match="Europe/Paris"):
        zone("Mars/Olympus")


async def test_twenty_restarts_with_crashes_never_duplicate_a_schedule_or_its_firing(
    db_url: str, ledger: Path
):
    """Twenty restarts of two replicas, every other one killed in the middle of a firing
    (after the next firing was armed, before the row was finished)."""
    clock = Clock()
    first = await _engine(db_url, clock)
    found = await _schedule(first)
    await _close(first)
    fired_rows: set[float] = set()
    for restart in range(20):
        clock.advance(7.5 * 60)  # every other restart crosses a firing
        pair = [await _engine(db_url, clock) for _ in range(2)]
        crash = restart % 2 == 0
        for engine in pair:
            original = engine.due.kinds[SCHEDULE_FIRE].handler

            async def fire(
                item: DueItem, claim: Claim, original: Any = original, crash: bool = crash
            ) -> None:
                fired_rows.add(item.due_at)
                await original(item, claim)
                if crash:
                    raise Crash

            engine.due.kinds[SCHEDULE_FIRE].handler = fire
        results = await asyncio.gather(*(e.due.tick() for e in pair), return_exceptions=True)
        assert all(isinstance(r, int | Crash) for r in results), results
        await _close(*pair)

        async with _databases(db_url) as (db,):
            assert await _count(db, SCHEDULES) == 1
            pending = await _pending_fires(db)
            assert len(pending) == 1, f"restart {restart}: {pending}"
            firings = await _items(db, kinds=[SCHEDULE_FIRE])
            assert len({i.due_at for i in firings}) == len(firings)  # no firing twice
    # 20 × 7.5 min = 150 min, 08:59 → 11:29: the firings 09:00 … 11:15 came due; 11:30 is next.
    nine = MONDAY_0859 + 60
    assert fired_rows == {nine + 900 * k for k in range(10)}
    assert pending[0].due_at == nine + 900 * 10
    assert found.id == pending[0].ref_id


async def test_a_firing_retried_after_a_crash_starts_its_run_once(db_url: str, ledger: Path):
    clock = Clock()
    a = await _engine(db_url, clock)
    await _schedule(a)
    clock.advance(61)
    original = a.due.kinds[SCHEDULE_FIRE].handler

    async def fire_then_die(item: DueItem, claim: Claim) -> None:
        await original(item, claim)
        raise Crash

    a.due.kinds[SCHEDULE_FIRE].handler = fire_then_die
    with pytest.raises(Crash):
        await a.due.tick()
    await _close(a)
    assert await _runs_in(db_url) == 1

    clock.advance(10)  # a's lease (5 s) ran out; another replica takes the firing over
    b = await _engine(db_url, clock)
    try:
        assert await b.due.tick() == 1
        assert await _runs_in(db_url) == 1
    finally:
        await _close(b)


async def _runs_in(url: str) -> int:
    async with _databases(url) as (db,):
        return await _runs(db)


# ---- the real timer (APScheduler), short intervals ----------------------------------------------


async def test_the_timer_wakes_a_follow_up_step_on_time(db_url: str, ledger: Path):
    engine = await _engine(db_url)
    engine.start_timer()
    try:
        plan = Plan(steps=[_step("look"), _step("follow", depends_on=["look"], after="2s")])
        started = time.time()
        run_id = await engine.start_plan("follow up", plan)

        async def done() -> bool:
            return await _run_status(engine, run_id) == "done"

        assert await _poll(done, within=8), await engine.summary(run_id)
        async with engine.svc.db.transaction() as s:
            follow = await steps.get_step(s, run_id=run_id, step_id="follow")
        assert follow is not None and follow.not_before is not None
        assert follow.not_before >= started + 2
        assert follow.started_at is not None
        assert follow.not_before <= follow.started_at < follow.not_before + 1.5  # not early
    finally:
        await _close(engine)


async def test_the_timer_reminds_escalates_and_expires_an_approval(db_url: str, ledger: Path):
    engine = await _engine(
        db_url, checkpoint_timings=_timings(remind_s=0.5, escalate_s=1.0, expire_s=1.5)
    )
    seen = _record(engine)
    engine.start_timer()
    try:
        run_id = await engine.start_plan("send hello", _send_plan())

        async def rejected() -> bool:
            return await _run_status(engine, run_id) == "rejected"

        assert await _poll(rejected, within=8), await engine.summary(run_id)
        levels = [e.level for e in seen if isinstance(e, ReminderDue)]
        assert levels == ["remind", "escalate"]
        assert "expired" in ((await engine.summary(run_id)).error or "")
        assert _lines(ledger) == []
    finally:
        await _close(engine)


async def test_twenty_timer_restarts_keep_one_schedule_and_one_pending_firing(
    db_url: str, ledger: Path
):
    """Each restart: a fresh engine with the real timer, whose first tick (at start) catches
    up the firing that came due while it was down; then it stops."""
    clock = Clock()
    first = await _engine(db_url, clock)
    await _schedule(first)
    await _close(first)
    for restart in range(20):
        clock.advance(15 * 60)
        engine = await _engine(db_url, clock)
        timer = engine.start_timer()

        async def ticked(timer: Any = timer) -> bool:
            return bool(timer.ticks >= 1 and timer.scheduler.get_job(timer.JOB_ID))

        assert await _poll(ticked, within=5), f"restart {restart}: the timer never ticked"
        await _close(engine)
        async with _databases(db_url) as (db,):
            assert await _count(db, SCHEDULES) == 1
            assert len(await _pending_fires(db)) == 1
            assert await _runs(db) == restart + 1  # one firing per restart, none twice


async def test_the_timer_keeps_up_with_items_falling_due_back_to_back(db_url: str):
    """Each tick ends with the next item already due (re-armed with delay 0 while the tick is
    still running). The timer must not lose its job there: before ef11d74 APScheduler skipped
    that run ('maximum number of running instances reached') and dropped the date job."""
    async with _databases(db_url) as (db,):
        handled: list[str] = []

        async def slow(item: DueItem, claim: Claim) -> None:
            await asyncio.sleep(0.05)  # longer than the gap between items
            handled.append(item.ref_id)

        work = DueWork(db, "w", max_idle_s=5)
        work.register("message", slow)
        start = time.time() + 0.3
        async with db.transaction() as s:
            for i in range(20):
                await due.add(s, kind="message", ref_id=f"m{i}", due_at=start + i * 0.01, now=0)
        timer = Timer(work)
        timer.start()
        try:

            async def all_handled() -> bool:
                return len(handled) == 20

            # Due within 0.5 s; a live timer handles them all within that plus a few ticks.
            assert await _poll(all_handled, within=4), (
                f"{len(handled)} of 20 handled; the timer's job: "
                f"{timer.scheduler.get_job(timer.JOB_ID)}"
            )
        finally:
            await timer.shutdown()


# ---- follow-up messages through the Slack handlers (bot/due_slack.py), in process -------------


@dataclass
class Replica:
    """An engine with the real Slack app around it (its due handlers post to FakeSlack)."""

    engine: Engine
    ctx: Any  # bot.slack_app.BotContext


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@contextlib.asynccontextmanager
async def _slack_replicas(
    url: str, clock: Clock, fake: FakeSlack, n: int = 2
) -> AsyncIterator[list[Replica]]:
    replicas = []
    for _ in range(n):
        engine = await _engine(url, clock)
        slack = SlackSettings(
            bot_token="xoxb-test", signing_secret="secret", api_base_url=fake.base_url
        )
        app: Any = build_app(engine, engine.svc.settings, slack, socket=False)
        replicas.append(Replica(engine, app.baton))
    try:
        yield replicas
    finally:
        await _close(*(r.engine for r in replicas))
        for r in replicas:  # the Slack client's pooled HTTP session, as `baton serve` does
            session = getattr(r.ctx.poster.client, "session", None)
            if session is not None and not session.closed:
                await session.close()


def _posts(fake: FakeSlack, text: str) -> int:
    return sum(1 for c in fake.calls_to("chat.postMessage") if c.ok and c.args.get("text") == text)


async def test_a_follow_up_is_posted_once_and_a_missed_one_is_reported_to_its_requester(
    db_url: str, fake_slack: FakeSlack
):
    clock = Clock()
    async with _slack_replicas(db_url, clock, fake_slack, n=1) as [replica]:
        engine = replica.engine
        engine.due.grace_s = 60
        now = clock()
        for text, at in (("on time", now), ("an hour late", now - 3600)):
            await schedule_message(
                engine, text=text, due_at=at, channel="C0DUE001", requester=f"slack:{USER_ID}"
            )
        assert await engine.due.tick() == 2
        assert _posts(fake_slack, "on time") == 1
        assert _posts(fake_slack, "an hour late") == 0
        [dm] = fake_slack.messages(dm_channel_id(USER_ID))
        assert "an hour late" in dm["text"] and "While I was down" in dm["text"]
        assert fake_slack.count("conversations.open") == 1
        assert await engine.due.tick() == 0
        assert _posts(fake_slack, "on time") == 1
        assert {i.status for i in await _items(engine.svc.db)} == {"done", "missed"}


async def test_a_follow_up_posted_before_a_crash_is_not_posted_again(
    db_url: str, fake_slack: FakeSlack
):
    clock = Clock()
    async with _slack_replicas(db_url, clock, fake_slack) as [a, b]:
        await schedule_message(a.engine, text="ping once", due_at=clock(), channel="C0DUE001")
        post = a.engine.due.kinds[MESSAGE].handler

        async def post_then_die(item: DueItem, claim: Claim) -> None:
            await post(item, claim)
            raise Crash  # SIGKILL after Slack took the post, before the row was finished

        a.engine.due.kinds[MESSAGE].handler = post_then_die
        with pytest.raises(Crash):
            await a.engine.due.tick()
        assert _posts(fake_slack, "ping once") == 1
        clock.advance(a.engine.due.lease_s + 1)
        assert await b.engine.due.tick() == 1
        assert _posts(fake_slack, "ping once") == 1


async def test_a_follow_up_paused_between_fence_check_and_post_is_not_posted_twice(
    db_url: str, fake_slack: FakeSlack
):
    clock = Clock()
    async with _slack_replicas(db_url, clock, fake_slack) as [a, b]:
        await schedule_message(a.engine, text="ping paused", due_at=clock(), channel="C0DUE002")
        waiting, go_on = asyncio.Event(), asyncio.Event()

        class Paused:
            """The per-channel pacer of a process that stops right there (SIGSTOP, GC)."""

            async def wait(self, channel: str) -> None:
                waiting.set()
                await go_on.wait()

        a.ctx.poster.pacer = Paused()
        tick_a = asyncio.create_task(a.engine.due.tick())
        await asyncio.wait_for(waiting.wait(), 5)  # a checked its fence and is about to post
        clock.advance(a.engine.due.lease_s + 1)
        assert await b.engine.due.tick() == 1
        assert _posts(fake_slack, "ping paused") == 1
        go_on.set()  # SIGCONT
        await tick_a
        assert _posts(fake_slack, "ping paused") == 1
