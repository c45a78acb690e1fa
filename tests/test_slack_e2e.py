"""End-to-end tests of the Slack app: ``baton serve`` as a real subprocess, Slack-signed
requests in, FakeSlack (a local stand-in for Slack's Web API) out.

Everything crosses a real network boundary: the requests are signed exactly as Slack signs
them (tests.support.slack_requests), the app answers over HTTP, its Web API calls reach
FakeSlack (which records them and enforces Slack's limits), and the model is ScriptedLLM
reached through litellm. Assertions are on what reached FakeSlack, the ledger of the test
plugin (tests.plugins.ledger: ``send_message`` is an external action, so it always needs an
approval), the model's recorded requests, and the database.

One server is shared by most scenarios (starting one imports litellm, ~3 s). Each scenario
keeps to its own channel, goal and step titles, so scenarios do not see each other's
messages or model rules. Restarts and a revoked token get servers (and databases) of their
own.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, run_baton
from tests.support import netguard
from tests.support.baton_server import BatonServer, slack_env
from tests.support.fixtures import (
    _PINNED_ENV,
    GUARD_SITE,
    TEST_API_KEY,
    TEST_MODEL,
    is_scrubbed,
)
from tests.support.llm_server import RecordedRequest, Reply, ScriptedLLM, request_text
from tests.support.slack_api import RESPONSE_URL_METHOD, FakeSlack, SlackChannel, SlackUser
from tests.support.slack_requests import (
    BOT_ID,
    BOT_USER_ID,
    OTHER_USER_ID,
    SIGNING_SECRET,
    TEAM_ID,
    USER_ID,
    app_home_opened_event,
    app_mention_event,
    block_actions,
    event_callback,
    message_im_event,
    new_event_id,
    sign,
    slash_command,
    view_submission,
)

PLANNER = "You are the planner"
ALICE = USER_ID  # asks for things
BOB = OTHER_USER_ID  # on the allowlist for external actions
DAVE = "U0DAVE0001"  # on the allowlist too
CAROL = "U0CAROL001"  # a member of the workspace, not on the allowlist
OTHER_TEAM = "T0OTHER001"
APPROVERS = f"{BOB},{DAVE}"
CARD_INTERVAL_S = 1.0
TOLERANCE_S = 0.1
FORBIDDEN = ("<!channel>", "<!here>", "<!everyone>", "<@U999>", "<https://evil")


# ---- the shared stack: model, Slack, database, server ---------------------------------------


@dataclass
class Stack:
    """The scripted model, FakeSlack and the environment ``baton serve`` runs with."""

    llm: ScriptedLLM
    fake: FakeSlack
    env: dict[str, str]
    root: Path
    netguard_log: Path

    def fresh_env(self, name: str, **extra: str) -> dict[str, str]:
        """The environment with a database and ledger of its own (and ``extra`` settings)."""
        folder = self.root / name
        folder.mkdir(exist_ok=True)
        env = dict(self.env)
        env["BATON_DATABASE_URL"] = f"sqlite:///{folder / 'baton.db'}"
        env["BATON_TEST_LEDGER"] = str(folder / "ledger.txt")
        env.update(extra)
        return env


def _base_env(llm: ScriptedLLM, root: Path, netguard_log: Path) -> dict[str, str]:
    """What the ``subprocess_env`` and ``baton_env`` fixtures give a test, for a module."""
    env = {name: value for name, value in os.environ.items() if not is_scrubbed(name)}
    env.update(_PINNED_ENV)
    pythonpath = [str(GUARD_SITE), str(REPO)]
    if os.environ.get("PYTHONPATH"):
        pythonpath.append(os.environ["PYTHONPATH"])
    env.update(
        {
            "OPENAI_API_KEY": TEST_API_KEY,
            "OPENAI_API_BASE": llm.base_url,
            "BATON_MODEL": TEST_MODEL,
            "BATON_DATABASE_URL": f"sqlite:///{root / 'baton.db'}",
            "PYTHONPATH": os.pathsep.join(pythonpath),
            netguard.LOG_ENV: str(netguard_log),
            "PYTHONUNBUFFERED": "1",
            "BATON_PLUGINS": "tests.plugins.ledger",
            "BATON_TEST_LEDGER": str(root / "ledger.txt"),
            "BATON_RETRY_BASE": "0.05",
            "BATON_RETRY_MAX": "0.5",
            "BATON_MODEL_TIMEOUT": "5",
            "BATON_APPROVERS_EXTERNAL": APPROVERS,
        }
    )
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("slack_e2e")
    netguard_log = root / "netguard.log"
    netguard_log.touch()
    llm = ScriptedLLM().start()
    fake = FakeSlack().start()
    for uid, name in ((CAROL, "carol"), (DAVE, "dave")):
        fake.add_user(SlackUser(uid, name, real_name=name.title()))
    env = slack_env(_base_env(llm, root, netguard_log), fake.base_url)
    try:
        yield Stack(llm, fake, env, root, netguard_log)
    finally:
        fake.stop()
        llm.stop()


@pytest.fixture(scope="module")
def server(stack: Stack) -> Iterator[BatonServer]:
    """The server most scenarios share (approvers for external actions: Bob and Dave)."""
    with BatonServer(stack.env) as srv:
        yield srv
    assert "Traceback" not in srv.output, srv.output


@pytest.fixture(autouse=True)
def _stack_hygiene(request: pytest.FixtureRequest) -> Iterator[None]:
    """Per test: no request the model had no script for, no attempt to reach the network."""
    if "stack" not in request.fixturenames:
        yield
        return
    stack: Stack = request.getfixturevalue("stack")
    unmatched = len(stack.llm.unmatched)
    yield
    blocked = stack.netguard_log.read_text(encoding="utf-8").splitlines()
    assert not blocked, f"a server tried to reach the real network: {blocked}"
    new = stack.llm.unmatched[unmatched:]
    assert not new, "requests with no scripted reply:\n" + "\n".join(r.text[-300:] for r in new)


# ---- helpers: the model -----------------------------------------------------------------------


def plan(*steps: dict[str, Any]) -> Reply:
    return Reply.json({"steps": list(steps)})


def step(
    sid: str,
    title: str,
    agent: str,
    *,
    after: tuple[str, ...] = (),
    needs_approval: bool = False,
) -> dict[str, Any]:
    return {
        "id": sid,
        "title": title,
        "agent": agent,
        "instructions": f"Do: {title}.",
        "depends_on": list(after),
        "needs_approval": needs_approval,
    }


def planner_for(goal: str) -> Callable[[dict[str, Any]], bool]:
    """Matches the planner's request for ``goal`` (and no other goal's)."""
    marker = f'source="goal">\n{goal}\n'

    def planner(body: dict[str, Any]) -> bool:
        text = request_text(body)
        return PLANNER in text and marker in text

    return planner


def opening(title: str) -> str:
    """The substring of every request of the step titled ``title``."""
    return f"Your step: {title}\n"


def step_requests(llm: ScriptedLLM, title: str) -> list[RecordedRequest]:
    return llm.requests_matching(opening(title))


def tool_messages(req: RecordedRequest) -> list[str]:
    return [str(m.get("content")) for m in req.messages if m.get("role") == "tool"]


def script_send(llm: ScriptedLLM, goal: str, title: str, to: str, body: str, done: str) -> None:
    """A one-step plan whose operator calls send_message(to, body), then says ``done``."""
    llm.rule(f"sent to {to}", Reply.text(done))
    llm.rule(opening(title), Reply.tool_calls([("send_message", {"to": to, "body": body})]))
    llm.rule(planner_for(goal), plan(step("send", title, "operator")))


# ---- helpers: Slack ---------------------------------------------------------------------------


def new_channel() -> str:
    return "C0" + uuid.uuid4().hex[:9].upper()


def roots(fake: FakeSlack, channel: str) -> list[dict[str, Any]]:
    """Top-level messages of a channel (thread roots and plain posts)."""
    return [m for m in fake.messages(channel) if m["thread_ts"] in (None, m["ts"])]


def replies(fake: FakeSlack, channel: str, root_ts: str) -> list[dict[str, Any]]:
    return [m for m in fake.messages(channel) if m["thread_ts"] == root_ts and m["ts"] != root_ts]


def card(fake: FakeSlack, channel: str) -> dict[str, Any]:
    """The run's status card: the one root message of the channel."""

    def one_root() -> dict[str, Any] | None:
        found = roots(fake, channel)
        return found[0] if len(found) == 1 else None

    found: dict[str, Any] = fake.wait_for(one_root, timeout=10)
    return found


