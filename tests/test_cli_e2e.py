"""End-to-end tests of the ``baton`` command: real subprocesses, real litellm, real SQLite.

The model is :class:`~tests.support.llm_server.ScriptedLLM` (a real OpenAI-compatible HTTP
server), matched by substrings of the request text: the planner's system prompt holds
"You are the planner", a step's opening message holds "Your step: <title>", and tool results
come back as ``tool`` messages. Side effects land in the ledger file of the test plugin
(``tests.plugins.ledger``), so every test can count what really happened.

Each subprocess imports litellm (~3 s), so scenarios share runs where that stays readable.
"""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, Result, run_baton
from tests.support.llm_server import RecordedRequest, Reply, ScriptedLLM, request_text

PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
PLANNER = "You are the planner"


# ---- helpers -------------------------------------------------------------------------------


def plan(*steps: dict[str, Any]) -> Reply:
    """The planner's answer: a plan with these steps."""
    return Reply.json({"steps": list(steps)})


def step(
    sid: str,
    title: str,
    agent: str,
    *,
    after: tuple[str, ...] = (),
    instructions: str = "",
    needs_approval: bool = False,
) -> dict[str, Any]:
    return {
        "id": sid,
        "title": title,
        "agent": agent,
        "instructions": instructions or f"Do: {title}.",
        "depends_on": list(after),
        "needs_approval": needs_approval,
    }


def opening(title: str) -> str:
    """The substring that marks every request of the step titled ``title``."""
    return f"Your step: {title}\n"


def step_requests(llm: ScriptedLLM, title: str) -> list[RecordedRequest]:
    return llm.requests_matching(opening(title))


def planner_requests(llm: ScriptedLLM) -> list[RecordedRequest]:
    return llm.requests_matching(PLANNER)


def tool_messages(request: RecordedRequest) -> list[str]:
    return [str(m.get("content")) for m in request.messages if m.get("role") == "tool"]


def run_id_of(out: str) -> str:
    m = re.search(r"▶ run (r-[0-9a-f]+)", out)
    assert m, f"no run id in output:\n{out}"
    return m.group(1)


def ids_in(out: str, kind: str) -> list[str]:
    """Approval (``a``) or handoff (``h``) ids named in ``out``, in order, without repeats."""
    return list(dict.fromkeys(re.findall(rf"\b({kind}-[0-9a-f]{{10}})\b", out)))


def status_in_table(out: str, row: str) -> str:
    """The status column of ``row`` (a step id or 'total') in a summary table."""
    m = re.search(rf"^{re.escape(row)}\s+(\S+)\s+\S+\s+\d+\s+\$", out, re.MULTILINE)
    assert m, f"no summary row {row!r} in:\n{out}"
    return m.group(1)


def ledger(env: dict[str, str]) -> list[list[str]]:
    """The ledger's lines as ``[key, tool, entry]``."""
    path = Path(env["BATON_TEST_LEDGER"])
    if not path.exists():
        return []
    return [line.split("\t", 2) for line in path.read_text(encoding="utf-8").splitlines()]


def clean(result: Result) -> Result:
    """Fail on a Python traceback anywhere in the output."""
    err = result.err
    assert "Traceback" not in err, result.err
    assert "Traceback" not in result.out, result.out
    return Result(result.code, result.out, err)


def baton(args: list[str], env: dict[str, str], *, stdin: str = "", timeout: float = 60) -> Result:
    return clean(run_baton(args, env, stdin=stdin, timeout=timeout))


def overlap(a: RecordedRequest, b: RecordedRequest) -> bool:
    assert a.finished_at is not None
    assert b.finished_at is not None
    return a.received_at < b.finished_at and b.received_at < a.finished_at


# ---- 1. a planned goal ---------------------------------------------------------------------


