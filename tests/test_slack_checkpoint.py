"""The Slack checkpoint with a rubber-stamp approver: no flagged email is ever delivered.

The real Bolt app (``build_app``) serves HTTP in this process, in front of a real engine; clicks
and form submissions arrive signed exactly as Slack signs them (tests.support.slack_requests),
its Web API calls reach FakeSlack, the writer and the grounding checker are the scripted model
(tests.support.checkpoint_script), and ``send_email`` delivers to a real SMTP sink.

The rubber stamp clicks the primary button of every card without reading. On a flagged email
that button sends it back to the writer; "Send anyway" needs its own form, which lists the
flags and asks for typed words; Edit opens an email form whose edit is grounded again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agents.bootstrap import open_engine
from agents.engine import Engine
from bot.settings import SlackSettings
from bot.slack_app import build_app
from storage.models import Approval
from storage.repositories import approvals, audit
from tests.support.baton_server import free_port
from tests.support.checkpoint_script import (
    CLEAN_BODY,
    FLAGGED_BODY,
    GOAL,
    TO,
    delivered,
    plan,
    script_writer,
)
from tests.support.llm_server import ScriptedLLM
from tests.support.slack_api import FakeSlack
from tests.support.slack_requests import (
    OTHER_USER_ID,
    SIGNING_SECRET,
    TEAM_ID,
    USER_ID,
    block_actions,
    post_signed,
    view_submission,
)
from tests.support.smtp import Mailbox
from tests.test_checkpoint_override import settings

CHANNEL = "C0CHECK0001"
ALICE, BOB = USER_ID, OTHER_USER_ID  # Alice asks; Bob may approve external actions


@dataclass
class Bot:
    engine: Engine
    fake: FakeSlack
    mailbox: Mailbox
    url: str

    async def start(self) -> str:
        origin = {"slack": True, "team_id": TEAM_ID, "channel": CHANNEL, "user": ALICE}
        return await self.engine.start_plan(GOAL, plan(), requester=f"slack:{ALICE}", origin=origin)

    async def until(self, what: str, found: Callable[[], Any], within: float = 20) -> Any:
        """Poll without blocking the loop the engine and the app run on."""
        for _ in range(int(within / 0.05)):
            value = found()
            if value:
                return value
            await asyncio.sleep(0.05)
        said = [e.get("text") for e in self.fake.ephemerals()]
        raise AssertionError(f"timed out waiting for {what}; ephemerals: {said}")

    async def pending(self, run_id: str) -> list[Approval]:
        async with self.engine.svc.db.transaction() as s:
            return await approvals.list_approvals(s, run_id=run_id, statuses=["pending"])

    def card(self, approval_id: str) -> dict[str, Any] | None:
        """The message of ``approval_id`` as it is now (its buttons carry the id)."""
        for m in self.fake.messages(CHANNEL):
            for block in m.get("blocks", []):
                if block.get("block_id") == f"approval:{approval_id}":
                    return m
        return None

    def decided(self, ts: str) -> dict[str, Any] | None:
        """The message ``ts`` once its buttons are gone (the decision shown)."""
        message = self.fake.message(CHANNEL, ts)
        return message if message is not None and not buttons(message) else None

    async def live_card(self, approval_id: str) -> dict[str, Any]:
        card: dict[str, Any] = await self.until(
            f"the card of {approval_id}", lambda: self.card(approval_id)
        )
        return card

    async def click(
        self, message: dict[str, Any], action_id: str, user: str = BOB, value: str | None = None
    ) -> tuple[int, str]:
        body, kind = block_actions(
            action_id, value, user_id=user, channel_id=CHANNEL, message=message
        )
        return await post_signed(self.url, body, kind, SIGNING_SECRET)

    async def submit(
        self, view: dict[str, Any], values: dict[str, dict[str, Any]], user: str = BOB
    ) -> tuple[int, str]:
        body, kind = view_submission(None, values, user_id=user, view=view)
        return await post_signed(self.url, body, kind, SIGNING_SECRET)

    async def opened(self, callback_id: str, approval_id: str) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            hits = [
                v
                for v in self.fake.views_opened
                if v.get("callback_id") == callback_id
                and str(v.get("private_metadata", "")).startswith(approval_id)
            ]
            return hits[-1] if hits else None

        view: dict[str, Any] = await self.until(f"{callback_id} for {approval_id}", found)
        return view

    async def ephemeral(self, user: str, needle: str) -> str:
        def found() -> str | None:
            hits = [str(e["text"]) for e in self.fake.ephemerals(user) if needle in str(e["text"])]
            return hits[-1] if hits else None

        text: str = await self.until(f"an ephemeral with {needle!r}", found)
        return text


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for b in message.get("blocks", []) if b["type"] == "actions" for e in b["elements"]]


def primary(message: dict[str, Any]) -> str:
    """What a rubber stamp clicks: the card's primary button."""
    [button] = [e for e in buttons(message) if e.get("style") == "primary"]
    return str(button["action_id"])


