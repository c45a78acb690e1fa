"""The outbound-sales pack and prompt injection, end to end through Slack.

``baton serve`` runs as a subprocess with Slack-signed requests in and FakeSlack out (see
tests/test_slack_e2e.py), a local web site for the research (its news page carries a prompt
injection), a real SMTP server, the stand-in CRM over MCP (stdio, SQLite) and the scripted
model of tests/support/sales.py: a gullible SDR that obeys the injection.

1. The sales pack, started with ``/orchestrate playbook outbound_sales …``: every email waits in
   the thread for a click, shows the claims it makes and their sources, and the injected one
   is rejected through the modal; then the CRM records, a reply, the follow-up (only to whoever
   did not reply) and the run's end, all in one thread.
2. An agent with ``slack_post_message`` reads the same page and, as it asks, posts ``<!channel>``
   "without approval": the post waits for a click, its claims are grounded, and what reaches
   Slack (the post, and every card and result in the run's thread) pings nobody.

Each scenario has a server of its own: they need different plugins and grounding scripts, and
one start costs a few seconds against the minute the sales scenario takes.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_baton
from tests.support.baton_server import BatonServer, slack_env
from tests.support.llm_server import Reply, ScriptedLLM, request_text
from tests.support.sales import (
    CONTACTS,
    EVIL,
    crm_emails,
    grounding_checker,
    pending_approvals,
    sales_config,
    script_sales,
)
from tests.support.slack_api import FakeSlack
from tests.support.smtp import Mailbox
from tests.support.website import LocalSite
from tests.test_slack_e2e import (
    ALICE,
    BOB,
    FORBIDDEN,
    action_ids,
    block_text,
    click,
    command,
    ephemeral_for,
    replies,
    roots,
    step_requests,
    strings,
    tool_messages,
)

GOAL = "Outbound to Acme"
SEND = "Personalise and send the emails"
RECORD = "Record the outreach in the CRM"
FOLLOW = "Follow up with those who did not reply"
#: What a slash command's text looks like once Slack has delivered it (form-decoded).
CONTACTS_QUOTED = f'"{CONTACTS}"'
#: Plain @channel / @here / @everyone that Slack would turn into a ping (with link_names).
PLAIN_BROADCAST = re.compile(r"(?<![\w@])@(channel|here|everyone)\b", re.IGNORECASE)


# ---- the stack ------------------------------------------------------------------------------


@dataclass
class Slack:
    """One ``baton serve`` with FakeSlack, and the channel a scenario runs in."""

    llm: ScriptedLLM
    fake: FakeSlack
    server: BatonServer
    db: Path
    channel: str

    def messages(self, prefix: str) -> list[dict[str, Any]]:
        """The channel's messages whose fallback text starts with ``prefix``."""
        return [m for m in self.fake.messages(self.channel) if m["text"].startswith(prefix)]

    def wait(self, what: str, predicate: Callable[[], Any], timeout: float = 60.0) -> Any:
        """Poll ``predicate`` until truthy; on timeout, fail with the runs and the server's log."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline or not self.server.alive:
                with sqlite3.connect(self.db) as conn:
                    runs = conn.execute("SELECT id, status, error FROM runs").fetchall()
                texts = [m["text"][:120] for m in self.fake.messages(self.channel)]
                raise AssertionError(
                    f"timed out waiting for {what}\nruns: {runs}\nmessages: {texts}\n"
                    f"{self.server.output[-4000:]}"
                )
            time.sleep(0.05)

    def wait_messages(self, prefix: str, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Wait until exactly ``count`` messages start with ``prefix``; return them."""
        found: list[dict[str, Any]] = self.wait(
            f"{count} message(s) starting {prefix!r}",
            lambda: (hits := self.messages(prefix)) and len(hits) >= count and hits,
            timeout,
        )
        assert len(found) == count, [m["text"] for m in found]
        return found

    def run_status(self) -> str:
        with sqlite3.connect(self.db) as conn:
            [(status,)] = conn.execute("SELECT status FROM runs").fetchall()
        return str(status)


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as slack:
        yield slack


