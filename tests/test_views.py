"""Block Kit views: snapshots of representative cards, Slack's limits under huge inputs, and
escaping of everything a model, a tool or a person wrote.

Snapshots live in ``tests/snapshots/<name>.json``; run with ``UPDATE_SNAPSHOTS=1`` to (re)write
them after an intended change, then review the diff.
"""

from __future__ import annotations

import difflib
import json
import os
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from agents.approvals import send_back_reason
from agents.flags import flags_of
from bot.views import (
    ApprovalCard,
    HandoffCard,
    RunCard,
    StepLine,
    approval_decided,
    approval_message,
    edit_arguments_modal,
    edit_draft_modal,
    edit_email_modal,
    escape,
    full_output_modal,
    handoff_closed,
    handoff_message,
    help_text,
    home_view,
    mrkdwn_quote,
    reject_modal,
    result_modal,
    return_modal,
    run_summary,
    send_anyway_modal,
    status_card,
    step_result,
    trim,
    usage_error,
)
from bot.views.text import code_chunks, date, mention, split
from tests.support.email_cards import email_card
from tests.support.slack_api import _BlockChecker

Message = tuple[str, list[dict[str, Any]]]

SNAPSHOTS = Path(__file__).parent / "snapshots"
TS = 1_717_243_200.0  # 2024-06-01 12:00 UTC
DIGEST = "9f2c" * 16
EVIL = "<!channel> <!here> <@U999> <https://evil|click> & `tick` ```fence``` *b* _i_"


# --- helpers --------------------------------------------------------------------------


def assert_snapshot(name: str, value: Any) -> None:
    """Compare ``value`` as JSON with ``snapshots/<name>.json``; rewrite it when asked to."""
    path = SNAPSHOTS / f"{name}.json"
    rendered = json.dumps(value, indent=2, ensure_ascii=False) + "\n"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"No snapshot {path.name}; run with UPDATE_SNAPSHOTS=1 to create it.")
    expected = path.read_text(encoding="utf-8")
    if expected != rendered:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                rendered.splitlines(keepends=True),
                f"snapshots/{path.name}",
                "rendered now",
            )
        )
        pytest.fail(f"Snapshot {path.name} differs (UPDATE_SNAPSHOTS=1 accepts it):\n{diff}")


def text_objects(value: Any) -> Iterator[dict[str, Any]]:
    """Every text object (``plain_text`` / ``mrkdwn``) inside ``value``."""
    if isinstance(value, dict):
        if value.get("type") in ("plain_text", "mrkdwn") and isinstance(value.get("text"), str):
            yield value
        for item in value.values():
            yield from text_objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from text_objects(item)