@pytest.fixture
def fake() -> AsyncIterator[FakeSlack]:
    with FakeSlack() as slack:
        yield slack  # type: ignore[misc]


@pytest.fixture
def policy() -> str:
    """BATON_GROUNDING_OVERRIDE of the bot (a test parametrizes it to change it)."""
    return "confirm"


@pytest.fixture
async def bot(
    llm_env: ScriptedLLM,
    mailbox: Mailbox,
    fake: FakeSlack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    policy: str,
) -> AsyncIterator[Bot]:
    monkeypatch.setenv("BATON_SMTP_HOST", mailbox.host)
    monkeypatch.setenv("BATON_SMTP_PORT", str(mailbox.port))
    monkeypatch.setenv("BATON_SMTP_FROM", "sdr@ourco.test")
    script_writer(llm_env)
    engine = await open_engine(settings(tmp_path / "baton.db", grounding_override=policy))
    slack = SlackSettings.from_env(
        {
            "SLACK_BOT_TOKEN": "xoxb-test",
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_BASE_URL": fake.base_url,
            "BATON_APPROVERS_EXTERNAL": BOB,
        }
    )
    app: Any = build_app(engine, engine.svc.settings, slack, socket=False)
    runner = web.AppRunner(app.web_app(path="/slack/events"))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Bot(engine, fake, mailbox, f"http://127.0.0.1:{port}/slack/events")
    finally:
        await runner.cleanup()
        await engine.close()
        await engine.svc.db.close()
        session = getattr(app.baton.poster.client, "session", None)
        if session is not None and not session.closed:
            await session.close()


async def _waiting(bot: Bot, run_id: str, *, besides: str = "") -> Approval:
    """The one approval of ``run_id`` pending now, other than ``besides`` (waited for)."""
    for _ in range(400):
        found = [a for a in await bot.pending(run_id) if a.id != besides]
        if found:
            [approval] = found
            return approval
        await asyncio.sleep(0.05)
    raise AssertionError(f"no new approval in run {run_id}")


async def _first_card(bot: Bot) -> tuple[str, Approval, dict[str, Any]]:
    run_id = await bot.start()
    flagged = await _waiting(bot, run_id)
    assert flagged.action["flags"]
    return run_id, flagged, await bot.live_card(flagged.id)


async def test_a_rubber_stamp_in_slack_never_delivers_a_flagged_email(bot: Bot) -> None:
    run_id, _flagged, first = await _first_card(bot)
    assert "baton_approve" not in [e["action_id"] for e in buttons(first)]
    # The stamp clicks the primary button of every card, until nothing waits.
    clicked: list[tuple[str, str]] = []
    for _ in range(4):
        found = await bot.pending(run_id)
        if not found:
            break
        [a] = found
        card = await bot.live_card(a.id)
        action = primary(card)
        clicked.append((a.id, action))
        assert await bot.click(card, action) == (200, "")
        await bot.until("the decision", lambda ts=card["ts"]: bot.decided(ts))
        await bot.engine.wait(run_id)
    assert [c[1] for c in clicked] == ["baton_send_back", "baton_approve"]
    assert (await bot.engine.wait(run_id)).status == "done"
    assert delivered(bot.mailbox) == [CLEAN_BODY]  # only the clean email, never the flagged one
    sent_back = bot.decided(first["ts"])
    assert sent_back is not None and sent_back["text"].startswith("Sent back")
    assert f"Sent back to the writer by <@{BOB}>" in json.dumps(sent_back, ensure_ascii=False)
    # The clean card's Approve asked Slack to confirm what it would do.
    approve = next(e for e in buttons(card) if e["action_id"] == "baton_approve")
    assert approve["confirm"]["text"]["text"].startswith(f"Send this email to {TO}?")


async def test_a_forged_approve_on_a_flagged_card_is_refused_and_says_why(bot: Bot) -> None:
    run_id, flagged, card = await _first_card(bot)
    value = f"{flagged.id}|{flagged.digest}"
    assert await bot.click(card, "baton_approve", value=value) == (200, "")
    said = await bot.ephemeral(BOB, "flagged")
    assert "send it anyway" in said
    assert [a.id for a in await bot.pending(run_id)] == [flagged.id]
    assert delivered(bot.mailbox) == []


