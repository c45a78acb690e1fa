"""Grounding through the engine: outbound text is checked against what the world said.

The model (the scripted OpenAI-compatible server, over real HTTP) writes the email and acts as
the checker; the checker's answer is then verified by Baton's code, on a real SQLite database.
Lazy checkers (that account for nothing), dishonest ones (that label facts as greetings, cite
real but unrelated quotes, or cite a step's summary or the draft itself) and honest ones.

This module is also a plugin (``register``): a read-only ``read_source`` tool that returns a
fixed page, the "world" the research step reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agents import Registry, Risk, tool
from agents.approvals import DecisionRequest
from agents.bootstrap import open_engine
from agents.engine import Engine
from agents.grounding import MARKER
from agents.plan import Plan, PlanStep
from agents.settings import Settings
from bot.console import render_action
from storage.repositories import approvals
from tests.support.fixtures import TEST_MODEL
from tests.support.llm_server import Reply, ScriptedLLM, request_text
from tests.support.sales import checker_parts, grounding_checker

CHECKER = "You check outbound text"
NEWS = (
    "URL: https://acme.test/news\nTitle: Acme news\n"
    "Acme raised $20M in a Series B led by Foo Ventures in March 2025. "
    "Their CTO is Dana Reyes (cto@acme.test). The office is in Lisbon."
)
#: What the research step's model writes: a summary with an invented fact ($50M).
SUMMARY = "Acme raised $50M (source: https://acme.test/news). Their CTO is Dana Reyes."


@tool(risk=Risk.READ_ONLY, idempotent=True)
async def read_source(name: str) -> str:
    """Read one of the fixed test pages."""
    return NEWS if name == "news" else f"no page {name}"


def register(registry: Registry) -> None:
    """Add the read-only page reader."""
    registry.add_tool(read_source)


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ledger.txt"
    monkeypatch.setenv("BATON_TEST_LEDGER", str(path))
    return path


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def _engine(db_url: str, **values: Any) -> Engine:
    settings = Settings(
        database_url=db_url,
        model=TEST_MODEL,
        plugins=("tests.plugins.ledger", "tests.test_grounding"),
        retry_base_s=0.01,
        retry_max_s=0.05,
        model_timeout_s=10,
        **values,
    )
    return await open_engine(settings)


async def _close(engine: Engine) -> None:
    await engine.close()
    await engine.svc.db.close()


def _plan() -> Plan:
    return Plan(
        steps=[
            PlanStep(
                id="research", title="Research Acme", tool="read_source", arguments={"name": "news"}
            ),
            PlanStep(id="summary", title="Summarise", agent="researcher", depends_on=["research"]),
            PlanStep(
                id="send",
                title="Write and send",
                agent="outreach",
                instructions="Email cto@acme.test using {steps.summary.output}",
                depends_on=["summary"],
            ),
        ]
    )


def _send(body: str, to: str = "cto@acme.test") -> tuple[str, dict[str, str]]:
    return ("send_outreach", {"to": to, "subject": "Congrats", "body": body})


def _script(llm: ScriptedLLM, *writer: Reply) -> None:
    llm.rule("Your step: Summarise\n", Reply.text(SUMMARY))
    llm.rule("Your step: Write and send\n", *writer)


def _is_checker(needle: str):
    return lambda body: (
        CHECKER in request_text(body)
        and needle in body["messages"][-1]["content"].split("</data>", 1)[0]
    )


def _sentences(*entries: dict[str, Any]) -> Reply:
    return Reply.json({"sentences": list(entries)})


async def _pending(engine: Engine, run_id: str):
    async with engine.svc.db.transaction() as s:
        return await approvals.list_approvals(s, run_id=run_id, statuses=["pending"])


def _checks(llm: ScriptedLLM) -> int:
    return len([r for r in llm.requests if CHECKER in r.text])


# ---- honest checker ----------------------------------------------------------------------


async def test_an_invented_figure_is_sent_back_and_the_fixed_email_goes_out_clean(
    llm_env: ScriptedLLM, db_url: str, ledger: Path
):
    llm = llm_env
    llm.responder(
        grounding_checker(
            [
                ("$50M", [("Acme raised $50M", "$50M")]),
                ("$20M", [("Acme raised $20M in a Series B", "Acme raised $20M in a Series B")]),
            ]
        )
    )
    _script(
        llm,
        Reply.tool_calls([_send("Dana, congrats on raising $50M.")]),
        Reply.tool_calls([_send("Dana, congrats on the $20M Series B. Worth a chat?")]),
        Reply.text("sent"),
    )
    engine = await _engine(db_url)
    try:
        run_id = await engine.start_plan("Research Acme and email their CTO", _plan())
        assert (await engine.wait(run_id)).status == "waiting"
        [pending] = await _pending(engine, run_id)
        # The first draft never reached a person: its claim was sent back to the agent.
        assert "$20M" in pending.action["arguments"]["body"]
        grounding = pending.action["grounding"]
        assert grounding["unsupported"] == 0 and "flags" not in pending.action
        [claim] = grounding["claims"]
        assert claim["supported"] and claim["source"] == claim["url"] == "https://acme.test/news"
        kinds = [(s["id"], s["kind"], s["status"]) for s in grounding["sentences"]]
        assert kinds == [
            ("S1", "heading", "ok"),
            ("S2", "claim", "ok"),
            ("S3", "question", "ok"),
        ]
        sent_back = [r for r in llm.requests if MARKER in r.text and CHECKER not in r.text]
        assert sent_back and "$50M" in sent_back[0].text
        assert "ok  Acme raised $20M in a Series B" in "\n".join(render_action(pending))
        await engine.decide(DecisionRequest(pending.id, "approve", "u1", digest=pending.digest))
        assert (await engine.wait(run_id)).status == "done"
        [sent] = _lines(ledger)
        assert "$20M" in sent and "$50M" not in sent
    finally:
        await _close(engine)


# ---- lazy checkers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "lazy", [{"sentences": []}, {"claims": []}, {"sentences": [{"id": "S1", "kind": "heading"}]}]
)
async def test_a_lazy_checker_leaves_every_sentence_not_checked(
    llm_env: ScriptedLLM, db_url: str, ledger: Path, lazy: dict[str, Any]
):
    llm = llm_env
    llm.rule(CHECKER, Reply.json(lazy))
    _script(
        llm, *[Reply.tool_calls([_send("Acme raised $50M last week.")])] * 3, Reply.text("done")
    )
    engine = await _engine(db_url)
    try:
        run_id = await engine.start_plan("Research Acme and email their CTO", _plan())
        assert (await engine.wait(run_id)).status == "waiting"
        [pending] = await _pending(engine, run_id)
        assert _checks(llm) == 3  # sent back twice (BATON_GROUNDING_RETRIES), then a person
        flags = pending.action["flags"]
        assert {
            "kind": "not_checked",
            "text": "Acme raised $50M last week.",
            "problem": "the checker did not account for this sentence",
        } in flags
        assert any(f["kind"] == "backstop" and '"$50M"' in f["problem"] for f in flags)
        assert _lines(ledger) == []
    finally:
        await _close(engine)


# ---- dishonest checkers ------------------------------------------------------------------

DISHONEST = {
    "labels the fact a greeting": (
        "Congrats on the $50M round led by Orbit Ventures!",
        {"id": "S2", "kind": "greeting"},
        ("backstop", '"$50M", "Orbit", "Ventures"'),
    ),
    "cites a real but unrelated quote": (
        "Acme raised $50M.",
        {
            "id": "S2",
            "kind": "claim",
            "claims": [
                {
                    "claim": "Acme raised $50M",
                    "evidence_id": "tool:1",
                    "quote": "Their CTO is Dana Reyes",
                }
            ],
        },
        ("claim", 'does not mention "$50M"'),
    ),
    "cites a real quote with a vague claim": (
        "Acme opened an office in Berlin.",
        {
            "id": "S2",
            "kind": "claim",
            "claims": [
                {
                    "claim": "Acme has an office",
                    "evidence_id": "tool:1",
                    "quote": "The office is in Lisbon",
                }
            ],
        },
        ("backstop", '"Berlin"'),
    ),
    "cites the research step's summary": (
        "Acme raised $50M.",
        {
            "id": "S2",
            "kind": "claim",
            "claims": [
                {
                    "claim": "Acme raised $50M",
                    "evidence_id": "step:summary",
                    "quote": "Acme raised $50M",
                }
            ],
        },
        ("claim", "not evidence"),
    ),
    "cites the draft itself": (
        "Acme raised $50M.",
        {
            "id": "S2",
            "kind": "claim",
            "claims": [
                {
                    "claim": "Acme raised $50M",
                    "evidence_id": "outbound draft",
                    "quote": "Acme raised $50M",
                }
            ],
        },
        ("claim", "not evidence"),
    ),
    "calls a prospect fact a sender claim": (
        "Acme raised $50M.",
        {
            "id": "S2",
            "kind": "sender",
            "claims": [
                {"claim": "Acme raised $50M", "evidence_id": "tool:1", "quote": "Acme raised $20M"}
            ],
        },
        ("claim", "sender's profile"),
    ),
}


@pytest.mark.parametrize("case", sorted(DISHONEST))
async def test_a_dishonest_checker_does_not_get_an_invented_fact_through(
    llm_env: ScriptedLLM, db_url: str, ledger: Path, case: str
):
    body, entry, (kind, problem) = DISHONEST[case]
    llm = llm_env
    llm.rule(CHECKER, _sentences({"id": "S1", "kind": "heading"}, entry))
    _script(llm, Reply.tool_calls([_send(body)]), Reply.text("done"))
    engine = await _engine(db_url, grounding_retries=0)
    try:
        run_id = await engine.start_plan("Research Acme and email their CTO", _plan())
        assert (await engine.wait(run_id)).status == "waiting"
        [pending] = await _pending(engine, run_id)
        flags = pending.action["flags"]
        assert any(f["kind"] == kind and problem in f["problem"] for f in flags), flags
        await engine.decide(
            DecisionRequest(pending.id, "reject", "u1", reason="no", digest=pending.digest)
        )
        assert (await engine.wait(run_id)).status == "done"
        assert _lines(ledger) == []
    finally:
        await _close(engine)


async def test_a_tool_that_echoes_the_model_proves_nothing(
    llm_env: ScriptedLLM, db_url: str, ledger: Path
):
    """The writer looks up its own claim (``lookup`` echoes "facts about …"); the checker cites
    that result: what the model wrote into a read-only call is cut out of the evidence."""
    llm = llm_env
    llm.responder(grounding_checker([("$50M", [("Acme raised $50M", "Acme raised $50M")])]))
    llm.rule("Your step: Summarise\n", Reply.text(SUMMARY))
    llm.rule(
        "Your step: Write and send\n",
        Reply.tool_calls([("lookup", {"topic": "Acme raised $50M"})]),
        Reply.tool_calls([_send("Acme raised $50M.")]),
        Reply.text("done"),
    )
    engine = await _engine(db_url, grounding_retries=0)
    try:
        run_id = await engine.start_plan("Research Acme and email their CTO", _plan())
        assert (await engine.wait(run_id)).status == "waiting"
        [pending] = await _pending(engine, run_id)
        [claim] = pending.action["grounding"]["claims"]
        assert not claim["supported"]
        assert any(f["kind"] == "backstop" for f in pending.action["flags"])
    finally:
        await _close(engine)


# ---- send-backs are counted per outbound message -----------------------------------------


async def test_send_backs_are_counted_per_message_not_per_step(
    llm_env: ScriptedLLM, db_url: str, ledger: Path
):
    """Two sends of a bad email to a@ use up its retries; the first bad email to b@ still goes
    back to the writer (a per-step count would have sent it to a person flagged)."""
    llm = llm_env
    llm.responder(
        grounding_checker(
            [
                ("$50M", [("Acme raised $50M", "$50M")]),
                ("$20M", [("Acme raised $20M", "Acme raised $20M")]),
            ]
        )
    )
    bad_a, bad_b = (
        _send("Acme raised $50M.", "a@acme.test"),
        _send("Acme raised $50M!", "b@acme.test"),
    )
    _script(
        llm,
        Reply.tool_calls([bad_a]),
        Reply.tool_calls([bad_a]),
        Reply.tool_calls([bad_a, bad_b]),
        Reply.tool_calls([_send("Acme raised $20M.", "b@acme.test")]),
        Reply.text("done"),
    )
    engine = await _engine(db_url)
    try:
        run_id = await engine.start_plan("Research Acme and email their CTO", _plan())
        assert (await engine.wait(run_id)).status == "waiting"
        [to_a] = await _pending(engine, run_id)
        assert to_a.action["arguments"]["to"] == "a@acme.test" and to_a.action["flags"]
        await engine.decide(
            DecisionRequest(to_a.id, "reject", "u1", reason="no", digest=to_a.digest)
        )
        assert (await engine.wait(run_id)).status == "waiting"
        [to_b] = await _pending(engine, run_id)
        assert to_b.action["arguments"] == {
            "to": "b@acme.test",
            "subject": "Congrats",
            "body": "Acme raised $20M.",
        }
        assert "flags" not in to_b.action
        await engine.decide(DecisionRequest(to_b.id, "approve", "u1", digest=to_b.digest))
        assert (await engine.wait(run_id)).status == "done"
        [sent] = _lines(ledger)
        assert "b@acme.test: Congrats: Acme raised $20M." in sent
    finally:
        await _close(engine)


# ---- tool steps, the sender, garbage -----------------------------------------------------


async def test_a_tool_step_is_grounded_with_sender_claims_and_shown_to_the_approver(
    llm_env: ScriptedLLM, db_url: str, ledger: Path
):
    llm = llm_env
    llm.responder(
        grounding_checker(
            [
                (
                    "Dana",
                    [
                        ("Dana Reyes is the CTO", "Their CTO is Dana Reyes", "As CTO"),
                        ("We cut test time by 40%", "We cut test time by 40%", "We cut"),
                    ],
                )
            ]
        )
    )
    plan = Plan(
        steps=[
            PlanStep(
                id="research", title="Research", tool="read_source", arguments={"name": "news"}
            ),
            PlanStep(
                id="send",
                title="Send",
                tool="send_outreach",
                arguments={
                    "to": "cto@acme.test",
                    "subject": "Hello Dana",
                    "body": "Dear Dana,\nAs CTO you may care about this. We cut test time by 40%.\n— Maria",
                },
                depends_on=["research"],
            ),
        ]
    )
    engine = await _engine(db_url, sender_profile="We cut test time by 40%. Maria Chen, Orbital.")
    try:
        run_id = await engine.start_plan("email the CTO", plan)
        assert (await engine.wait(run_id)).status == "waiting"
        [pending] = await _pending(engine, run_id)
        grounding = pending.action["grounding"]
        assert "flags" not in pending.action, pending.action.get("flags")
        by_id = {s["id"]: s["kind"] for s in grounding["sentences"]}
        assert by_id == {
            "S1": "greeting",
            "S2": "greeting",
            "S3": "claim",
            "S4": "claim",
            "S5": "signature",
        }
        sources = {c["claim"]: c["source"] for c in grounding["claims"]}
        assert sources == {
            "Dana Reyes is the CTO": "https://acme.test/news",
            "We cut test time by 40%": "the sender's profile and inputs",
        }
        await engine.decide(DecisionRequest(pending.id, "approve", "u1", digest=pending.digest))
        assert (await engine.wait(run_id)).status == "done"
        assert "We cut test time by 40%." in "\n".join(_lines(ledger))
    finally:
        await _close(engine)


async def test_checker_garbage_sends_the_email_to_a_person_with_a_warning(
    llm_env: ScriptedLLM, db_url: str, ledger: Path
):
    llm = llm_env
    llm.rule(CHECKER, Reply.text("I think it is all fine!"))
    _script(llm, Reply.tool_calls([_send("Congrats on the Series B.")]))
    engine = await _engine(db_url)
    try:
        run_id = await engine.start_plan("email the CTO", _plan())
        assert (await engine.wait(run_id)).status == "waiting"
        [pending] = await _pending(engine, run_id)
        assert "not JSON" in pending.action["grounding"]["error"]
        assert [f["kind"] for f in pending.action["flags"]] == ["check_failed"]
        assert _checks(llm) == 1
    finally:
        await _close(engine)


async def test_the_checker_sees_numbered_sentences_and_only_what_the_world_said(
    llm_env: ScriptedLLM, db_url: str, ledger: Path
):
    llm = llm_env
    llm.responder(grounding_checker([("$20M", [("Acme raised $20M", "Acme raised $20M")])]))
    _script(llm, Reply.tool_calls([_send("Hi Dana,\nAcme raised $20M. Worth a chat?\n— The team")]))
    engine = await _engine(db_url)
    try:
        run_id = await engine.start_plan("email the CTO", _plan())
        assert (await engine.wait(run_id)).status == "waiting"
        [check] = [r for r in llm.requests if CHECKER in r.text]
        sentences, blocks = checker_parts(check.body)
        assert sentences == [
            ("S1", "subject", "Congrats"),
            ("S2", "body", "Hi Dana,"),
            ("S3", "body", "Acme raised $20M."),
            ("S4", "body", "Worth a chat?"),
            ("S5", "body", "— The team"),
        ]
        # The summary step's output ("$50M") is not evidence; the page it read is.
        assert [eid for eid, _ in blocks] == ["tool:1", "goal"]
        assert "$50M" not in check.body["messages"][-1]["content"]
    finally:
        await _close(engine)


async def test_an_email_quoting_the_page_verbatim_stays_clean(
    llm_env: ScriptedLLM, db_url: str, ledger: Path
):
    """Quoting the page word for word is the best grounding there is: the draft's own text is
    not cut out of a page read before it was written (only out of what was read after it)."""
    llm = llm_env
    verbatim = "Acme raised $20M in a Series B led by Foo Ventures in March 2025."
    llm.responder(grounding_checker([("Foo Ventures", [("Acme raised $20M", verbatim)])]))
    _script(llm, Reply.tool_calls([_send(verbatim)]), Reply.text("done"))
    engine = await _engine(db_url)
    try:
        run_id = await engine.start_plan("Research Acme and email their CTO", _plan())
        assert (await engine.wait(run_id)).status == "waiting"
        [pending] = await _pending(engine, run_id)
        assert "flags" not in pending.action, pending.action["flags"]
    finally:
        await _close(engine)