def reply_starting(
    stack: Stack, channel: str, prefix: str, timeout: float = 15.0
) -> dict[str, Any]:
    """Wait for the message of ``channel`` whose fallback text starts with ``prefix``."""
    fake = stack.fake

    def found() -> dict[str, Any] | None:
        hits = [m for m in fake.messages(channel) if m["text"].startswith(prefix)]
        return hits[-1] if hits else None

    found.__name__ = f"message starting {prefix!r} in {channel}"
    try:
        message: dict[str, Any] = fake.wait_for(found, timeout=timeout)
        return message
    except AssertionError as exc:
        runs = query(
            stack.env,
            "SELECT id, status, error FROM runs WHERE json_extract(origin, '$.channel') = ?",
            channel,
        )
        raise AssertionError(f"{exc}\nruns of {channel}: {runs}") from None


def card_says(fake: FakeSlack, channel: str, ts: str, prefix: str) -> Callable[[], bool]:
    """A condition: the message ``ts`` of ``channel`` now has text starting with ``prefix``."""

    def says() -> bool:
        message = fake.message(channel, ts)
        return message is not None and message["text"].startswith(prefix)

    says.__name__ = f"card {ts} in {channel} says {prefix!r}"
    return says


def action_ids(message: dict[str, Any]) -> list[str]:
    return [
        element.get("action_id", "")
        for block in message.get("blocks", [])
        if block.get("type") == "actions"
        for element in block.get("elements", [])
    ]


def block_text(message: dict[str, Any] | None) -> str:
    """Every text in a message's (or view's) blocks, joined."""
    return "\n".join(strings((message or {}).get("blocks", [])))


def strings(value: Any) -> Iterator[str]:
    """Every string inside a JSON-like value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def command(
    server: BatonServer,
    fake: FakeSlack,
    text: str,
    channel: str,
    user: str = ALICE,
    team: str = TEAM_ID,
) -> tuple[int, str]:
    """``/orchestrate TEXT`` typed by ``user`` in ``channel`` (its response_url is FakeSlack's)."""
    return server.post(
        *slash_command(
            text,
            user_id=user,
            channel_id=channel,
            team_id=team,
            response_url=fake.response_url(channel, user),
        )
    )


def click(
    server: BatonServer,
    fake: FakeSlack,
    message: dict[str, Any],
    action_id: str,
    user: str,
    team: str = TEAM_ID,
) -> tuple[int, str]:
    """``user`` clicks the button ``action_id`` of a message the bot posted."""
    channel = message["channel"]
    return server.post(
        *block_actions(
            action_id,
            user_id=user,
            channel_id=channel,
            team_id=team,
            message=message,
            response_url=fake.response_url(channel, user, message_ts=message["ts"]),
        )
    )


def opened_view(fake: FakeSlack, callback_id: str, metadata_prefix: str) -> dict[str, Any]:
    """The modal Baton opened with ``callback_id`` for one approval or handoff."""

    def found() -> dict[str, Any] | None:
        hits = [
            v
            for v in fake.views_opened
            if v.get("callback_id") == callback_id
            and str(v.get("private_metadata", "")).startswith(metadata_prefix)
        ]
        return hits[-1] if hits else None

    found.__name__ = f"views.open of {callback_id} for {metadata_prefix}"
    view: dict[str, Any] = fake.wait_for(found, timeout=10)
    return view


def submit(
    server: BatonServer, view: dict[str, Any], values: dict[str, dict[str, Any]], user: str
) -> tuple[int, str]:
    return server.post(*view_submission(None, values, user_id=user, view=view))


def ephemeral_for(fake: FakeSlack, user: str, pattern: str, timeout: float = 10.0) -> str:
    """Wait for an ephemeral message to ``user`` matching ``pattern``; return its text."""

    def found() -> str | None:
        for e in fake.ephemerals(user):
            text = str(e["text"]) + "\n" + "\n".join(strings(e.get("blocks", [])))
            if re.search(pattern, text):
                return text
        return None

    found.__name__ = f"ephemeral to {user} matching {pattern!r}"
    text: str = fake.wait_for(found, timeout=timeout)
    return text


def approval_id_of(message: dict[str, Any]) -> str:
    for block in message.get("blocks", []):
        if block.get("type") == "actions":
            return str(block["elements"][0]["value"]).split("|")[0]
    raise AssertionError(f"no buttons in {message}")


def posts_to(fake: FakeSlack, channel: str) -> list[Any]:
    return [c for c in fake.calls_to("chat.postMessage") if c.args.get("channel") == channel]


# ---- helpers: the database, the ledger --------------------------------------------------------


def db_path(env: dict[str, str]) -> str:
    return env["BATON_DATABASE_URL"].removeprefix("sqlite:///")


def query(env: dict[str, str], sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db_path(env), timeout=10)) as conn:
        return list(conn.execute(sql, params))


def runs_in(env: dict[str, str], channel: str) -> list[tuple[str, str]]:
    """(id, status) of the runs started from ``channel``."""
    return query(
        env,
        "SELECT id, status FROM runs WHERE json_extract(origin, '$.channel') = ? "
        "ORDER BY created_at",
        channel,
    )


def run_status(env: dict[str, str], run_id: str) -> str:
    [(status,)] = query(env, "SELECT status FROM runs WHERE id = ?", run_id)
    return str(status)


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)


def wait_status(env: dict[str, str], run_id: str, status: str, timeout: float = 15.0) -> None:
    try:
        wait_until(lambda: run_status(env, run_id) == status, timeout)
    except AssertionError:
        now = query(env, "SELECT status, error FROM runs WHERE id = ?", run_id)
        raise AssertionError(f"run {run_id} is not {status} after {timeout}s: {now}") from None


def ledger(env: dict[str, str]) -> list[list[str]]:
    """The ledger's lines as ``[key, tool, entry]``."""
    path = Path(env["BATON_TEST_LEDGER"])
    if not path.exists():
        return []
    return [line.split("\t", 2) for line in path.read_text(encoding="utf-8").splitlines()]


def sent(env: dict[str, str], to: str) -> list[str]:
    """Entries send_message really sent to ``to``."""
    return [e for _, tool, e in ledger(env) if tool == "send_message" and e.startswith(f"{to}:")]


def start_approval_run(
    stack: Stack,
    server: BatonServer,
    tag: str,
    *,
    user: str = ALICE,
) -> tuple[str, str, str, dict[str, Any]]:
    """A goal whose one step sends a message: (channel, run id, address, approval message)."""
    channel = new_channel()
    goal = f"Tell {tag} the news"
    to = f"{tag.lower()}@example.com"
    script_send(stack.llm, goal, f"Notify {tag}", to, f"hello {tag}", f"{tag.upper()}-DONE")
    status, text = command(server, stack.fake, goal, channel, user)
    assert (status, text) == (200, "")
    message = reply_starting(stack, channel, "Approval needed")
    [(run_id, _)] = runs_in(stack.env, channel)
    return channel, run_id, to, message


# ---- 1. signed requests -----------------------------------------------------------------------


def test_unsigned_stale_or_altered_requests_are_refused_before_any_listener(
    stack: Stack, server: BatonServer
) -> None:
    fake = stack.fake
    channel = new_channel()
    goal = "Research Umbrella Corp"
    body, ctype = slash_command(goal, channel_id=channel, response_url=fake.response_url(channel))
    event, ectype = event_callback(app_mention_event("research Umbrella", channel_id=channel))
    before = len(fake.calls)

    attempts = {
        "wrong secret": server.post(body, ctype, secret="not-the-signing-secret"),
        "301 s old": server.post(body, ctype, timestamp=int(time.time()) - 301),
        "body changed after signing": server.post(
            body.replace(b"Umbrella", b"Umbrelly"), ctype, headers=sign(body, SIGNING_SECRET)
        ),
        "event, wrong secret": server.post(event, ectype, secret="nope"),
        "event, 301 s in the future": server.post(event, ectype, timestamp=int(time.time()) + 301),
    }

    for what, (status, _text) in attempts.items():
        assert status == 401, what
    # Nothing ran: not one Web API call (not even auth.test), no run, no event remembered.
    assert fake.calls[before:] == []
    event_id = json.loads(event)["event_id"]
    assert query(stack.env, "SELECT count(*) FROM slack_events WHERE event_id = ?", event_id) == [
        (0,)
    ]
    assert runs_in(stack.env, channel) == []
    assert query(stack.env, "SELECT count(*) FROM runs WHERE goal LIKE '%Umbrell%'") == [(0,)]

    # The same request, correctly signed, is served (so the refusals were the signature's).
    status, text = server.post(*slash_command("help", channel_id=channel))
    assert status == 200
    assert "/orchestrate playbook" in text


# ---- 2. a goal, from /orchestrate to its summary ----------------------------------------------


