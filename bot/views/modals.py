"""Modals: reject with a reason, edit arguments, an email or a draft, send a flagged action
anyway, submit or return a handoff, and read a full output.

Pre-filled inputs hold raw text (not escaped): that is what the person edits and submits back.
"""

from __future__ import annotations

import json
from typing import Any

from agents.flags import Flag
from bot.views._blocks import (
    MAX_INPUT_LENGTH,
    MAX_PRIVATE_METADATA,
    MAX_VIEW_BLOCKS,
    SECTION_BUDGET,
    Block,
    checked_id,
    context,
    plain,
    section,
)
from bot.views.checks import flag_line
from bot.views.text import clip, code, escape, mrkdwn_quote, one_line, split, trim

REJECT_MODAL = "baton_reject_modal"
EDIT_MODAL = "baton_edit_modal"
SEND_ANYWAY_MODAL = "baton_send_anyway_modal"
#: What must be typed to send a flagged action anyway (a rubber stamp cannot click it through).
SEND_ANYWAY_WORDS = "send anyway"
#: The inputs of the email form: (block id and field, label, one line?).
EMAIL_INPUTS = (
    ("to", "To", True),
    ("cc", "Cc", True),
    ("bcc", "Bcc", True),
    ("subject", "Subject", True),
    ("body", "Body", False),
)
RESULT_MODAL = "baton_result_modal"
RETURN_MODAL = "baton_return_modal"
#: Engine limit on a rejection reason (agents.approvals.MAX_REASON_CHARS).
REASON_CHARS = 2_000
#: Characters of text a full-output modal carries, counted as JSON-escaped ASCII, which is
#: how the view travels; Slack refuses views over 250 kB.
FULL_OUTPUT_PAYLOAD = 200_000

View = dict[str, Any]


def _modal(
    *,
    title: str,
    blocks: list[Block],
    callback_id: str | None = None,
    private_metadata: str | None = None,
    submit: str | None = None,
    close: str = "Cancel",
) -> View:
    view: View = {"type": "modal", "title": plain(title, 24), "close": plain(close, 24)}
    if submit is not None:
        view["submit"] = plain(submit, 24)
    if callback_id is not None:
        view["callback_id"] = checked_id(callback_id)
    if private_metadata is not None:
        view["private_metadata"] = checked_id(private_metadata, MAX_PRIVATE_METADATA)
    view["blocks"] = blocks[:MAX_VIEW_BLOCKS]
    return view


def _input(
    block_id: str,
    action_id: str,
    label: str,
    *,
    initial: str | None = None,
    optional: bool = False,
    max_length: int = MAX_INPUT_LENGTH,
    placeholder: str | None = None,
    multiline: bool = True,
) -> Block:
    element: Block = {
        "type": "plain_text_input",
        "action_id": action_id,
        "multiline": multiline,
        "max_length": max_length,
    }
    if initial is not None:
        element["initial_value"] = initial
    if placeholder is not None:
        element["placeholder"] = plain(placeholder, 150)
    return {
        "type": "input",
        "block_id": block_id,
        "label": plain(label, 2_000),
        "element": element,
        "optional": optional,
    }


def reject_modal(approval_id: str, digest: str) -> View:
    """Ask why an action is rejected; the agent reads the reason."""
    return _modal(
        title="Reject",
        submit="Reject",
        callback_id=REJECT_MODAL,
        private_metadata=f"{approval_id}|{digest}",
        blocks=[
            _input(
                "reason",
                "reason_input",
                "Why? The agent reads this and tries another way.",
                max_length=REASON_CHARS,
            )
        ],
    )


def edit_arguments_modal(
    approval_id: str, digest: str, tool: str, arguments: dict[str, Any]
) -> View:
    """Edit a tool call's arguments as JSON, then approve them.

    Raises ``ValueError`` when the JSON is longer than a Slack input holds (3,000 characters):
    the caller should say the arguments are too long to edit in Slack.
    """
    text = json.dumps(arguments, indent=2, ensure_ascii=False, default=str)
    if len(text) > MAX_INPUT_LENGTH:
        raise ValueError(
            f"The arguments are {len(text):,} characters as JSON; Slack can edit at most "
            f"{MAX_INPUT_LENGTH:,}."
        )
    return _modal(
        title="Edit arguments",
        submit="Approve with edits",
        callback_id=EDIT_MODAL,
        private_metadata=f"{approval_id}|{digest}",
        blocks=[
            section(
                f"Edit the arguments for {code(tool)}. They must stay valid JSON and are checked "
                "against the tool's schema again; approving runs the call with them."
            ),
            _input("arguments", "arguments_input", "Arguments (JSON)", initial=text),
        ],
    )


def _address_text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value or "")