def test_planned_goal_runs_branches_in_parallel_and_passes_context(
    llm: ScriptedLLM, baton_env: dict[str, str]
) -> None:
    llm.rule(
        PLANNER,
        plan(
            step("alpha", "Research alpha", "researcher"),
            step("beta", "Research beta", "researcher"),
            step("gamma", "Analyse gamma", "analyst"),
            step("memo", "Write memo", "writer", after=("alpha", "beta"), needs_approval=True),
        ),
    )
    llm.rule(opening("Research alpha"), Reply.text("ALPHA-FINDINGS", delay=0.6))
    llm.rule(opening("Research beta"), Reply.text("BETA-FINDINGS", delay=0.6))
    llm.rule(opening("Analyse gamma"), Reply.text("GAMMA-ANALYSIS"))
    llm.rule(opening("Write memo"), Reply.text("MEMO-DRAFT"))

    goal = "Compare alpha and beta for the board"
    r = baton(["run", goal, "--approvals", "prompt"], baton_env, stdin="a\n")

    assert r.code == 0, r.out + r.err
    run_id = run_id_of(r.out)
    assert "plan: 4 step(s)" in r.out
    assert "memo: Write memo (writer) ← alpha, beta [needs approval]" in r.out
    # The draft was shown before it counted, then approved from stdin.
    assert re.search(r"⏸ Approval a-\w+ — step 'memo'", r.out)
    assert "  Draft:\n    MEMO-DRAFT\n" in r.out
    assert re.search(r"☑ a-\w+ approved by cli:", r.out)
    # Final summary table.
    for sid in ("alpha", "beta", "gamma", "memo", "total"):
        assert status_in_table(r.out, sid) == "done"

    # The two research branches were in flight at the same time.
    [alpha] = step_requests(llm, "Research alpha")
    [beta] = step_requests(llm, "Research beta")
    assert llm.max_in_flight >= 2
    assert overlap(alpha, beta)
    # The dependent step saw both its dependencies' outputs, and nothing else's.
    [memo] = step_requests(llm, "Write memo")
    assert memo.received_at > max(alpha.finished_at or 0, beta.finished_at or 0)
    assert "ALPHA-FINDINGS" in memo.text
    assert "BETA-FINDINGS" in memo.text
    assert "GAMMA-ANALYSIS" not in memo.text
    assert goal in memo.text
    assert len(planner_requests(llm)) == 1

    show = baton(["show", run_id], baton_env)
    assert show.code == 0
    assert f"Run {run_id} — done" in show.out
    for sid, title, who, output in [
        ("alpha", "Research alpha", "researcher", "ALPHA-FINDINGS"),
        ("beta", "Research beta", "researcher", "BETA-FINDINGS"),
        ("gamma", "Analyse gamma", "analyst", "GAMMA-ANALYSIS"),
        ("memo", "Write memo", "writer after alpha, beta", "MEMO-DRAFT"),
    ]:
        assert f"## {sid}: {title} ({who}) — done\n{output}\n" in show.out
    assert re.search(r"Approval a-\w+ \(step_output, step memo\): approved by cli:", show.out)

    runs = baton(["runs"], baton_env)
    assert runs.code == 0
    [line] = [ln for ln in runs.out.splitlines() if ln.startswith(run_id)]
    assert line.split()[1] == "done"
    assert line.split()[2] == "5"  # planner + four steps
    assert line.endswith(goal)


# ---- 2. a playbook -------------------------------------------------------------------------


def test_playbook_fills_inputs_and_outputs_and_calls_its_tool_once(
    llm: ScriptedLLM, baton_env: dict[str, str]
) -> None:
    llm.rule(opening("Research the account"), Reply.text("RESEARCH: Acme raised a round"))
    llm.rule(opening("Draft the note"), Reply.text("DRAFT: Congrats on the round"))
    env = {**baton_env, "BATON_APPROVE_WRITES": "false"}

    r = baton(
        ["run", "--playbook", str(PLAYBOOKS / "account_brief.yaml"), "--input", "account=Acme"],
        env,
    )

    assert r.code == 0, r.out + r.err
    run_id = run_id_of(r.out)
    assert f"▶ run {run_id}: Research Acme and record a note" in r.out
    assert "record: Record the note (tool ledger_write) ← draft" in r.out
    # No planner: the playbook is the plan.
    assert planner_requests(llm) == []

    [research] = step_requests(llm, "Research the account")
    assert "Find recent news about Acme." in research.text
    assert "{inputs." not in research.text

    [draft] = step_requests(llm, "Draft the note")
    assert "Draft a friendly note about Acme using: RESEARCH: Acme raised a round" in draft.text
    assert "{steps.research.output}" not in draft.text

    # The tool step ran once, unapproved (BATON_APPROVE_WRITES=false), with filled arguments.
    assert ledger(env) == [
        [f"{run_id}:record:tool", "ledger_write", "Acme: DRAFT: Congrats on the round"]
    ]
    assert "⏸" not in r.out
    assert status_in_table(r.out, "record") == "done"

    show = baton(["show", run_id], env)
    assert "Playbook: account-brief {'account': 'Acme'}" in show.out
    assert "## record: Record the note (tool ledger_write after draft) — done" in show.out
    assert "wrote Acme: DRAFT: Congrats on the round" in show.out
    assert f"record: ledger_write [done] key={run_id}:record:tool" in show.out