def test_a_goal_runs_in_one_thread_under_a_live_status_card(
    stack: Stack, server: BatonServer
) -> None:
    llm, fake = stack.llm, stack.fake
    channel = new_channel()
    goal = "Research Initrode and write a memo"
    llm.rule(
        planner_for(goal),
        plan(
            step("facts", "Collect Initrode facts", "researcher"),
            step("angle", "Find the Initrode angle", "analyst"),
            step("memo", "Write the Initrode memo", "writer", after=("facts", "angle")),
        ),
    )
    llm.rule(opening("Collect Initrode facts"), Reply.text("INITRODE-FACTS", delay=1.2))
    llm.rule(opening("Find the Initrode angle"), Reply.text("INITRODE-ANGLE", delay=0.3))
    llm.rule(opening("Write the Initrode memo"), Reply.text("INITRODE-MEMO", delay=1.2))

    status, text = command(server, fake, goal, channel)

    # The ack is immediate and empty: everything else happens in the channel.
    assert (status, text) == (200, "")
    root = card(fake, channel)
    summary = reply_starting(stack, channel, "Run complete", timeout=20)
    [(run_id, run_state)] = runs_in(stack.env, channel)
    assert run_state == "done"

    # The root message is the status card, the first thing posted, and the thread's root.
    first = posts_to(fake, channel)[0]
    assert "thread_ts" not in first.args
    assert first.response["ts"] == root["ts"]
    # Step results and the summary are replies in its thread; nothing else is top-level.
    thread = replies(fake, channel, root["ts"])
    texts = [m["text"] for m in thread]
    assert "Collect Initrode facts: INITRODE-FACTS" in texts
    assert "Find the Initrode angle: INITRODE-ANGLE" in texts
    assert "Write the Initrode memo: INITRODE-MEMO" in texts
    assert texts[-1] == summary["text"] == f"Run complete: {goal}"
    assert "INITRODE-MEMO" in block_text(summary)
    assert run_id in block_text(summary)
    assert len(fake.messages(channel)) == 1 + len(thread) == 5

    # The card was edited in place, at most about once a second, and ends "Done".
    fake.wait_for(lambda: "3/3 steps done" in block_text(fake.message(channel, root["ts"])))
    updates = [c for c in fake.calls_to("chat.update") if c.args.get("ts") == root["ts"]]
    assert len(updates) >= 3
    assert all(c.args["channel"] == channel and c.ok for c in updates)
    gaps = [b.at - a.at for a, b in itertools.pairwise(updates)]
    assert min(gaps) >= CARD_INTERVAL_S - TOLERANCE_S, gaps
    final = fake.message(channel, root["ts"])
    assert final is not None
    assert final["text"] == f"Done: {goal}"
    assert f"<@{ALICE}>" in block_text(final)
    assert "Collect Initrode facts" in block_text(final)

    # Link previews are off on every post.
    for call in posts_to(fake, channel):
        assert call.args.get("unfurl_links") is False, call.summary()
        assert call.args.get("unfurl_media") is False, call.summary()

    # The memo step saw both results it depends on.
    [memo] = step_requests(llm, "Write the Initrode memo")
    assert "INITRODE-FACTS" in memo.text
    assert "INITRODE-ANGLE" in memo.text


# ---- 3. approvals -----------------------------------------------------------------------------


def test_approve_by_another_person_runs_the_action_once_and_removes_the_buttons(
    stack: Stack, server: BatonServer
) -> None:
    fake, llm = stack.fake, stack.llm
    channel, run_id, to, message = start_approval_run(stack, server, "Erin")

    # The approval message is in the thread, shows the exact call, and has the four buttons.
    root = card(fake, channel)
    assert message["thread_ts"] == root["ts"]
    assert message["text"] == "Approval needed: Notify Erin (send_message)"
    assert action_ids(message) == ["baton_approve", "baton_reject", "baton_edit", "baton_takeover"]
    assert "erin@example.com" in block_text(message)
    assert "hello Erin" in block_text(message)
    assert sent(stack.env, to) == []

    assert click(server, fake, message, "baton_approve", BOB) == (200, "")

    summary = reply_starting(stack, channel, "Run complete")
    assert summary["thread_ts"] == root["ts"]
    assert sent(stack.env, to) == [f"{to}: hello Erin"]
    decided = fake.message(channel, message["ts"])
    assert decided is not None
    assert decided["text"] == "Approved: Notify Erin"
    assert action_ids(decided) == []
    assert re.search(rf"Approved by <@{BOB}> at ", block_text(decided))
    # The tool's result went back to the model, which finished the step.
    notify = step_requests(llm, "Notify Erin")
    assert len(notify) == 2
    assert "sent to erin@example.com" in tool_messages(notify[1])[0]
    assert "ERIN-DONE" in block_text(summary)
    assert run_status(stack.env, run_id) == "done"
    show = run_baton(["show", run_id], stack.env)
    assert show.code == 0, show.err
    assert f"Run {run_id} — done" in show.out
    assert f"Requested by: slack:{ALICE}" in show.out
    assert re.search(
        rf"Approval {approval_id_of(message)} \(tool_call, step send\): approved by slack:{BOB}",
        show.out,
    )
    assert "send: send_message [done]" in show.out
    # Approving again changes nothing.
    assert click(server, fake, message, "baton_approve", BOB) == (200, "")
    ephemeral_for(fake, BOB, rf"already approved by <@{BOB}>")
    assert sent(stack.env, to) == [f"{to}: hello Erin"]


def test_reject_through_the_modal_tells_the_model_why_and_sends_nothing(
    stack: Stack, server: BatonServer
) -> None:
    fake, llm = stack.fake, stack.llm
    llm.rule("Frank moved to Lisbon", Reply.text("FRANK-NOT-TOLD"))
    channel, run_id, to, message = start_approval_run(stack, server, "Frank")
    approval_id = approval_id_of(message)

    assert click(server, fake, message, "baton_reject", BOB) == (200, "")
    view = opened_view(fake, "baton_reject_modal", approval_id)
    # An empty reason is refused inside the modal.
    status, text = submit(server, view, {"reason": {"reason_input": ""}}, BOB)
    assert status == 200
    assert json.loads(text)["response_action"] == "errors"
    assert query(stack.env, "SELECT status FROM approvals WHERE id = ?", approval_id) == [
        ("pending",)
    ]
    status, text = submit(server, view, {"reason": {"reason_input": "Frank moved to Lisbon"}}, BOB)
    assert (status, text) == (200, "")

    summary = reply_starting(stack, channel, "Run complete")
    assert "FRANK-NOT-TOLD" in block_text(summary)
    assert sent(stack.env, to) == []
    notify = step_requests(llm, "Notify Frank")
    assert len(notify) == 2
    [note] = tool_messages(notify[1])
    assert "rejected" in note
    assert "Frank moved to Lisbon" in note
    decided = fake.message(channel, message["ts"])
    assert decided is not None
    assert decided["text"] == "Rejected: Notify Frank"
    assert action_ids(decided) == []
    assert re.search(rf"Rejected by <@{BOB}>", block_text(decided))
    assert "Frank moved to Lisbon" in block_text(decided)
    assert run_status(stack.env, run_id) == "done"


def test_edit_through_the_modal_runs_the_edited_arguments_and_refuses_bad_json(
    stack: Stack, server: BatonServer
) -> None:
    fake = stack.fake
    channel, run_id, to, message = start_approval_run(stack, server, "Gina")
    approval_id = approval_id_of(message)

    assert click(server, fake, message, "baton_edit", BOB) == (200, "")
    view = opened_view(fake, "baton_edit_modal", approval_id)
    prefilled = json.loads(view["blocks"][-1]["element"]["initial_value"])
    assert prefilled == {"to": to, "body": "hello Gina"}

    # Invalid JSON, then valid JSON missing a required argument: errors in the modal.
    for raw in ('{"to": "gina@example.com", "body": ', '{"to": "gina@example.com"}'):
        status, text = submit(server, view, {"arguments": {"arguments_input": raw}}, BOB)
        assert status == 200
        answer = json.loads(text)
        assert answer["response_action"] == "errors"
        assert answer["errors"]["arguments"]
        assert query(stack.env, "SELECT status FROM approvals WHERE id = ?", approval_id) == [
            ("pending",)
        ]
    assert (
        "Not valid JSON"
        in json.loads(submit(server, view, {"arguments": {"arguments_input": "{"}}, BOB)[1])[
            "errors"
        ]["arguments"]
    )
    assert sent(stack.env, to) == []
    assert runs_in(stack.env, channel) == [(run_id, "waiting")]

    edited = json.dumps({"to": to, "body": "EDITED hello Gina"})
    assert submit(server, view, {"arguments": {"arguments_input": edited}}, BOB) == (200, "")

    reply_starting(stack, channel, "Run complete")
    assert sent(stack.env, to) == [f"{to}: EDITED hello Gina"]
    decided = fake.message(channel, message["ts"])
    assert decided is not None
    assert action_ids(decided) == []
    assert re.search(rf"Approved with edits by <@{BOB}>", block_text(decided))