def edit_email_modal(approval_id: str, digest: str, arguments: dict[str, Any]) -> View:
    """Edit an email field by field (To, Cc, Bcc, Subject, Body), then approve it.

    Addresses are checked as addresses and the subject as one line when it is submitted, and
    the edited text is grounded again before it can go. Raises ``ValueError`` when a field is
    longer than a Slack input holds (3,000 characters).
    """
    blocks: list[Block] = [
        section(
            "Edit the email. Addresses are checked as addresses (separate them with commas); "
            "the new text is checked against the research again before it can go, and if it "
            "is still flagged you are asked again."
        )
    ]
    for name, label, one_line_only in EMAIL_INPUTS:
        raw = arguments.get(name)
        text = _address_text(raw) if name in ("to", "cc", "bcc") else str(raw or "")
        if len(text) > MAX_INPUT_LENGTH:
            raise ValueError(
                f"The {label.lower()} is {len(text):,} characters; Slack can edit at most "
                f"{MAX_INPUT_LENGTH:,}."
            )
        blocks.append(
            _input(
                name,
                f"{name}_input",
                label,
                initial=text or None,
                optional=name in ("cc", "bcc"),
                max_length=300 if name == "subject" else MAX_INPUT_LENGTH,
                multiline=not one_line_only,
            )
        )
    return _modal(
        title="Edit email",
        submit="Approve with edits",
        callback_id=EDIT_MODAL,
        private_metadata=f"{approval_id}|{digest}",
        blocks=blocks,
    )


def send_anyway_modal(approval_id: str, digest: str, what: str, flags: list[Flag]) -> View:
    """Confirm sending a flagged action as it is: every flag listed, the words typed.

    ``what`` says what will happen ("Send this email to ada@acme.example?").
    """
    n = len(flags)
    lines = [
        f"*{clip(one_line(what), 300)}* It has {n} flag{'' if n == 1 else 's'}. Sending it "
        "anyway is recorded in the audit log under your name.",
        *(flag_line(f) for f in flags),
    ]
    chunks, trimmed = split("\n".join(lines), SECTION_BUDGET, MAX_VIEW_BLOCKS - 4)
    blocks: list[Block] = [section(chunk) for chunk in chunks]
    if trimmed:
        blocks.append(context("⚠️ Not every flag fits here; read them all in the thread first."))
    blocks.append(
        _input(
            "confirm",
            "confirm_input",
            f"Type “{SEND_ANYWAY_WORDS}” to send it despite these flags",
            max_length=40,
            multiline=False,
        )
    )
    return _modal(
        title="Send anyway?",
        submit="Send anyway",
        callback_id=SEND_ANYWAY_MODAL,
        private_metadata=f"{approval_id}|{digest}",
        blocks=blocks,
    )


def edit_draft_modal(approval_id: str, digest: str, draft: str) -> View:
    """Edit a draft, then approve it as the step's output.

    Raises ``ValueError`` when the draft is longer than a Slack input holds (3,000 characters).
    """
    if len(draft) > MAX_INPUT_LENGTH:
        raise ValueError(
            f"The draft is {len(draft):,} characters; Slack can edit at most {MAX_INPUT_LENGTH:,}."
        )
    return _modal(
        title="Edit draft",
        submit="Approve with edits",
        callback_id=EDIT_MODAL,
        private_metadata=f"{approval_id}|{digest}",
        blocks=[
            section("Edit the draft; approving makes your text the step's output."),
            _input("draft", "draft_input", "Draft", initial=draft),
        ],
    )


def result_modal(handoff_id: str, question: str, summary: str) -> View:
    """Submit the result of a step handed to a person."""
    blocks = [section(f"*Question*\n{mrkdwn_quote(question, 2_000)}")]
    if summary.strip():
        chunks, trimmed = split(escape(summary), SECTION_BUDGET, 3, prefix=">")
        blocks.append(section("*What happened so far*"))
        blocks += [section(chunk) for chunk in chunks]
        if trimmed:
            blocks.append(context(f"Showing the start of {len(summary):,} characters."))
    blocks.append(_input("result", "result_input", "Your result"))
    return _modal(
        title="Submit result",
        submit="Submit",
        callback_id=RESULT_MODAL,
        private_metadata=handoff_id,
        blocks=blocks,
    )


def return_modal(handoff_id: str) -> View:
    """Return a handoff to the agent, with an optional note."""
    return _modal(
        title="Return to agent",
        submit="Return",
        callback_id=RETURN_MODAL,
        private_metadata=handoff_id,
        blocks=[
            section("The agent takes the step back and carries on."),
            _input(
                "note",
                "note_input",
                "Note for the agent",
                optional=True,
                placeholder="What it should know or do differently",
            ),
        ],
    )


def _payload_cut(text: str, budget: int) -> int:
    """How many characters of ``text`` fit in ``budget`` characters of ASCII JSON."""
    used = 0
    for index, char in enumerate(text):
        point = ord(char)
        used += 1 if 0x20 <= point < 0x7F and char not in '"\\' else 2 if point < 0x80 else 6
        used += 6 if point > 0xFFFF else 0
        if used > budget:
            return index
    return len(text)


def full_output_modal(title: str, text: str) -> View:
    """A read-only modal with the whole of ``text`` (up to what a view can carry)."""
    body = escape(text)
    cut = _payload_cut(body, FULL_OUTPUT_PAYLOAD)
    trimmed_by_size = cut < len(body)
    body = trim(body, cut, marker="") if trimmed_by_size else body
    room = MAX_VIEW_BLOCKS - 2
    chunks, trimmed = (
        split(body, SECTION_BUDGET, room) if body.strip() else (["_No output._"], False)
    )
    blocks = [section(f"*{clip(one_line(title), 200)}*"), *(section(c) for c in chunks)]
    if trimmed or trimmed_by_size:
        blocks.append(
            context(f"⚠️ Only the start of {len(text):,} characters fits in a Slack modal.")
        )
    return _modal(title="Full output", blocks=blocks, close="Close")