def test_playbook_input_values_are_used_literally(
    llm: ScriptedLLM, baton_env: dict[str, str]
) -> None:
    llm.rule(opening("Research the account"), Reply.text("RESEARCH: internal notes"))
    llm.rule(opening("Draft the note"), Reply.text("DRAFT: hello"))
    env = {**baton_env, "BATON_APPROVE_WRITES": "false"}
    account = "{steps.research.output}"

    r = baton(
        ["run", "--playbook", str(PLAYBOOKS / "account_brief.yaml"), "-i", f"account={account}"],
        env,
    )

    assert r.code == 0, r.out + r.err
    # The input is a value: it must reach the tool as typed, not as the research output.
    assert [entry for _, _, entry in ledger(env)] == [f"{account}: DRAFT: hello"]


# ---- 3. retries ----------------------------------------------------------------------------


def test_transient_model_errors_and_timeouts_are_retried(
    llm: ScriptedLLM, baton_env: dict[str, str]
) -> None:
    llm.rule(
        PLANNER,
        plan(step("flaky", "Flaky step", "researcher"), step("slow", "Slow step", "researcher")),
    )
    llm.rule(
        opening("Flaky step"),
        Reply.error(429, "slow down", retry_after=0),
        Reply.error(500, "server hiccup"),
        Reply.text("FLAKY-OK"),
    )
    llm.rule(
        opening("Slow step"),
        Reply.hang(4, then=Reply.text("TOO-LATE")),
        Reply.text("SLOW-OK"),
    )
    env = {**baton_env, "BATON_MODEL_TIMEOUT": "1"}

    r = baton(["run", "Do the flaky and the slow thing"], env)

    assert r.code == 0, r.out + r.err
    assert re.search(r"↻ flaky: retry 1 in [\d.]+s \(.*RateLimitError", r.out)
    assert re.search(r"↻ flaky: retry 2 in [\d.]+s \(.*InternalServerError", r.out)
    assert re.search(r"↻ slow: retry 1 in [\d.]+s \(.*Timeout", r.out)
    assert len(step_requests(llm, "Flaky step")) == 3
    slow = step_requests(llm, "Slow step")
    assert len(slow) == 2
    assert slow[0].status != 200  # abandoned by the client, not answered
    show = baton(["show", run_id_of(r.out)], env)
    assert "## flaky: Flaky step (researcher) — done\nFLAKY-OK" in show.out
    assert "## slow: Slow step (researcher) — done\nSLOW-OK" in show.out
    assert "TOO-LATE" not in show.out


def test_a_model_that_keeps_failing_fails_the_run_after_bounded_retries(
    llm: ScriptedLLM, baton_env: dict[str, str]
) -> None:
    llm.rule(PLANNER, plan(step("down", "Ask the broken model", "researcher")))
    llm.rule(opening("Ask the broken model"), Reply.error(500, "upstream is down"))
    env = {**baton_env, "BATON_MODEL_RETRIES": "2"}

    r = baton(["run", "Ask something"], env)

    assert r.code == 1, r.out + r.err
    assert len(step_requests(llm, "Ask the broken model")) == 3  # 1 + BATON_MODEL_RETRIES
    assert re.search(r"■ run r-\w+ failed", r.out)
    m = re.search(r"^  reason: (.*)$", r.out, re.MULTILINE)
    assert m, r.out
    assert "Ask the broken model" in m.group(1)
    assert "gave up after 2 retries" in m.group(1)
    assert status_in_table(r.out, "down") == "failed"
    show = baton(["show", run_id_of(r.out)], env)
    assert "— failed" in show.out
    assert "gave up after 2 retries" in show.out


# ---- 4. caps -------------------------------------------------------------------------------


def _lookup_forever(llm: ScriptedLLM) -> None:
    llm.rule(PLANNER, plan(step("loop", "Look things up", "operator")))
    llm.rule(opening("Look things up"), Reply.tool_calls([("lookup", {"topic": "acme"})]))


def test_an_agent_that_never_stops_hits_its_iteration_cap(
    llm: ScriptedLLM, baton_env: dict[str, str]
) -> None:
    _lookup_forever(llm)
    env = {**baton_env, "BATON_MAX_REPEAT_CALLS": "0"}  # the loop detector would stop it first

    r = baton(["run", "Look up Acme"], env)

    assert r.code == 1, r.out + r.err
    reqs = step_requests(llm, "Look things up")
    assert len(reqs) == 10  # the operator's max_iterations
    # Every turn's lookup really ran and its result went back to the model.
    assert len(tool_messages(reqs[-1])) == 9
    assert "facts about acme" in tool_messages(reqs[-1])[-1]
    assert re.search(r"reason: .*operator did not finish within 10 model turns", r.out)
    assert "iteration cap" in r.out