def test_take_over_then_submit_a_result_that_becomes_the_steps_output(
    stack: Stack, server: BatonServer
) -> None:
    fake, llm = stack.fake, stack.llm
    channel = new_channel()
    goal = "Tell Hank and report"
    to = "hank@example.com"
    llm.rule(opening("Report on Hank"), Reply.text("HANK-REPORT"))
    llm.rule(
        opening("Notify Hank"),
        Reply.tool_calls([("send_message", {"to": to, "body": "hello Hank"})]),
    )
    llm.rule(
        planner_for(goal),
        plan(
            step("send", "Notify Hank", "operator"),
            step("report", "Report on Hank", "writer", after=("send",)),
        ),
    )
    assert command(server, fake, goal, channel) == (200, "")
    message = reply_starting(stack, channel, "Approval needed")

    assert click(server, fake, message, "baton_takeover", BOB) == (200, "")

    handoff = reply_starting(stack, channel, "A person is needed")
    root = card(fake, channel)
    assert handoff["thread_ts"] == root["ts"]
    assert action_ids(handoff) == ["baton_submit_result", "baton_return"]
    assert "hank@example.com" in block_text(handoff)  # the summary shows the pending call
    taken = fake.message(channel, message["ts"])
    assert taken is not None
    assert action_ids(taken) == []
    assert re.search(rf"Taken over by <@{BOB}>", block_text(taken))

    assert click(server, fake, handoff, "baton_submit_result", BOB) == (200, "")
    handoff_id = handoff["blocks"][-1]["elements"][0]["value"]
    view = opened_view(fake, "baton_result_modal", handoff_id)
    # An empty result is refused inside the modal.
    status, text = submit(server, view, {"result": {"result_input": "  "}}, BOB)
    assert status == 200
    assert json.loads(text)["response_action"] == "errors"
    result = "HANK-CALLED-BY-PHONE: he agreed"
    assert submit(server, view, {"result": {"result_input": result}}, BOB) == (200, "")

    summary = reply_starting(stack, channel, "Run complete")
    # The person's result is the step's output: the next step got it; nothing was sent.
    [report] = step_requests(llm, "Report on Hank")
    assert result in report.text
    assert sent(stack.env, to) == []
    assert len(step_requests(llm, "Notify Hank")) == 1
    assert f"Notify Hank: {result}" in [m["text"] for m in replies(fake, channel, root["ts"])]
    assert "HANK-REPORT" in block_text(summary)
    closed = fake.message(channel, handoff["ts"])
    assert closed is not None
    assert action_ids(closed) == []
    assert re.search(rf"Answered by <@{BOB}>", block_text(closed))


def test_take_over_then_return_to_the_agent_with_a_note(stack: Stack, server: BatonServer) -> None:
    fake, llm = stack.fake, stack.llm
    llm.rule("Ivan prefers email on Mondays", Reply.text("IVAN-LEFT-ALONE"))
    channel, run_id, to, message = start_approval_run(stack, server, "Ivan")

    assert click(server, fake, message, "baton_takeover", BOB) == (200, "")
    handoff = reply_starting(stack, channel, "A person is needed")
    assert click(server, fake, handoff, "baton_return", BOB) == (200, "")
    handoff_id = handoff["blocks"][-1]["elements"][0]["value"]
    view = opened_view(fake, "baton_return_modal", handoff_id)
    note = "Ivan prefers email on Mondays"
    assert submit(server, view, {"note": {"note_input": note}}, BOB) == (200, "")

    summary = reply_starting(stack, channel, "Run complete")
    assert "IVAN-LEFT-ALONE" in block_text(summary)
    notify = step_requests(llm, "Notify Ivan")
    assert len(notify) == 2
    assert note in tool_messages(notify[1])[0]
    assert sent(stack.env, to) == []
    closed = fake.message(channel, handoff["ts"])
    assert closed is not None
    assert action_ids(closed) == []
    assert re.search(rf"Returned to the agent by <@{BOB}>", block_text(closed))
    assert run_status(stack.env, run_id) == "done"


# ---- 4. two clicks at once --------------------------------------------------------------------