def elements(blocks: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every interactive element: actions' elements, accessories and inputs' elements."""
    for block in blocks:
        yield from block.get("elements", []) if block["type"] == "actions" else []
        for key in ("accessory", "element"):
            if key in block:
                yield block[key]


def check_blocks(blocks: list[dict[str, Any]], max_blocks: int) -> None:
    """Slack's limits (slack.md §7), slack_sdk's validation and the Web API stand-in's."""
    assert 0 < len(blocks) <= max_blocks, len(blocks)
    block_ids = [b["block_id"] for b in blocks if "block_id" in b]
    assert len(block_ids) == len(set(block_ids)), block_ids
    for block in blocks:
        assert len(block.get("block_id", "")) <= 255
        kind = block["type"]
        if kind == "section":
            assert 0 < len(block["text"]["text"]) <= 3_000
        elif kind == "header":
            assert len(block["text"]["text"]) <= 150
        elif kind == "context":
            assert 0 < len(block["elements"]) <= 10
            assert all(len(e["text"]) <= 3_000 for e in block["elements"])
        elif kind == "actions":
            assert 0 < len(block["elements"]) <= 25
        elif kind == "input":
            assert len(block["label"]["text"]) <= 2_000
        parsed = Block.parse(block)
        assert parsed is not None, block
        parsed.validate_json()
        assert parsed.to_dict() == block  # slack_sdk knows every field we send
    for element in elements(blocks):
        assert len(element["action_id"]) <= 255
        if element["type"] == "button":
            assert len(element["text"]["text"]) <= 75
            assert len(element["value"]) <= 2_000
            assert element.get("style") in (None, "primary", "danger")
        if element["type"] == "plain_text_input":
            assert element["max_length"] <= 3_000
            assert len(element.get("initial_value", "")) <= element["max_length"]
    for obj in text_objects(blocks):
        assert obj["text"], obj
    checker = _BlockChecker()
    checker.blocks(blocks, "/blocks", max_blocks)
    assert not checker.problems, checker.problems


def check_message(message: Message) -> Message:
    """A ``(text, blocks)`` message Slack accepts; returns it."""
    text, blocks = message
    assert 0 < len(text) <= 4_000
    check_blocks(blocks, 50)
    # Slack answers msg_blocks_too_long near 13k characters of block text (slack.md §7).
    assert sum(len(o["text"]) for o in text_objects(blocks)) <= 12_000
    return message


def check_view(view: dict[str, Any]) -> dict[str, Any]:
    """A modal or Home view Slack accepts; returns it."""
    check_blocks(view["blocks"], 100)
    for key in ("title", "submit", "close"):
        if key in view:
            assert 0 < len(view[key]["text"]) <= 24
    assert len(view.get("private_metadata", "")) <= 3_000
    assert len(view.get("callback_id", "")) <= 255
    if view["type"] == "home":
        assert not {"title", "submit", "close"} & view.keys()
    View(**view).validate_json()
    assert len(json.dumps(view).encode()) <= 250_000  # views.* answer view_too_large beyond
    return view


# --- representative cards ---------------------------------------------------------------

STEPS = (
    StepLine("research", "Research the account", "researcher", "done", 12.4),
    StepLine("draft", "Draft the note", "writer", "running", 3.0),
    StepLine("record", "Record the note", "tool ledger_write", "waiting_approval"),
    StepLine("notify", "Tell the account team", "writer", "pending"),
)
RUN = RunCard(
    "r_7kq2",
    "Research ACME and record a note",
    "U123",
    "running",
    STEPS,
    tokens=1_234,
    cost_usd=0.0042,
    source="playbook",
    playbook="account-brief",
)
FAILED = RunCard(
    "r_9x1",
    "Summarise open support tickets & post the top 3",
    "U123",
    "failed",
    (
        StepLine("fetch", "Fetch open tickets", "tool helpdesk_search", "done", 1.2),
        StepLine("rank", "Rank by urgency", "analyst", "failed", 95.0),
        StepLine("post", "Post the summary", "writer", "cancelled"),
    ),
    tokens=20_500,
    cost_usd=1.5,
    error="Model call failed after 3 attempts: HTTP 503 from provider",
    duration_s=3_725.0,
)
EVERY_STATUS = RunCard(
    "r_all",
    "Show every step status",
    "cli:alice",
    "waiting",
    tuple(
        StepLine(f"s{i}", f"Step {status}", "tool notify" if i % 2 else "writer", status, i * 7.5)
        for i, status in enumerate(
            [
                "pending",
                "running",
                "waiting_approval",
                "waiting_human",
                "outcome_unknown",
                "done",
                "failed",
                "rejected",
                "cancelled",
                "skipped",
                "mystery",
            ]
        )
    ),
)
TOOL_CALL = ApprovalCard(
    "a_31",
    "r_7kq2",
    "record",
    "Record the note",
    "tool_call",
    {"tool": "ledger_write", "arguments": {"entry": "ACME: renewal due in May", "tags": ["q2"]}},
    DIGEST,
    "writes",
)
WITH_CLAIMS = ApprovalCard(
    **{
        **TOOL_CALL.__dict__,
        "risk": "external",
        "claims": (
            "ACME's renewal is due in May",
            {"text": "Their CFO changed in March", "source": "press release"},
        ),
    }
)
STEP_OUTPUT = ApprovalCard(
    "a_32",
    "r_7kq2",
    "draft",
    "Draft the note",
    "step_output",
    {"step": "Draft the note", "draft": "Hi team,\n\nACME renews in May.\nAction: call the CFO."},
    DIGEST,
    "writes",
)
UNKNOWN = ApprovalCard(
    "a_33",
    "r_7kq2",
    "record",
    "Record the note",
    "outcome_unknown",
    {"tool": "ledger_write", "arguments": {"entry": "ACME: renewal due in May"}},
    DIGEST,
    "writes",
)


def decided(card: ApprovalCard, **changes: Any) -> ApprovalCard:
    return ApprovalCard(**{**card.__dict__, "decided_by": "U456", "decided_at": TS, **changes})


HANDOFF = HandoffCard(
    "h_5",
    "r_7kq2",
    "verify",
    "Verify the contract value",
    "What is the signed contract value for ACME?",
    "The researcher found two figures ($40k and $48k) in different sources.",
)


def answered(status: str, answer: str) -> HandoffCard:
    return HandoffCard(
        **{**HANDOFF.__dict__, "status": status, "answered_by": "U456", "answer": answer}
    )


def as_message(message: Message) -> dict[str, Any]:
    text, blocks = check_message(message)
    return {"text": text, "blocks": blocks}


SNAPSHOT_CASES: dict[str, Callable[[], Any]] = {
    "status_running": lambda: as_message(status_card(RUN)),
    "status_planning": lambda: as_message(
        status_card(RunCard("r_p", "Plan a team offsite", "U123", "planning", ()))
    ),
    "status_failed": lambda: as_message(status_card(FAILED)),
    "status_every_step_status": lambda: as_message(status_card(EVERY_STATUS)),
    "approval_tool_call": lambda: as_message(approval_message(TOOL_CALL)),
    "approval_tool_call_claims": lambda: as_message(approval_message(WITH_CLAIMS)),
    "approval_step_output": lambda: as_message(approval_message(STEP_OUTPUT)),
    "approval_outcome_unknown": lambda: as_message(approval_message(UNKNOWN)),
    "approval_approved": lambda: as_message(
        approval_decided(decided(TOOL_CALL, status="approved"))
    ),
    "approval_approved_edited": lambda: as_message(
        approval_decided(decided(STEP_OUTPUT, status="approved", edited=True))
    ),
    "approval_rejected": lambda: as_message(
        approval_decided(
            decided(TOOL_CALL, status="rejected", reason="Wrong account: use ACME Corp (EU).")
        )
    ),
    "approval_taken_over": lambda: as_message(
        approval_decided(decided(TOOL_CALL, status="taken_over", decided_by="cli:alice"))
    ),
    "approval_expired": lambda: as_message(
        approval_decided(decided(TOOL_CALL, status="expired", decided_by=None))
    ),
    "approval_outcome_unknown_not_repeated": lambda: as_message(
        approval_decided(decided(UNKNOWN, status="rejected", reason="It went through; I checked."))
    ),
    # An email, flagged and clean, decided (sent anyway, sent back), its form and the Home tab.
    "approval_email_flagged": lambda: as_message(approval_message(email_card(flagged=True))),
    "approval_email_clean": lambda: as_message(approval_message(email_card(flagged=False))),
    "approval_email_sent_anyway": lambda: as_message(
        approval_decided(decided(email_card(flagged=True), status="approved", overridden=True))
    ),
    "approval_email_sent_back": lambda: as_message(
        approval_decided(
            decided(
                email_card(flagged=True),
                status="rejected",
                reason=send_back_reason(email_card(flagged=True).action),
            )
        )
    ),
    "modal_edit_email": lambda: check_view(
        edit_email_modal("a_41", DIGEST, email_card(flagged=True).action["arguments"])
    ),
    "modal_send_anyway": lambda: check_view(
        send_anyway_modal(
            "a_41",
            DIGEST,
            "Send this email to ada@acme.example?",
            flags_of(email_card(flagged=True).action),
        )
    ),
    "home_flagged": lambda: check_view(
        home_view([email_card(flagged=True), email_card(flagged=False)], [])
    ),
    "handoff_open": lambda: as_message(handoff_message(HANDOFF)),
    "handoff_answered": lambda: as_message(
        handoff_closed(answered("answered", "$48k, signed on 2 May."))
    ),
    "handoff_returned": lambda: as_message(
        handoff_closed(answered("returned", "Ask finance, they have it."))
    ),
    "step_result": lambda: as_message(
        step_result("r_7kq2", "research", "Research the account", "ACME renews in May.")
    ),
    "step_result_trimmed": lambda: as_message(
        step_result("r_7kq2", "research", "Research the account", "News item.\n" * 400)
    ),
    "run_summary_done": lambda: as_message(
        run_summary(
            RunCard(**{**RUN.__dict__, "status": "done", "duration_s": 42.0}),
            "Recorded: ACME renews in May.",
        )
    ),
    "run_summary_failed": lambda: as_message(run_summary(FAILED, None)),
    "modal_reject": lambda: check_view(reject_modal("a_31", DIGEST)),
    "modal_edit_arguments": lambda: check_view(
        edit_arguments_modal("a_31", DIGEST, "ledger_write", {"entry": "ACME: renewal"})
    ),
    "modal_edit_draft": lambda: check_view(edit_draft_modal("a_32", DIGEST, "Hi team,\nACME.")),
    "modal_result": lambda: check_view(result_modal("h_5", HANDOFF.question, HANDOFF.summary)),
    "modal_return": lambda: check_view(return_modal("h_5")),
    "modal_full_output": lambda: check_view(
        full_output_modal("Research the account", "Line one.\nLine two.")
    ),
    "home": lambda: check_view(home_view([TOOL_CALL, STEP_OUTPUT, UNKNOWN], [RUN, FAILED])),
    "home_empty": lambda: check_view(home_view([], [])),
    "help": lambda: {"text": help_text()},
    "usage_error": lambda: as_message(usage_error("Unknown run 'r_nope'.")),
}


@pytest.mark.parametrize("name", sorted(SNAPSHOT_CASES))
def test_snapshot(name: str) -> None:
    assert_snapshot(name, SNAPSHOT_CASES[name]())


def test_no_stale_snapshots() -> None:
    on_disk = {p.stem for p in SNAPSHOTS.glob("*.json")}
    assert on_disk <= set(SNAPSHOT_CASES), on_disk - set(SNAPSHOT_CASES)


# --- contract details the listeners rely on -----------------------------------------------


def test_approval_buttons_carry_id_and_digest() -> None:
    _, blocks = approval_message(TOOL_CALL)
    actions = blocks[-1]
    assert actions["block_id"] == "approval:a_31"
    assert [(e["action_id"], e["text"]["text"], e.get("style")) for e in actions["elements"]] == [
        ("baton_approve", "Approve", "primary"),
        ("baton_reject", "Reject", "danger"),
        ("baton_edit", "Edit", None),
        ("baton_takeover", "Take over", None),
    ]
    assert {e["value"] for e in actions["elements"]} == {f"a_31|{DIGEST}"}


def test_outcome_unknown_offers_retry_not_edit() -> None:
    _, blocks = approval_message(UNKNOWN)
    assert "cannot tell" in blocks[0]["text"]["text"]
    buttons = [(e["action_id"], e["text"]["text"]) for e in blocks[-1]["elements"]]
    assert buttons == [
        ("baton_approve", "Retry the call"),
        ("baton_reject", "Don't repeat"),
        ("baton_takeover", "Take over"),
    ]


def test_decided_has_no_buttons_and_says_who_and_when() -> None:
    _, blocks = approval_decided(decided(TOOL_CALL, status="approved"))
    assert all(b["type"] != "actions" for b in blocks)
    line = blocks[-1]["elements"][0]["text"]
    assert line == f"✅ Approved by <@U456> at {date(TS)}"
    assert date(TS) == "<!date^1717243200^{date_short_pretty} {time}|2024-06-01 12:00 UTC>"


def test_home_buttons_match_the_message() -> None:
    view = home_view([TOOL_CALL], [])
    home_actions = next(b for b in view["blocks"] if b["type"] == "actions")
    assert home_actions == approval_message(TOOL_CALL)[1][-1]


def test_handoff_buttons() -> None:
    _, blocks = handoff_message(HANDOFF)
    assert [(e["action_id"], e["value"], e.get("style")) for e in blocks[-1]["elements"]] == [
        ("baton_submit_result", "h_5", "primary"),
        ("baton_return", "h_5", None),
    ]
    assert all(b["type"] != "actions" for b in handoff_closed(answered("answered", "x"))[1])


def test_short_output_has_no_show_button() -> None:
    _, blocks = step_result("r", "s", "T", "short")
    assert all(b["type"] != "actions" for b in blocks)
    _, blocks = run_summary(RUN, "y" * 5_000)
    button = next(b for b in blocks if b["type"] == "actions")["elements"][0]
    assert (button["action_id"], button["value"]) == ("baton_show_output", "r_7kq2|_run")


def test_modal_ids() -> None:
    reject = reject_modal("a_1", DIGEST)
    assert (reject["callback_id"], reject["private_metadata"]) == (
        "baton_reject_modal",
        f"a_1|{DIGEST}",
    )
    assert reject["blocks"][0]["block_id"] == "reason"
    assert reject["blocks"][0]["element"]["action_id"] == "reason_input"
    assert reject["blocks"][0]["optional"] is False
    edit = edit_arguments_modal("a_1", DIGEST, "t", {"k": "v"})
    field = edit["blocks"][-1]
    assert (edit["callback_id"], field["block_id"], field["element"]["action_id"]) == (
        "baton_edit_modal",
        "arguments",
        "arguments_input",
    )
    assert json.loads(field["element"]["initial_value"]) == {"k": "v"}
    draft = edit_draft_modal("a_1", DIGEST, "<!here> raw")["blocks"][-1]
    # The person edits the raw draft; escaping it would corrupt what they submit back.
    assert (draft["block_id"], draft["element"]["initial_value"]) == ("draft", "<!here> raw")
    result = result_modal("h_1", "q", "s")
    assert (result["callback_id"], result["private_metadata"]) == ("baton_result_modal", "h_1")
    assert result["blocks"][-1]["block_id"] == "result"
    ret = return_modal("h_1")
    assert (ret["callback_id"], ret["blocks"][-1]["block_id"]) == ("baton_return_modal", "note")
    assert ret["blocks"][-1]["optional"] is True


def test_too_long_to_edit_raises() -> None:
    with pytest.raises(ValueError, match="at most 3,000"):
        edit_arguments_modal("a_1", DIGEST, "t", {"body": "x" * 10_000})
    with pytest.raises(ValueError, match="at most 3,000"):
        edit_draft_modal("a_1", DIGEST, "x" * 3_001)


def test_oversized_ids_are_refused_not_cut() -> None:
    with pytest.raises(ValueError, match="longer than 255"):
        approval_message(ApprovalCard(**{**TOOL_CALL.__dict__, "approval_id": "a" * 300}))
    with pytest.raises(ValueError, match="longer than 3000"):
        reject_modal("a", "d" * 3_000)


# --- text helpers -------------------------------------------------------------------------


def test_escape_only_three_characters() -> None:
    assert escape("<a> & \"b\" 'c'") == "&lt;a&gt; &amp; \"b\" 'c'"


def test_trim_never_cuts_an_entity() -> None:
    assert trim("abcdef", 6) == "abcdef"
    assert trim("abcdef", 4) == "abc…"
    escaped = escape("ab<<<<")
    for limit in range(1, len(escaped)):
        out = trim(escaped, limit)
        assert len(out) <= limit
        assert re.search(r"&[a-z]{0,3}…$", out) is None, out


def test_quote_and_split() -> None:
    assert mrkdwn_quote("a\n<b>") == ">a\n>&lt;b&gt;"
    chunks, trimmed = split("x" * 25, 10, 5, prefix=">")
    assert chunks == [">xxxxxxxxx", ">xxxxxxxxx", ">xxxxxxx"] and not trimmed
    chunks, trimmed = split("line\n" * 100, 20, 2)
    assert len(chunks) == 2 and trimmed and all(len(c) <= 20 for c in chunks)
    fenced, _ = code_chunks("a ``` b", 100, 1)
    assert fenced[0].count("```") == 2


def test_mentions_only_for_user_ids() -> None:
    assert mention("U123ABC") == "<@U123ABC>"
    assert mention("slack:W42") == "<@W42>"
    assert mention("cli:alice") == "cli:alice"
    assert mention("<!channel>") == "&lt;!channel&gt;"
    assert mention("u123") == "u123"
    assert mention(None) == "someone"


# --- limits under huge inputs ----------------------------------------------------------------

HUGE_STEPS = tuple(
    StepLine(f"s{i}", f"{i} " + "very long title " * 32, "agent-" + "x" * 80, "done", 1.0)
    for i in range(40)
)
HUGE_RUN = RunCard("r_huge", "g" * 50_000, "U123", "failed", HUGE_STEPS, error="e" * 20_000)
HUGE_DRAFT = ApprovalCard(
    **{**STEP_OUTPUT.__dict__, "action": {"step": "t", "draft": "d\n" * 50_000}}
)
HUGE_ARGS = ApprovalCard(
    **{
        **TOOL_CALL.__dict__,
        "step_title": "t" * 5_000,
        "action": {"tool": "x" * 500, "arguments": {"body": "v" * 10_000, "n": 1}},
        "claims": tuple("claim " * 200 for _ in range(50)),
    }
)
HUGE_HANDOFF = HandoffCard(
    "h", "r", "s", "T" * 5_000, "q" * 20_000, "s\n" * 20_000, "answered", "U1", "a" * 50_000
)


def huge_messages() -> Iterator[tuple[str, Message]]:
    yield "status", status_card(HUGE_RUN)
    yield (
        "status_many_steps",
        status_card(RunCard(**{**HUGE_RUN.__dict__, "steps": HUGE_STEPS * 5})),
    )
    yield "summary", run_summary(HUGE_RUN, "o" * 100_000)
    yield "draft", approval_message(HUGE_DRAFT)
    yield (
        "draft_decided",
        approval_decided(decided(HUGE_DRAFT, status="rejected", reason="r" * 10_000)),
    )
    yield "args", approval_message(HUGE_ARGS)
    yield (
        "args_unknown",
        approval_message(ApprovalCard(**{**HUGE_ARGS.__dict__, "kind": "outcome_unknown"})),
    )
    yield "args_decided", approval_decided(decided(HUGE_ARGS, status="approved", edited=True))
    yield (
        "entities",
        approval_message(
            ApprovalCard(**{**STEP_OUTPUT.__dict__, "action": {"draft": "&<>" * 30_000}})
        ),
    )
    yield "handoff", handoff_message(HUGE_HANDOFF)
    yield "handoff_closed", handoff_closed(HUGE_HANDOFF)
    yield "step_result", step_result("r", "s", "t" * 10_000, "&" * 100_000)
    yield "usage", usage_error("u" * 10_000)


@pytest.mark.parametrize(("name", "message"), list(huge_messages()), ids=lambda v: str(v)[:20])
def test_huge_messages_stay_within_limits(name: str, message: Message) -> None:
    check_message(message)


def test_forty_long_steps_are_all_listed() -> None:
    _, blocks = status_card(HUGE_RUN)
    listed = "\n".join(b["text"]["text"] for b in blocks if b["type"] == "section")
    assert all(f"✅ {i} very long" in listed for i in range(40))
    assert "more steps" not in listed


def test_huge_modals_and_home_stay_within_limits() -> None:
    check_view(full_output_modal("t" * 1_000, "o" * 1_000_000))
    check_view(full_output_modal("t", "😀" * 300_000))  # astral characters cost 12 JSON bytes
    check_view(full_output_modal("t", "<&>\n" * 300_000))
    check_view(full_output_modal("t", ""))
    check_view(result_modal("h", "q" * 50_000, "s" * 100_000))
    check_view(edit_arguments_modal("a", DIGEST, "t" * 5_000, {"k": "v" * 2_900}))
    many = [ApprovalCard(**{**HUGE_ARGS.__dict__, "approval_id": f"a_{i}"}) for i in range(300)]
    view = check_view(home_view(many, [HUGE_RUN] * 300))
    assert "280 more waiting" in json.dumps(view)


def test_random_text_stays_within_limits() -> None:
    alphabet = "ab <>&`*_~\n😀é\t|@!#"
    rng = random.Random(1234)
    for _ in range(40):
        blob = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12_000)))
        run = RunCard(
            "r", blob, blob[:20], "failed", (StepLine("s", blob, blob, "done"),), error=blob
        )
        card = ApprovalCard(
            **{**TOOL_CALL.__dict__, "action": {"tool": blob, "arguments": {blob[:9]: blob}}}
        )
        for message in (
            status_card(run),
            run_summary(run, blob),
            approval_message(card),
            approval_decided(decided(card, status="rejected", reason=blob)),
            approval_message(ApprovalCard(**{**STEP_OUTPUT.__dict__, "action": {"draft": blob}})),
            handoff_closed(HandoffCard("h", "r", "s", blob, blob, blob, "answered", blob, blob)),
            step_result("r", "s", blob, blob),
        ):
            check_message(message)
            assert_no_injection(message)
        check_view(full_output_modal(blob, blob * 10))
        check_view(home_view([card], [run]))