def test_the_model_call_cap_stops_a_run(llm: ScriptedLLM, baton_env: dict[str, str]) -> None:
    _lookup_forever(llm)
    env = {**baton_env, "BATON_MAX_MODEL_CALLS": "4"}

    r = baton(["run", "Look up Acme"], env)

    assert r.code == 1, r.out + r.err
    assert len(llm.chat_requests) == 4  # planner + 3 turns
    assert re.search(r"reason: .*cap of 4 model calls \(BATON_MAX_MODEL_CALLS\)", r.out)
    runs = baton(["runs"], env)
    [line] = [ln for ln in runs.out.splitlines() if ln.startswith(run_id_of(r.out))]
    assert line.split()[1:3] == ["failed", "4"]


def test_the_cost_cap_pauses_a_run(llm: ScriptedLLM, baton_env: dict[str, str]) -> None:
    _lookup_forever(llm)
    env = {**baton_env, "BATON_MAX_COST_USD": "0.00001"}

    r = baton(["run", "Look up Acme"], env)

    # Money is a budget: the run waits for a person to raise it (tests/test_guardrails.py).
    assert r.code == 3, r.out + r.err
    # The planner's call used up the budget: the step never reached the model.
    assert len(llm.chat_requests) == 1
    assert step_requests(llm, "Look things up") == []
    assert re.search(r"Budget reached: .*\(BATON_MAX_COST_USD\)", r.out)


def test_the_cost_cap_message_states_the_configured_cap(
    llm: ScriptedLLM, baton_env: dict[str, str]
) -> None:
    _lookup_forever(llm)
    env = {**baton_env, "BATON_MAX_COST_USD": "0.00001"}

    r = baton(["run", "Look up Acme"], env)

    assert r.code == 3, r.out + r.err
    m = re.search(r"^ +Budget reached: (.*)$", r.out, re.MULTILINE)
    assert m, r.out
    assert "cap of $0.00 " not in m.group(1)
    assert "0.00001" in m.group(1)


# ---- 5. approvals at the terminal ----------------------------------------------------------


def test_tool_call_approvals_approve_reject_and_edit(
    llm: ScriptedLLM, baton_env: dict[str, str]
) -> None:
    # Results first: later requests of a step still hold its opening message.
    llm.rule("sent to bob@example.com", Reply.text("BOB-NOTIFIED"))
    llm.rule("A person rejected this call", Reply.text("CAROL-NOT-NOTIFIED"))
    llm.rule("sent to dan@example.com", Reply.text("DAN-NOTIFIED"))
    for name in ("Bob", "Carol", "Dan"):
        llm.rule(
            opening(f"Notify {name}"),
            Reply.tool_calls(
                [("send_message", {"to": f"{name.lower()}@example.com", "body": f"hi {name}"})]
            ),
        )
    llm.rule(
        PLANNER,
        plan(
            step("bob", "Notify Bob", "operator"),
            step("carol", "Notify Carol", "operator", after=("bob",)),
            step("dan", "Notify Dan", "operator", after=("carol",)),
        ),
    )
    stdin = "\n".join(
        [
            "a",  # Bob: approve
            "r",  # Carol: reject...
            "Carol is on leave until May",  # ...with a reason
            "e",  # Dan: edit...
            "{not json",  # ...invalid JSON: asked again
            "e",
            '{"to": "dan@example.com"}',  # ...valid JSON, invalid arguments: asked again
            "e",
            '{"to": "dan@example.com", "body": "EDITED: hello Dan"}',
        ]
    )

    r = baton(["run", "Tell the team", "--approvals", "prompt"], baton_env, stdin=stdin + "\n")

    assert r.code == 0, r.out + r.err
    run_id = run_id_of(r.out)
    # Exactly the approved and the edited messages were sent, once each.
    assert [entry for _, _, entry in ledger(baton_env)] == [
        "bob@example.com: hi Bob",
        "dan@example.com: EDITED: hello Dan",
    ]
    assert all(tool == "send_message" for _, tool, _ in ledger(baton_env))
    # The prompt showed the action before deciding.
    assert "send_message (risk: external)" in r.out
    assert '"to": "carol@example.com"' in r.out
    assert "That is not valid JSON" in r.out
    assert re.search(r"Invalid arguments for send_message: body: Field required", r.out)
    # Invalid JSON is asked again at once; arguments the tool refuses re-show the approval.
    assert len(re.findall(r"⏸ Approval a-\w+ — step 'dan'", r.out)) == 2
    assert r.out.count("[a]pprove  [r]eject  [e]dit arguments  [s]kip > ") == 5

    # Bob: the approved call's result went back to the model.
    bob = step_requests(llm, "Notify Bob")
    assert len(bob) == 2
    assert "sent to bob@example.com" in tool_messages(bob[1])[0]
    # Carol: the call was not made; the model was told why.
    carol = step_requests(llm, "Notify Carol")
    assert len(carol) == 2
    [note] = tool_messages(carol[1])
    assert "rejected" in note
    assert "Carol is on leave until May" in note
    # Dan: the edited arguments were what ran.
    dan = step_requests(llm, "Notify Dan")
    assert len(dan) == 2
    assert "sent to dan@example.com" in tool_messages(dan[1])[0]

    show = baton(["show", run_id], baton_env)
    assert "## carol: Notify Carol (operator after bob) — done\nCAROL-NOT-NOTIFIED" in show.out
    assert re.search(
        r"\(tool_call, step carol\): rejected by cli:\S+\n  reason: Carol is on", show.out
    )
    assert len(re.findall(r"send_message \[done\]", show.out)) == 2