def concurrently(*calls: Callable[[], tuple[int, str]]) -> list[tuple[int, str]]:
    """Run the calls in threads released at the same instant; their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[tuple[int, str] | None] = [None] * len(calls)

    def worker(index: int) -> None:
        barrier.wait()
        results[index] = calls[index]()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def test_two_approvals_at_once_make_one_decision_and_the_loser_is_told_who_won(
    stack: Stack, server: BatonServer
) -> None:
    fake = stack.fake
    channel, run_id, to, message = start_approval_run(stack, server, "Judy")
    approval_id = approval_id_of(message)

    answers = concurrently(
        lambda: click(server, fake, message, "baton_approve", BOB),
        lambda: click(server, fake, message, "baton_approve", DAVE),
    )

    assert answers == [(200, ""), (200, "")]
    reply_starting(stack, channel, "Run complete")
    [(winner,)] = query(stack.env, "SELECT decided_by FROM approvals WHERE id = ?", approval_id)
    winner = winner.removeprefix("slack:")
    loser = DAVE if winner == BOB else BOB
    assert winner in (BOB, DAVE)
    # One decision, one execution, and the other person is told who was first.
    assert sent(stack.env, to) == [f"{to}: hello Judy"]
    assert query(
        stack.env,
        "SELECT action, actor FROM audit_log WHERE subject = ? AND action LIKE 'approval.%'",
        approval_id,
    ) == [("approval.approved", f"slack:{winner}")]
    ephemeral_for(fake, loser, rf"already (approved|decided) by <@{winner}>")
    assert not [e for e in fake.ephemerals(winner) if approval_id in str(e)]
    decided = fake.message(channel, message["ts"])
    assert decided is not None
    assert action_ids(decided) == []
    assert f"Approved by <@{winner}>" in block_text(decided)
    assert run_status(stack.env, run_id) == "done"


def test_an_approve_click_and_a_rejection_at_once_make_one_decision(
    stack: Stack, server: BatonServer
) -> None:
    fake, llm = stack.fake, stack.llm
    llm.rule("Uma is on holiday", Reply.text("UMA-NOT-TOLD"))
    channel, run_id, to, message = start_approval_run(stack, server, "Uma")
    approval_id = approval_id_of(message)
    assert click(server, fake, message, "baton_reject", BOB) == (200, "")
    view = opened_view(fake, "baton_reject_modal", approval_id)

    answers = concurrently(
        lambda: submit(server, view, {"reason": {"reason_input": "Uma is on holiday"}}, BOB),
        lambda: click(server, fake, message, "baton_approve", DAVE),
    )

    assert answers == [(200, ""), (200, "")]
    reply_starting(stack, channel, "Run complete")
    [(status, decided_by)] = query(
        stack.env, "SELECT status, decided_by FROM approvals WHERE id = ?", approval_id
    )
    decisions = query(
        stack.env,
        "SELECT action FROM audit_log WHERE subject = ? AND action LIKE 'approval.%'",
        approval_id,
    )
    assert decisions == [(f"approval.{status}",)]
    if status == "approved":
        assert decided_by == f"slack:{DAVE}"
        assert sent(stack.env, to) == [f"{to}: hello Uma"]
        # The person who rejected in the modal is told by DM.
        dm = fake.dm_channel(BOB)
        fake.wait_for(lambda: [m for m in fake.messages(dm) if f"<@{DAVE}>" in m["text"]])
    else:
        assert (status, decided_by) == ("rejected", f"slack:{BOB}")
        assert sent(stack.env, to) == []
        ephemeral_for(fake, DAVE, rf"already rejected by <@{BOB}>")
    assert run_status(stack.env, run_id) == "done"


# ---- 5. who may decide ------------------------------------------------------------------------


def refusals(env: dict[str, str], approval_id: str) -> list[tuple[str, str]]:
    rows = query(
        env,
        "SELECT actor, detail FROM audit_log WHERE subject = ? AND action = 'approval.refused' "
        "ORDER BY id",
        approval_id,
    )
    return [(actor, json.loads(detail)["reason"]) for actor, detail in rows]


def test_self_approval_unlisted_approvers_and_other_workspaces_are_refused(
    stack: Stack, server: BatonServer
) -> None:
    fake = stack.fake
    channel, run_id, to, message = start_approval_run(stack, server, "Kim")
    approval_id = approval_id_of(message)

    # The requester, someone not on the allowlist, and an approver from another workspace.
    assert click(server, fake, message, "baton_approve", ALICE) == (200, "")
    ephemeral_for(fake, ALICE, r"You can't decide this: You asked for this run.*Nothing was")
    assert click(server, fake, message, "baton_approve", CAROL) == (200, "")
    ephemeral_for(fake, CAROL, r"Only the approvers for external actions can decide this")
    assert click(server, fake, message, "baton_approve", BOB, team=OTHER_TEAM) == (200, "")
    ephemeral_for(fake, BOB, r"This run belongs to another workspace")
    # Rejecting and taking over are decisions too.
    assert click(server, fake, message, "baton_reject", CAROL) == (200, "")
    assert click(server, fake, message, "baton_takeover", ALICE) == (200, "")

    wait_until(lambda: len(refusals(stack.env, approval_id)) == 5, what="five audit rows")
    assert [actor for actor, _ in refusals(stack.env, approval_id)] == [
        f"slack:{ALICE}",
        f"slack:{CAROL}",
        f"slack:{BOB}",
        f"slack:{CAROL}",
        f"slack:{ALICE}",
    ]
    # Nothing was decided, opened or executed.
    assert query(stack.env, "SELECT status FROM approvals WHERE id = ?", approval_id) == [
        ("pending",)
    ]
    assert not [v for v in fake.views_opened if approval_id in str(v.get("private_metadata"))]
    assert sent(stack.env, to) == []
    assert runs_in(stack.env, channel) == [(run_id, "waiting")]
    assert action_ids(fake.message(channel, message["ts"]) or {}) == [
        "baton_approve",
        "baton_reject",
        "baton_edit",
        "baton_takeover",
    ]

    # An approver of the run's own workspace may.
    assert click(server, fake, message, "baton_approve", DAVE) == (200, "")
    reply_starting(stack, channel, "Run complete")
    assert sent(stack.env, to) == [f"{to}: hello Kim"]


def test_an_approver_may_not_approve_their_own_external_action(
    stack: Stack, server: BatonServer
) -> None:
    fake = stack.fake
    channel, run_id, to, message = start_approval_run(stack, server, "Leo", user=BOB)
    approval_id = approval_id_of(message)

    assert click(server, fake, message, "baton_approve", BOB) == (200, "")

    ephemeral_for(fake, BOB, r"You asked for this run")
    wait_until(lambda: refusals(stack.env, approval_id), what="an audit row")
    assert refusals(stack.env, approval_id)[0][0] == f"slack:{BOB}"
    assert sent(stack.env, to) == []
    assert click(server, fake, message, "baton_approve", DAVE) == (200, "")
    reply_starting(stack, channel, "Run complete")
    assert sent(stack.env, to) == [f"{to}: hello Leo"]
    assert run_status(stack.env, run_id) == "done"


# ---- 6. events: retries, redeliveries, mentions, DMs, the bot's own messages -----------------


RETRIES: tuple[dict[str, str], ...] = (
    {},
    {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"},
    {"X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_error"},
    {"X-Slack-Retry-Num": "3", "X-Slack-Retry-Reason": "http_timeout"},
    # A redelivery marked as a first attempt (as Socket Mode has been seen to do).
    {},
)


def deliver_four_times(stack: Stack, server: BatonServer, name: str) -> tuple[str, str, list[int]]:
    """A mention delivered, retried three times and redelivered: channel, event id, statuses."""
    channel = new_channel()
    goal = f"research {name}"
    stack.llm.rule(planner_for(goal), plan(step("look", f"Look into {name}", "researcher")))
    stack.llm.rule(opening(f"Look into {name}"), Reply.text(f"{name.upper()}-FACTS"))
    event_id = new_event_id()
    body, ctype = event_callback(app_mention_event(goal, channel_id=channel), event_id)
    statuses = [server.post(body, ctype, headers=headers)[0] for headers in RETRIES]
    summary = reply_starting(stack, channel, "Run complete")
    assert f"{name.upper()}-FACTS" in block_text(summary)
    return channel, event_id, statuses


def test_an_event_delivered_four_times_starts_one_run(stack: Stack, server: BatonServer) -> None:
    fake = stack.fake
    channel, event_id, _ = deliver_four_times(stack, server, "Massive Dynamic")

    assert len(runs_in(stack.env, channel)) == 1
    assert len(roots(fake, channel)) == 1
    assert len([c for c in posts_to(fake, channel) if "thread_ts" not in c.args]) == 1
    assert len(stack.llm.requests_matching(planner_for("research Massive Dynamic"))) == 1
    assert query(stack.env, "SELECT count(*) FROM slack_events WHERE event_id = ?", event_id) == [
        (1,)
    ]


def test_repeated_deliveries_of_an_event_are_acknowledged_with_200(
    stack: Stack, server: BatonServer
) -> None:
    _, _, statuses = deliver_four_times(stack, server, "Vandelay Industries")

    assert statuses == [200] * len(RETRIES)


def test_mentions_and_direct_messages_start_goals_and_bot_messages_are_ignored(
    stack: Stack, server: BatonServer
) -> None:
    fake, llm = stack.fake, stack.llm
    channel = new_channel()
    dm = fake.dm_channel(ALICE)
    for goal, title, output in (
        ("research Soylent", "Look into Soylent", "SOYLENT-FACTS"),
        ("research Cyberdyne", "Look into Cyberdyne", "CYBERDYNE-FACTS"),
    ):
        llm.rule(planner_for(goal), plan(step("look", title, "researcher")))
        llm.rule(opening(title), Reply.text(output))
    before_dm = len(roots(fake, dm))

    mention = app_mention_event("research Soylent", channel_id=channel)
    assert server.post(*event_callback(mention)) == (200, "")
    direct = message_im_event("research Cyberdyne")
    assert server.post(*event_callback(direct)) == (200, "")
    # The bot's own message in a DM, and another app's, start nothing.
    own = message_im_event("research Tyrell", user_id=BOT_USER_ID, bot_id=BOT_ID)
    assert server.post(*event_callback(own)) == (200, "")
    other_bot = message_im_event("research Dunder Mifflin", bot_id="B0OTHERBOT")
    assert server.post(*event_callback(other_bot)) == (200, "")

    summary = reply_starting(stack, channel, "Run complete")
    assert "SOYLENT-FACTS" in block_text(summary)
    assert summary["thread_ts"] == card(fake, channel)["ts"]
    dm_summary = reply_starting(stack, dm, "Run complete: research Cyberdyne")
    assert "CYBERDYNE-FACTS" in block_text(dm_summary)
    assert runs_in(stack.env, channel)[0][1] == "done"
    # The mention itself is not part of the goal.
    assert query(
        stack.env, "SELECT goal FROM runs WHERE json_extract(origin, '$.channel') = ?", channel
    ) == [("research Soylent",)]
    [(_, dm_state)] = runs_in(stack.env, dm)[-1:]
    assert dm_state == "done"
    assert len(roots(fake, dm)) == before_dm + 1
    assert query(
        stack.env, "SELECT count(*) FROM runs WHERE goal LIKE '%Tyrell%' OR goal LIKE '%Dunder%'"
    ) == [(0,)]
    assert not llm.requests_matching("Tyrell")
    assert not llm.requests_matching("Dunder Mifflin")


# ---- 10. model text is escaped --------------------------------------------------------------


def test_model_text_never_reaches_slack_as_mentions_or_links(
    stack: Stack, server: BatonServer
) -> None:
    fake, llm = stack.fake, stack.llm
    channel = new_channel()
    goal = "Brief the team on Oscorp"
    nasty = "<!channel> ALERT <@U999> see <https://evil.example/x|this> & <!here>"
    to = "oscorp-team@example.com"
    llm.rule(f"sent to {to}", Reply.text(f"SENT {nasty} <!everyone>"))
    llm.rule(
        opening("Warn <!here> about Oscorp"),
        Reply.tool_calls([("send_message", {"to": to, "body": f"hi {nasty}"})]),
    )
    llm.rule(opening("Research <!channel> Oscorp"), Reply.text(f"FINDINGS {nasty}"))
    llm.rule(
        planner_for(goal),
        plan(
            step("facts", "Research <!channel> Oscorp", "researcher"),
            step("warn", "Warn <!here> about Oscorp", "operator", after=("facts",)),
        ),
    )

    assert command(server, fake, goal, channel) == (200, "")
    message = reply_starting(stack, channel, "Approval needed")
    assert click(server, fake, message, "baton_approve", BOB) == (200, "")
    summary = reply_starting(stack, channel, "Run complete")
    fake.wait_for(
        lambda: "2/2 steps done" in block_text(fake.message(channel, card(fake, channel)["ts"]))
    )

    # The model's words arrived (escaped) ...
    assert "FINDINGS &lt;!channel&gt; ALERT &lt;@U999&gt;" in "\n".join(
        block_text(m) for m in fake.messages(channel)
    )
    assert "SENT &lt;!channel&gt;" in block_text(summary)
    # ... and nothing of it could ping anyone or form a link, in any text or block.
    calls = [c for c in fake.calls if c.args.get("channel") == channel]
    assert len(calls) >= 6
    for call in calls:
        for text in strings(call.args):
            for bad in FORBIDDEN:
                assert bad not in text, f"{bad!r} reached Slack in {call.summary()}: {text!r}"
    assert sent(stack.env, to) == [f"{to}: hi {nasty}"]


# ---- 11. App Home -----------------------------------------------------------------------------


def home_parts(view: dict[str, Any]) -> tuple[str, str]:
    """The Home tab's text: (waiting for you, your recent runs)."""
    blocks = view["blocks"]
    split = next(
        i
        for i, b in enumerate(blocks)
        if b.get("type") == "header" and b["text"]["text"] == "Your recent runs"
    )
    return block_text({"blocks": blocks[:split]}), block_text({"blocks": blocks[split:]})


