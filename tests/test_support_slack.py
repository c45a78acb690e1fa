"""The Slack stand-ins behave like Slack, as seen through the real slack_sdk client.

``FakeSlack`` (tests/support/slack_api.py) is driven with ``AsyncWebClient`` /
``WebClient`` / ``AsyncWebhookClient`` exactly as the bot will drive Slack, and the
request builders (tests/support/slack_requests.py) are checked against slack_sdk's
own ``SignatureVerifier`` and against a real Bolt app.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from tests.support import slack_requests as req
from tests.support.slack_api import (
    RESPONSE_URL_METHOD,
    UPLOAD_METHOD,
    FakeSlack,
    SlackChannel,
    SlackUser,
)
from tests.support.slack_requests import (
    BOT_ID,
    BOT_USER_ID,
    CHANNEL_ID,
    OTHER_USER_ID,
    TEAM_ID,
    USER_ID,
)

TOKEN = "xoxb-1111-2222-test"
SECRET = "test-signing-secret"
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as stand_in:
        yield stand_in


@pytest.fixture
def client(fake: FakeSlack, monkeypatch: pytest.MonkeyPatch) -> AsyncWebClient:
    # slack_sdk copies HTTPS_PROXY into an explicit proxy= and ignores NO_PROXY,
    # so a proxy variable in the environment would swallow 127.0.0.1 traffic.
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    # Some tests post blocks without text on purpose; slack_sdk would warn each time.
    monkeypatch.setenv("SKIP_SLACK_SDK_WARNING", "1")
    return AsyncWebClient(token=TOKEN, base_url=fake.base_url)


async def slack_error(awaitable: Any) -> SlackApiError:
    """Await a client call that must fail; return the SlackApiError."""
    with pytest.raises(SlackApiError) as caught:
        await awaitable
    return caught.value


def button(action_id: str = "go", text: str = "Go", value: str = "v") -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": text},
        "value": value,
    }


def section(text: str, block_id: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    if block_id is not None:
        block["block_id"] = block_id
    return block


def modal(**overrides: Any) -> dict[str, Any]:
    view: dict[str, Any] = {
        "type": "modal",
        "callback_id": "plan_edit",
        "title": {"type": "plain_text", "text": "Edit plan"},
        "submit": {"type": "plain_text", "text": "Save"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": "goal",
                "label": {"type": "plain_text", "text": "Goal"},
                "element": {"type": "plain_text_input", "action_id": "value"},
            }
        ],
    }
    view.update(overrides)
    return view


# --- identity and transports ---------------------------------------------------------


async def test_auth_test_identifies_the_bot(fake: FakeSlack, client: AsyncWebClient) -> None:
    answer = await client.auth_test()

    assert answer["user_id"] == BOT_USER_ID
    assert answer["bot_id"] == BOT_ID
    assert answer["team_id"] == TEAM_ID
    assert answer["url"] == "https://baton-test.slack.com/"
    assert fake.base_url.endswith("/api/")
    call = fake.last_call("auth.test")
    assert call.headers["Authorization"] == f"Bearer {TOKEN}"
    assert call.token == TOKEN


async def test_arguments_are_parsed_from_every_transport(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    await client.chat_postMessage(channel=CHANNEL_ID, text="json", blocks=[section("hi")])
    await client.users_info(user=USER_ID)
    await client.reactions_add(
        channel=CHANNEL_ID, timestamp=fake.messages(CHANNEL_ID)[0]["ts"], name="eyes"
    )
    await client.api_call(
        "chat.postMessage",
        data={"channel": CHANNEL_ID, "text": "form", "blocks": '[{"type":"divider"}]'},
    )
    await client.api_call(
        "chat.postMessage",
        data={"channel": CHANNEL_ID, "text": "multipart"},
        files={"file": io.BytesIO(b"attached")},
    )

    post_json, post_form, post_multipart = fake.calls_to("chat.postMessage")
    assert (post_json.transport, post_json.http_method) == ("json", "POST")
    assert post_json.args["blocks"][0]["type"] == "section"
    assert fake.last_call("users.info").transport == "query"
    assert fake.last_call("users.info").http_method == "GET"
    assert fake.last_call("reactions.add").transport == "query"
    assert post_form.transport == "form"
    assert post_form.args["blocks"] == [{"type": "divider"}]  # JSON strings are decoded
    assert post_multipart.transport == "multipart"
    assert post_multipart.uploads["file"] == b"attached"
    assert [m["text"] for m in fake.messages(CHANNEL_ID)] == ["json", "form", "multipart"]


async def test_unknown_method(client: AsyncWebClient) -> None:
    error = await slack_error(client.api_call("baton.doesNotExist"))
    assert error.response["error"] == "unknown_method"


# --- messages and threads ------------------------------------------------------------


async def test_post_thread_and_update_are_recorded(fake: FakeSlack, client: AsyncWebClient) -> None:
    parent = await client.chat_postMessage(channel=CHANNEL_ID, text="Plan ready")
    reply = await client.chat_postMessage(channel=CHANNEL_ID, text="step 1", thread_ts=parent["ts"])
    # Replying to a reply lands in the same thread, under the root.
    nested = await client.chat_postMessage(channel=CHANNEL_ID, text="step 2", thread_ts=reply["ts"])
    await client.chat_update(channel=CHANNEL_ID, ts=parent["ts"], text="Plan running")

    assert parent["channel"] == CHANNEL_ID
    assert parent["message"]["bot_id"] == BOT_ID
    assert parent["ts"] == "1732450000.000100"
    assert float(parent["ts"]) < float(reply["ts"]) < float(nested["ts"])
    assert reply["message"]["thread_ts"] == parent["ts"]
    assert nested["message"]["thread_ts"] == parent["ts"]

    texts = [(m["text"], m["thread_ts"]) for m in fake.messages(CHANNEL_ID)]
    assert texts == [
        ("Plan running", parent["ts"]),
        ("step 1", parent["ts"]),
        ("step 2", parent["ts"]),
    ]
    root = fake.message(CHANNEL_ID, parent["ts"])
    assert root is not None
    assert root["reply_count"] == 2
    assert root["edited"]["user"] == BOT_USER_ID
    assert [m["text"] for m in fake.thread(CHANNEL_ID, parent["ts"])] == [
        "Plan running",
        "step 1",
        "step 2",
    ]

    history = await client.conversations_history(channel=CHANNEL_ID)
    assert [m["text"] for m in history["messages"]] == ["Plan running"]
    replies = await client.conversations_replies(channel=CHANNEL_ID, ts=parent["ts"])
    assert [m["text"] for m in replies["messages"]] == ["Plan running", "step 1", "step 2"]


async def test_blocks_get_ids_like_slack_assigns(fake: FakeSlack, client: AsyncWebClient) -> None:
    unnamed_button = {"type": "button", "text": {"type": "plain_text", "text": "Go"}}
    sent = [section("Approve?"), {"type": "actions", "elements": [unnamed_button]}]
    answer = await client.chat_postMessage(channel=CHANNEL_ID, text="approve?", blocks=sent)

    stored = answer["message"]["blocks"]
    assert all(block["block_id"] for block in stored)
    assert stored[1]["elements"][0]["action_id"]
    assert fake.messages(CHANNEL_ID)[0]["blocks"] == stored


async def test_history_pages_with_cursor(fake: FakeSlack, client: AsyncWebClient) -> None:
    for i in range(5):
        await client.chat_postMessage(channel=CHANNEL_ID, text=f"m{i}")

    first = await client.conversations_history(channel=CHANNEL_ID, limit=2)
    assert [m["text"] for m in first["messages"]] == ["m4", "m3"]
    assert first["has_more"] is True
    cursor = first["response_metadata"]["next_cursor"]
    second = await client.conversations_history(channel=CHANNEL_ID, limit=2, cursor=cursor)
    assert [m["text"] for m in second["messages"]] == ["m2", "m1"]
    oldest = fake.messages(CHANNEL_ID)[2]["ts"]
    newer = await client.conversations_history(channel=CHANNEL_ID, oldest=oldest)
    assert [m["text"] for m in newer["messages"]] == ["m4", "m3"]


async def test_ephemeral_permalink_reaction_delete(fake: FakeSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel=CHANNEL_ID, text="hello")
    ts = posted["ts"]

    eph = await client.chat_postEphemeral(channel=CHANNEL_ID, user=USER_ID, text="only you")
    assert eph["message_ts"]
    assert [e["text"] for e in fake.ephemerals(USER_ID)] == ["only you"]
    assert fake.ephemerals(OTHER_USER_ID) == []
    error = await slack_error(
        client.chat_postEphemeral(channel=CHANNEL_ID, user="U0NOBODY", text="x")
    )
    assert error.response["error"] == "user_not_in_channel"

    link = await client.chat_getPermalink(channel=CHANNEL_ID, message_ts=ts)
    assert (
        link["permalink"]
        == f"https://baton-test.slack.com/archives/{CHANNEL_ID}/p{ts.replace('.', '')}"
    )

    await client.reactions_add(channel=CHANNEL_ID, timestamp=ts, name="white_check_mark")
    assert fake.messages(CHANNEL_ID)[0]["reactions"] == [
        {"name": "white_check_mark", "users": [BOT_USER_ID], "count": 1}
    ]
    again = await slack_error(
        client.reactions_add(channel=CHANNEL_ID, timestamp=ts, name="white_check_mark")
    )
    assert again.response["error"] == "already_reacted"
    bad = await slack_error(client.reactions_add(channel=CHANNEL_ID, timestamp=ts, name=":eyes:"))
    assert bad.response["error"] == "invalid_name"

    human = fake.add_message(CHANNEL_ID, "a person wrote this")
    nope = await slack_error(client.chat_update(channel=CHANNEL_ID, ts=human["ts"], text="edit"))
    assert nope.response["error"] == "cant_update_message"

    await client.chat_delete(channel=CHANNEL_ID, ts=ts)
    assert [m["text"] for m in fake.messages(CHANNEL_ID)] == ["a person wrote this"]
    gone = await slack_error(client.chat_update(channel=CHANNEL_ID, ts=ts, text="x"))
    assert gone.response["error"] == "message_not_found"


async def test_users_dms_and_usergroups(fake: FakeSlack, client: AsyncWebClient) -> None:
    bob = (await client.users_info(user=OTHER_USER_ID))["user"]
    assert (bob["tz"], bob["tz_label"], bob["tz_offset"]) == (
        "Asia/Kolkata",
        "India Standard Time",
        19800,
    )
    fake.add_user(
        SlackUser("U0CAROL01", "carol", tz="Europe/Berlin", tz_label="CET", tz_offset=3600)
    )
    assert (await client.users_info(user="U0CAROL01"))["user"]["tz"] == "Europe/Berlin"
    missing = await slack_error(client.users_info(user="U0NOBODY"))
    assert missing.response["error"] == "user_not_found"

    opened = await client.conversations_open(users=USER_ID)
    dm = opened["channel"]["id"]
    assert dm.startswith("D")
    assert dm == fake.dm_channel(USER_ID) == req.dm_channel_id(USER_ID)
    assert (await client.conversations_open(users=[USER_ID]))["already_open"] is True
    # Posting to a user id lands in the DM, and Slack answers with the D… id.
    posted = await client.chat_postMessage(channel=USER_ID, text="psst")
    assert posted["channel"] == dm
    assert [m["text"] for m in fake.messages(dm)] == ["psst"]
    info = await client.conversations_info(channel=dm)
    assert info["channel"]["is_im"] is True
    assert info["channel"]["user"] == USER_ID

    fake.add_usergroup("S0REVIEW1", "reviewers", [USER_ID, OTHER_USER_ID])
    group = await client.usergroups_users_list(usergroup="S0REVIEW1")
    assert group["users"] == [USER_ID, OTHER_USER_ID]
    no_group = await slack_error(client.usergroups_users_list(usergroup="S0NOPE"))
    assert no_group.response["error"] == "no_such_subteam"


async def test_channel_membership(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.add_channel(SlackChannel("C0OUTSIDE", "outside", is_member=False))
    fake.add_channel(SlackChannel("G0SECRET1", "secret", is_private=True, is_member=False))

    public = await slack_error(client.chat_postMessage(channel="C0OUTSIDE", text="x"))
    assert public.response["error"] == "not_in_channel"
    private = await slack_error(client.chat_postMessage(channel="G0SECRET1", text="x"))
    assert private.response["error"] == "channel_not_found"
    by_name = await client.chat_postMessage(channel="#general", text="by name")
    assert by_name["channel"] == CHANNEL_ID
    # Unknown ids are created on first use unless the fake is strict.
    assert (await client.chat_postMessage(channel="C0ELSEWHERE", text="x"))["ok"]
    fake.strict_channels = True
    strict = await slack_error(client.chat_postMessage(channel="C0UNKNOWN9", text="x"))
    assert strict.response["error"] == "channel_not_found"


# --- limits --------------------------------------------------------------------------

BLOCK_LIMIT_CASES = [
    pytest.param(
        [{"type": "divider"}] * 51,
        "no more than 50 items allowed [json-pointer:/blocks]",
        id="51-blocks",
    ),
    pytest.param(
        [section("x" * 3001)],
        "must be less than 3001 characters [json-pointer:/blocks/0/text/text]",
        id="section-text",
    ),
    pytest.param(
        [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
        "must be less than 151 characters [json-pointer:/blocks/0/text/text]",
        id="header-text",
    ),
    pytest.param(
        [{"type": "actions", "elements": [button(text="b" * 76)]}],
        "must be less than 76 characters [json-pointer:/blocks/0/elements/0/text/text]",
        id="button-text",
    ),
    pytest.param(
        [{"type": "actions", "elements": [button(action_id="a" * 256)]}],
        "must be less than 256 characters [json-pointer:/blocks/0/elements/0/action_id]",
        id="action-id",
    ),
    pytest.param(
        [section("x", block_id="b" * 256)],
        "must be less than 256 characters [json-pointer:/blocks/0/block_id]",
        id="block-id",
    ),
    pytest.param(
        [{"type": "actions", "elements": [button(value="v" * 2001)]}],
        "must be less than 2001 characters [json-pointer:/blocks/0/elements/0/value]",
        id="button-value",
    ),
    pytest.param(
        [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}],
        "no more than 10 items allowed [json-pointer:/blocks/0/elements]",
        id="context-elements",
    ),
    pytest.param(
        [{"type": "actions", "elements": [button(action_id=f"a{i}") for i in range(26)]}],
        "no more than 25 items allowed [json-pointer:/blocks/0/elements]",
        id="actions-elements",
    ),
    pytest.param(
        [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}],
        "no more than 10 items allowed [json-pointer:/blocks/0/fields]",
        id="section-fields",
    ),
    pytest.param(
        [{"type": "sektion", "text": {"type": "mrkdwn", "text": "typo"}}],
        "[json-pointer:/blocks/0/type]",
        id="unknown-block-type",
    ),
    pytest.param(
        [
            {
                "type": "actions",
                "elements": [{**button(), "text": {"type": "mrkdwn", "text": "*Go*"}}],
            }
        ],
        "must be a valid enum value [json-pointer:/blocks/0/elements/0/text/type]",
        id="button-text-not-plain",
    ),
    pytest.param(
        [section("a", block_id="same"), section("b", block_id="same")],
        "[json-pointer:/blocks/1/block_id]",
        id="duplicate-block-id",
    ),
]


@pytest.mark.parametrize(("blocks", "problem"), BLOCK_LIMIT_CASES)
async def test_block_limits_answer_invalid_blocks(
    fake: FakeSlack, client: AsyncWebClient, blocks: list[dict[str, Any]], problem: str
) -> None:
    error = await slack_error(client.chat_postMessage(channel=CHANNEL_ID, text="t", blocks=blocks))

    assert error.response["error"] == "invalid_blocks"
    assert any(problem in m for m in error.response["response_metadata"]["messages"]), (
        error.response
    )
    assert all(m.startswith("[ERROR] ") for m in error.response["response_metadata"]["messages"])
    assert any(problem in m for m in error.response["errors"])
    assert fake.messages(CHANNEL_ID) == []


AT_THE_LIMIT = [
    pytest.param([{"type": "divider"}] * 50, id="50-blocks"),
    pytest.param([section("x" * 3000, block_id="b" * 255)], id="section-3000"),
    pytest.param(
        [{"type": "header", "text": {"type": "plain_text", "text": "h" * 150}}], id="header-150"
    ),
    pytest.param(
        [
            {
                "type": "actions",
                "elements": [
                    button(action_id=f"{i:0>255}", text="b" * 75, value="v" * 2000)
                    for i in range(25)
                ],
            }
        ],
        id="25-buttons-at-limits",
    ),
    pytest.param(
        [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 10}], id="context-10"
    ),
    pytest.param(
        [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2000}] * 10}],
        id="fields-10",
    ),
]


@pytest.mark.parametrize("blocks", AT_THE_LIMIT)
async def test_blocks_at_the_limit_are_accepted(
    client: AsyncWebClient, blocks: list[dict[str, Any]]
) -> None:
    assert (await client.chat_postMessage(channel=CHANNEL_ID, text="t", blocks=blocks))["ok"]


async def test_text_limits(fake: FakeSlack, client: AsyncWebClient) -> None:
    assert (await client.chat_postMessage(channel=CHANNEL_ID, text="x" * 40_000))["ok"]
    too_long = await slack_error(client.chat_postMessage(channel=CHANNEL_ID, text="x" * 40_001))
    assert too_long.response["error"] == "msg_too_long"

    ts = (await client.chat_postMessage(channel=CHANNEL_ID, text="short"))["ts"]
    assert (await client.chat_update(channel=CHANNEL_ID, ts=ts, text="y" * 4_000))["ok"]
    update_too_long = await slack_error(
        client.chat_update(channel=CHANNEL_ID, ts=ts, text="y" * 4_001)
    )
    assert update_too_long.response["error"] == "msg_too_long"

    empty = await slack_error(client.chat_postMessage(channel=CHANNEL_ID))
    assert empty.response["error"] == "no_text"
    # Blocks alone are a valid message.
    assert (await client.chat_postMessage(channel=CHANNEL_ID, blocks=[section("only blocks")]))[
        "ok"
    ]
    assert fake.count("chat.postMessage") == 5


MODAL_CASES = [
    pytest.param(
        modal(blocks=[{"type": "divider"}] * 101),
        "no more than 100 items allowed [json-pointer:/view/blocks]",
        id="101-blocks",
    ),
    pytest.param(
        modal(title={"type": "plain_text", "text": "t" * 25}),
        "must be less than 25 characters [json-pointer:/view/title/text]",
        id="title",
    ),
    pytest.param(
        modal(submit={"type": "plain_text", "text": "s" * 25}),
        "must be less than 25 characters [json-pointer:/view/submit/text]",
        id="submit",
    ),
    pytest.param(
        modal(close={"type": "plain_text", "text": "c" * 25}),
        "must be less than 25 characters [json-pointer:/view/close/text]",
        id="close",
    ),
    pytest.param(
        modal(private_metadata="m" * 3001),
        "must be less than 3001 characters [json-pointer:/view/private_metadata]",
        id="private-metadata",
    ),
    pytest.param(
        modal(callback_id="c" * 256),
        "must be less than 256 characters [json-pointer:/view/callback_id]",
        id="callback-id",
    ),
    pytest.param(
        modal(blocks=[section("x" * 3001)]),
        "must be less than 3001 characters [json-pointer:/view/blocks/0/text/text]",
        id="block-inside-modal",
    ),
]


@pytest.mark.parametrize(("view", "problem"), MODAL_CASES)
async def test_modal_limits_answer_invalid_arguments(
    fake: FakeSlack, client: AsyncWebClient, view: dict[str, Any], problem: str
) -> None:
    error = await slack_error(client.views_open(trigger_id=req.new_trigger_id(), view=view))

    assert error.response["error"] == "invalid_arguments"
    assert f"[ERROR] {problem}" in error.response["response_metadata"]["messages"]
    assert fake.views_opened == []


async def test_view_size_and_home_limits(fake: FakeSlack, client: AsyncWebClient) -> None:
    # 90 sections of 2,900 characters: every block is valid, the payload is ~265 kB.
    huge = modal(blocks=[section("x" * 2_900, block_id=f"b{i}") for i in range(90)])
    error = await slack_error(client.views_open(trigger_id=req.new_trigger_id(), view=huge))
    assert error.response["error"] == "view_too_large"

    home = {"type": "home", "blocks": [{"type": "divider"}] * 100}
    assert (await client.views_publish(user_id=USER_ID, view=home))["ok"]
    home["blocks"] = [{"type": "divider"}] * 101
    too_many = await slack_error(client.views_publish(user_id=USER_ID, view=home))
    assert too_many.response["error"] == "invalid_arguments"
    assert len(fake.home_views[USER_ID]["blocks"]) == 100


async def test_modal_lifecycle(fake: FakeSlack, client: AsyncWebClient) -> None:
    trigger = req.new_trigger_id()
    opened = (await client.views_open(trigger_id=trigger, view=modal()))["view"]
    assert opened["id"].startswith("V")
    assert fake.views_opened[0]["callback_id"] == "plan_edit"

    reused = await slack_error(client.views_open(trigger_id=trigger, view=modal()))
    assert reused.response["error"] == "exchanged_trigger_id"
    expired = req.new_trigger_id()
    fake.expire_trigger(expired)
    late = await slack_error(client.views_open(trigger_id=expired, view=modal()))
    assert late.response["error"] == "expired_trigger_id"

    updated = await client.views_update(
        view_id=opened["id"], hash=opened["hash"], view=modal(callback_id="v2")
    )
    assert fake.view(opened["id"])["callback_id"] == "v2"  # type: ignore[index]
    stale = await slack_error(
        client.views_update(view_id=opened["id"], hash=opened["hash"], view=modal())
    )
    assert stale.response["error"] == "hash_conflict"
    assert updated["view"]["hash"] != opened["hash"]
    unknown = await slack_error(client.views_update(view_id="V0NOPE", view=modal()))
    assert unknown.response["error"] == "not_found"

    second = await client.views_push(trigger_id=req.new_trigger_id(), view=modal())
    assert second["view"]["previous_view_id"] == opened["id"]
    await client.views_push(trigger_id=req.new_trigger_id(), view=modal())
    full = await slack_error(client.views_push(trigger_id=req.new_trigger_id(), view=modal()))
    assert full.response["error"] == "push_limit_reached"

    no_submit = modal()
    del no_submit["submit"]
    missing = await slack_error(client.views_open(trigger_id=req.new_trigger_id(), view=no_submit))
    assert missing.response["error"] == "invalid_arguments"


# --- rate limits and faults ----------------------------------------------------------


async def test_rate_limit_surfaces_retry_after(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.rate_limit("chat.postMessage", retry_after=1)

    error = await slack_error(client.chat_postMessage(channel=CHANNEL_ID, text="hi"))

    assert error.response.status_code == 429
    assert error.response.headers["Retry-After"] == "1"
    assert error.response["error"] == "ratelimited"
    # slack_sdk's default handlers only retry connection errors.
    assert fake.count("chat.postMessage") == 1
    assert (await client.chat_postMessage(channel=CHANNEL_ID, text="hi"))["ok"]


async def test_rate_limit_retry_handler_waits_retry_after(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    fake.rate_limit("chat.postMessage", retry_after=1)

    answer = await client.chat_postMessage(channel=CHANNEL_ID, text="eventually")

    assert answer["ok"]
    first, second = fake.calls_to("chat.postMessage")
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 1.0
    assert [m["text"] for m in fake.messages(CHANNEL_ID)] == ["eventually"]


async def test_enforced_post_pace_is_per_channel(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.enforce_post_rate(per_second=1.0, burst=2)

    await client.chat_postMessage(channel=CHANNEL_ID, text="1")
    await client.chat_postMessage(channel=CHANNEL_ID, text="2")
    error = await slack_error(client.chat_postMessage(channel=CHANNEL_ID, text="3"))
    assert error.response.status_code == 429
    assert error.response.headers["Retry-After"] == "1"
    assert (await client.chat_postMessage(channel="C0OTHER01", text="elsewhere"))["ok"]

    fake.enforce_post_rate(per_second=50.0, burst=1)
    await client.chat_postMessage(channel=CHANNEL_ID, text="4")
    await asyncio.sleep(0.05)  # refills one post at 50/s
    assert (await client.chat_postMessage(channel=CHANNEL_ID, text="5"))["ok"]


async def test_scripted_failures(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.fail("chat.postMessage", "not_in_channel", channel="C0OTHER01")
    fake.fail(
        "chat.update", "missing_scope", extra={"needed": "chat:write", "provided": "commands"}
    )
    fake.fail_http("users.info", status=503)

    assert (await client.chat_postMessage(channel=CHANNEL_ID, text="fine"))["ok"]
    scoped = await slack_error(client.chat_postMessage(channel="C0OTHER01", text="x"))
    assert scoped.response["error"] == "not_in_channel"
    assert (await client.chat_postMessage(channel="C0OTHER01", text="x"))["ok"]  # times=1 used up
    ts = fake.messages(CHANNEL_ID)[0]["ts"]
    scope = await slack_error(client.chat_update(channel=CHANNEL_ID, ts=ts, text="x"))
    assert (scope.response["error"], scope.response["needed"]) == ("missing_scope", "chat:write")
    unavailable = await slack_error(client.users_info(user=USER_ID))
    assert unavailable.response.status_code == 503

    fake.delay("auth.test", 0.2)
    started = time.monotonic()
    await client.auth_test()
    assert time.monotonic() - started >= 0.2


async def test_auth_errors(fake: FakeSlack, client: AsyncWebClient) -> None:
    anonymous = AsyncWebClient(base_url=fake.base_url)
    assert (await slack_error(anonymous.auth_test())).response["error"] == "not_authed"
    garbage = AsyncWebClient(token="not-a-token", base_url=fake.base_url)
    assert (await slack_error(garbage.auth_test())).response["error"] == "invalid_auth"

    fake.revoke(TOKEN, "token_revoked")
    assert (await slack_error(client.auth_test())).response["error"] == "token_revoked"
    fake.revoked_tokens[TOKEN] = "invalid_auth"
    revoked = await slack_error(client.chat_postMessage(channel=CHANNEL_ID, text="x"))
    assert revoked.response["error"] == "invalid_auth"


async def test_socket_mode_token_types(fake: FakeSlack) -> None:
    bot = AsyncWebClient(token=TOKEN, base_url=fake.base_url)
    wrong = await slack_error(bot.apps_connections_open(app_token=TOKEN))
    assert wrong.response["error"] == "not_allowed_token_type"
    opened = await bot.apps_connections_open(app_token="xapp-1-A0BATON01-123-abc")
    assert opened["url"].startswith("ws://127.0.0.1:")
    app_only = AsyncWebClient(token="xapp-1-A0BATON01-123-abc", base_url=fake.base_url)
    misuse = await slack_error(app_only.chat_postMessage(channel=CHANNEL_ID, text="x"))
    assert misuse.response["error"] == "not_allowed_token_type"


# --- files ---------------------------------------------------------------------------


async def test_files_upload_v2_end_to_end(fake: FakeSlack, client: AsyncWebClient) -> None:
    parent = await client.chat_postMessage(channel=CHANNEL_ID, text="run finished")

    result = await client.files_upload_v2(
        channel=CHANNEL_ID,
        content="line 1\nline 2\n",
        filename="report.txt",
        title="Run report",
        initial_comment="Here is the report",
        thread_ts=parent["ts"],
    )

    assert result["file"]["title"] == "Run report"
    assert [c.method for c in fake.calls] == [
        "chat.postMessage",
        "files.getUploadURLExternal",
        UPLOAD_METHOD,
        "files.completeUploadExternal",
    ]
    assert fake.last_call("files.getUploadURLExternal").args["length"] == "14"
    assert fake.last_call(UPLOAD_METHOD).transport == "raw"
    (uploaded,) = fake.files
    assert (uploaded["content"], uploaded["name"], uploaded["channels"]) == (
        b"line 1\nline 2\n",
        "report.txt",
        [CHANNEL_ID],
    )
    share = fake.thread(CHANNEL_ID, parent["ts"])[-1]
    assert share["text"] == "Here is the report"
    assert share["files"][0]["id"] == result["file"]["id"]


async def test_file_upload_failure_surfaces(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.fail_http(UPLOAD_METHOD, status=500, body="<html>oops</html>")
    with pytest.raises(Exception, match="Failed to upload a file"):
        await client.files_upload_v2(channel=CHANNEL_ID, content="x", filename="x.txt")
    assert fake.count("files.completeUploadExternal") == 0


# --- response_url --------------------------------------------------------------------


async def test_response_url_applies_replies(fake: FakeSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel=CHANNEL_ID, text="Approve step 2?")
    url = fake.response_url(CHANNEL_ID, USER_ID, message_ts=posted["ts"])
    hook = AsyncWebhookClient(url)

    assert (await hook.send(text="working on it")).status_code == 200
    assert (await hook.send(text="Step 2 approved", replace_original=True)).status_code == 200
    assert (await hook.send(text="done", response_type="in_channel")).status_code == 200

    assert [e["text"] for e in fake.ephemerals(USER_ID)] == ["working on it"]
    assert [m["text"] for m in fake.messages(CHANNEL_ID)] == ["Step 2 approved", "done"]
    assert fake.calls_to(RESPONSE_URL_METHOD)[1].args["replace_original"] is True
    assert (await hook.send(text="x")).status_code == 200
    assert (await hook.send(text="x")).status_code == 200
    used_up = await hook.send(text="sixth")
    assert (used_up.status_code, used_up.body) == (404, "used_url")


# --- waiting -------------------------------------------------------------------------


def test_wait_for_from_sync_code(fake: FakeSlack, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    sync_client = WebClient(token=TOKEN, base_url=fake.base_url)

    def later() -> None:
        time.sleep(0.1)
        sync_client.chat_postMessage(channel=CHANNEL_ID, text="from a thread")

    worker = threading.Thread(target=later)
    worker.start()
    message = fake.wait_for(lambda f: f.messages(CHANNEL_ID)[0], timeout=5.0)
    worker.join()
    assert message["text"] == "from a thread"
    assert fake.wait_for(lambda: fake.count("chat.postMessage") == 1)

    with pytest.raises(AssertionError, match=r"(?s)not met within 0\.2s.*chat\.postMessage"):
        fake.wait_for(lambda f: f.count("chat.update") > 0, timeout=0.2)


async def test_await_for(fake: FakeSlack, client: AsyncWebClient) -> None:
    async def later() -> None:
        await asyncio.sleep(0.05)
        await client.chat_postMessage(channel=CHANNEL_ID, text="async")

    task = asyncio.create_task(later())
    found = await fake.await_for(
        lambda f: [m for m in f.messages(CHANNEL_ID) if m["text"] == "async"]
    )
    await task
    assert found[0]["text"] == "async"
    with pytest.raises(AssertionError, match="recent calls"):
        await fake.await_for(lambda f: f.count("views.open"), timeout=0.1)


async def test_reset_keeps_configuration(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.add_usergroup("S0REVIEW1", "reviewers", [USER_ID])
    first = await client.chat_postMessage(channel=CHANNEL_ID, text="before")
    fake.fail("chat.postMessage")
    fake.reset()

    assert fake.calls == []
    assert fake.messages(CHANNEL_ID) == []
    after = await client.chat_postMessage(channel=CHANNEL_ID, text="after")  # the fault is gone
    assert float(after["ts"]) > float(first["ts"])
    assert (await client.usergroups_users_list(usergroup="S0REVIEW1"))["users"] == [USER_ID]


# --- signing and request builders ----------------------------------------------------


def test_signature_is_what_slack_sdk_verifies() -> None:
    body, _ = req.slash_command("deploy the thing")
    verifier = SignatureVerifier(SECRET)

    assert verifier.is_valid_request(body, req.sign(body, SECRET))
    assert not verifier.is_valid_request(body + b"x", req.sign(body, SECRET))
    assert not verifier.is_valid_request(body, req.sign(body, "other-secret"))
    now = int(time.time())
    assert verifier.is_valid_request(body, req.sign(body, SECRET, timestamp=now - 299))
    assert not verifier.is_valid_request(body, req.sign(body, SECRET, timestamp=now - 301))
    headers = req.sign(body, SECRET, timestamp=1_732_450_000)
    assert headers["X-Slack-Signature"] == verifier.generate_signature(
        timestamp="1732450000", body=body
    )


def test_slash_command_has_slacks_fields() -> None:
    body, content_type = req.slash_command("ship <@U0BOB0001> & co", trigger_id="1.2.abc")
    fields = dict(urllib.parse.parse_qsl(body.decode()))

    assert content_type == "application/x-www-form-urlencoded"
    assert list(fields) == [
        "token",
        "team_id",
        "team_domain",
        "channel_id",
        "channel_name",
        "user_id",
        "user_name",
        "command",
        "text",
        "api_app_id",
        "is_enterprise_install",
        "response_url",
        "trigger_id",
    ]
    assert fields["command"] == "/orchestrate"
    assert fields["text"] == "ship <@U0BOB0001> & co"
    assert fields["is_enterprise_install"] == "false"
    assert fields["trigger_id"] == "1.2.abc"


def _payload(body: bytes) -> dict[str, Any]:
    (encoded,) = urllib.parse.parse_qs(body.decode())["payload"]
    payload: dict[str, Any] = json.loads(encoded)
    return payload


async def test_block_actions_clicks_a_posted_button(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    blocks = [
        section("Approve?"),
        {"type": "actions", "elements": [button("approve", "Approve", "run-7")]},
    ]
    await client.chat_postMessage(channel=CHANNEL_ID, text="Approve?", blocks=blocks)
    posted = fake.messages(CHANNEL_ID)[0]

    body, content_type = req.block_actions("approve", message=posted, user_id=OTHER_USER_ID)
    payload = _payload(body)

    assert content_type == "application/x-www-form-urlencoded"
    assert payload["type"] == "block_actions"
    assert payload["user"]["id"] == OTHER_USER_ID
    assert payload["container"] == {
        "type": "message",
        "message_ts": posted["ts"],
        "channel_id": CHANNEL_ID,
        "is_ephemeral": False,
    }
    (action,) = payload["actions"]
    assert action["value"] == "run-7"
    assert action["block_id"] == posted["blocks"][1]["block_id"]  # the id Slack assigned
    assert action["text"]["text"] == "Approve"
    assert action["type"] == "button"
    assert payload["message"]["blocks"] == posted["blocks"]
    assert payload["message"]["bot_id"] == BOT_ID
    assert payload["state"] == {"values": {}}
    assert {
        "trigger_id",
        "response_url",
        "team",
        "channel",
        "api_app_id",
        "token",
    } <= payload.keys()


async def test_view_submission_submits_the_opened_modal(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    await client.views_open(
        trigger_id=req.new_trigger_id(), view=modal(private_metadata='{"run": 7}')
    )
    opened = fake.views_opened[-1]

    body, _ = req.view_submission(None, {"goal": {"value": "Ship it"}}, view=opened)
    view = _payload(body)["view"]

    assert view["id"] == opened["id"]
    assert view["callback_id"] == "plan_edit"
    assert view["private_metadata"] == '{"run": 7}'
    assert view["state"]["values"] == {
        "goal": {"value": {"type": "plain_text_input", "value": "Ship it"}}
    }
    assert view["hash"] == opened["hash"]


def test_events_envelopes() -> None:
    body, content_type = req.event_callback(
        req.app_mention_event("plan a launch"), event_id="Ev0000000001"
    )
    envelope = json.loads(body)

    assert content_type == "application/json"
    assert envelope["type"] == "event_callback"
    assert envelope["event_id"] == "Ev0000000001"
    assert envelope["authorizations"] == [
        {
            "enterprise_id": None,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "is_bot": True,
            "is_enterprise_install": False,
        }
    ]
    event = envelope["event"]
    assert event["text"] == f"<@{BOT_USER_ID}> plan a launch"
    assert event["ts"] == event["event_ts"]
    assert event["blocks"][0]["elements"][0]["elements"][0] == {
        "type": "user",
        "user_id": BOT_USER_ID,
    }

    dm = req.message_im_event("hi")
    assert (dm["channel"], dm["channel_type"]) == (req.dm_channel_id(USER_ID), "im")
    home = req.app_home_opened_event(user_id=OTHER_USER_ID)
    assert (home["type"], home["tab"], home["channel"]) == ("app_home_opened", "home", "D0BOB0001")
    challenge = json.loads(req.url_verification("abc")[0])
    assert challenge == {
        "token": req.VERIFICATION_TOKEN,
        "challenge": "abc",
        "type": "url_verification",
    }


@pytest.fixture
async def echo_app() -> AsyncIterator[str]:
    """A tiny app that checks signatures with slack_sdk and echoes what it got."""
    verifier = SignatureVerifier(SECRET)

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        if not verifier.is_valid_request(body, dict(request.headers)):
            return web.json_response({"error": "invalid request"}, status=401)
        return web.Response(text=f"{request.content_type} {len(body)}")

    app = web.Application()
    app.router.add_post("/slack/events", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/slack/events"
    await runner.cleanup()


async def test_post_signed_async_and_sync(echo_app: str) -> None:
    body, content_type = req.event_callback(req.message_im_event("hello"))

    assert await req.post_signed(echo_app, body, content_type, SECRET) == (
        200,
        f"application/json {len(body)}",
    )
    stale = int(time.time()) - 301
    status, _ = await req.post_signed(echo_app, body, content_type, SECRET, timestamp=stale)
    assert status == 401
    sync_status, sync_text = await asyncio.to_thread(
        req.post_signed_sync, echo_app, body, content_type, SECRET
    )
    assert (sync_status, sync_text) == (200, f"application/json {len(body)}")
    forged = await asyncio.to_thread(
        req.post_signed_sync,
        echo_app,
        body,
        content_type,
        SECRET,
        headers={"X-Slack-Signature": "v0=00"},
    )
    assert forged[0] == 401


async def test_a_bolt_app_runs_against_the_stand_ins(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    """End to end: signed slash command in, Web API call and response_url reply out."""
    from slack_bolt.async_app import AsyncApp

    app = AsyncApp(client=client, signing_secret=SECRET)

    @app.command("/orchestrate")
    async def orchestrate(ack: Any, command: dict[str, Any], say: Any, respond: Any) -> None:
        await ack()
        await say(f"Starting: {command['text']}")
        await respond("Only you can see this")

    runner = web.AppRunner(app.web_app(path="/slack/events"))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
        body, content_type = req.slash_command(
            "launch v2", response_url=fake.response_url(CHANNEL_ID, USER_ID)
        )
        status, _ = await req.post_signed(url, body, content_type, SECRET)
        assert status == 200
        await fake.await_for(lambda f: f.ephemerals(USER_ID))
        assert [m["text"] for m in fake.messages(CHANNEL_ID)] == ["Starting: launch v2"]
        assert fake.count("auth.test") == 1  # Bolt identifies itself once
        bad_status, _ = await req.post_signed(url, body, content_type, "wrong-secret")
        assert bad_status == 401
    finally:
        await runner.cleanup()