def test_draft_approvals_approve_edit_and_reject_with_revision(
    llm: ScriptedLLM, baton_env: dict[str, str]
) -> None:
    llm.rule("Too casual, be formal", Reply.text("CLOSING-V2 Yours sincerely"))
    llm.rule(opening("Draft intro"), Reply.text("INTRO-DRAFT"))
    llm.rule(opening("Draft body"), Reply.text("BODY-DRAFT"))
    llm.rule(opening("Draft closing"), Reply.text("CLOSING-V1 cheers"))
    llm.rule(
        PLANNER,
        plan(
            step("intro", "Draft intro", "writer", needs_approval=True),
            step("body", "Draft body", "writer", after=("intro",), needs_approval=True),
            step("closing", "Draft closing", "writer", after=("body",), needs_approval=True),
        ),
    )
    stdin = "\n".join(
        [
            "a",  # intro: approve as is
            "e",  # body: replace with a multi-line text ending with "."
            "Edited line one",
            "Edited line two",
            ".",
            "r",  # closing: reject with a reason...
            "Too casual, be formal",
            "a",  # ...then approve the revision
        ]
    )

    r = baton(["run", "Write a letter", "--approvals", "prompt"], baton_env, stdin=stdin + "\n")

    assert r.code == 0, r.out + r.err
    run_id = run_id_of(r.out)
    assert "(end with a line containing only '.')" in r.out
    assert re.search(r"☑ a-\w+ approved \(edited\) by cli:", r.out)
    assert re.search(r"☑ a-\w+ rejected by cli:\S+: Too casual, be formal", r.out)

    # The edited text is the step's output: the next step got it, not the model's draft.
    [closing_first, closing_revision] = step_requests(llm, "Draft closing")
    assert "Edited line one\nEdited line two" in closing_first.text
    assert "BODY-DRAFT" not in closing_first.text
    # The rejection reason reached the agent, which revised.
    last = closing_revision.messages[-1]
    assert last["role"] == "user"
    assert "Too casual, be formal" in last["content"]
    assert "CLOSING-V1 cheers" in closing_revision.text
    assert len(step_requests(llm, "Draft intro")) == 1
    assert len(step_requests(llm, "Draft body")) == 1

    show = baton(["show", run_id], baton_env)
    assert "## intro: Draft intro (writer) — done\nINTRO-DRAFT\n" in show.out
    assert (
        "## body: Draft body (writer after intro) — done\nEdited line one\nEdited line two\n"
        in (show.out)
    )
    assert "## closing: Draft closing (writer after body) — done\nCLOSING-V2 Yours sincerely\n" in (
        show.out
    )
    assert re.search(r"step closing\): rejected by .*\n  reason: Too casual, be formal", show.out)
    assert re.search(r"step closing\): approved by ", show.out)


def test_prompt_mode_exits_3_when_input_ends_with_several_checkpoints_waiting(
    llm: ScriptedLLM, baton_env: dict[str, str]
) -> None:
    for name in ("Bob", "Carol"):
        llm.rule(
            opening(f"Notify {name}"),
            Reply.tool_calls(
                [("send_message", {"to": f"{name.lower()}@example.com", "body": f"hi {name}"})]
            ),
        )
    llm.rule(
        PLANNER,
        plan(step("bob", "Notify Bob", "operator"), step("carol", "Notify Carol", "operator")),
    )

    # Ctrl-D (or a script's answers running out) before any decision.
    r = baton(["run", "Tell both", "--approvals", "prompt"], baton_env, stdin="", timeout=15)

    assert r.code == 3, r.out + r.err
    waiting = r.out.split("is waiting for a person:")[-1]
    assert len(ids_in(waiting, "a")) == 2
    assert ledger(baton_env) == []


# ---- 6. non-interactive approvals ----------------------------------------------------------