def test_app_home_shows_the_viewers_pending_approvals_and_recent_runs(
    stack: Stack, server: BatonServer
) -> None:
    fake, llm = stack.fake, stack.llm
    # Bob asked for something earlier; Alice's run now waits for an approver.
    bob_channel = new_channel()
    bob_goal = "research Gringotts"
    llm.rule(planner_for(bob_goal), plan(step("look", "Look into Gringotts", "researcher")))
    llm.rule(opening("Look into Gringotts"), Reply.text("GRINGOTTS-FACTS"))
    assert command(server, fake, bob_goal, bob_channel, BOB) == (200, "")
    reply_starting(stack, bob_channel, "Run complete")
    [(bob_run, _)] = runs_in(stack.env, bob_channel)
    channel, alice_run, to, message = start_approval_run(stack, server, "Nora")
    approval_id = approval_id_of(message)

    before = len(fake.calls_to("views.publish"))

    assert server.post(*event_callback(app_home_opened_event(user_id=BOB))) == (200, "")
    assert server.post(*event_callback(app_home_opened_event(user_id=ALICE))) == (200, "")

    fake.wait_for(lambda: len(fake.calls_to("views.publish")) == before + 2)
    publishes = fake.calls_to("views.publish")[before:]
    assert sorted(c.args["user_id"] for c in publishes) == sorted([BOB, ALICE])
    assert all(c.ok for c in publishes)
    bob_home = fake.home_views[BOB]
    assert bob_home["type"] == "home"
    # Bob may approve Alice's external action: it is listed, with working buttons.
    buttons = [
        e
        for b in bob_home["blocks"]
        if b.get("type") == "actions"
        for e in b["elements"]
        if str(e.get("value", "")).startswith(f"{approval_id}|")
    ]
    assert [b["action_id"] for b in buttons] == [
        "baton_approve",
        "baton_reject",
        "baton_edit",
        "baton_takeover",
    ]
    waiting, recent = home_parts(bob_home)
    assert "Notify Nora" in waiting
    assert "send_message" in waiting
    assert alice_run in waiting
    assert bob_run in recent
    assert "Gringotts" in recent
    assert alice_run not in recent
    # Alice asked for it, so she may not approve it: her Home lists her run, not the buttons.
    alice_home = fake.home_views[ALICE]
    assert approval_id not in json.dumps(alice_home)
    waiting, recent = home_parts(alice_home)
    assert "Notify Nora" not in waiting
    assert alice_run in recent
    assert bob_run not in recent

    # The approval still works from the thread.
    assert click(server, fake, message, "baton_approve", BOB) == (200, "")
    reply_starting(stack, channel, "Run complete")
    assert sent(stack.env, to) == [f"{to}: hello Nora"]


# ---- 9. commands: help, mistakes, playbooks, status, cancel ------------------------------------


def test_malformed_commands_are_explained_in_the_ack_and_start_nothing(
    stack: Stack, server: BatonServer
) -> None:
    fake = stack.fake
    channel = new_channel()

    status, text = command(server, fake, "", channel)
    assert status == 200
    assert "/orchestrate &lt;goal&gt;" in text
    assert "/orchestrate playbook" in text
    assert "/orchestrate status" in text
    assert "/orchestrate cancel" in text

    for typed, explained in (
        ("playbook", r"Which playbook\? For example: /orchestrate playbook \S+"),
        ("playbook nosuchbook account=Acme", r"There is no playbook 'nosuchbook'.*account_brief"),
        ("playbook account_brief account=Acme", r"Missing input 'contact'"),
        ("playbook account_brief account=Acme contact=CTO colour=red", r"Unknown input 'colour'"),
        ('playbook account_brief account="Acme', r"Quote values with spaces"),
        ("playbook ../../etc/passwd", r"is not a playbook name"),
        ("cancel", r"Which run\? For example: /orchestrate cancel r-"),
    ):
        status, body = command(server, fake, typed, channel)
        assert status == 200, typed
        answer = json.loads(body)
        assert "response_type" not in answer or answer["response_type"] == "ephemeral"
        assert re.search(explained, answer["text"]), (typed, answer["text"])
        examples = block_text(answer)
        assert "For example" in examples, typed
        assert "/orchestrate playbook" in examples, typed

    status, body = command(server, fake, "cancel r-0000000000", channel)
    assert (status, body) == (
        200,
        "There is no run `r-0000000000`. `/orchestrate status` lists yours.",
    )
    # Nothing was posted in the channel and no run started.
    assert fake.messages(channel) == []
    assert runs_in(stack.env, channel) == []


def script_account_brief(llm: ScriptedLLM, account: str, contact: str) -> None:
    """Model replies for the shipped config/playbooks/account_brief.yaml."""
    tag = account.upper()
    llm.rule(opening(f"Research {account}"), Reply.text(f"{tag}-COMPANY-FACTS"))
    llm.rule(opening(f"Research {contact} at {account}"), Reply.text(f"{tag}-PERSON-FACTS"))
    goal = f'source="goal">\nResearch {account} and draft outreach to {contact}\n'
    for title, reply in (
        ("Draft the email", f"{tag}-DRAFT hi {contact}"),
        ("Check the approved email against the research", f"{tag}-REVIEWED"),
    ):
        llm.rule(both(goal, opening(title)), Reply.text(reply), name=f"{account}: {title}")


def both(*parts: str) -> Callable[[dict[str, Any]], bool]:
    """Matches requests whose text holds every one of ``parts``."""

    def matches(body: dict[str, Any]) -> bool:
        text = request_text(body)
        return all(part in text for part in parts)

    return matches


def test_the_playbook_example_from_the_help_starts_a_run(stack: Stack, server: BatonServer) -> None:
    fake = stack.fake
    channel = new_channel()
    help_text = command(server, fake, "help", channel)[1]
    [example] = [
        e for e in re.findall(r"`/orchestrate (playbook [^`]+)`", help_text) if "&lt;" not in e
    ]
    script_account_brief(stack.llm, "ACME", "their CTO")

    status, body = command(server, fake, example.replace("&quot;", '"'), channel)

    assert (status, body) == (200, "")
    root = card(fake, channel)
    fake.wait_for(
        lambda: "playbook `account-brief`" in block_text(fake.message(channel, root["ts"]))
    )
    reply_starting(stack, channel, "Approval needed: Draft the email")
    [(run_id, _)] = runs_in(stack.env, channel)
    assert command(server, fake, f"cancel {run_id}", channel) == (200, f"Cancelling `{run_id}`…")
    wait_status(stack.env, run_id, "cancelled")
    reply_starting(stack, channel, "Run cancelled")


