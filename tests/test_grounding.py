"""Grounding: outbound text is checked against the run's evidence before anyone sends it.

The model (the scripted OpenAI-compatible server, over real HTTP) both writes the email and
acts as the claim checker; the checker's citations are then verified by Baton's code, so a
checker that "finds" support which is not in the evidence does not get the text through.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agents.approvals import DecisionRequest
from agents.bootstrap import open_engine
from agents.engine import Engine
from agents.grounding import MARKER, Evidence, verify
from agents.plan import Plan, PlanStep
from agents.settings import Settings
from bot.cards import approval_card
from bot.console import render_action
from bot.views.approval import approval_message
from storage.repositories import approvals, steps
from tests.support.fixtures import TEST_MODEL
from tests.support.llm_server import Reply, ScriptedLLM, request_text

CHECKER = "You check outbound text"
RESEARCH = (
    "Acme raised $20M in a Series B led by Foo Ventures in March 2025 "
    "(source: https://acme.test/news). Their CTO is Dana Reyes."
)


def _checker(claims: list[dict[str, Any]]) -> Reply:
    return Reply.json({"claims": claims})


def _is_checker(needle: str):
    return lambda body: CHECKER in request_text(body) and needle in _draft_of(body)


def _draft_of(body: dict[str, Any]) -> str:
    # The outbound text is the first fenced block of the checker's user message.
    user = body["messages"][-1]["content"]
    return user.split("</data>", 1)[0]


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ledger.txt"
    monkeypatch.setenv("BATON_TEST_LEDGER", str(path))
    return path


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def _engine(db_url: str, llm: ScriptedLLM) -> Engine:
    settings = Settings(
        database_url=db_url,
        model=TEST_MODEL,
        plugins=("tests.plugins.ledger",),
        retry_base_s=0.01,
        retry_max_s=0.05,
        model_timeout_s=10,
    )
    return await open_engine(settings)


async def _close(engine: Engine) -> None:
    await engine.close()
    await engine.svc.db.close()


def _outreach_plan() -> Plan:
    return Plan(
        steps=[
            PlanStep(id="research", title="Research Acme", agent="researcher"),
            PlanStep(
                id="send",
                title="Write and send",
                agent="outreach",
                instructions="Email cto@acme.test using {steps.research.output}",
                depends_on=["research"],
            ),
        ]
    )


def _send(body: str) -> Reply:
    return Reply.tool_calls(
        [("send_outreach", {"to": "cto@acme.test", "subject": "Congrats", "body": body})]
    )


async def _pending(engine: Engine, run_id: str):
    async with engine.svc.db.transaction() as s:
        return await approvals.list_approvals(s, run_id=run_id, statuses=["pending"])


async def test_unsupported_claim_is_sent_back_then_the_fixed_email_is_approved(
    llm_env: ScriptedLLM, db_url: str, ledger: Path
):
    llm = llm_env
    llm.rule(
        _is_checker("$50M"),
        _checker([{"claim": "Acme raised $50M", "evidence_id": "step:research", "quote": "$50M"}]),
    )
    llm.rule(
        _is_checker("$20M"),
        _checker(
            [
                {
                    "claim": "Acme raised $20M in a Series B",
                    "evidence_id": "step:research",
                    "quote": "raised $20M in a Series B",
                },
                {"claim": "Acme is the market leader", "evidence_id": None, "quote": None},
            ]
        ),
    )
    llm.rule(_is_checker("Series B"), _checker([]))  # never reached: listed for clarity
    llm.rule("Your step: Research Acme\n", Reply.text(RESEARCH))
    llm.rule("emailed cto@acme.test", Reply.text("SENT-TO-DANA"))
    llm.rule(MARKER, _send("Congrats on raising $20M in your Series B, Dana."))
    llm.rule("Your step: Write and send\n", _send("Congrats on raising $50M, Dana."))

    engine = await _engine(db_url, llm)
    try:
        run_id = await engine.start_plan("Research Acme and email their CTO", _outreach_plan())
        assert (await engine.wait(run_id)).status == "waiting"
        [pending] = await _pending(engine, run_id)
        grounding = pending.action["grounding"]
        # The first draft never reached a person: its claim was sent back to the agent.
        assert pending.action["arguments"]["body"].startswith("Congrats on raising $20M")
        assert grounding["unsupported"] == 1
        by_claim = {c["claim"]: c for c in grounding["claims"]}
        assert by_claim["Acme raised $20M in a Series B"]["supported"] is True
        assert by_claim["Acme raised $20M in a Series B"]["source"] == "step research"
        assert by_claim["Acme is the market leader"]["supported"] is False
        assert _lines(ledger) == []

        sent_back = [r for r in llm.requests if MARKER in r.text and CHECKER not in r.text]
        assert sent_back, "the agent was never told about its unsupported claim"
        assert "Acme raised $50M" in sent_back[0].text

        # What a person sees, in the terminal and in Slack.
        lines = "\n".join(render_action(pending))
        assert "ok  Acme raised $20M in a Series B  (source: step research)" in lines
        assert "!!  Acme is the market leader" in lines
        async with engine.svc.db.transaction() as s:
            step = await steps.get_step(s, run_id=run_id, step_id="send")
        assert step is not None
        _, blocks = approval_message(approval_card(pending, step.title))
        text = json.dumps(blocks, ensure_ascii=False)
        assert "1 claim(s) not supported by the research" in text
        assert "✅ Acme raised $20M in a Series B (source: step research)" in text

        await engine.decide(DecisionRequest(pending.id, "approve", "u1", digest=pending.digest))
        summary = await engine.wait(run_id)
        assert summary.status == "done"
        sent = _lines(ledger)
        assert len(sent) == 1 and "$20M" in sent[0] and "$50M" not in sent[0]
    finally:
        await _close(engine)


async def test_a_checker_that_invents_support_does_not_get_a_claim_through(
    llm_env: ScriptedLLM, db_url: str, ledger: Path
):
    """The checker cites the research with a quote that is not in it: the code catches it."""
    llm = llm_env
    llm.rule(
        CHECKER,
        _checker(
            [
                {
                    "claim": "Acme has 900 employees",
                    "evidence_id": "step:research",
                    "quote": "Acme has 900 employees",
                }
            ]
        ),
    )
    llm.rule("Your step: Research Acme\n", Reply.text(RESEARCH))
    llm.rule("A person rejected this call", Reply.text("NOT-SENT"))
    llm.rule("Your step: Write and send\n", _send("Congrats to all 900 of you at Acme!"))

    engine = await _engine(db_url, llm)
    try:
        run_id = await engine.start_plan("Research Acme and email their CTO", _outreach_plan())
        assert (await engine.wait(run_id)).status == "waiting"
        [pending] = await _pending(engine, run_id)
        # Sent back twice (BATON_GROUNDING_RETRIES), then a person decides, warned.
        checks = [r for r in llm.requests if CHECKER in r.text]
        assert len(checks) == 3
        [claim] = pending.action["grounding"]["claims"]
        assert claim["supported"] is False
        assert claim["problem"] == "the cited source does not say so"
        assert _lines(ledger) == []

        await engine.decide(
            DecisionRequest(pending.id, "reject", "u1", reason="made up", digest=pending.digest)
        )
        summary = await engine.wait(run_id)
        assert summary.status == "done"
        assert _lines(ledger) == []
    finally:
        await _close(engine)


async def test_a_tool_step_is_grounded_and_shown_to_the_approver(
    llm_env: ScriptedLLM, db_url: str, ledger: Path
):
    llm = llm_env
    llm.rule("Your step: Research Acme\n", Reply.text(RESEARCH))
    llm.rule(
        CHECKER,
        _checker(
            [
                {
                    "claim": "Dana Reyes is the CTO",
                    "evidence_id": "step:research",
                    "quote": "Their CTO is Dana Reyes",
                }
            ]
        ),
    )
    plan = Plan(
        steps=[
            PlanStep(id="research", title="Research Acme", agent="researcher"),
            PlanStep(
                id="send",
                title="Send",
                tool="send_outreach",
                arguments={
                    "to": "cto@acme.test",
                    "subject": "Hello Dana",
                    "body": "Dana, as CTO: {steps.research.output}",
                },
                depends_on=["research"],
            ),
        ]
    )
    engine = await _engine(db_url, llm)
    try:
        run_id = await engine.start_plan("email the CTO", plan)
        assert (await engine.wait(run_id)).status == "waiting"
        [pending] = await _pending(engine, run_id)
        assert pending.action["grounding"] == {
            "claims": [
                {
                    "claim": "Dana Reyes is the CTO",
                    "supported": True,
                    "source": "step research",
                    "quote": "Their CTO is Dana Reyes",
                }
            ],
            "unsupported": 0,
        }
        await engine.decide(DecisionRequest(pending.id, "approve", "u1", digest=pending.digest))
        assert (await engine.wait(run_id)).status == "done"
        assert len(_lines(ledger)) == 1
    finally:
        await _close(engine)


async def test_checker_garbage_sends_the_email_to_a_person_with_a_warning(
    llm_env: ScriptedLLM, db_url: str, ledger: Path
):
    llm = llm_env
    llm.rule(CHECKER, Reply.text("I think it is all fine!"))
    llm.rule("Your step: Research Acme\n", Reply.text(RESEARCH))
    llm.rule("Your step: Write and send\n", _send("Congrats on the Series B."))
    engine = await _engine(db_url, llm)
    try:
        run_id = await engine.start_plan("email the CTO", _outreach_plan())
        assert (await engine.wait(run_id)).status == "waiting"
        [pending] = await _pending(engine, run_id)
        assert "not JSON" in pending.action["grounding"]["error"]
        assert "check every fact yourself" in "\n".join(render_action(pending))
        assert len([r for r in llm.requests if CHECKER in r.text]) == 1
    finally:
        await _close(engine)


def test_verify_accepts_only_quotes_found_in_the_cited_evidence():
    evidence = [
        Evidence("goal", "the goal", "Email Acme"),
        Evidence("tool:1", "https://acme.test/about", "Acme makes  “rockets” for the Moon."),
    ]
    report = verify(
        {
            "claims": [
                {
                    "claim": "Acme makes rockets",
                    "evidence_id": "tool:1",
                    "quote": 'makes "rockets"',
                },
                {"claim": "Acme is on Mars", "evidence_id": "tool:1", "quote": "on Mars"},
                {"claim": "Acme is old", "evidence_id": "tool:9", "quote": "old"},
                {"claim": "Acme is big", "evidence_id": None, "quote": None},
                {"claim": "Acme", "evidence_id": "tool:1", "quote": "a"},
            ]
        },
        evidence,
    )
    verdicts = [(c.text, c.supported, c.source) for c in report.claims]
    assert verdicts == [
        ("Acme makes rockets", True, "https://acme.test/about"),
        ("Acme is on Mars", False, "https://acme.test/about"),
        ("Acme is old", False, None),
        ("Acme is big", False, None),
        ("Acme", False, "https://acme.test/about"),
    ]
    assert not report.ok
    assert verify({"nope": 1}, evidence).error is not None
    assert verify({"claims": []}, evidence).ok