def _send_plan(llm: ScriptedLLM) -> None:
    llm.rule("sent to eve@example.com", Reply.text("EVE-NOTIFIED"))
    llm.rule("A person rejected this call", Reply.text("MALLORY-NOT-CONTACTED"))
    llm.rule(
        opening("Notify Eve"),
        Reply.tool_calls([("send_message", {"to": "eve@example.com", "body": "hello Eve"})]),
    )
    llm.rule(
        opening("Contact Mallory"),
        Reply.tool_calls([("send_message", {"to": "mallory@example.com", "body": "hi M"})]),
    )
    llm.rule(
        lambda body: PLANNER in request_text(body) and "notify Eve" in request_text(body),
        plan(step("eve", "Notify Eve", "operator")),
        name="planner-eve",
    )
    llm.rule(
        lambda body: PLANNER in request_text(body) and "contact Mallory" in request_text(body),
        plan(step("mallory", "Contact Mallory", "operator")),
        name="planner-mallory",
    )


def test_without_a_terminal_a_run_exits_3_and_is_decided_by_command(
    llm: ScriptedLLM, baton_env: dict[str, str]
) -> None:
    _send_plan(llm)

    # Two processes at once on one database (and half the wait).
    with ThreadPoolExecutor(2) as pool:
        eve = pool.submit(baton, ["run", "Goal: notify Eve"], baton_env, timeout=30)
        mallory = pool.submit(baton, ["run", "Goal: contact Mallory"], baton_env, timeout=30)
        first, second = eve.result(), mallory.result()

    for r, who in ((first, "eve"), (second, "mallory")):
        assert r.code == 3, r.out + r.err
        assert f"Run {run_id_of(r.out)} is waiting for a person:" in r.out
        [approval] = ids_in(r.out, "a")
        assert f"approval {approval} (step {who}):" in r.out
        assert "send_message (risk: external)" in r.out
        assert f'"to": "{who}@example.com"' in r.out
        assert f"baton approve {approval}" in r.out
    assert ledger(baton_env) == []  # nothing was sent without a decision
    [eve_id] = ids_in(first.out, "a")
    [mallory_id] = ids_in(second.out, "a")

    pending = baton(["approvals"], baton_env)
    assert pending.code == 0
    assert f"approval {eve_id}  run {run_id_of(first.out)}  step eve" in pending.out
    assert f"approval {mallory_id}  run {run_id_of(second.out)}  step mallory" in pending.out

    approved = baton(["approve", eve_id], baton_env)
    assert approved.code == 0, approved.out + approved.err
    assert re.search(rf"■ run {run_id_of(first.out)} done", approved.out)
    assert [entry for _, _, entry in ledger(baton_env)] == ["eve@example.com: hello Eve"]

    again = baton(["approve", eve_id], baton_env)
    assert again.code == 1
    assert re.search(r"baton: This was already approved by cli:\S+\.", again.err)
    assert len(ledger(baton_env)) == 1

    rejected = baton(
        ["reject", mallory_id, "--reason", "Mallory asked not to be contacted"], baton_env
    )
    assert rejected.code == 0, rejected.out + rejected.err
    assert re.search(rf"■ run {run_id_of(second.out)} done", rejected.out)
    [_, after] = step_requests(llm, "Contact Mallory")
    assert "Mallory asked not to be contacted" in tool_messages(after)[0]
    assert len(ledger(baton_env)) == 1  # Mallory's message was never sent

    assert "Nothing is waiting for a person." in baton(["approvals"], baton_env).out


# ---- 7. handoffs ---------------------------------------------------------------------------


def _handoff_plan(llm: ScriptedLLM) -> None:
    llm.rule(
        PLANNER,
        plan(
            step("ask", "Ask the boss", "analyst"),
            step("decide", "Write the decision", "writer", after=("ask",)),
        ),
    )
    llm.rule(
        opening("Ask the boss"),
        Reply.tool_calls(
            [
                (
                    "handoff_to_human",
                    {"question": "Which budget applies?", "summary": "Options A and B compared"},
                )
            ]
        ),
    )
    llm.rule(opening("Write the decision"), Reply.text("DECISION-WRITTEN"))


def test_handoff_to_a_person_at_the_terminal(llm: ScriptedLLM, baton_env: dict[str, str]) -> None:
    _handoff_plan(llm)
    goal = "Pick the budget for project Falcon"

    r = baton(
        ["run", goal, "--approvals", "prompt"],
        baton_env,
        stdin="Budget B applies\nSigned off by the CFO\n.\n",
    )

    assert r.code == 0, r.out + r.err
    run_id = run_id_of(r.out)
    [handoff] = ids_in(r.out, "h")
    assert f"✋ Handoff {handoff} — step 'ask' needs you:" in r.out
    assert "  Which budget applies?" in r.out
    assert f"  | Goal: {goal}" in r.out
    assert "  | Agent's summary: Options A and B compared" in r.out

    [decide] = step_requests(llm, "Write the decision")
    assert "Budget B applies\nSigned off by the CFO" in decide.text
    assert len(step_requests(llm, "Ask the boss")) == 1

    show = baton(["show", run_id], baton_env)
    assert "## ask: Ask the boss (analyst) — done\nBudget B applies\nSigned off by the CFO\n" in (
        show.out
    )
    assert f"Handoff {handoff} (to_human, step ask): closed" in show.out
    assert "## decide: Write the decision (writer after ask) — done\nDECISION-WRITTEN" in show.out