# --- injection ---------------------------------------------------------------------------

# The only ``<…>`` a view may contain: mentions of ids we were given, and our date tokens.
BUILT = re.compile(r"<@U(?:123|456)>|<!date\^\d+\^\{date_short_pretty\} \{time\}\|[^<>|]*>")


def assert_no_injection(value: Any) -> None:
    strings = [o["text"] for o in text_objects(value)]
    if isinstance(value, tuple):  # a message: its fallback text is mrkdwn too
        strings.append(value[0])
    for text in strings:
        rest = BUILT.sub("", text)
        assert "<" not in rest and "<@U999" not in rest, text


def evil_views() -> Iterator[Any]:
    steps = (StepLine(EVIL, EVIL, EVIL, "failed", 1.0),)
    run = RunCard("r_evil", EVIL, "U123", "failed", steps, error=EVIL, playbook=EVIL, source=EVIL)
    stranger = RunCard(**{**run.__dict__, "requester": EVIL})
    tool = ApprovalCard(
        "a_1",
        EVIL,
        EVIL,
        EVIL,
        "tool_call",
        {"tool": EVIL, "arguments": {EVIL: EVIL, "list": [EVIL]}},
        DIGEST,
        EVIL,
        claims=(EVIL, {"text": EVIL, "source": EVIL}),
    )
    draft = ApprovalCard(**{**tool.__dict__, "kind": "step_output", "action": {"draft": EVIL}})
    unknown = ApprovalCard(**{**tool.__dict__, "kind": "outcome_unknown"})
    handoff = HandoffCard("h_1", EVIL, EVIL, EVIL, EVIL, EVIL, "answered", "U456", EVIL)
    yield status_card(run)
    yield status_card(stranger)
    yield run_summary(run, EVIL)
    yield run_summary(stranger, EVIL * 1_000)
    for card in (tool, draft, unknown):
        yield approval_message(card)
        yield approval_decided(decided(card, status="rejected", reason=EVIL))
        yield approval_decided(decided(card, status="approved", decided_by=EVIL))
    yield handoff_message(handoff)
    yield handoff_closed(handoff)
    yield handoff_closed(HandoffCard(**{**handoff.__dict__, "answered_by": EVIL}))
    yield step_result("r_1", "s_1", EVIL, EVIL)
    yield step_result("r", "s", EVIL, EVIL * 1_000)
    yield usage_error(EVIL)
    yield home_view([tool, draft, unknown], [run, stranger])
    yield full_output_modal(EVIL, EVIL * 10)
    yield result_modal("h_1", EVIL, EVIL)
    yield edit_arguments_modal("a_1", DIGEST, EVIL, {EVIL: EVIL})


def without_prefilled_inputs(value: Any) -> Any:
    """``value`` minus inputs' ``initial_value``: raw by design, it is what a person edits."""
    if isinstance(value, dict):
        return {k: without_prefilled_inputs(v) for k, v in value.items() if k != "initial_value"}
    if isinstance(value, list | tuple):
        return [without_prefilled_inputs(v) for v in value]
    return value


def test_injection_never_reaches_slack_unescaped() -> None:
    for value in evil_views():
        assert_no_injection(value)
        serialized = json.dumps(without_prefilled_inputs(value), ensure_ascii=False)
        assert "&lt;!channel&gt;" in serialized  # the payload is shown, escaped
        for needle in ("<!channel", "<!here", "<@U999", "<https"):
            assert needle not in serialized, needle
    assert_no_injection({"text": help_text()})


def test_built_mentions_are_kept() -> None:
    assert "<@U123>" in json.dumps(status_card(RUN))
    assert "Asked by cli:alice" in json.dumps(status_card(EVERY_STATUS), ensure_ascii=False)
    escaped = json.dumps(status_card(RunCard(**{**RUN.__dict__, "requester": "<@U999>"})))
    assert "&lt;@U999&gt;" in escaped
