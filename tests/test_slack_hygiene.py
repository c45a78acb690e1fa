"""Slack text hygiene everywhere Baton writes: no masked link hides its target and no broadcast
or user-group mention pings anyone, and goals from Slack are stored as plain text.

Checked with :func:`tests.support.slack_hygiene.slack_text_problems` on what Slack received:

1. the sanitisers themselves (:mod:`bot.hygiene`, :func:`bot.views.text.escape`);
2. every view, fed hostile goal, step, output and error text;
3. ``slack_post_message`` and the :class:`~bot.poster.Poster` against the Web API stand-in;
4. ``baton serve`` with Slack-signed ``/orchestrate`` and ``app_mention`` requests: the stored
   goal is plain, the planner sees the real URL, and every card, result and summary of the run
   (whose model writes masked links and ``<!channel>``) reaches Slack clean.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from agents.registry import Registry
from agents.tools import ToolContext
from bot.hygiene import clean_payload, from_slack, safe_mrkdwn
from bot.poster import Poster
from bot.slack_tools import channel_id, register_slack_tools
from bot.views import (
    ApprovalCard,
    HandoffCard,
    RunCard,
    StepLine,
    approval_decided,
    approval_message,
    handoff_message,
    home_view,
    run_summary,
    status_card,
    step_result,
    usage_error,
)
from bot.views.results import flag_message, refusal_message
from bot.views.text import ZWSP, escape, link
from tests.support.baton_server import BatonServer, slack_env
from tests.support.llm_server import Reply, ScriptedLLM, request_text
from tests.support.slack_api import RESPONSE_URL_METHOD, FakeSlack
from tests.support.slack_hygiene import all_problems, slack_text_problems, text_problems
from tests.support.slack_requests import (
    BOT_USER_ID,
    CHANNEL_ID,
    app_mention_event,
    event_callback,
    slash_command,
)

#: A model's (or a page's) attempt to disguise a link and page everyone, every way there is.
HOSTILE = (
    "Log in at <https://sso.evil.example/login|acme.example/partners> or "
    "<https://sso.evil.example/x|https://acme.example/x>, @channel @here @Everyone "
    "<!channel> <!here|here> <!everyone> <!subteam^S0SALES01|@sales> &lt;!channel&gt;"
)
PINGS = ("@channel", "@here", "@everyone", "@Everyone", "<!channel", "<!here", "<!subteam")


# ---- 1. the sanitisers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("<https://acme.example|acme.example>", "https://acme.example"),
        ("<https://acme.example/a>", "https://acme.example/a"),
        ("<mailto:ada@acme.example|ada@acme.example>", "ada@acme.example"),
        ("ask <@U0123ABCD> and <@W42|bob>", "ask @U0123ABCD and @W42"),
        ("post in <#C0DEALS01|deals>", "post in #deals (C0DEALS01)"),
        ("<!channel> <!here|here> <!everyone>", f"@{ZWSP}channel @{ZWSP}here @{ZWSP}everyone"),
        ("<!subteam^S0SALES01|@sales>", f"@{ZWSP}sales"),
        ("typed @channel and @here", f"typed @{ZWSP}channel and @{ZWSP}here"),
        ("escaped &lt;!channel&gt; &amp; more", f"escaped @{ZWSP}channel & more"),
        (
            "<https://sso.evil.example/login|acme.example/partners>",
            "https://sso.evil.example/login",
        ),
        ("<https://acme.example/doc|the spec>", "the spec (https://acme.example/doc)"),
        ("<!date^1700000000^{date_short}|Nov 14>", "Nov 14"),
        ("“quoted” ‘words’", "\"quoted\" 'words'"),
    ],
)
def test_goals_and_inputs_from_slack_are_plain_text(typed: str, stored: str) -> None:
    assert from_slack(typed) == stored
    assert from_slack(stored) == stored  # idempotent on plain text


def test_a_channel_a_person_picked_still_works_as_a_channel() -> None:
    assert channel_id(from_slack("<#C0DEALS01|deals>")) == "C0DEALS01"


def test_masked_links_show_their_real_target_and_nobody_is_pinged() -> None:
    out = safe_mrkdwn(HOSTILE)
    assert "<https://sso.evil.example/login>" in out
    assert "acme.example/partners" not in out  # a label that reads like an address is dropped
    assert "|" not in out
    assert not any(p in out for p in PINGS), out
    assert out.count(f"@{ZWSP}") == 7
    assert not text_problems(out)
    assert safe_mrkdwn(out) == out  # idempotent
    # A wordy label stays, before the real address; mentions of people and channels stay.
    assert safe_mrkdwn("<https://a.example/d|the deck>") == "the deck (<https://a.example/d>)"
    assert safe_mrkdwn("hi <@U0123> in <#C0123|general>") == "hi <@U0123> in <#C0123|general>"
    # Baton's own approver group, configured by an admin, may be mentioned in reminders.
    assert safe_mrkdwn("<!subteam^S0APPROVE1>", {"S0APPROVE1"}) == "<!subteam^S0APPROVE1>"


def test_escape_defuses_plain_broadcasts_and_link_is_never_labelled() -> None:
    assert escape("@channel <b> & @here") == f"@{ZWSP}channel &lt;b&gt; &amp; @{ZWSP}here"
    assert escape("mail me@here.example") == "mail me@here.example"
    assert link("https://acme.example/news") == "<https://acme.example/news>"
    assert link("https://x.example/|evil") == "https://x.example/|evil"  # not one piece: text
    assert link("javascript:alert(1)") == "javascript:alert(1)"


def test_the_checker_finds_every_kind_of_problem() -> None:
    dirty = {
        "text": "<!here> hi",
        "link_names": True,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "<https://e.example|a.b>"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "@everyone"}]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "<!subteam^S1>"}]},
        ],
    }
    problems = slack_text_problems(dirty)
    assert len(problems) == 5, problems
    clean = clean_payload("chat.postMessage", dirty)
    assert slack_text_problems(clean) == []
    fine = "<https://a.example|a.example> <mailto:a@b.c|a@b.c> <@U1> <#C1|x> <!date^1^d|x>"
    assert text_problems(fine) == []
    assert text_problems("&lt;!channel&gt;") == []  # shown as it reads, pings nobody


# ---- 2. every view, fed hostile text -----------------------------------------------------------


def _hostile_views() -> list[tuple[str, Any]]:
    steps = (StepLine("s1", HOSTILE, HOSTILE, "failed", 1.0),)
    run = RunCard(
        "r-1", HOSTILE, "U0ALICE01", "done", steps, error=HOSTILE, refusals=(HOSTILE, HOSTILE)
    )
    tool = ApprovalCard(
        "a-1",
        "r-1",
        "s1",
        HOSTILE,
        "tool_call",
        {"tool": "slack_post_message", "arguments": {"text": HOSTILE}},
        "d" * 64,
        "external",
        claims=({"claim": HOSTILE, "supported": False, "problem": HOSTILE, "source": HOSTILE},),
    )
    draft = ApprovalCard(**{**tool.__dict__, "kind": "step_output", "action": {"draft": HOSTILE}})
    handoff = HandoffCard("h-1", "r-1", "s1", HOSTILE, HOSTILE, HOSTILE)
    return [
        ("status", status_card(run)),
        ("summary", run_summary(run, HOSTILE)),
        ("approval", approval_message(tool)),
        ("draft", approval_message(draft)),
        ("decided", approval_decided(ApprovalCard(**{**tool.__dict__, "status": "rejected"}))),
        ("handoff", handoff_message(handoff)),
        ("result", step_result("r-1", "s1", HOSTILE, HOSTILE)),
        ("error", usage_error(HOSTILE)),
        ("refusal", refusal_message(HOSTILE)),
        ("flag", flag_message(HOSTILE)),
        ("home", home_view([tool, draft], [run])),
    ]


@pytest.mark.parametrize(("name", "view"), _hostile_views())
def test_no_view_carries_a_masked_link_or_a_live_mention(name: str, view: Any) -> None:
    args = {"view": view} if isinstance(view, dict) else {"text": view[0], "blocks": view[1]}
    assert slack_text_problems(args) == [], name
    shown = str(args)
    assert "sso.evil.example" in shown  # the real target is what is shown


# ---- 3. the tool and the poster against the Web API stand-in -----------------------------------


async def test_a_model_post_reaches_slack_with_real_targets_and_no_pings() -> None:
    with FakeSlack() as fake:
        client = AsyncWebClient(token="xoxb-test", base_url=fake.base_url)
        registry = Registry()
        register_slack_tools(registry, client)
        tool = registry.tool("slack_post_message")
        ctx = ToolContext(run_id="r-1", step_id="s1", idempotency_key="k-hygiene")
        await tool.call({"channel": CHANNEL_ID, "text": HOSTILE}, ctx)

        [call] = [c for c in fake.calls_to("chat.postMessage") if c.ok]
        assert slack_text_problems(call) == []
        assert "<https://sso.evil.example/login>" in call.args["text"]
        assert "acme.example/partners" not in call.args["text"]

        # Text that skipped every view (an error message, say) is cleaned on its way out too.
        poster = Poster(client)
        await poster.post(CHANNEL_ID, f"Failed: {HOSTILE}", [])
        await poster.ephemeral(CHANNEL_ID, "U0ALICE01", HOSTILE)
        modal = {"type": "home", "blocks": [{"type": "section", "text": _mrkdwn(HOSTILE)}]}
        await poster.call("views.publish", user_id="U0ALICE01", view=modal)
        assert not all_problems(fake.calls), all_problems(fake.calls)


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


# ---- 4. through the real app: signed requests in, the Web API stand-in out -----------------------

PLANNER = "You are the planner"
TYPED = (
    "Research <https://acme.example|acme.example> with <@U0CAROL001> for <#C0DEALS01|deals>, "
    "then tell @channel <!here> <!subteam^S0SALES01|@sales> about "
    "<https://sso.evil.example/login|acme.example/partners> and mail "
    "<mailto:ada@acme.example|ada@acme.example>"
)
STORED = (
    "Research https://acme.example with @U0CAROL001 for #deals (C0DEALS01), "
    f"then tell @{ZWSP}channel @{ZWSP}here @{ZWSP}sales about "
    "https://sso.evil.example/login and mail ada@acme.example"
)
MENTIONED = "Look at <https://b.example|b.example> with <@U0CAROL001> @here"
MENTION_STORED = f"Look at https://b.example with @U0CAROL001 @{ZWSP}here"


def _script(llm: ScriptedLLM) -> None:
    def planner(goal: str) -> Callable[[dict[str, Any]], bool]:
        marker = f'source="goal">\n{goal}\n'
        return lambda body: PLANNER in request_text(body) and marker in request_text(body)

    llm.rule(
        planner(STORED),
        Reply.json(
            {
                "steps": [
                    {
                        "id": "look",
                        "title": f"Look into it {HOSTILE}",
                        "agent": "researcher",
                        "instructions": "Do it.",
                        "depends_on": [],
                    }
                ]
            }
        ),
    )
    llm.rule(
        planner(MENTION_STORED),
        Reply.json(
            {
                "steps": [
                    {
                        "id": "b",
                        "title": "Look at b",
                        "agent": "researcher",
                        "instructions": "Do it.",
                        "depends_on": [],
                    }
                ]
            }
        ),
    )
    llm.rule("Your step: Look into it", Reply.text(f"Findings: {HOSTILE}"))
    llm.rule("Your step: Look at b\n", Reply.text("B-FACTS @everyone"))


def _goals(env: dict[str, str]) -> list[str]:
    path = env["BATON_DATABASE_URL"].removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn:
        return [g for (g,) in conn.execute("SELECT goal FROM runs ORDER BY created_at")]


def _wait(what: str, predicate: Callable[[], Any], server: BatonServer, timeout: float = 40) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline or not server.alive:
            raise AssertionError(f"timed out waiting for {what}\n{server.output[-3000:]}")
        time.sleep(0.05)
    return value


def test_goals_from_slack_are_stored_plain_and_nothing_baton_posts_pings_or_disguises(
    llm: ScriptedLLM, baton_env: dict[str, str]
) -> None:
    _script(llm)
    channel, other = "C0HYGIENE01", "C0HYGIENE02"
    with FakeSlack() as fake:
        env = slack_env(baton_env, fake.base_url)
        with BatonServer(env) as server:
            body, ctype = slash_command(
                TYPED, channel_id=channel, response_url=fake.response_url(channel)
            )
            assert server.post(body, ctype) == (200, "")
            _wait(
                "the run's summary",
                lambda: [m for m in fake.messages(channel) if m["text"].startswith("Run complete")],
                server,
            )
            mention = app_mention_event(f"<@{BOT_USER_ID}> {MENTIONED}", channel_id=other)
            assert server.post(*event_callback(mention)) == (200, "")
            _wait(
                "the mention's summary",
                lambda: [m for m in fake.messages(other) if m["text"].startswith("Run complete")],
                server,
            )
            time.sleep(1.2)  # the last card edit
        assert "Traceback" not in server.output, server.output

    # Stored, and planned from, as plain text: the real URL, no markup, broadcasts defused.
    assert _goals(env) == [STORED, MENTION_STORED]
    planned = llm.requests_matching(PLANNER)[0]
    assert "https://sso.evil.example/login" in planned.text
    assert "acme.example/partners" not in planned.text

    # What Slack received: every message, edit and response, in both channels.
    calls = [
        c
        for c in fake.calls
        if c.args.get("channel") in (channel, other) or c.method == RESPONSE_URL_METHOD
    ]
    assert len(calls) >= 6
    assert not all_problems(calls), all_problems(calls)
    card = next(m for m in fake.messages(channel) if m["thread_ts"] in (None, m["ts"]))
    assert f"@{ZWSP}channel" in card["text"]
    assert "sso.evil.example/login" in str(fake.messages(channel))