def test_handoff_answered_by_command(llm: ScriptedLLM, baton_env: dict[str, str]) -> None:
    _handoff_plan(llm)

    r = baton(["run", "Pick the budget for project Heron"], baton_env, timeout=30)

    assert r.code == 3, r.out + r.err
    [handoff] = ids_in(r.out, "h")
    assert f"handoff {handoff} (step ask): Which budget applies?" in r.out
    assert f"baton answer {handoff}" in r.out
    assert step_requests(llm, "Write the decision") == []
    listed = baton(["approvals"], baton_env)
    assert f"handoff {handoff}  run {run_id_of(r.out)}  step ask: Which budget applies?" in (
        listed.out
    )

    answered = baton(["answer", handoff, "Budget A, per the March memo"], baton_env)

    assert answered.code == 0, answered.out + answered.err
    assert re.search(rf"■ run {run_id_of(r.out)} done", answered.out)
    [decide] = step_requests(llm, "Write the decision")
    assert "Budget A, per the March memo" in decide.text


def test_handoff_to_another_agent(llm: ScriptedLLM, baton_env: dict[str, str]) -> None:
    llm.rule(PLANNER, plan(step("post", "Publish findings", "researcher")))
    llm.rule(
        lambda body: str(body["messages"][0]["content"]).startswith("You are writer:"),
        Reply.text("WRITER-POST"),
        name="writer",
    )
    llm.rule(
        opening("Publish findings"),
        Reply.tool_calls(
            [("handoff_to_agent", {"agent": "writer", "note": "NOTE: facts are X and Y"})]
        ),
    )

    r = baton(["run", "Research X and publish a post"], baton_env)

    assert r.code == 0, r.out + r.err
    assert "⇄ post handed to agent writer" in r.out
    first, second = step_requests(llm, "Publish findings")
    assert str(first.messages[0]["content"]).startswith("You are researcher:")
    assert str(second.messages[0]["content"]).startswith("You are writer:")
    assert "Agent researcher handed this step to you" in second.text
    assert "NOTE: facts are X and Y" in second.text
    show = baton(["show", run_id_of(r.out)], baton_env)
    assert "## post: Publish findings (writer) — done\nWRITER-POST" in show.out


# ---- 8. bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", ""], "The goal is empty"),
        (["run"], "Say what you want done"),
        (["run", "x" * 20_000], "20000 characters; the limit is 8000 (BATON_MAX_GOAL_CHARS)"),
        (
            ["run", "--playbook", str(PLAYBOOKS / "unknown_agent.yaml")],
            "names unknown agent 'ghostwriter'",
        ),
        (
            ["run", "--playbook", str(PLAYBOOKS / "account_brief.yaml")],
            "Missing input 'account' (Company name): give account=VALUE.",
        ),
        (
            [
                "run",
                "--playbook",
                str(PLAYBOOKS / "account_brief.yaml"),
                "-i",
                "account=Acme",
                "-i",
                "acount=Acme",
            ],
            "Unknown input 'acount'; this playbook takes: account, tone.",
        ),
        (
            ["run", "--playbook", str(PLAYBOOKS / "account_brief.yaml"), "-i", "account"],
            "--input takes KEY=VALUE, got 'account'",
        ),
        (["run", "--playbook", str(PLAYBOOKS / "missing.yaml")], "Cannot read playbook"),
        (["run", "a goal", "-i", "account=Acme"], "--input goes with --playbook"),
        (["show", "r-0000000000"], "There is no run 'r-0000000000'"),
    ],
    ids=[
        "empty-goal",
        "no-goal",
        "huge-goal",
        "unknown-agent",
        "missing-input",
        "unknown-input",
        "input-without-value",
        "missing-playbook",
        "input-without-playbook",
        "unknown-run",
    ],
)
def test_bad_input_is_refused_clearly(
    llm: ScriptedLLM, baton_env: dict[str, str], args: list[str], expected: str
) -> None:
    r = baton(args, baton_env)

    assert r.code == 1, r.out + r.err
    assert expected in r.err
    assert r.err.startswith("baton: ")
    assert llm.chat_requests == []