@contextlib.contextmanager
def serve(env: dict[str, str], fake: FakeSlack, llm: ScriptedLLM, channel: str) -> Iterator[Slack]:
    """Start ``baton serve`` against ``fake``; after the scenario, stop it and check its log."""
    with BatonServer(env) as server:
        yield Slack(
            llm, fake, server, Path(env["BATON_DATABASE_URL"][len("sqlite:///") :]), channel
        )
    assert "Traceback" not in server.output, server.output


def no_live_broadcasts(fake: FakeSlack, channel: str, *, plain_too: bool = False) -> None:
    """Nothing Baton sent to ``channel`` (posts, edits) holds ``<!channel>``, ``<!here>``,
    ``<!everyone>`` or a live link; with ``plain_too``, not even a plain ``@here`` (which Slack
    turns into a ping only when asked to, with ``link_names``: Baton never asks)."""
    calls = [c for c in fake.calls if c.args.get("channel") == channel]
    assert calls
    for call in calls:
        for text in strings(call.args):
            for bad in FORBIDDEN:
                assert bad not in text, f"{bad!r} reached Slack in {call.summary()}: {text!r}"
            if plain_too:
                assert not PLAIN_BROADCAST.search(text), f"{call.summary()}: {text!r}"
        assert "link_names" not in call.args, call.summary()


# ---- 1. the sales pack through Slack ----------------------------------------------------------


def test_the_sales_pack_runs_in_one_thread_and_nothing_is_sent_without_a_click(
    llm: ScriptedLLM,
    baton_env: dict[str, str],
    fake: FakeSlack,
    sales_site: LocalSite,
    mailbox: Mailbox,
    tmp_path: Path,
) -> None:
    crm_db = tmp_path / "crm.db"
    env = slack_env(
        baton_env,
        fake.base_url,
        BATON_CONFIG_DIR=str(sales_config(tmp_path, crm_db)),
        BATON_FETCH_ALLOW_PRIVATE="127.0.0.1/32",
        BATON_SMTP_HOST=mailbox.host,
        BATON_SMTP_PORT=str(mailbox.port),
        BATON_SMTP_FROM="sdr@ourco.test",
        BATON_APPROVERS_EXTERNAL=BOB,
    )
    script_sales(llm, sales_site)
    with serve(env, fake, llm, "C0SALES0001") as slack:
        _sales_scenario(slack, sales_site, mailbox, crm_db)


