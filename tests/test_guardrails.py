"""Guardrails fixed in code: the loop detector, approvals re-checked at execution time, tools an
agent may not use, money budgets that pause a run and ask, secrets that never leave, and agent
text that cannot ping a whole channel.

The engine runs in process over real SQLite (and PostgreSQL where it matters) with litellm
talking HTTP to the scripted provider; the CLI tests run the real ``baton`` command.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from agents.approvals import DecisionRequest, action_digest
from agents.approvals import decide as decide_approval
from agents.bootstrap import open_engine
from agents.engine import Engine
from agents.plan import Plan, PlanStep
from agents.secrets import REDACTED, install_log_redaction, redact, secrets_in
from agents.settings import Limits, Settings
from bot.views import approval_decided, approval_message, run_summary, status_card, step_result
from bot.views.approval import action_summary
from bot.views.cards import ApprovalCard, RunCard, StepLine
from storage.models import Approval
from storage.repositories import approvals, audit, runs, steps, tool_calls
from tests.conftest import run_baton
from tests.support.canary import CANARY_ENV, CANARY_VALUE, leaks_in_files, leaks_in_logs
from tests.support.llm_server import Reply, ScriptedLLM

PLANNER = "You are the planner"
PLUGINS = ("tests.plugins.ledger", "tests.plugins.guarded")
CANARY_KEY = "sk-canary-5f1e2d3c4b5a69788796"
CANARY_SMTP = "smtp-canary-0a9b8c7d6e5f"
CANARY_SLACK = "xoxb-canary-1234567890-abcdef"


def opening(title: str) -> str:
    """The substring that marks every request of the step titled ``title``."""
    return f"Your step: {title}\n"


def settings(url: str, **overrides: Any) -> Settings:
    base = Settings(database_url=url, plugins=PLUGINS, approve_writes=False, lease_s=5)
    return replace(base, **overrides)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/baton.db"


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ledger.txt"
    monkeypatch.setenv("BATON_TEST_LEDGER", str(path))
    return path


def files_bytes(folder: Path, pattern: str) -> bytes:
    """Every byte of the files matching ``pattern`` (a database with its WAL and journal)."""
    return b"".join(p.read_bytes() for p in sorted(folder.glob(pattern)))


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
async def engines(llm_env: ScriptedLLM) -> AsyncIterator[list[Engine]]:
    """Engines opened by a test (closed at its end, with their databases)."""
    opened: list[Engine] = []
    yield opened
    for e in opened:
        await e.close()
        await e.svc.db.close()


async def start(engines: list[Engine], s: Settings) -> Engine:
    engine = await open_engine(s)
    engines.append(engine)
    return engine


async def stop(engines: list[Engine], engine: Engine) -> None:
    engines.remove(engine)
    await engine.close()
    await engine.svc.db.close()


def agent_plan(agent: str = "operator", title: str = "Loop") -> Plan:
    return Plan(steps=[PlanStep(id="s1", title=title, agent=agent, instructions="Do it.")])


async def pending(engine: Engine, run_id: str) -> list[Approval]:
    async with engine.svc.db.transaction() as s:
        return await approvals.list_approvals(s, run_id=run_id, statuses=["pending"])


async def calls_made(engine: Engine, run_id: str, tool: str) -> int:
    async with engine.svc.db.transaction() as s:
        rows = await tool_calls.list_for_run(s, run_id=run_id)
    return sum(1 for r in rows if r.tool == tool and r.status == "done")


def tool_texts(request: Any) -> list[str]:
    return [str(m.get("content")) for m in request.messages if m.get("role") == "tool"]


# ---- the loop detector ----------------------------------------------------------------------


async def test_a_model_repeating_one_call_forever_is_stopped(
    llm_env: ScriptedLLM, engines: list[Engine], sqlite_url: str
) -> None:
    llm_env.rule(opening("Loop"), Reply.tool_calls([("lookup", {"topic": "acme"})]))
    engine = await start(engines, settings(sqlite_url))

    run_id = await engine.start_plan("look it up", agent_plan())
    summary = await engine.wait(run_id)

    assert summary.status == "failed"
    assert "stopped: lookup called 5 times with the same arguments" in (summary.error or "")
    assert "BATON_MAX_REPEAT_CALLS" in (summary.error or "")
    assert await calls_made(engine, run_id, "lookup") == 3  # bounded: the limit, no more
    reqs = llm_env.requests_matching(opening("Loop"))
    assert len(reqs) == 5
    # The first call past the limit got an error instead of a result.
    assert "already called 3 times with these same arguments" in tool_texts(reqs[4])[-1]


async def test_the_loop_count_survives_a_resume(
    llm_env: ScriptedLLM, engines: list[Engine], db_url: str, ledger: Path
) -> None:
    look = Reply.tool_calls([("lookup", {"topic": "acme"})])
    send = Reply.tool_calls([("send_message", {"to": "cto@acme.test", "body": "hi"})])
    llm_env.rule(opening("Loop"), look, look, send, look)  # then lookup forever
    a = await start(engines, settings(db_url))
    run_id = await a.start_plan("look it up", agent_plan())
    assert (await a.wait(run_id)).status == "waiting"  # the send waits for a person
    [approval] = await pending(a, run_id)
    await stop(engines, a)

    b = await start(engines, settings(db_url))  # a new process: nothing counted in memory
    await b.decide(DecisionRequest(approval.id, "approve", "cli:boss"))
    summary = await b.wait(run_id)

    assert summary.status == "failed"
    assert "stopped: lookup called 5 times" in (summary.error or "")
    assert await calls_made(b, run_id, "lookup") == 3
    assert len(lines(ledger)) == 1


async def test_different_arguments_are_not_a_loop(
    llm_env: ScriptedLLM, engines: list[Engine], sqlite_url: str
) -> None:
    topics = [Reply.tool_calls([("lookup", {"topic": f"t{i}"})]) for i in range(5)]
    llm_env.rule(opening("Loop"), *topics, Reply.text("found it all"))
    engine = await start(engines, settings(sqlite_url))

    run_id = await engine.start_plan("look it up", agent_plan())

    assert (await engine.wait(run_id)).status == "done"
    assert await calls_made(engine, run_id, "lookup") == 5


# ---- tools an agent may not use ------------------------------------------------------------


async def test_a_tool_the_agent_may_not_use_is_never_called(
    llm_env: ScriptedLLM, engines: list[Engine], sqlite_url: str, ledger: Path
) -> None:
    llm_env.rule(
        opening("Read"),
        Reply.tool_calls([("ledger_write", {"entry": "sneaky"})]),
        Reply.text("could not write"),
    )
    engine = await start(engines, settings(sqlite_url))

    run_id = await engine.start_plan("read", agent_plan("reader", "Read"))

    assert (await engine.wait(run_id)).status == "done"
    assert lines(ledger) == []
    assert await calls_made(engine, run_id, "ledger_write") == 0
    told = tool_texts(llm_env.requests_matching(opening("Read"))[-1])[-1]
    assert "there is no tool 'ledger_write' for you" in told and "lookup" in told


# ---- approvals re-checked at execution time ------------------------------------------------


def send_plan() -> Plan:
    return Plan(
        steps=[
            PlanStep(
                id="send",
                title="Send",
                tool="send_message",
                arguments={"to": "cto@acme.test", "body": "hello"},
            )
        ]
    )


TAMPERING = {
    "digest": ("UPDATE approvals SET digest = :v WHERE id = :id", "0" * 64),
    "action": (
        "UPDATE approvals SET action = :v, digest = :d WHERE id = :id",
        {"tool": "send_message", "arguments": {"to": "all@acme.test", "body": "hello"}},
    ),
    "edited": (
        "UPDATE approvals SET edited = :v WHERE id = :id",
        {"arguments": {"to": 42}},
    ),
    "status": ("UPDATE approvals SET status = :v WHERE id = :id", "expired"),
}


@pytest.mark.parametrize("what", sorted(TAMPERING))
async def test_a_tampered_approval_does_not_run_the_tool(
    what: str, llm_env: ScriptedLLM, engines: list[Engine], db_url: str, ledger: Path
) -> None:
    engine = await start(engines, settings(db_url))
    run_id = await engine.start_plan("send hello", send_plan())
    assert (await engine.wait(run_id)).status == "waiting"
    [approval] = await pending(engine, run_id)
    sql, value = TAMPERING[what]
    async with engine.svc.db.transaction() as s:
        # Approved the normal way, but not driven on: the row is altered before execution.
        await decide_approval(
            s,
            DecisionRequest(approval.id, "approve", "slack:U1", digest=approval.digest),
            registry=engine.svc.registry,
            now=time.time(),
        )
        params: dict[str, Any] = {"id": approval.id, "v": value}
        if isinstance(value, dict):
            params["v"] = json.dumps(value)
            params["d"] = action_digest(value)  # a consistent digest: the forger's best try
        await s.execute(text(sql), params)

    summary = await engine.drive(run_id)
    summary = await engine.wait(run_id)

    assert lines(ledger) == []  # the side effect never happened
    assert summary.status in ("failed", "rejected"), summary
    if what != "status":  # a changed status is refused before execution, as a rejection
        assert "Baton refused to call send_message" in (summary.error or "")
        async with engine.svc.db.transaction() as s:
            entries = await audit.list_entries(s, run_id=run_id)
        refused = [e for e in entries if e.action == "guardrail.refused"]
        assert len(refused) == 1 and refused[0].actor == "baton"
        assert refused[0].detail and refused[0].detail["tool"] == "send_message"


async def test_an_untampered_edit_still_runs(
    llm_env: ScriptedLLM, engines: list[Engine], sqlite_url: str, ledger: Path
) -> None:
    engine = await start(engines, settings(sqlite_url))
    run_id = await engine.start_plan("send hello", send_plan())
    await engine.wait(run_id)
    [approval] = await pending(engine, run_id)
    edited = {"to": "vp@acme.test", "body": "edited"}
    await engine.decide(DecisionRequest(approval.id, "approve", "u1", arguments=edited))
    assert (await engine.wait(run_id)).status == "done"
    assert lines(ledger)[0].endswith("send_message\tvp@acme.test: edited")


# ---- budgets --------------------------------------------------------------------------------


async def budget_approvals(engine: Engine, run_id: str) -> list[Approval]:
    async with engine.svc.db.transaction() as s:
        found = await approvals.list_approvals(s, run_id=run_id)
    return [a for a in found if a.kind == "budget"]


async def test_the_run_budget_pauses_then_continues_after_approval_in_another_process(
    llm_env: ScriptedLLM, engines: list[Engine], db_url: str
) -> None:
    llm_env.rule(
        PLANNER,
        Reply.json(
            {"steps": [{"id": "s1", "title": "Loop", "agent": "operator", "instructions": "x"}]}
        ),
    )
    llm_env.rule(opening("Loop"), Reply.text("all done"))
    tiny = settings(db_url, limits=Limits(max_cost_usd=0.000001))
    a = await start(engines, tiny)
    run_id = await a.start_goal("look it up", requester="cli:alice")

    assert (await a.wait(run_id)).status == "waiting"  # paused, not failed
    [paused] = await budget_approvals(a, run_id)
    assert llm_env.requests_matching(opening("Loop")) == []  # asked before the model call
    assert paused.status == "pending" and paused.risk == "external"
    action = paused.action or {}
    assert (action["budget"], action["cap"], action["setting"]) == (
        "run",
        0.000001,
        "BATON_MAX_COST_USD",
    )
    assert action["spent"] > action["cap"] and action["raise_to"] > action["spent"]
    await stop(engines, a)

    b = await start(engines, tiny)  # the raise is read from storage, not from memory
    await b.decide(DecisionRequest(paused.id, "approve", "slack:UBOSS", digest=paused.digest))
    summary = await b.wait(run_id)

    assert summary.status == "done", summary
    assert len(llm_env.requests_matching(opening("Loop"))) == 1
    [decided] = await budget_approvals(b, run_id)
    assert decided.status == "approved" and decided.consumed_at is not None


async def test_a_rejected_budget_fails_the_run_with_the_reason(
    llm_env: ScriptedLLM, engines: list[Engine], sqlite_url: str
) -> None:
    llm_env.rule(
        PLANNER,
        Reply.json(
            {"steps": [{"id": "s1", "title": "Loop", "agent": "operator", "instructions": "x"}]}
        ),
    )
    engine = await start(engines, settings(sqlite_url, limits=Limits(max_cost_usd=0.000001)))
    run_id = await engine.start_goal("look it up", requester="cli:alice")
    assert (await engine.wait(run_id)).status == "waiting"
    [paused] = await budget_approvals(engine, run_id)

    await engine.decide(DecisionRequest(paused.id, "reject", "slack:UBOSS", reason="too pricey"))
    summary = await engine.wait(run_id)

    assert summary.status == "failed"
    assert "reaching its cap of $0.000001 (BATON_MAX_COST_USD)" in (summary.error or "")
    assert "A person chose not to raise it: too pricey" in (summary.error or "")
    assert llm_env.requests_matching(opening("Loop")) == []


def upsert_plan() -> Plan:
    return Plan(
        steps=[PlanStep(id="w", title="Write", tool="ledger_upsert", arguments={"entry": "x"})]
    )


@pytest.mark.parametrize("decision", ["approve", "reject"])
async def test_the_daily_budget_per_user_pauses_before_a_tool_call(
    decision: str, llm_env: ScriptedLLM, engines: list[Engine], db_url: str, ledger: Path
) -> None:
    llm_env.rule(opening("Loop"), Reply.text("spent a little"))
    free = await start(engines, settings(db_url))
    first = await free.start_plan("spend", agent_plan(), requester="cli:alice")
    assert (await free.wait(first)).status == "done"
    async with free.svc.db.transaction() as s:
        run = await runs.get_run(s, run_id=first)
    assert run is not None and run.cost_usd > 0
    spent_today = run.cost_usd
    await stop(engines, free)

    capped = await start(engines, settings(db_url, max_cost_usd_per_user_day=spent_today / 2))
    other = await capped.start_plan("write", upsert_plan(), requester="cli:bob")
    assert (await capped.wait(other)).status == "done"  # bob has spent nothing today
    run_id = await capped.start_plan("write", upsert_plan(), requester="cli:alice")

    assert (await capped.wait(run_id)).status == "waiting"
    assert len(lines(ledger)) == 1  # only bob's: alice's tool call waits
    [paused] = await budget_approvals(capped, run_id)
    action = paused.action or {}
    assert (action["budget"], action["who"]) == ("user_day", "cli:alice")
    assert action["spent"] == pytest.approx(spent_today)
    assert action["setting"] == "BATON_MAX_COST_USD_PER_USER_DAY"

    await capped.decide(DecisionRequest(paused.id, decision, "slack:UBOSS", reason="no"))  # type: ignore[arg-type]
    summary = await capped.wait(run_id)

    if decision == "approve":
        assert summary.status == "done"
        assert len(lines(ledger)) == 2
    else:
        assert summary.status == "failed"
        assert "cli:alice has spent $" in (summary.error or "")
        assert "per-user daily cap" in (summary.error or "")
        assert len(lines(ledger)) == 1


async def test_the_daily_budget_per_workspace_counts_runs_of_that_workspace(
    llm_env: ScriptedLLM, engines: list[Engine], sqlite_url: str, ledger: Path
) -> None:
    llm_env.rule(opening("Loop"), Reply.text("spent a little"))
    engine = await start(engines, settings(sqlite_url, max_cost_usd_per_workspace_day=0.0000001))
    origin = {"slack": True, "team_id": "T1", "channel": "C1", "user": "U1"}
    first = await engine.start_plan("spend", agent_plan(), requester="slack:U1", origin=origin)
    assert (await engine.wait(first)).status == "done"  # spent nothing before its call
    elsewhere = await engine.start_plan(
        "write", upsert_plan(), requester="slack:U2", origin={**origin, "team_id": "T2"}
    )
    assert (await engine.wait(elsewhere)).status == "done"
    run_id = await engine.start_plan("write", upsert_plan(), requester="slack:U2", origin=origin)

    assert (await engine.wait(run_id)).status == "waiting"
    [paused] = await budget_approvals(engine, run_id)
    assert (paused.action or {})["budget"] == "workspace_day"
    assert (paused.action or {})["who"] == "T1"


async def test_a_day_counts_every_unfinished_run_however_old_its_last_update(
    db_url: str,
) -> None:
    # A step's usage does not move the run's updated_at (it would rewrite two index entries
    # on every step), so a long run started yesterday must still count today.
    from storage.database import Database

    db = await Database.open(db_url)
    rows = [
        ("r_yesterday_running", "running", 10.0, 1.0),
        ("r_yesterday_waiting", "waiting", 10.0, 2.0),
        ("r_yesterday_done", "done", 10.0, 4.0),
        ("r_today_done", "done", 1000.0, 8.0),
        ("r_other_user", "running", 1000.0, 16.0),
    ]
    try:
        async with db.transaction() as s:
            for run_id, status, updated_at, cost in rows:
                await runs.create_run(
                    s,
                    values={
                        "id": run_id,
                        "goal": "g",
                        "status": status,
                        "source": "goal",
                        "requester": "cli:bob" if run_id == "r_other_user" else "cli:alice",
                        "team_id": "T1",
                        "cost_usd": cost,
                        "model_calls": 0,
                        "tokens_in": 0,
                        "tokens_out": 0,
                        "cancel_requested": False,
                        "created_at": updated_at,
                        "updated_at": updated_at,
                    },
                )
        async with db.transaction() as s:
            assert await runs.spent_since(s, since=500.0, requester="cli:alice") == 11.0
            assert await runs.spent_since(s, since=500.0, team_id="T1") == 27.0
    finally:
        await db.close()


# ---- secrets --------------------------------------------------------------------------------


def test_secret_values_come_from_secret_names_and_urls() -> None:
    env = {
        "OPENAI_API_KEY": "sk-abcdefgh1234",
        "BATON_SMTP_PASSWORD": "hunter2hunter2",
        "SLACK_BOT_TOKEN": "xoxb-1-2-3-abc",
        "MY_SERVICE_CREDENTIALS": "c0ffee-c0ffee",
        "BATON_DATABASE_URL": "postgresql://baton:pg-pass-1234@db/baton",
        "GIT_AUTHOR_NAME": "Ada Lovelace",
        "SHORT_TOKEN": "abc",
        "HOME": "/home/ada",
    }
    assert secrets_in(env) == {
        "sk-abcdefgh1234",
        "hunter2hunter2",
        "xoxb-1-2-3-abc",
        "c0ffee-c0ffee",
        "pg-pass-1234",
    }


def test_redaction_of_text_and_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY_KEY)
    assert redact(f"key={CANARY_KEY}!") == f"key={REDACTED}!"
    install_log_redaction()
    log = logging.getLogger("agents.somewhere")
    with caplog.at_level(logging.INFO):
        log.info("calling with %s", CANARY_KEY)
        try:
            raise RuntimeError(f"refused {CANARY_KEY}")
        except RuntimeError:
            log.exception("it broke")
    assert CANARY_KEY not in caplog.text
    assert REDACTED in caplog.text
    assert all(CANARY_KEY not in (r.exc_text or "") for r in caplog.records)


@pytest.fixture
def canaries(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "BATON_SMTP_PASSWORD": CANARY_SMTP,
        "SLACK_BOT_TOKEN": CANARY_SLACK,
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("BATON_SMTP_USERNAME", "baton@acme.test")  # a password needs a user
    return values


async def test_canary_secrets_never_reach_the_database_or_logs(
    llm_env: ScriptedLLM,
    engines: list[Engine],
    tmp_path: Path,
    canaries: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY_KEY)
    install_log_redaction()
    llm_env.rule(
        opening("Leak"),
        Reply.tool_calls(
            [
                ("read_setting", {"name": "BATON_SMTP_PASSWORD"}),
                ("read_setting", {"name": "SLACK_BOT_TOKEN"}),
                ("read_setting", {"name": CANARY_ENV}),  # the suite-wide canary, too
                ("leaky_backend", {"name": "OPENAI_API_KEY"}),
            ]
        ),
        Reply.text(f"The password is {CANARY_SMTP} and the key {CANARY_KEY}."),
    )
    llm_env.rule(opening("Fail"), Reply.error(400, f"Incorrect API key provided: {CANARY_KEY}"))
    url = f"sqlite:///{tmp_path}/canary.db"
    engine = await start(engines, settings(url))
    plan = Plan(
        steps=[
            PlanStep(id="leak", title="Leak", agent="leaker", instructions="Read them."),
            PlanStep(id="fail", title="Fail", agent="leaker", depends_on=["leak"]),
        ]
    )
    with caplog.at_level(logging.DEBUG):
        run_id = await engine.start_plan("read the settings", plan)
        summary = await engine.wait(run_id)

    assert summary.status == "failed"
    assert "The provider rejected the request" in (summary.error or "")
    assert REDACTED in (summary.error or "")
    async with engine.svc.db.transaction() as s:
        rows = await steps.get_steps(s, run_id=run_id)
    assert REDACTED in (rows[0].output or "")
    await stop(engines, engine)

    stored = files_bytes(tmp_path, "canary.db*")
    for value in (CANARY_KEY, CANARY_VALUE, *canaries.values()):
        assert value.encode() not in stored
        assert value not in caplog.text
    assert b"[redacted]" in stored


def test_canary_secrets_never_reach_cli_output_or_logs(
    llm: ScriptedLLM, baton_env: dict[str, str]
) -> None:
    llm.rule(
        PLANNER,
        Reply.json(
            {"steps": [{"id": "leak", "title": "Leak", "agent": "leaker", "instructions": "x"}]}
        ),
    )
    llm.rule(
        opening("Leak"),
        Reply.tool_calls([("read_setting", {"name": "BATON_SMTP_PASSWORD"})]),
        Reply.error(400, f"Incorrect API key provided: {CANARY_KEY}"),
    )
    env = {
        **baton_env,
        "BATON_PLUGINS": ",".join(PLUGINS),
        "OPENAI_API_KEY": CANARY_KEY,
        "BATON_SMTP_PASSWORD": CANARY_SMTP,
        "BATON_SMTP_USERNAME": "baton@acme.test",
        "BATON_LOG_LEVEL": "DEBUG",
    }

    r = run_baton(["run", "read the settings"], env)
    shown = run_baton(["show", _run_id(r.out)], env)

    assert r.code == 1, r.out + r.err
    for value in (CANARY_KEY, CANARY_SMTP):
        for out in (r.out, r.err, shown.out, shown.err):
            assert value not in out
    assert REDACTED in r.out
    db = Path(env["BATON_DATABASE_URL"].removeprefix("sqlite:///"))
    stored = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    assert CANARY_KEY.encode() not in stored and CANARY_SMTP.encode() not in stored


def _run_id(out: str) -> str:
    m = re.search(r"▶ run (r-[0-9a-f]+)", out)
    assert m, out
    return m.group(1)


# ---- budgets at the terminal ----------------------------------------------------------------


def test_the_cli_shows_a_budget_pause_and_a_rejection_fails_the_run(
    llm: ScriptedLLM, baton_env: dict[str, str]
) -> None:
    llm.rule(
        PLANNER,
        Reply.json(
            {"steps": [{"id": "s1", "title": "Loop", "agent": "operator", "instructions": "x"}]}
        ),
    )
    env = {**baton_env, "BATON_MAX_COST_USD": "0.00001"}

    r = run_baton(["run", "Look up Acme"], env)

    assert r.code == 3, r.out + r.err  # waiting for a person, not failed
    assert "Budget reached: This run has cost $" in r.out
    assert "reaching its cap of $0.00001 (BATON_MAX_COST_USD)" in r.out
    assert "Approve to let this run spend up to $" in r.out
    [approval_id] = sorted(set(re.findall(r"\b(a-[0-9a-f]{10})\b", r.out)))
    rejected = run_baton(["reject", approval_id, "--reason", "too pricey"], env)
    assert rejected.code == 1, rejected.out + rejected.err
    assert "A person chose not to raise it: too pricey" in rejected.out


def test_the_cli_prompt_asks_about_a_budget_and_approving_continues(
    llm: ScriptedLLM, baton_env: dict[str, str]
) -> None:
    llm.rule(
        PLANNER,
        Reply.json(
            {"steps": [{"id": "s1", "title": "Loop", "agent": "operator", "instructions": "x"}]}
        ),
    )
    llm.rule(opening("Loop"), Reply.text("found it"))
    env = {**baton_env, "BATON_MAX_COST_USD": "0.00001"}

    r = run_baton(["run", "Look up Acme", "--approvals", "prompt"], env, stdin="a\n")

    assert r.code == 0, r.out + r.err
    assert "Budget reached: This run has cost $" in r.out
    assert "[a]pprove  [r]eject" in r.out and "[e]dit" not in r.out
    assert "found it" in r.out
    assert len(llm.requests_matching(opening("Loop"))) == 1


# ---- Slack: budget cards, and agent text cannot ping everyone ----------------------------


def budget_card(status: str = "pending") -> ApprovalCard:
    return ApprovalCard(
        approval_id="a-0123456789",
        run_id="r-0123456789",
        step_id="s1",
        step_title="Research <!channel>",
        kind="budget",
        action={
            "budget": "user_day",
            "who": "slack:U0ALICE",
            "spent": 10.5,
            "cap": 10.0,
            "raise_to": 20.5,
            "setting": "BATON_MAX_COST_USD_PER_USER_DAY",
        },
        digest="d" * 64,
        risk="external",
        status=status,
        decided_by="U0BOSS" if status != "pending" else None,
    )


def test_a_budget_card_says_what_was_spent_and_offers_raise_or_stop() -> None:
    text_, blocks = approval_message(budget_card())
    body = json.dumps(blocks, ensure_ascii=False)
    assert text_.startswith("Budget reached")
    assert "<@U0ALICE> has spent $10.50 today (UTC)" in body
    assert "$10.00" in body and "$20.50" in body and "BATON_MAX_COST_USD_PER_USER_DAY" in body
    buttons = [e["text"]["text"] for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert buttons == ["Raise the budget", "Stop the run"]
    assert "Raise the budget to $20.50" in action_summary(budget_card())
    word, _ = approval_decided(budget_card("approved"))
    assert word.startswith("Budget raised")


BROADCASTS = "<!channel> <!here> <!everyone> <!subteam^S0123|@team> hi"


def test_agent_text_cannot_ping_a_channel_or_group() -> None:
    card = RunCard(
        run_id="r-0123456789",
        goal=BROADCASTS,
        status="failed",
        requester="slack:U1",
        steps=(StepLine("s1", BROADCASTS, BROADCASTS, "failed"),),
        error=BROADCASTS,
    )
    messages = [
        step_result("r-0123456789", "s1", BROADCASTS, BROADCASTS),
        run_summary(card, BROADCASTS),
        status_card(card),
        approval_message(budget_card()),
    ]
    for fallback, blocks in messages:
        payload = fallback + json.dumps(blocks, ensure_ascii=False)
        for needle in ("<!channel", "<!here", "<!everyone", "<!subteam"):
            assert needle not in payload, needle


def test_the_suite_wide_canary_check_finds_a_leak(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path_factory.mktemp("leaky")  # not this test's tmp_path, which is checked
    (folder / "run.log").write_text(f"token={CANARY_VALUE}\n")
    (folder / "clean.db").write_bytes(b"nothing to see")
    assert leaks_in_files(folder) == [str(folder / "run.log")]
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "saw %s", (CANARY_VALUE,), None)
    assert leaks_in_logs([record])
    install_log_redaction()
    redacted = logging.getLogger("x").makeRecord(
        "x", logging.ERROR, __file__, 1, "saw %s", (CANARY_VALUE,), None
    )
    assert leaks_in_logs([redacted]) == []