def test_a_playbook_runs_and_its_requester_may_edit_and_approve_the_draft(
    stack: Stack, server: BatonServer
) -> None:
    fake, llm = stack.fake, stack.llm
    channel = new_channel()
    script_account_brief(llm, "Globex", "Hank Scorpio")

    status, body = command(
        server, fake, 'playbook account_brief account=Globex contact="Hank Scorpio"', channel
    )

    assert (status, body) == (200, "")
    root = card(fake, channel)
    fake.wait_for(
        lambda: "playbook `account-brief`" in block_text(fake.message(channel, root["ts"]))
    )
    message = reply_starting(stack, channel, "Approval needed: Draft the email")
    assert "GLOBEX-DRAFT hi Hank Scorpio" in block_text(message)
    [(run_id, _)] = runs_in(stack.env, channel)
    [draft] = [r for r in step_requests(llm, "Draft the email") if "Globex" in r.text]
    assert "GLOBEX-COMPANY-FACTS" in draft.text
    assert "GLOBEX-PERSON-FACTS" in draft.text
    # A draft is not an irreversible action: the requester may edit and approve it.
    assert click(server, fake, message, "baton_edit", ALICE) == (200, "")
    view = opened_view(fake, "baton_edit_modal", approval_id_of(message))
    assert view["blocks"][-1]["element"]["initial_value"] == "GLOBEX-DRAFT hi Hank Scorpio"
    edited = "Dear Hank, EDITED BY ALICE"
    assert submit(server, view, {"draft": {"draft_input": edited}}, ALICE) == (200, "")

    summary = reply_starting(stack, channel, "Run complete")
    assert "GLOBEX-REVIEWED" in block_text(summary)
    assert run_status(stack.env, run_id) == "done"
    [review] = [
        r
        for r in step_requests(llm, "Check the approved email against the research")
        if "Globex" in r.text
    ]
    assert edited in review.text
    assert "GLOBEX-DRAFT" not in review.text
    decided = fake.message(channel, message["ts"])
    assert decided is not None
    assert action_ids(decided) == []
    assert re.search(rf"Approved with edits by <@{ALICE}>", block_text(decided))
    assert not planner_requests_for(llm, "Research Globex and draft outreach to Hank Scorpio")
    [(inputs,)] = query(stack.env, "SELECT inputs FROM runs WHERE id = ?", run_id)
    assert json.loads(inputs) == {"account": "Globex", "contact": "Hank Scorpio"}


def planner_requests_for(llm: ScriptedLLM, goal: str) -> list[RecordedRequest]:
    return [r for r in llm.requests if r.json and planner_for(goal)(r.json)]


def test_status_lists_the_users_runs_and_cancel_stops_a_waiting_run(
    stack: Stack, server: BatonServer
) -> None:
    fake = stack.fake
    channel, run_id, to, message = start_approval_run(stack, server, "Olga", user=DAVE)

    assert command(server, fake, "status", channel, DAVE) == (200, "")
    listing = ephemeral_for(fake, DAVE, "Your recent runs")
    assert f"`{run_id}` waiting: Tell Olga the news" in listing
    assert "Tell Olga" not in "".join(e["text"] for e in fake.ephemerals(BOB))
    assert command(server, fake, f"status {run_id}", channel, DAVE) == (200, "")
    ephemeral_for(fake, DAVE, r"\*Waiting for a person\* — Tell Olga the news")

    status, body = command(server, fake, f"cancel {run_id}", channel, DAVE)

    assert (status, body) == (200, f"Cancelling `{run_id}`…")
    ephemeral_for(fake, DAVE, rf"Run `{run_id}` is cancelled\.")
    wait_status(stack.env, run_id, "cancelled")
    reply_starting(stack, channel, "Run cancelled: Tell Olga the news")
    fake.wait_for(card_says(fake, channel, card(fake, channel)["ts"], "Cancelled: "))
    assert query(stack.env, "SELECT status FROM approvals WHERE run_id = ?", run_id) == [
        ("expired",)
    ]
    # The approval can no longer be used.
    assert click(server, fake, message, "baton_approve", BOB) == (200, "")
    ephemeral_for(fake, BOB, r"This was already expired")
    assert sent(stack.env, to) == []
    # Every reply went through the command's response_url, as an ephemeral.
    hooks = [
        c
        for c in fake.calls_to(RESPONSE_URL_METHOD)
        if "Olga" in json.dumps(c.args) or run_id in json.dumps(c.args)
    ]
    assert hooks
    assert all(c.args.get("response_type") == "ephemeral" for c in hooks)


# ---- 8. a good citizen: rate limits, dead tokens, channels Baton is not in --------------------


def test_rate_limited_posts_wait_for_retry_after_and_are_posted_once(
    stack: Stack, server: BatonServer
) -> None:
    fake, llm = stack.fake, stack.llm
    channel = new_channel()
    goal = "research Hooli"
    llm.rule(planner_for(goal), plan(step("look", "Look into Hooli", "researcher")))
    llm.rule(opening("Look into Hooli"), Reply.text("HOOLI-FACTS", delay=1.0))
    fake.rate_limit("chat.postMessage", retry_after=1, times=2, channel=channel)

    assert command(server, fake, goal, channel) == (200, "")
    root = card(fake, channel)
    # The step's result will be refused once too.
    fake.rate_limit("chat.postMessage", retry_after=1, times=1, channel=channel)
    summary = reply_starting(stack, channel, "Run complete")

    assert "HOOLI-FACTS" in block_text(summary)
    calls = posts_to(fake, channel)
    assert [c.status for c in calls] == [429, 429, 200, 429, 200, 200]
    for refused, retried in ((calls[0], calls[1]), (calls[1], calls[2]), (calls[3], calls[4])):
        assert refused.response_headers.get("Retry-After") == "1"
        assert retried.args["text"] == refused.args["text"]
        assert retried.at - refused.at >= 1.0 - 0.05, "retried before Retry-After"
    # Each message is in the channel exactly once.
    texts = [m["text"] for m in fake.messages(channel)]
    assert len(texts) == len(set(texts)) == 3
    assert texts[1] == "Look into Hooli: HOOLI-FACTS"
    assert replies(fake, channel, root["ts"])[-1]["ts"] == summary["ts"]


def test_when_the_root_card_cannot_be_posted_the_user_is_told_and_no_run_starts(
    stack: Stack, server: BatonServer
) -> None:
    fake, llm = stack.fake, stack.llm
    channel = "C0OUTSIDE" + uuid.uuid4().hex[:4].upper()
    fake.add_channel(SlackChannel(channel, "outside", is_member=False))
    goal = "research Pied Piper"

    assert command(server, fake, goal, channel) == (200, "")

    told = ephemeral_for(fake, ALICE, rf"I can't post in <#{channel}> \(not_in_channel\)")
    assert "/invite @Baton" in told
    [hook] = [c for c in fake.calls_to(RESPONSE_URL_METHOD) if channel in json.dumps(c.args)]
    assert hook.args.get("response_type") == "ephemeral"
    # One attempt, no run, no model call.
    assert [c.error for c in posts_to(fake, channel)] == ["not_in_channel"]
    assert runs_in(stack.env, channel) == []
    assert query(stack.env, "SELECT count(*) FROM runs WHERE goal = ?", goal) == [(0,)]
    assert not planner_requests_for(llm, goal)


def test_a_channel_lost_mid_run_is_tried_once_per_message_and_the_requester_is_told(
    stack: Stack, server: BatonServer
) -> None:
    fake, llm = stack.fake, stack.llm
    channel = new_channel()
    goal = "research Nakatomi"
    llm.rule(
        planner_for(goal),
        plan(
            step("one", "Look into Nakatomi", "researcher"),
            step("two", "Summarise Nakatomi", "writer", after=("one",)),
        ),
    )
    llm.rule(opening("Summarise Nakatomi"), Reply.text("NAKATOMI-SUMMARY"))
    llm.rule(opening("Look into Nakatomi"), Reply.text("NAKATOMI-FACTS", delay=1.0))
    dm = fake.dm_channel(ALICE)
    before = len(fake.messages(dm))

    assert command(server, fake, goal, channel) == (200, "")
    card(fake, channel)
    fake.fail("chat.postMessage", "is_archived", times=None, channel=channel)
    [(run_id, _)] = runs_in(stack.env, channel)
    wait_status(stack.env, run_id, "done")

    def told() -> list[dict[str, Any]]:
        return [m for m in fake.messages(dm)[before:] if f"<#{channel}>" in m["text"]]

    [note] = fake.wait_for(told)
    assert "archived" in note["text"]
    fake.wait_for(lambda: len(posts_to(fake, channel)) == 4)  # root, two results, summary
    refused = posts_to(fake, channel)[1:]
    assert [c.error for c in refused] == ["is_archived"] * 3
    assert len({c.args["text"] for c in refused}) == 3  # each message tried once


def test_direct_messages_are_posted_without_link_previews(
    stack: Stack, server: BatonServer
) -> None:
    fake = stack.fake
    channel = "C0GONE" + uuid.uuid4().hex[:4].upper()
    fake.add_channel(SlackChannel(channel, "gone", is_member=False))
    dm = fake.dm_channel(CAROL)

    # A mention from a channel Baton cannot post in is answered by DM.
    assert server.post(
        *event_callback(app_mention_event("research Duff", user_id=CAROL, channel_id=channel))
    ) == (200, "")

    fake.wait_for(lambda: [m for m in fake.messages(dm) if f"<#{channel}>" in m["text"]])
    [dm_post] = [c for c in posts_to(fake, dm) if f"<#{channel}>" in c.args.get("text", "")]
    assert dm_post.args.get("unfurl_links") is False
    assert dm_post.args.get("unfurl_media") is False