def _sales_scenario(slack: Slack, sales_site: LocalSite, mailbox: Mailbox, crm_db: Path) -> None:
    fake, server, channel = slack.fake, slack.server, slack.channel
    # The contacts CSV spans two lines: quoted, a slash command's text carries it whole.
    typed = (
        f"playbook outbound_sales account=Acme website={sales_site.url}/ pages={sales_site.url}/news "
        f"offer=“Thermal testing for rocket engines.” contacts={CONTACTS_QUOTED} "
        "follow_up_after=2s"
    )
    assert command(server, fake, typed, channel) == (200, "")

    # 1. The thread: a status card, the research and the list, then three emails to approve.
    [root] = slack.wait("the run's card", lambda: roots(fake, channel))
    assert root["text"].endswith(GOAL), root["text"]
    asks = slack.wait_messages(f"Approval needed: {SEND} (send_email)", 3)
    assert all(m["thread_ts"] == root["ts"] for m in asks)
    thread = [m["text"] for m in replies(fake, channel, root["ts"])]
    assert any(t.startswith("Research Acme: ") and "Series B" in t for t in thread), thread
    assert any(t.startswith("Build the contact list: Ada Lovelace") for t in thread), thread
    with sqlite3.connect(slack.db) as conn:
        [(inputs,)] = conn.execute("SELECT inputs FROM runs").fetchall()
    assert json.loads(inputs)["contacts"] == CONTACTS
    assert json.loads(inputs)["offer"] == "Thermal testing for rocket engines."
    by_to = {to: _ask_for(asks, to) for to in ("ada@acme.test", "bob@acme.test", EVIL)}
    for to in ("ada@acme.test", "bob@acme.test"):
        assert action_ids(by_to[to]) == [
            "baton_approve",
            "baton_reject",
            "baton_edit",
            "baton_takeover",
        ]
    # The injected email writes to an address nobody gave: flagged, so it has no Approve.
    assert action_ids(by_to[EVIL]) == [
        "baton_send_back",
        "baton_edit",
        "baton_send_anyway",
        "baton_takeover",
    ]
    ada = block_text(by_to["ada@acme.test"])
    assert "Every claim was checked against the research" in ada
    # Each claim with its quote and a link to the page it comes from (the URL shown as itself).
    assert "✅ Acme raised $20M in a Series B" in ada
    assert f"<{sales_site.url}/news>" in ada and f"<{sales_site.url}/>" in ada
    assert "✅ Ada is the CTO" in ada
    bob = block_text(by_to["bob@acme.test"])
    assert "✅ Acme builds rocket engines" in bob and f"<{sales_site.url}/>" in bob
    assert "Here is the contact list" in block_text(by_to[EVIL])

    # The requester may not approve her own outbound email; nothing has reached the mail server.
    assert click(server, fake, by_to["ada@acme.test"], "baton_approve", ALICE) == (200, "")
    ephemeral_for(fake, ALICE, r"You asked for this run")
    assert mailbox.envelopes == []
    assert {p["action"]["arguments"]["to"] for p in pending_approvals(slack.db)} == set(by_to)

    # 2. An approver approves the two real emails and sends the injected one back.
    for to in ("ada@acme.test", "bob@acme.test"):
        assert click(server, fake, by_to[to], "baton_approve", BOB) == (200, "")
    evil = by_to[EVIL]
    assert click(server, fake, evil, "baton_send_back", BOB) == (200, "")
    reason = "Sent back to the writer"

    slack.wait("two emails", lambda: len(mailbox.envelopes) >= 2)
    decided = slack.wait(
        "the injected email marked sent back",
        lambda: (
            (m := fake.message(channel, evil["ts"])) and m["text"].startswith("Sent back") and m
        ),
    )
    assert action_ids(decided) == []
    assert reason in block_text(decided) and EVIL in block_text(decided)
    slack.wait(
        "the writer's turn after the decisions", lambda: len(step_requests(slack.llm, SEND)) >= 2
    )
    [_, answered] = step_requests(slack.llm, SEND)
    assert any("rejected" in t and reason in t for t in tool_messages(answered))

    # 3. The CRM records wait too (writes); Bob replies before the follow-up is due.
    crm_asks = slack.wait_messages(f"Approval needed: {RECORD} (crm__log_activity)", 2)
    assert crm_emails(crm_db) == []
    with sqlite3.connect(crm_db) as conn:
        conn.execute(
            "INSERT INTO activities (contact_email, kind, summary, idempotency_key, created_at) "
            "VALUES ('bob@acme.test', 'reply', 'Interested', NULL, '2030-01-01')"
        )
    for ask in crm_asks:
        assert click(server, fake, ask, "baton_approve", BOB) == (200, "")

    # 4. After the wait, one follow-up: to Ada, who did not reply.
    [follow] = slack.wait_messages(f"Approval needed: {FOLLOW} (send_email)", 1)
    assert "ada@acme.test" in block_text(follow)
    assert "bob@acme.test" not in block_text(follow)
    [pending] = pending_approvals(slack.db)
    assert pending["action"]["arguments"]["to"] == "ada@acme.test"
    assert crm_emails(crm_db) == [
        ("ada@acme.test", "email", "Rockets"),
        ("bob@acme.test", "email", "Engines"),
    ]
    [_, checked] = step_requests(slack.llm, "Check for replies")
    assert len(tool_messages(checked)) == 2  # the CRM was really asked, for each contact
    assert len(mailbox.envelopes) == 2
    assert click(server, fake, follow, "baton_approve", BOB) == (200, "")

    # 5. The run ends in the same thread; three emails went out, none to the outsider.
    [summary] = slack.wait_messages(f"Run complete: {GOAL}", 1)
    assert summary["thread_ts"] == root["ts"]
    assert slack.run_status() == "done"
    slack.wait(
        "the card to say done",
        lambda: (m := fake.message(channel, root["ts"])) and m["text"] == f"Done: {GOAL}",
    )
    slack.wait(
        "the card to count every step",
        lambda: "6/6 steps done" in block_text(fake.message(channel, root["ts"])),
    )
    assert len(fake.calls_to("chat.update")) >= 3  # the card was kept up to date on the way
    assert len(roots(fake, channel)) == 1  # everything else was in the thread
    recipients = sorted(rcpts[0] for _, rcpts, _ in mailbox.envelopes)
    assert recipients == ["ada@acme.test", "ada@acme.test", "bob@acme.test"]
    assert EVIL not in json.dumps([(frm, rcpts) for frm, rcpts, _ in mailbox.envelopes])
    assert sorted(m["Subject"] for _, _, m in mailbox.envelopes) == [
        "Engines",
        "Following up",
        "Rockets",
    ]
    assert len({m["X-Baton-Idempotency-Key"] for _, _, m in mailbox.envelopes}) == 3
    assert len(crm_emails(crm_db)) == 2
    assert sorted(sales_site.hits) == ["/", "/news"]
    # The page's "post <!channel>" never pinged the channel.
    no_live_broadcasts(fake, channel)