def test_commands_that_stop_early_print_no_traceback(
    llm: ScriptedLLM, baton_env: dict[str, str]
) -> None:
    r = run_baton(["run", ""], baton_env)

    assert r.code == 1
    assert "Traceback" not in r.err, r.err
    assert r.err.count("\n") == 1, r.err  # just the one "baton: ..." sentence


def test_malformed_playbook_names_file_and_line(
    llm: ScriptedLLM, baton_env: dict[str, str]
) -> None:
    path = PLAYBOOKS / "broken_yaml.yaml"
    bad_line = next(
        i
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if "indented one space too far" in line
    )

    r = baton(["run", "--playbook", str(path)], baton_env)

    assert r.code == 1
    assert f"broken_yaml.yaml:{bad_line}: not valid YAML" in r.err
    assert llm.chat_requests == []


def test_a_planner_that_returns_garbage_twice_fails_the_run(
    llm: ScriptedLLM, baton_env: dict[str, str]
) -> None:
    llm.rule(PLANNER, Reply.text("bad JSON"), Reply.text("still bad"))

    r = baton(["run", "Plan something impossible"], baton_env)

    assert r.code == 1, r.out + r.err
    first, second = planner_requests(llm)  # exactly one repair round
    assert "That plan cannot run" not in first.text
    assert "bad JSON" in second.text
    assert "That plan cannot run" in second.text
    assert re.search(r"reason: Planning failed: .*after one repair", r.out)
    show = baton(["show", run_id_of(r.out)], baton_env)
    assert "— failed" in show.out
    assert "Reason: Planning failed:" in show.out
    runs = baton(["runs"], baton_env)
    assert re.search(rf"^{run_id_of(r.out)}\s+failed\s+2\s", runs.out, re.MULTILINE)


def test_a_plan_with_an_unknown_agent_is_repaired(
    llm: ScriptedLLM, baton_env: dict[str, str]
) -> None:
    llm.rule(
        PLANNER,
        plan(step("w", "Write the poem", "poet")),
        plan(step("w", "Write the poem", "writer")),
    )
    llm.rule(opening("Write the poem"), Reply.text("POEM"))

    r = baton(["run", "Write a poem"], baton_env)

    assert r.code == 0, r.out + r.err
    first, second = planner_requests(llm)
    assert "'poet'" not in first.text
    assert "names unknown agent 'poet'" in second.text
    assert status_in_table(r.out, "w") == "done"
    assert "POEM" in r.out


def test_a_missing_api_key_is_named_before_any_model_call(
    llm: ScriptedLLM, baton_env: dict[str, str]
) -> None:
    env = {k: v for k, v in baton_env.items() if k != "OPENAI_API_KEY"}

    r = baton(["run", "Research Acme"], env)

    assert r.code == 1, r.out + r.err
    assert "OPENAI_API_KEY" in r.err
    assert llm.requests == []
    assert "No runs yet" in baton(["runs"], env).out


# ---- 9. help -------------------------------------------------------------------------------


def test_help_is_fast_and_does_not_import_litellm(baton_env: dict[str, str]) -> None:
    r = baton(["--help"], baton_env)
    assert r.code == 0
    assert "usage: baton" in r.out
    for command in ("run", "runs", "show", "approve", "reject", "answer", "cancel"):
        assert command in r.out

    probe = (
        "import sys\n"
        "from bot.cli import main\n"
        "for argv in (['--help'], ['run', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, exc.code\n"
        "heavy = [m for m in ('litellm', 'openai', 'sqlalchemy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", probe],
        env=baton_env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert "--playbook FILE" in p.stdout


# ---- 10. cancel ----------------------------------------------------------------------------


def test_cancelling_a_waiting_run(llm: ScriptedLLM, baton_env: dict[str, str]) -> None:
    _send_plan(llm)
    r = baton(["run", "Goal: notify Eve"], baton_env, timeout=30)
    assert r.code == 3, r.out + r.err
    run_id = run_id_of(r.out)
    [approval] = ids_in(r.out, "a")

    cancelled = baton(["cancel", run_id], baton_env)

    assert cancelled.code == 0, cancelled.out + cancelled.err
    assert f"Run {run_id}: cancelled" in cancelled.out
    show = baton(["show", run_id], baton_env)
    assert f"Run {run_id} — cancelled" in show.out
    assert re.search(rf"Approval {approval} \(tool_call, step eve\): expired", show.out)
    assert "Nothing is waiting for a person." in baton(["approvals"], baton_env).out
    late = baton(["approve", approval], baton_env)
    assert late.code == 1
    assert "already expired" in late.err
    assert ledger(baton_env) == []