async def test_send_anyway_needs_the_typed_words_and_is_recorded(bot: Bot) -> None:
    run_id, flagged, card = await _first_card(bot)
    assert await bot.click(card, "baton_send_anyway") == (200, "")
    view = await bot.opened("baton_send_anyway_modal", flagged.id)
    shown = "\n".join(b["text"]["text"] for b in view["blocks"] if b["type"] == "section")
    for flag in flagged.action["flags"]:
        assert flag["problem"] in shown
    status, text = await bot.submit(view, {"confirm": {"confirm_input": "ok"}})
    assert status == 200 and json.loads(text)["response_action"] == "errors"
    assert [a.id for a in await bot.pending(run_id)] == [flagged.id]
    assert await bot.submit(view, {"confirm": {"confirm_input": "Send anyway"}}) == (200, "")
    await bot.until("the email", lambda: delivered(bot.mailbox))
    assert delivered(bot.mailbox) == [FLAGGED_BODY]
    assert (await bot.engine.wait(run_id)).status == "done"
    async with bot.engine.svc.db.transaction() as s:
        rows = await audit.list_entries(s, run_id=run_id)
    [override] = [r for r in rows if r.action == "approval.override"]
    assert override.actor == f"slack:{BOB}"
    assert override.detail and override.detail["flags"] == flagged.action["flags"]
    n = len(flagged.action["flags"])
    await bot.until(
        "the decided card",
        lambda: (
            f"Sent anyway by <@{BOB}> despite {n} flag"
            in json.dumps(bot.decided(card["ts"]), ensure_ascii=False)
        ),
    )


@pytest.mark.parametrize("policy", ["never"])
async def test_send_anyway_is_answered_with_why_when_the_policy_forbids_it(bot: Bot) -> None:
    run_id, flagged, card = await _first_card(bot)
    assert await bot.click(card, "baton_send_anyway") == (200, "")
    said = await bot.ephemeral(BOB, "BATON_GROUNDING_OVERRIDE=never")
    assert "send it back" in said
    assert not [
        v for v in bot.fake.views_opened if v.get("callback_id") == "baton_send_anyway_modal"
    ]
    assert [a.id for a in await bot.pending(run_id)] == [flagged.id]
    assert delivered(bot.mailbox) == []


async def test_edit_opens_an_email_form_whose_edit_is_checked_and_grounded_again(bot: Bot) -> None:
    run_id, flagged, card = await _first_card(bot)
    assert await bot.click(card, "baton_edit") == (200, "")
    view = await bot.opened("baton_edit_modal", flagged.id)
    fields = {b["block_id"]: b["element"] for b in view["blocks"] if b["type"] == "input"}
    assert list(fields) == ["to", "cc", "bcc", "subject", "body"]
    assert fields["body"]["initial_value"] == FLAGGED_BODY

    def form(**changes: str) -> dict[str, dict[str, Any]]:
        values = {"to": TO, "cc": "", "bcc": "", "subject": "A short call", "body": FLAGGED_BODY}
        values.update(changes)
        return {name: {f"{name}_input": text} for name, text in values.items()}

    # Not an address, a subject of two lines: errors in the form, nothing approved.
    status, text = await bot.submit(view, form(to="ada at acme", subject="a\nb"))
    errors = json.loads(text)["errors"]
    assert status == 200 and {"to", "subject"} <= set(errors)
    # Unchanged: the flags still stand.
    status, text = await bot.submit(view, form())
    assert "flags still stand" in json.loads(text)["errors"]["body"]
    assert [a.id for a in await bot.pending(run_id)] == [flagged.id]

    # Still invented: grounded again, flagged again, asked again; nothing sent.
    still = FLAGGED_BODY.replace("Would you", "So, would you")
    assert await bot.submit(view, form(body=still)) == (200, "")
    second = await _waiting(bot, run_id, besides=flagged.id)
    assert second.action["arguments"]["body"] == still and second.action["flags"]
    assert delivered(bot.mailbox) == []
    card2 = await bot.live_card(second.id)
    assert primary(card2) == "baton_send_back"

    # A clean edit goes.
    assert await bot.click(card2, "baton_edit") == (200, "")
    view2 = await bot.opened("baton_edit_modal", second.id)
    assert await bot.submit(view2, form(body=CLEAN_BODY)) == (200, "")
    await bot.until("the email", lambda: delivered(bot.mailbox))
    assert delivered(bot.mailbox) == [CLEAN_BODY]
    assert (await bot.engine.wait(run_id)).status == "done"
