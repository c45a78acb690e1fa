"""Refusals are visible: every refused call and every flagged outbound call is an event and an
audit entry, the Slack thread and the terminal show it, ``baton show`` lists it, and a run that
ended with refused calls says so instead of a plain "Done".

A refusal is produced through a real guard: an approval row altered after the person saw it (its
recorded action no longer matches its digest) is refused by the re-check right before the call
runs, whatever the approver clicked. A flag is produced by the grounding check: a checker model
that answers nonsense leaves the outbound text unchecked, and the approval carries the flag.

Everything runs through the real paths: ``baton`` subprocesses for the terminal and
``baton show``/``baton runs``; ``baton serve`` with Slack-signed requests in and FakeSlack out for
the thread, asserting on what Slack received.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.events import CallRefused, OutboundFlagged, RunFinished
from bot.console import Console
from tests.conftest import Result, run_baton
from tests.support.baton_server import BatonServer, slack_env
from tests.support.llm_server import Reply, ScriptedLLM, request_text
from tests.support.slack_api import FakeSlack
from tests.support.slack_hygiene import all_problems
from tests.test_slack_e2e import (
    ALICE,
    BOB,
    approval_id_of,
    block_text,
    click,
    command,
    roots,
)

PLANNER = "You are the planner"
CHECKER = "You check outbound text"
EVE = "eve@example.com"
REFUSED_WHY = "the approval's record does not match its digest (it was altered)"


def _plan(*steps: dict[str, Any]) -> Reply:
    return Reply.json({"steps": list(steps)})


def _step(sid: str, title: str, agent: str) -> dict[str, Any]:
    return {
        "id": sid,
        "title": title,
        "agent": agent,
        "instructions": f"Do: {title}.",
        "depends_on": [],
        "needs_approval": False,
    }


def _planner(goal_part: str) -> Callable[[dict[str, Any]], bool]:
    return lambda body: PLANNER in request_text(body) and goal_part in request_text(body)


def _script(llm: ScriptedLLM, tag: str) -> tuple[str, str]:
    """Two goals: ``notify`` (a send_message that will be refused) and ``outreach`` (an outbound
    email whose grounding check fails, so its approval is flagged). Returns both goals."""
    notify, outreach = f"Notify Eve {tag} at {EVE}", f"Email Acme {tag} at cto@acme.test"
    llm.rule("Baton refused to call send_message", Reply.text(f"NOT-SENT-{tag}"))
    llm.rule(
        f"Your step: Notify Eve {tag}\n",
        Reply.tool_calls([("send_message", {"to": EVE, "body": f"hello Eve {tag}"})]),
    )
    llm.rule(_planner(notify), _plan(_step("notify", f"Notify Eve {tag}", "operator")))
    llm.rule(CHECKER, Reply.text("I cannot tell."))  # a checker that checks nothing
    llm.rule(
        f"Your step: Write to Acme {tag}\n",
        Reply.tool_calls(
            [
                (
                    "send_outreach",
                    {"to": "cto@acme.test", "subject": "Hi", "body": "Acme raised $45M in May."},
                )
            ]
        ),
    )
    llm.rule(_planner(outreach), _plan(_step("write", f"Write to Acme {tag}", "outreach")))
    return notify, outreach


def _db(env: dict[str, str]) -> str:
    return env["BATON_DATABASE_URL"].removeprefix("sqlite:///")


def _tamper(env: dict[str, str], approval_id: str) -> None:
    """Alter an approval's recorded action behind the approver's back (its digest stays)."""
    with contextlib.closing(sqlite3.connect(_db(env), timeout=10)) as conn:
        conn.execute(
            "UPDATE approvals SET action = json_set(action, '$.arguments.to', 'x@evil.example') "
            "WHERE id = ?",
            (approval_id,),
        )
        conn.commit()


def _ledger(env: dict[str, str]) -> list[str]:
    path = Path(env["BATON_TEST_LEDGER"])
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def _ok(r: Result) -> Result:
    assert "Traceback" not in r.out + r.err, r.out + r.err
    return r


# ---- the terminal's lines (pure) ----------------------------------------------------------------


def test_console_prints_refusals_flags_and_a_run_that_ended_with_refusals() -> None:
    console = Console()
    refused = CallRefused(
        "r-1", "send", "send_email", "recipients", "not a recipient of this run", "x@evil.example"
    )
    assert console.lines(refused) == [
        "  ⚠ send: refused: send_email to x@evil.example, not a recipient of this run"
    ]
    flags = ({"kind": "claim", "text": "Acme raised $45M", "problem": "no source for it"},)
    [flagged] = console.lines(OutboundFlagged("r-1", "send", "send_email", "a-1", flags))
    assert flagged == (
        '  ⚠ send: flagged: send_email: 1 problem: claim "Acme raised $45M" (no source for it)'
    )
    end = RunFinished("r-1", "done", None, None, 3, 100, 0.0, 1.5, refused=2)
    assert console.lines(end)[0].startswith("■ run r-1 done with 2 refused calls in 1.5s")
    plain = RunFinished("r-1", "done", None, None, 3, 100, 0.0, 1.5)
    assert console.lines(plain)[0].startswith("■ run r-1 done in 1.5s")


# ---- the terminal and baton show, as subprocesses ------------------------------------------------


def test_a_refused_call_is_printed_listed_by_show_and_the_run_does_not_end_plainly_done(
    llm: ScriptedLLM, baton_env: dict[str, str]
) -> None:
    notify, outreach = _script(llm, "cli")

    first = _ok(run_baton(["run", notify], baton_env, timeout=60))
    assert first.code == 3, first.out + first.err
    [approval] = list(dict.fromkeys(re.findall(r"\b(a-[0-9a-f]{10})\b", first.out)))
    run_id = re.search(r"▶ run (r-[0-9a-f]+)", first.out).group(1)  # type: ignore[union-attr]
    _tamper(baton_env, approval)

    approved = _ok(run_baton(["approve", approval], baton_env, timeout=60))
    assert approved.code == 0, approved.out + approved.err
    assert f"  ⚠ notify: refused: send_message, {REFUSED_WHY}" in approved.out
    assert re.search(rf"■ run {run_id} done with 1 refused call in ", approved.out), approved.out
    assert _ledger(baton_env) == []  # nothing was sent, to anyone

    show = _ok(run_baton(["show", run_id], baton_env))
    assert show.code == 0, show.err
    assert f"Run {run_id} — done with 1 refused call\n" in show.out
    assert "Refused calls (1):" in show.out
    assert re.search(
        rf"⚠ .* step notify: refused: send_message, {re.escape(REFUSED_WHY)}", show.out
    )

    # A flagged outbound call: printed as it happens, listed by `baton show`.
    second = _ok(run_baton(["run", outreach], baton_env, timeout=60))
    assert second.code == 3, second.out + second.err
    assert re.search(r"  ⚠ write: flagged: send_outreach: \d+ problems?: ", second.out), second.out
    flagged_run = re.search(r"▶ run (r-[0-9a-f]+)", second.out).group(1)  # type: ignore[union-attr]
    shown = _ok(run_baton(["show", flagged_run], baton_env))
    assert "Flagged outbound calls (1):" in shown.out
    assert "flagged: send_outreach:" in shown.out
    assert "Refused calls" not in shown.out

    runs = _ok(run_baton(["runs"], baton_env))
    [line] = [ln for ln in runs.out.splitlines() if ln.startswith(run_id)]
    assert line.split()[1] == "done"
    assert line.endswith(f"⚠ 1 refused · {notify}")
    [other] = [ln for ln in runs.out.splitlines() if ln.startswith(flagged_run)]
    assert "refused" not in other


# ---- the Slack thread ---------------------------------------------------------------------------


def _wait(what: str, predicate: Callable[[], Any], server: BatonServer, timeout: float = 40) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline or not server.alive:
            raise AssertionError(f"timed out waiting for {what}\n{server.output[-3000:]}")
        time.sleep(0.05)


def _thread(fake: FakeSlack, channel: str) -> list[dict[str, Any]]:
    return [m for m in fake.messages(channel) if m["thread_ts"] not in (None, m["ts"])]


def _starting(fake: FakeSlack, channel: str, prefix: str) -> list[dict[str, Any]]:
    return [m for m in _thread(fake, channel) if m["text"].startswith(prefix)]


def test_the_thread_shows_each_refusal_and_flag_and_the_run_ends_saying_so(
    llm: ScriptedLLM, baton_env: dict[str, str]
) -> None:
    notify, outreach = _script(llm, "slack")
    with FakeSlack() as fake:
        env = slack_env(baton_env, fake.base_url, BATON_APPROVERS_EXTERNAL=BOB)
        with BatonServer(env) as server:
            channel, other = "C0REFUSE001", "C0FLAGGED01"
            assert command(server, fake, notify, channel, user=ALICE) == (200, "")
            [ask] = _wait(
                "the approval",
                lambda: _starting(fake, channel, "Approval needed: Notify Eve slack"),
                server,
            )
            _tamper(env, approval_id_of(ask))
            assert click(server, fake, ask, "baton_approve", BOB) == (200, "")

            [note] = _wait(
                "the refusal in the thread",
                lambda: _starting(fake, channel, "⚠️ refused: "),
                server,
            )
            assert note["text"] == f"⚠️ refused: send_message, {REFUSED_WHY}"
            assert "Nothing was done" in block_text(note)
            [summary] = _wait(
                "the summary", lambda: _starting(fake, channel, "Run complete"), server
            )
            assert summary["text"] == f"Run complete with 1 refused call: {notify}"
            assert REFUSED_WHY in block_text(summary)
            [root] = roots(fake, channel)
            _wait(
                "the card to say so",
                lambda: (
                    (m := fake.message(channel, root["ts"]))
                    and m["text"] == f"Done with 1 refused call: {notify}"
                ),
                server,
            )
            assert _ledger(env) == []

            # A flagged outbound email: the thread says so next to its approval.
            assert command(server, fake, outreach, other, user=ALICE) == (200, "")
            [flag] = _wait(
                "the flag in the thread",
                lambda: _starting(fake, other, "⚠️ flagged: send_outreach"),
                server,
            )
            assert _starting(fake, other, "Approval needed: Write to Acme slack")
            assert "the approval lists every problem" in block_text(flag)

            calls = [c for c in fake.calls if c.args.get("channel") in (channel, other)]
            assert not all_problems(calls), all_problems(calls)
        assert "Traceback" not in server.output, server.output
    with contextlib.closing(sqlite3.connect(_db(env))) as conn:
        actions = [a for (a,) in conn.execute("SELECT action FROM audit_log ORDER BY id")]
    assert actions.count("guardrail.refused") == 1
    assert actions.count("outbound.flagged") == 1
    assert json.dumps(actions)  # the log is plain data