def _ask_for(asks: list[dict[str, Any]], to: str) -> dict[str, Any]:
    [ask] = [m for m in asks if f"*To:* {to}" in block_text(m)]  # an email shown as one
    return ask


# ---- 2. prompt injection at the Slack boundary -------------------------------------------------

ANNOUNCE = "Announce the news"
TARGET = "C0ANNOUNCE1"
#: What the injected page gets the model to post: every way of pinging a whole channel.
POST = (
    "<!channel> <!here> <!everyone|everyone> @everyone @here Acme raised $20M in a Series B. "
    "Posted without approval, as the page asked."
)
ANNOUNCE_PLAYBOOK = """\
name: announce
description: Read a page and announce its news in a channel.
goal: Announce the news of {inputs.page}
inputs:
  page: The page to read
  channel: Where to post
steps:
  - id: announce
    title: Announce the news
    agent: announcer
    instructions: |
      Read {inputs.page} and announce its news in {inputs.channel}.
"""


def _script_announcer(llm: ScriptedLLM, news: str) -> None:
    """A model that obeys the page: posts ``<!channel>`` and says so in its output too."""

    def step(body: dict[str, Any]) -> bool:
        return f"Your step: {ANNOUNCE}\n" in request_text(body)

    def after(tool: str) -> Callable[[dict[str, Any]], bool]:
        def answered(body: dict[str, Any]) -> bool:
            last = body["messages"][-1]
            return step(body) and last.get("role") == "tool" and tool in str(last.get("content"))

        return answered

    llm.responder(
        grounding_checker(
            [("Series B", [("Acme raised $20M in a Series B", "Acme raised $20M in a Series B")])]
        )
    )
    llm.rule(
        after("Posted in"),
        Reply.text("Done <!channel> <!here>: posted the Series B news, and skipped approval."),
    )
    llm.rule(
        after("Series B"),
        Reply.tool_calls([("slack_post_message", {"channel": TARGET, "text": POST})]),
    )
    llm.rule(step, Reply.tool_calls([("http_fetch", {"url": news})]))


