"""A checkpoint a rubber stamp cannot turn into harm (engine, terminal and ``baton approve``).

A real engine runs the shipped ``sdr_writer`` against the scripted model over HTTP, with the
grounding checker finding no support for an invented fact, and ``send_email`` delivering to a
real SMTP sink. Code decides: a plain approve of a flagged email is refused; "send anyway"
is refused under ``BATON_GROUNDING_OVERRIDE=never`` and otherwise audited with who overrode
which flags; a send-back reaches the writer with the flags and the run goes on; an edited
email is grounded again and, still flagged, asked about again instead of sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agents.approvals import DecisionRequest, FlaggedAction, send_back_reason
from agents.bootstrap import open_engine
from agents.engine import Engine
from agents.errors import ApprovalError, ConfigError
from agents.settings import Settings
from storage.models import Approval
from storage.repositories import approvals, audit
from tests.conftest import run_baton
from tests.support.checkpoint_script import (
    CLEAN_BODY,
    FLAGGED_BODY,
    GOAL,
    INVENTED,
    REPO,
    SENT_BACK,
    TITLE,
    TO,
    delivered,
    plan,
    script_writer,
)
from tests.support.fixtures import TEST_MODEL
from tests.support.llm_server import Reply, ScriptedLLM, request_text
from tests.support.smtp import Mailbox

STAMP = "slack:U0STAMP001"


@pytest.fixture
def smtp_env(mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch) -> Mailbox:
    monkeypatch.setenv("BATON_SMTP_HOST", mailbox.host)
    monkeypatch.setenv("BATON_SMTP_PORT", str(mailbox.port))
    monkeypatch.setenv("BATON_SMTP_FROM", "sdr@ourco.test")
    return mailbox


def settings(db: Path, **changes: object) -> Settings:
    values: dict[str, object] = {
        "database_url": f"sqlite:///{db}",
        "model": TEST_MODEL,
        "config_dir": str(REPO / "config"),
        "playbook_dir": str(REPO / "config" / "playbooks"),
        "retry_base_s": 0.01,
        "retry_max_s": 0.05,
        "model_timeout_s": 10,
        "grounding_retries": 0,  # straight to a person: the approver is what is tested here
    }
    values.update(changes)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def engine(llm_env: ScriptedLLM, smtp_env: Mailbox, tmp_path: Path) -> AsyncIterator[Engine]:
    script_writer(llm_env)
    engine = await open_engine(settings(tmp_path / "baton.db"))
    try:
        yield engine
    finally:
        await engine.close()
        await engine.svc.db.close()


async def _flagged(engine: Engine) -> tuple[str, Approval]:
    run_id = await engine.start_plan(GOAL, plan(), requester="slack:U0ALICE01")
    assert (await engine.wait(run_id)).status == "waiting"
    [pending] = await _pending(engine, run_id)
    assert pending.action["arguments"]["body"] == FLAGGED_BODY
    assert pending.action["flags"], "the invented fact must be flagged"
    return run_id, pending


async def _pending(engine: Engine, run_id: str) -> list[Approval]:
    async with engine.svc.db.transaction() as s:
        return await approvals.list_approvals(s, run_id=run_id, statuses=["pending"])


async def _audit(engine: Engine, run_id: str) -> list[tuple[str, str, object]]:
    async with engine.svc.db.transaction() as s:
        rows = await audit.list_entries(s, run_id=run_id)
    return [(r.action, r.actor, r.detail) for r in rows]


async def test_a_plain_approve_of_a_flagged_email_sends_nothing(
    engine: Engine, smtp_env: Mailbox
) -> None:
    run_id, pending = await _flagged(engine)
    n = len(pending.action["flags"])
    with pytest.raises(FlaggedAction, match=rf"This email has {n} flagged .*send it anyway"):
        await engine.decide(DecisionRequest(pending.id, "approve", STAMP, digest=pending.digest))
    # Approving "with edits" that change nothing is the same plain approve.
    same = dict(pending.action["arguments"])
    with pytest.raises(FlaggedAction):
        await engine.decide(
            DecisionRequest(pending.id, "approve", STAMP, arguments=same, digest=pending.digest)
        )
    assert [a.id for a in await _pending(engine, run_id)] == [pending.id]
    assert (await engine.summary(run_id)).status == "waiting"
    assert delivered(smtp_env) == []


async def test_send_anyway_is_audited_with_who_and_which_flags(
    engine: Engine, smtp_env: Mailbox
) -> None:
    run_id, pending = await _flagged(engine)
    await engine.decide(
        DecisionRequest(pending.id, "approve", STAMP, digest=pending.digest, override=True)
    )
    assert (await engine.wait(run_id)).status == "done"
    assert delivered(smtp_env) == [FLAGGED_BODY]
    [(_, actor, detail)] = [e for e in await _audit(engine, run_id) if e[0] == "approval.override"]
    assert actor == STAMP
    assert isinstance(detail, dict)
    assert detail["tool"] == "send_email"
    assert detail["flags"] == pending.action["flags"]


async def test_send_anyway_is_refused_when_the_policy_says_never(
    llm_env: ScriptedLLM, smtp_env: Mailbox, tmp_path: Path
) -> None:
    script_writer(llm_env)
    engine = await open_engine(settings(tmp_path / "b.db", grounding_override="never"))
    try:
        run_id, pending = await _flagged(engine)
        with pytest.raises(ApprovalError, match="BATON_GROUNDING_OVERRIDE=never"):
            await engine.decide(
                DecisionRequest(pending.id, "approve", STAMP, digest=pending.digest, override=True)
            )
        assert [a.status for a in await _pending(engine, run_id)] == ["pending"]
        assert "approval.override" not in [e[0] for e in await _audit(engine, run_id)]
        assert delivered(smtp_env) == []
    finally:
        await engine.close()
        await engine.svc.db.close()


def test_an_unknown_override_policy_is_a_clear_error_at_start() -> None:
    with pytest.raises(ConfigError, match="BATON_GROUNDING_OVERRIDE must be never or confirm"):
        Settings.from_env({"BATON_GROUNDING_OVERRIDE": "sometimes"})
    assert Settings.from_env({}).grounding_override == "confirm"
    assert Settings.from_env({"BATON_GROUNDING_OVERRIDE": "NEVER"}).grounding_override == "never"


async def test_a_send_back_lists_the_flags_for_the_writer_and_the_run_goes_on(
    engine: Engine, smtp_env: Mailbox, llm_env: ScriptedLLM
) -> None:
    run_id, pending = await _flagged(engine)
    reason = send_back_reason(pending.action)
    await engine.decide(
        DecisionRequest(pending.id, "reject", STAMP, reason=reason, digest=pending.digest)
    )
    assert (await engine.wait(run_id)).status == "waiting"  # the writer revised: a new email
    [again] = await _pending(engine, run_id)
    assert again.action["arguments"]["body"] == CLEAN_BODY
    assert not again.action.get("flags")
    told = [r.text for r in llm_env.requests if SENT_BACK in r.text]
    assert told and INVENTED in told[0] and "Sent back to the writer" in told[0]
    await engine.decide(DecisionRequest(again.id, "approve", STAMP, digest=again.digest))
    assert (await engine.wait(run_id)).status == "done"
    assert delivered(smtp_env) == [CLEAN_BODY]


async def test_an_edit_still_flagged_is_asked_about_again_and_a_clean_edit_goes(
    engine: Engine, smtp_env: Mailbox
) -> None:
    run_id, pending = await _flagged(engine)
    args = dict(pending.action["arguments"])
    # An address that is not one: refused before anything counts.
    with pytest.raises(ApprovalError, match="not an email address"):
        await engine.decide(
            DecisionRequest(
                pending.id,
                "approve",
                STAMP,
                arguments={**args, "to": "ada at acme"},
                digest=pending.digest,
            )
        )
    edited = {**args, "body": FLAGGED_BODY.replace("Would you", "So, would you")}
    await engine.decide(
        DecisionRequest(pending.id, "approve", STAMP, arguments=edited, digest=pending.digest)
    )
    assert (await engine.wait(run_id)).status == "waiting"
    [again] = await _pending(engine, run_id)
    assert again.id != pending.id
    assert again.action["arguments"]["body"] == edited["body"]
    assert again.action["flags"] and again.action["edited_from"] == pending.id
    assert delivered(smtp_env) == []
    # The new approval is flagged too: a plain approve is refused again.
    with pytest.raises(FlaggedAction):
        await engine.decide(DecisionRequest(again.id, "approve", STAMP, digest=again.digest))
    clean = {**args, "body": CLEAN_BODY}
    await engine.decide(
        DecisionRequest(again.id, "approve", STAMP, arguments=clean, digest=again.digest)
    )
    assert (await engine.wait(run_id)).status == "done"
    assert delivered(smtp_env) == [CLEAN_BODY]


async def test_cli_approve_of_a_flagged_email_needs_send_anyway(
    llm: ScriptedLLM, baton_env: dict[str, str], mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Path(baton_env["BATON_DATABASE_URL"].removeprefix("sqlite:///"))
    for name, value in baton_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BATON_SMTP_HOST", mailbox.host)
    monkeypatch.setenv("BATON_SMTP_PORT", str(mailbox.port))
    monkeypatch.setenv("BATON_SMTP_FROM", "sdr@ourco.test")
    script_writer(llm)
    engine = await open_engine(settings(db))
    try:
        run_id, pending = await _flagged(engine)
    finally:
        await engine.close()
        await engine.svc.db.close()
    env = {**baton_env, "BATON_CONFIG_DIR": str(REPO / "config")}

    plain = run_baton(["approve", pending.id, "--no-continue"], env)
    assert plain.code == 1
    assert "flagged" in plain.err and "--send-anyway" in plain.err
    never = run_baton(
        ["approve", pending.id, "--send-anyway", "--no-continue"],
        {**env, "BATON_GROUNDING_OVERRIDE": "never"},
    )
    assert never.code == 1 and "BATON_GROUNDING_OVERRIDE=never" in never.err
    shown = run_baton(["approvals"], env)
    assert INVENTED in shown.out and "!!" in shown.out  # the email as text, and its flags
    ok = run_baton(["approve", pending.id, "--send-anyway", "--no-continue"], env)
    assert ok.code == 0, ok.err
    engine = await open_engine(settings(db))
    try:
        [(_, actor, _)] = [e for e in await _audit(engine, run_id) if e[0] == "approval.override"]
        assert actor.startswith("cli:")
        engine.drive(run_id)
        assert (await engine.wait(run_id)).status == "done"
    finally:
        await engine.close()
        await engine.svc.db.close()
    assert delivered(mailbox) == [FLAGGED_BODY]
    assert TO in mailbox.envelopes[0][1]


# ---- at the terminal: `baton run` answering prompts on stdin ------------------------------


def _terminal_env(llm: ScriptedLLM, baton_env: dict[str, str], mailbox: Mailbox) -> dict[str, str]:
    llm.rule(
        lambda body: "You are the planner" in request_text(body),
        Reply.json(
            {
                "steps": [
                    {
                        "id": "send",
                        "title": TITLE,
                        "agent": "sdr_writer",
                        "instructions": f"Email {TO} and ask for a short call.",
                        "depends_on": [],
                        "needs_approval": False,
                    }
                ]
            }
        ),
    )
    script_writer(llm)
    return {
        **baton_env,
        "BATON_CONFIG_DIR": str(REPO / "config"),
        "BATON_GROUNDING_RETRIES": "0",
        "BATON_SMTP_HOST": mailbox.host,
        "BATON_SMTP_PORT": str(mailbox.port),
        "BATON_SMTP_FROM": "sdr@ourco.test",
    }


def test_at_the_terminal_a_does_not_send_a_flagged_email(
    llm: ScriptedLLM, baton_env: dict[str, str], mailbox: Mailbox
) -> None:
    env = _terminal_env(llm, baton_env, mailbox)
    # A rubber stamp answers "a" to everything, then walks away (end of input).
    result = run_baton(["run", GOAL, "--approvals", "prompt"], env, stdin="a\na\na\n")
    assert result.code == 3, result.err  # still waiting for a person
    assert "Flagged (" in result.out and "[b]ack to the writer" in result.out
    assert "Not sent: it has" in result.out
    assert "    | " + INVENTED in result.out  # the body as text, with its line breaks
    assert delivered(mailbox) == []


def test_at_the_terminal_the_override_needs_its_own_typed_answer(
    llm: ScriptedLLM, baton_env: dict[str, str], mailbox: Mailbox
) -> None:
    env = _terminal_env(llm, baton_env, mailbox)
    result = run_baton(
        ["run", GOAL, "--approvals", "prompt"], env, stdin="o\nyes\no\nsend anyway\n"
    )
    assert result.code == 0, result.out + result.err
    assert 'Type "send anyway"' in result.out and "  Not sent." in result.out
    assert delivered(mailbox) == [FLAGGED_BODY]


def test_at_the_terminal_back_to_the_writer_gets_a_clean_email_sent(
    llm: ScriptedLLM, baton_env: dict[str, str], mailbox: Mailbox
) -> None:
    env = _terminal_env(llm, baton_env, mailbox)
    result = run_baton(["run", GOAL, "--approvals", "prompt"], env, stdin="b\n\na\n")
    assert result.code == 0, result.out + result.err
    assert delivered(mailbox) == [CLEAN_BODY]
