"""An approval card a rubber stamp cannot turn into harm, and an email shown as an email.

Pure views and terminal rendering (no I/O): a flagged action has no Approve button and its
primary button sends it back; Approve and "Retry the call" on an external action carry a
confirmation naming what will happen; every flag and every claim (with its quote and a link
to its evidence URL, never a label a model wrote) is shown; an email reads as To, Cc,
Subject and its body with its line breaks, on the card, the Home tab and at the terminal.
"""

from __future__ import annotations

import json
from typing import Any

from agents.approvals import send_back_reason
from agents.flags import flags_of
from bot.console import render_action
from bot.views import (
    ApprovalCard,
    approval_decided,
    approval_message,
    edit_email_modal,
    home_view,
    send_anyway_modal,
)
from bot.views.approval import what_happens
from storage.models import Approval
from tests.support.email_cards import DIGEST, EMAIL_ARGS, NEWS, TS, email_card


def buttons(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]


def texts(blocks: list[dict[str, Any]]) -> str:
    return "\n".join(b["text"]["text"] for b in blocks if b["type"] == "section")


def test_a_flagged_email_has_no_approve_and_its_primary_button_sends_it_back() -> None:
    _, blocks = approval_message(email_card(flagged=True))
    found = buttons(blocks)
    assert [(e["action_id"], e["text"]["text"], e.get("style")) for e in found] == [
        ("baton_send_back", "Send back to the writer", "primary"),
        ("baton_edit", "Edit", None),
        ("baton_send_anyway", "Send anyway", "danger"),
        ("baton_takeover", "Take over", None),
    ]
    assert "baton_approve" not in json.dumps(blocks)
    assert {e["value"] for e in found} == {f"a_41|{DIGEST}"}
    # The Home tab offers exactly the same buttons.
    home = home_view([email_card(flagged=True)], [])
    assert buttons(home["blocks"]) == found


def test_approve_and_retry_on_external_risk_confirm_what_will_happen() -> None:
    _, blocks = approval_message(email_card(flagged=False))
    approve = buttons(blocks)[0]
    assert approve["action_id"] == "baton_approve"
    assert approve["confirm"]["text"]["text"].startswith("Send this email to ada@acme.example?")
    assert approve["confirm"]["confirm"]["text"] == "Send"
    assert all("confirm" not in e for e in buttons(blocks)[1:])

    retry = email_card(flagged=False, kind="outcome_unknown")
    [again, *_] = buttons(approval_message(retry)[1])
    assert again["text"]["text"] == "Retry the call"
    assert again["confirm"]["text"]["text"].startswith("Send this email again to ada@acme.example?")

    other = ApprovalCard(
        "a_9",
        "r",
        "s",
        "Post",
        "tool_call",
        {"tool": "crm_delete", "arguments": {}},
        DIGEST,
        "external",
    )
    assert what_happens(other) == "Call crm_delete?"
    assert buttons(approval_message(other)[1])[0]["confirm"]["text"]["text"].startswith(
        "Call crm_delete?"
    )
    # A write inside the team is not asked twice.
    writes = ApprovalCard(**{**other.__dict__, "risk": "writes"})
    assert "confirm" not in buttons(approval_message(writes)[1])[0]


def test_several_recipients_are_counted_in_the_confirmation() -> None:
    card = email_card(
        flagged=False,
        action={
            "tool": "send_email",
            "arguments": {**EMAIL_ARGS, "to": ["a@x.example", "b@x.example", "c@x.example"]},
        },
    )
    assert what_happens(card) == "Send this email to a@x.example and 2 others?"


def test_an_email_is_shown_as_an_email_with_its_line_breaks() -> None:
    _, blocks = approval_message(email_card(flagged=False))
    text = texts(blocks)
    assert "*To:* Ada Lovelace &lt;ada@acme.example&gt;" in text
    assert "*Cc:* bob@acme.example" in text
    assert "*Subject:* Congrats on the Series B" in text
    assert "Bcc" not in text  # none given
    assert ">Dear Ada,\n>\n>Congrats on the $20M Series B.\n>Worth a chat next week?" in text
    assert "\\n" not in text  # not JSON with escaped line breaks
    assert '"body"' not in text and "```" not in text


def test_any_tool_with_to_subject_and_body_is_an_email() -> None:
    card = ApprovalCard(
        "a_7",
        "r",
        "s",
        "Send",
        "tool_call",
        {
            "tool": "send_outreach",
            "arguments": {"to": "x@y.example", "subject": "Hi", "body": "a\nb"},
        },
        DIGEST,
        "external",
    )
    text = texts(approval_message(card)[1])
    assert "*To:* x@y.example" in text and ">a\n>b" in text


def test_every_flag_and_every_claim_with_its_quote_and_source_link() -> None:
    _, blocks = approval_message(email_card(flagged=True))
    text = texts(blocks)
    assert "2 flags" in text
    assert "*Unsupported claim:* Acme is hiring 200 engineers — no source for it" in text
    assert "*Not in the evidence:* Congrats on the 200 hires." in text
    assert "✅ Acme raised $20M in a Series B" in text
    assert f"“Acme raised $20M in a Series B led by Orbit Capital.” — <{NEWS}>" in text
    assert "⚠️ Acme is hiring 200 engineers — no source for it" in text


def test_a_link_target_is_an_evidence_url_shown_as_itself_never_a_models_label() -> None:
    evil = {
        "claim": "See <https://sso.evil.example/login|acme.example/partners>",
        "supported": True,
        "source": "step research",
        "quote": "<!channel> <https://evil.example|acme.example>",
    }
    sly = {"claim": "x", "supported": True, "url": "https://ok.example/a|fake>", "quote": "q"}
    card = email_card(flagged=False, claims=(evil, sly))
    dumped = json.dumps(approval_message(card)[1])
    assert "<https://sso.evil.example" not in dumped and "<https://evil.example" not in dumped
    assert "<!channel>" not in dumped
    assert "(source" not in dumped and "step research" in dumped  # named, not linked
    assert "<https://ok.example" not in dumped  # a URL with `|` or `>` is no link target