@dataclass
class Revoked:
    """What happened around a token revoked in the middle of two runs."""

    env: dict[str, str]
    token: str
    runs: dict[str, str]
    to: str
    calls_after: list[Any]
    calls_settled: int
    calls_later: int
    later_command: tuple[int, str]
    calls_after_command: list[Any]
    output: str
    err: str


@pytest.fixture(scope="module")
def revoked(stack: Stack) -> Revoked:
    """A server whose token Slack revokes while one run waits and another is mid-step."""
    fake, llm = stack.fake, stack.llm
    token = "xoxb-doomed-" + uuid.uuid4().hex[:8]
    env = stack.fresh_env("revoked", SLACK_BOT_TOKEN=token)
    own = Stack(llm, fake, env, stack.root, stack.netguard_log)
    busy_channel = new_channel()
    busy_goal = "research Stark Industries"
    llm.rule(planner_for(busy_goal), plan(step("look", "Look into Stark Industries", "researcher")))
    llm.rule(opening("Look into Stark Industries"), Reply.text("STARK-FACTS", delay=2.5))

    with BatonServer(env) as doomed:
        _, waiting_run, to, _message = start_approval_run(own, doomed, "Pepper")
        assert command(doomed, fake, busy_goal, busy_channel) == (200, "")
        card(fake, busy_channel)
        [(busy_run, _)] = runs_in(env, busy_channel)
        wait_until(lambda: step_requests(llm, "Look into Stark Industries"), what="the step")
        mark = len(fake.calls)
        fake.revoke(token, "invalid_auth")

        wait_status(env, busy_run, "cancelled", timeout=20)
        wait_status(env, waiting_run, "cancelled")
        doomed.wait_for_output(r"invalid_auth")
        settled = len(fake.calls)
        time.sleep(1.5)  # long enough for a retry loop to show itself
        later = len(fake.calls)
        after = [c for c in fake.calls[mark:] if c.token == token]
        answer = command(doomed, fake, "research Wonka", new_channel())
        after_command = [c for c in fake.calls[mark:] if c.token == token]
    return Revoked(
        env=env,
        token=token,
        runs={"waiting": waiting_run, "busy": busy_run},
        to=to,
        calls_after=after,
        calls_settled=settled,
        calls_later=later,
        later_command=answer,
        calls_after_command=after_command,
        output=doomed.output,
        err=doomed.err,
    )


def test_a_revoked_token_stops_the_workspaces_runs_without_a_retry_loop(
    revoked: Revoked,
) -> None:
    # At most one more call once the token is dead, and no retries after it.
    assert len(revoked.calls_after) <= 1, [c.summary() for c in revoked.calls_after]
    assert all(c.error == "invalid_auth" for c in revoked.calls_after)
    assert revoked.calls_later == revoked.calls_settled
    # Every open run of the workspace was stopped, nothing was sent.
    for run_id in revoked.runs.values():
        assert run_status(revoked.env, run_id) == "cancelled"
    assert sent(revoked.env, revoked.to) == []
    # The logs say why; a new request is still acknowledged, without calling Slack again.
    assert "Slack rejected the token (invalid_auth)" in revoked.err
    assert revoked.later_command == (200, "")
    assert revoked.calls_after_command == revoked.calls_after


def test_a_revoked_token_leaves_no_tracebacks_in_the_logs(revoked: Revoked) -> None:
    assert "Traceback" not in revoked.output, revoked.output


# ---- 7. a crash in the middle of a run --------------------------------------------------------


def test_a_server_killed_mid_run_is_replaced_and_runs_finish_in_their_threads(
    stack: Stack,
) -> None:
    fake, llm = stack.fake, stack.llm
    env = stack.fresh_env("restart")
    own = Stack(llm, fake, env, stack.root, stack.netguard_log)
    busy_channel = new_channel()
    busy_goal = "research Wayne Enterprises"
    llm.rule(
        planner_for(busy_goal), plan(step("look", "Look into Wayne Enterprises", "researcher"))
    )
    llm.rule(
        opening("Look into Wayne Enterprises"),
        Reply.text("TOO-LATE", delay=30),
        Reply.text("WAYNE-FACTS"),
    )

    first = BatonServer(env).start()
    try:
        channel, run_id, to, message = start_approval_run(own, first, "Quinn")
        assert command(first, fake, busy_goal, busy_channel) == (200, "")
        busy_root = card(fake, busy_channel)
        wait_until(lambda: step_requests(llm, "Look into Wayne Enterprises"), what="the slow step")
    finally:
        assert first.kill() != 0  # SIGKILL: mid-step for one run, waiting for the other
    root = card(fake, channel)

    with BatonServer(env) as second:
        assert click(second, fake, message, "baton_approve", BOB) == (200, "")

        summary = reply_starting(own, channel, "Run complete")
        busy_summary = reply_starting(own, busy_channel, "Run complete", timeout=30)
        fake.wait_for(card_says(fake, channel, root["ts"], "Done: "))
        fake.wait_for(card_says(fake, busy_channel, busy_root["ts"], "Done: "))
    assert "Traceback" not in second.output, second.output

    # The waiting run: approved after the restart, executed once, finished in its thread.
    assert sent(env, to) == [f"{to}: hello Quinn"]
    assert summary["thread_ts"] == root["ts"]
    assert [m["ts"] for m in roots(fake, channel)] == [root["ts"]]
    assert {m["thread_ts"] for m in fake.messages(channel)} == {root["ts"]}
    assert [c.args["text"] for c in posts_to(fake, channel)].count(message["text"]) == 1
    decided = fake.message(channel, message["ts"])
    assert decided is not None
    assert action_ids(decided) == []
    assert f"Approved by <@{BOB}>" in block_text(decided)
    assert runs_in(env, channel) == [(run_id, "done")]
    # The run cut off mid-step: resumed by the new server, in the same thread, one card.
    assert "WAYNE-FACTS" in block_text(busy_summary)
    assert busy_summary["thread_ts"] == busy_root["ts"]
    assert [m["ts"] for m in roots(fake, busy_channel)] == [busy_root["ts"]]
    assert "TOO-LATE" not in json.dumps(fake.messages(busy_channel))
    assert [s for _, s in runs_in(env, busy_channel)] == ["done"]


def test_a_graceful_stop_leaves_the_status_card_up_to_date(stack: Stack) -> None:
    fake, llm = stack.fake, stack.llm
    env = stack.fresh_env("graceful")
    own = Stack(llm, fake, env, stack.root, stack.netguard_log)
    channel = new_channel()
    goal = "research Monsters Inc"
    llm.rule(planner_for(goal), plan(step("look", "Look into Monsters Inc", "researcher")))
    llm.rule(opening("Look into Monsters Inc"), Reply.text("MONSTERS-FACTS"))

    with BatonServer(env) as server:
        assert command(server, fake, goal, channel) == (200, "")
        root = card(fake, channel)
        reply_starting(own, channel, "Run complete")
    # SIGTERM right after the run ended: pending card edits are made before exiting.

    assert runs_in(env, channel)[0][1] == "done"
    final = fake.message(channel, root["ts"])
    assert final is not None
    assert final["text"] == f"Done: {goal}"


# ---- 12. starting without Slack -----------------------------------------------------------------


def test_serve_without_a_bot_token_runs_headless_and_says_so(stack: Stack) -> None:
    env = stack.fresh_env("headless")
    env.pop("SLACK_BOT_TOKEN")
    env.pop("SLACK_SIGNING_SECRET")

    server = BatonServer(env, mode=None).start()
    try:
        server.wait_for_output(r"Slack is not configured \(SLACK_BOT_TOKEN unset\)")
        assert server.alive
    finally:
        code = server.stop()
    assert code == 0, server.output
    assert "Traceback" not in server.output
    assert "running the engine only" in server.out


def test_socket_mode_without_an_app_token_is_a_clear_error(stack: Stack) -> None:
    env = stack.fresh_env("socket")

    result = run_baton(["serve", "--socket"], env)

    assert result.code != 0
    assert "SLACK_APP_TOKEN" in result.err
    assert "Traceback" not in result.err + result.out
    assert "Baton is connected" not in result.out


def test_cancelling_a_run_removes_the_buttons_of_its_approvals(
    stack: Stack, server: BatonServer
) -> None:
    fake = stack.fake
    channel, run_id, _to, message = start_approval_run(stack, server, "Rita")

    assert command(server, fake, f"cancel {run_id}", channel)[0] == 200
    reply_starting(stack, channel, "Run cancelled")

    fake.wait_for(lambda: action_ids(fake.message(channel, message["ts"]) or {}) == [], timeout=5)