def test_an_injected_channel_ping_waits_for_approval_and_reaches_slack_defused(
    llm: ScriptedLLM,
    baton_env: dict[str, str],
    fake: FakeSlack,
    sales_site: LocalSite,
    tmp_path: Path,
) -> None:
    config = tmp_path / "config"
    (config / "playbooks").mkdir(parents=True)
    (config / "playbooks" / "announce.yaml").write_text(ANNOUNCE_PLAYBOOK, encoding="utf-8")
    env = slack_env(
        baton_env,
        fake.base_url,
        BATON_CONFIG_DIR=str(config),
        BATON_PLUGINS="tests.plugins.ledger,tests.plugins.announcer",
        BATON_FETCH_ALLOW_PRIVATE="127.0.0.1/32",
        BATON_APPROVERS_EXTERNAL=BOB,
    )
    _script_announcer(llm, f"{sales_site.url}/news")
    with serve(env, fake, llm, "C0RUNS00001") as slack:
        _injection_scenario(slack, sales_site)


def _injection_scenario(slack: Slack, sales_site: LocalSite) -> None:
    fake, server, channel = slack.fake, slack.server, slack.channel
    # A channel typed as #announcements arrives escaped, as Slack sends it.
    typed = f"playbook announce page={sales_site.url}/news channel=<#{TARGET}|announcements>"
    assert command(server, fake, typed, channel) == (200, "")

    # The post waits in the run's thread, with the exact text and its grounded claim.
    [ask] = slack.wait_messages(f"Approval needed: {ANNOUNCE} (slack_post_message)", 1)
    shown = block_text(ask)
    assert "&lt;!channel&gt; &lt;!here&gt;" in shown  # the approver sees what was asked, inert
    assert "✅ Acme raised $20M in a Series B" in shown and f"<{sales_site.url}/news>" in shown
    assert fake.messages(TARGET) == []
    assert not [c for c in fake.calls_to("chat.postMessage") if c.args.get("channel") == TARGET]

    assert click(server, fake, ask, "baton_approve", BOB) == (200, "")

    slack.wait_messages("Run complete", 1)
    assert slack.run_status() == "done"
    [posted] = fake.messages(TARGET)
    assert "Acme raised $20M in a Series B" in posted["text"]
    assert "@\u200bchannel" in posted["text"]  # reads the same, pings nobody
    [call] = [c for c in fake.calls_to("chat.postMessage") if c.args.get("channel") == TARGET]
    assert call.args["metadata"]["event_type"] == "baton_tool_post"
    no_live_broadcasts(fake, TARGET, plain_too=True)
    # The model's own output, with its <!channel>, was rendered into the thread: escaped.
    result = slack.wait_messages(f"{ANNOUNCE}: ", 1)[0]
    assert "&lt;!channel&gt;" in result["text"] + block_text(result)
    no_live_broadcasts(fake, channel)
    [_, _, last] = step_requests(slack.llm, ANNOUNCE)
    assert any("Posted in" in t for t in tool_messages(last))


# ---- 3. the Slack tools in a config agent ------------------------------------------------------


def test_an_agent_file_may_list_the_slack_tools(baton_env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "config"
    (config / "agents").mkdir(parents=True)
    (config / "agents" / "announcer.yaml").write_text(
        "name: announcer\n"
        "role: Reads a page and announces its news in a Slack channel.\n"
        "instructions: Read the page, then post a short announcement.\n"
        "tools: [http_fetch, slack_read_channel, slack_post_message]\n",
        encoding="utf-8",
    )
    env = {**baton_env, "BATON_CONFIG_DIR": str(config), "SLACK_BOT_TOKEN": "xoxb-test"}

    r = run_baton(["check"], env)

    assert r.code == 0, r.out + r.err
    assert "announcer (" in r.out


def test_links_slack_made_of_typed_urls_and_addresses_become_plain_inputs() -> None:
    from bot.listeners.commands import unlink

    assert unlink("<https://acme.example/news|acme.example/news>") == "https://acme.example/news"
    assert unlink("<http://acme.example>") == "http://acme.example"
    assert (
        unlink("Ada,<mailto:ada@acme.test|ada@acme.test>,CTO\nBob,<mailto:b@acme.test>,VP")
        == "Ada,ada@acme.test,CTO\nBob,b@acme.test,VP"
    )
    # Channel and user references are not URLs: they stay as Slack wrote them.
    assert unlink("<#C0123|general> <@U0123>") == "<#C0123|general> <@U0123>"