def test_decided_cards_say_who_sent_anyway_and_who_sent_back() -> None:
    base = {"decided_by": "U456", "decided_at": TS}
    text, blocks = approval_decided(
        email_card(flagged=True, status="approved", overridden=True, **base)
    )
    assert text == "Sent anyway: Send the email"
    assert "⚠️ Sent anyway by <@U456> despite 2 flags at" in json.dumps(blocks, ensure_ascii=False)
    assert buttons(blocks) == []
    reason = send_back_reason(email_card(flagged=True).action)
    text, blocks = approval_decided(
        email_card(flagged=True, status="rejected", reason=reason, **base)
    )
    assert text == "Sent back: Send the email"
    assert "↩️ Sent back to the writer by <@U456>" in json.dumps(blocks, ensure_ascii=False)
    assert "Acme is hiring 200 engineers: no source for it" in reason


def test_the_email_form_has_one_input_per_field_and_a_multiline_body() -> None:
    view = edit_email_modal("a_41", DIGEST, EMAIL_ARGS)
    inputs = {b["block_id"]: b["element"] for b in view["blocks"] if b["type"] == "input"}
    assert list(inputs) == ["to", "cc", "bcc", "subject", "body"]
    assert inputs["to"]["initial_value"] == "Ada Lovelace <ada@acme.example>"  # raw, not escaped
    assert inputs["cc"]["initial_value"] == "bob@acme.example"
    assert "initial_value" not in inputs["bcc"]
    assert inputs["subject"]["multiline"] is False and inputs["body"]["multiline"] is True
    assert inputs["body"]["initial_value"] == EMAIL_ARGS["body"]
    assert view["callback_id"] == "baton_edit_modal"


def test_the_send_anyway_form_lists_every_flag_and_asks_for_the_words() -> None:
    flags = flags_of(email_card(flagged=True).action)
    view = send_anyway_modal("a_41", DIGEST, "Send this email to ada@acme.example?", flags)
    assert (view["callback_id"], view["private_metadata"]) == (
        "baton_send_anyway_modal",
        f"a_41|{DIGEST}",
    )
    shown = texts(view["blocks"])
    for flag in flags:
        assert flag.text in shown and flag.problem in shown
    [field] = [b for b in view["blocks"] if b["type"] == "input"]
    assert field["block_id"] == "confirm" and "send anyway" in field["label"]["text"]


def _approval(card: ApprovalCard) -> Approval:
    return Approval(
        id=card.approval_id,
        run_id=card.run_id,
        step_id=card.step_id,
        kind=card.kind,
        action=card.action,
        digest=DIGEST,
        risk=card.risk,
        status="pending",
        created_at=TS,
    )


def test_the_terminal_shows_the_email_its_flags_and_each_claims_quote_and_source() -> None:
    lines = render_action(_approval(email_card(flagged=True)))
    text = "\n".join(lines)
    assert lines[0] == "send_email (risk: external): an email"
    assert "  To:      Ada Lovelace <ada@acme.example>" in lines
    assert "  Cc:      bob@acme.example" in lines
    assert "  Subject: Congrats on the Series B" in lines
    assert "    | Dear Ada," in lines and "    | Worth a chat next week?" in lines
    assert "Flagged (2): a plain approve does not send this." in lines
    assert "  !!  Unsupported claim: Acme is hiring 200 engineers — no source for it" in lines
    assert "  ok  Acme raised $20M in a Series B" in lines
    assert f"        “Acme raised $20M in a Series B led by Orbit Capital.” — {NEWS}" in lines
    assert '"body"' not in text


def test_the_terminal_strips_escape_sequences_from_model_text() -> None:
    card = email_card(
        flagged=False,
        action={
            "tool": "send_email",
            "arguments": {**EMAIL_ARGS, "body": "hi\x1b[2J\x1b]0;pwned\x07"},
        },
    )
    text = "\n".join(render_action(_approval(card)))
    assert "\x1b" not in text and "\x07" not in text


def test_huge_flagged_emails_stay_within_slacks_limits() -> None:
    from tests.test_views import assert_no_injection, check_message, check_view

    evil = "<!channel> <https://evil.example|acme.example> " * 40
    flags = [{"kind": "claim", "text": f"{evil} {i}", "problem": evil} for i in range(60)]
    claims = tuple(
        {"claim": evil, "supported": i % 2 == 0, "quote": evil, "url": NEWS, "problem": evil}
        for i in range(40)
    )
    arguments = {**EMAIL_ARGS, "to": [f"p{i}@x.example" for i in range(300)], "body": evil * 50}
    card = email_card(
        flagged=True,
        action={"tool": "send_email", "arguments": arguments, "flags": flags},
        claims=claims,
    )
    for message in (
        approval_message(card),
        approval_decided(
            ApprovalCard(**{**card.__dict__, "status": "approved", "overridden": True})
        ),
    ):
        check_message(message)
    view = home_view(
        [ApprovalCard(**{**card.__dict__, "approval_id": f"a_{i}"}) for i in range(25)], []
    )
    check_view(view)
    assert len(view["blocks"]) <= 100
    check_view(send_anyway_modal("a_41", DIGEST, "Send this email?", flags_of(card.action)))
    for value in (approval_message(card), home_view([card], [])):
        dumped = json.dumps(value)
        assert "<!channel>" not in dumped and "<https://evil" not in dumped
    assert_no_injection(approval_message(email_card(flagged=True, claims=(claims[1],))))
