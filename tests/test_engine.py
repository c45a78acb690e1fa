"""The engine in process, on SQLite and PostgreSQL: checkpoints, races, leases, resume."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agents.approvals import DecisionRequest
from agents.bootstrap import open_engine
from agents.engine import Engine
from agents.errors import ApprovalError
from agents.events import Event
from agents.plan import Plan, PlanStep
from agents.settings import Settings
from storage.database import Database
from storage.migrations import LATEST_VERSION
from storage.models import SCHEMA_VERSION
from storage.repositories import approvals, audit, runs


def _settings(url: str) -> Settings:
    return Settings(
        database_url=url, plugins=("tests.plugins.ledger",), approve_writes=False, lease_s=5
    )


async def _engine(url: str) -> Engine:
    return await open_engine(_settings(url))


async def _close(*engines: Engine) -> None:
    for e in engines:
        await e.close()
        await e.svc.db.close()


def _send_plan(to: str = "cto@acme.test") -> Plan:
    return Plan(
        steps=[
            PlanStep(id="look", title="Look up", tool="lookup", arguments={"topic": "acme"}),
            PlanStep(
                id="send",
                title="Send",
                tool="send_message",
                arguments={"to": to, "body": "hello {steps.look.output}"},
                depends_on=["look"],
            ),
        ]
    )


def _ledger(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ledger.txt"
    monkeypatch.setenv("BATON_TEST_LEDGER", str(path))
    return path


async def _pending(engine: Engine, run_id: str):
    async with engine.svc.db.transaction() as s:
        return await approvals.list_approvals(s, run_id=run_id, statuses=["pending"])


async def test_run_parks_then_resumes_in_another_engine(db_url: str, ledger: Path):
    a = await _engine(db_url)
    run_id = await a.start_plan("send hello", _send_plan())
    assert (await a.wait(run_id)).status == "waiting"
    [pending] = await _pending(a, run_id)
    assert pending.action == {
        "tool": "send_message",
        "arguments": {"to": "cto@acme.test", "body": "hello facts about acme"},
    }
    assert _ledger(ledger) == []  # nothing is sent before a person approves
    await _close(a)

    b = await _engine(db_url)  # another process, as far as the database can tell
    await b.decide(DecisionRequest(pending.id, "approve", "slack:U1", digest=pending.digest))
    assert (await b.wait(run_id)).status == "done"
    lines = _ledger(ledger)
    assert len(lines) == 1 and "cto@acme.test: hello facts about acme" in lines[0]
    async with b.svc.db.transaction() as s:
        entries = await audit.list_entries(s, run_id=run_id)
    assert [(e.actor, e.action) for e in entries] == [("slack:U1", "approval.approved")]
    await _close(b)


async def test_many_concurrent_clicks_one_decision(db_url: str, ledger: Path):
    engines = [await _engine(db_url) for _ in range(3)]
    run_id = await engines[0].start_plan("send hello", _send_plan())
    assert (await engines[0].wait(run_id)).status == "waiting"
    [pending] = await _pending(engines[0], run_id)

    async def click(i: int) -> str:
        engine = engines[i % 3]
        decision = "reject" if i % 6 == 5 else "approve"
        try:
            await engine.decide(
                DecisionRequest(pending.id, decision, f"u{i}", reason="no", digest=pending.digest)
            )
        except ApprovalError as exc:
            assert "already" in str(exc)
            return "refused"
        return decision

    results = await asyncio.gather(*(click(i) for i in range(60)))
    winners = [r for r in results if r != "refused"]
    assert len(winners) == 1
    for e in engines:
        for task in list(e._drivers.values()):
            await task
    final = await engines[0].summary(run_id)
    sent = _ledger(ledger)
    if winners[0] == "approve":
        assert final.status == "done" and len(sent) == 1
    else:
        assert final.status == "rejected" and sent == []
    await _close(*engines)


async def test_edit_is_validated_and_digest_is_bound(db_url: str, ledger: Path):
    engine = await _engine(db_url)
    run_id = await engine.start_plan("send hello", _send_plan())
    await engine.wait(run_id)
    [pending] = await _pending(engine, run_id)
    with pytest.raises(ApprovalError, match="Invalid arguments for send_message"):
        await engine.decide(
            DecisionRequest(
                pending.id, "approve", "u1", arguments={"to": "x"}, digest=pending.digest
            )
        )
    with pytest.raises(ApprovalError, match="changed since"):
        await engine.decide(DecisionRequest(pending.id, "approve", "u1", digest="0" * 64))
    assert [p.id for p in await _pending(engine, run_id)] == [pending.id]
    edited = {"to": "vp@acme.test", "body": "edited body"}
    await engine.decide(DecisionRequest(pending.id, "approve", "u1", arguments=edited))
    assert (await engine.wait(run_id)).status == "done"
    assert _ledger(ledger)[0].endswith("send_message\tvp@acme.test: edited body")
    await _close(engine)


async def test_live_lease_keeps_a_second_engine_out(db_url: str, ledger: Path):
    a, b = await _engine(db_url), await _engine(db_url)
    seen: list[Event] = []

    async def collect(event: Event) -> None:
        seen.append(event)

    b.bus.subscribe(collect)
    plan = Plan(
        steps=[PlanStep(id="wait", title="Wait", tool="sleep_for", arguments={"seconds": 0.5})]
    )
    run_id = await a.start_plan("sleep", plan)
    await asyncio.sleep(0.1)
    summary = await b.drive(run_id)  # cannot claim: a holds a live lease
    assert summary.status == "running"
    assert (await a.wait(run_id)).status == "done"
    assert not [e for e in seen if e.kind == "step_started"]
    await _close(a, b)


async def test_cancel_a_waiting_run(db_url: str, ledger: Path):
    engine = await _engine(db_url)
    run_id = await engine.start_plan("send hello", _send_plan())
    await engine.wait(run_id)
    summary = await engine.cancel(run_id, actor="cli:me")
    assert summary.status == "cancelled"
    assert await _pending(engine, run_id) == []
    assert _ledger(ledger) == []
    await _close(engine)


async def test_migrations_are_versioned_and_idempotent(db_url: str):
    db = await Database.open(db_url)
    await db.close()
    db = await Database.open(db_url)  # a second start applies nothing twice
    async with db.transaction() as s:
        rows = list((await s.execute(SCHEMA_VERSION.select())).mappings())
        assert await runs.list_runs(s) == []
    assert [r["version"] for r in rows] == list(range(1, LATEST_VERSION + 1))
    await db.close()


async def test_take_over_then_submit_result(db_url: str, ledger: Path):
    engine = await _engine(db_url)
    run_id = await engine.start_plan("send hello", _send_plan())
    await engine.wait(run_id)
    [pending] = await _pending(engine, run_id)
    handoff = await engine.take_over(pending.id, actor="slack:U2", digest=pending.digest)
    assert "Goal: send hello" in (handoff.summary or "")
    assert "Waiting action: send_message" in (handoff.summary or "")
    assert (await engine.wait(run_id)).status == "waiting"
    with pytest.raises(ApprovalError, match="already taken_over by slack:U2"):
        await engine.decide(DecisionRequest(pending.id, "approve", "u3"))
    await engine.answer_handoff(handoff.id, actor="slack:U2", answer="I phoned the CTO instead")
    assert (await engine.wait(run_id)).status == "done"
    async with engine.svc.db.transaction() as s:
        run = await runs.get_run(s, run_id=run_id)
    assert run is not None and run.status == "done"
    assert _ledger(ledger) == []  # the person did it; the tool never ran
    await _close(engine)


async def test_take_over_then_return(db_url: str, ledger: Path):
    engine = await _engine(db_url)
    run_id = await engine.start_plan("send hello", _send_plan())
    await engine.wait(run_id)
    [pending] = await _pending(engine, run_id)
    handoff = await engine.take_over(pending.id, actor="slack:U2")
    await engine.return_handoff(handoff.id, actor="slack:U2", note="not my job")
    summary = await engine.wait(run_id)
    assert summary.status == "rejected" and "not my job" in (summary.error or "")
    assert _ledger(ledger) == []
    await _close(engine)
