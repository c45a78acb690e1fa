"""Approval messages: exactly what will happen, the buttons to decide, and the decision.

A flagged action (``action["flags"]``, see :mod:`agents.flags`) gets no Approve button: the
primary button sends it back to the writer with the flags as the reason; "Send anyway" opens
a confirmation that lists every flag. An unflagged action that acts outside (risk
``external``) carries a Slack confirmation dialog naming what will happen. An email is shown
as an email: To, Cc, Bcc, Subject, then its body as quoted text.
"""

from __future__ import annotations

import json
from typing import Any

from agents import emails
from agents.approvals import SEND_BACK_LEAD
from bot.views import _labels, budget
from bot.views._blocks import (
    FALLBACK_BUDGET,
    SECTION_BUDGET,
    Block,
    actions,
    button,
    context,
    mrkdwn,
    plain,
    section,
)
from bot.views.cards import ApprovalCard
from bot.views.checks import checks_blocks, flags
from bot.views.text import (
    clip,
    code,
    code_chunks,
    date,
    escape,
    mention,
    mrkdwn_quote,
    one_line,
    split,
)

APPROVE, REJECT, EDIT, TAKEOVER = "baton_approve", "baton_reject", "baton_edit", "baton_takeover"
SEND_BACK, SEND_ANYWAY = "baton_send_back", "baton_send_anyway"
TITLE_CHARS = 200
#: Sections an action (arguments or draft) may fill before it is trimmed with a note.
ACTION_SECTIONS = 3
#: An email's fields take a section of their own, so its body gets one section less.
EMAIL_SECTIONS = 2
REASON_CHARS = 2_000
ADDRESS_CHARS = 600
#: Slack's limits of a confirmation dialog (title, text, button labels).
CONFIRM_TITLE, CONFIRM_TEXT, CONFIRM_BUTTON = 100, 300, 30


def block_id(card: ApprovalCard) -> str:
    """The ``block_id`` of an approval's buttons: ``approval:<id>``."""
    return f"approval:{card.approval_id}"


def button_value(card: ApprovalCard) -> str:
    """What every button carries: the approval and the digest of the action shown."""
    return f"{card.approval_id}|{card.digest}"


def pretty_json(value: Any) -> str:
    """Indented JSON, non-ASCII kept, anything unserialisable shown with ``str``."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def tool_name(card: ApprovalCard) -> str:
    """The tool an approval is about, or an empty string."""
    return str(card.action.get("tool") or "")


def is_email(card: ApprovalCard) -> bool:
    """Whether the card's action is an email (shown with its fields, edited in a form)."""
    return card.kind in ("tool_call", "outcome_unknown") and emails.action_is_email(card.action)


def what_happens(card: ApprovalCard) -> str:
    """What approving does, as a question: "Send this email to ada@acme.example?"."""
    again = " again" if card.kind == "outcome_unknown" else ""
    if is_email(card):
        found = emails.addresses(card.action.get("arguments", {}).get("to"))
        others = len(found) - 1
        to = (found[0] if found else "nobody") + (
            f" and {others} other{'' if others == 1 else 's'}" if others > 0 else ""
        )
        return f"Send this email{again} to {to}?"
    return f"Call {tool_name(card) or 'this tool'}{again}?"


def confirm_dialog(card: ApprovalCard) -> Block:
    """The Slack ``confirm`` object of a button that acts outside."""
    title = "Send this email?" if is_email(card) else "Act outside?"
    ok = "Send" if is_email(card) else "Call it"
    return {
        "title": plain(title, CONFIRM_TITLE),
        "text": mrkdwn(
            clip(
                f"{one_line(what_happens(card))} It acts outside and cannot be undone.",
                CONFIRM_TEXT,
            ),
            CONFIRM_TEXT,
        ),
        "confirm": plain(ok, CONFIRM_BUTTON),
        "deny": plain("Cancel", CONFIRM_BUTTON),
        "style": "primary",
    }


def _confirmed(element: Block, card: ApprovalCard) -> Block:
    if card.risk == "external":
        element["confirm"] = confirm_dialog(card)
    return element


def approval_buttons(card: ApprovalCard) -> Block:
    """The actions block of a pending approval (messages and the Home tab alike)."""
    value = button_value(card)
    if card.kind == budget.KIND:
        elements = [
            button("Raise the budget", APPROVE, value, "primary"),
            button("Stop the run", REJECT, value, "danger"),
        ]
    elif card.kind == "outcome_unknown":
        elements = [
            _confirmed(button("Retry the call", APPROVE, value, "primary"), card),
            button("Don't repeat", REJECT, value, "danger"),
            button("Take over", TAKEOVER, value),
        ]
    elif flags(card):
        # No Approve: the button a rubber stamp clicks first sends it back to the writer.
        elements = [
            button("Send back to the writer", SEND_BACK, value, "primary"),
            button("Edit", EDIT, value),
            button("Send anyway", SEND_ANYWAY, value, "danger"),
            button("Take over", TAKEOVER, value),
        ]
    else:
        elements = [
            _confirmed(button("Approve", APPROVE, value, "primary"), card),
            button("Reject", REJECT, value, "danger"),
            button("Edit", EDIT, value),
            button("Take over", TAKEOVER, value),
        ]
    return actions(block_id(card), *elements)


def _heading(card: ApprovalCard) -> str:
    title = clip(one_line(card.step_title), TITLE_CHARS)
    if card.kind == "outcome_unknown":
        lead = "❓ *Did this call happen?*" if card.status == "pending" else "*Unknown outcome*"
    elif card.kind == budget.KIND:
        lead = "💸 *Budget reached*" if card.status == "pending" else "*Budget*"
    else:
        lead = "✋ *Approval needed*" if card.status == "pending" else "*Approval*"
    return f"{lead} — {title}"


def _what(card: ApprovalCard) -> str:
    risk = _labels.risk(card.risk)
    if card.kind == budget.KIND:
        return budget.budget_text(card)
    if card.kind == "step_output":
        return f"The agent's draft becomes the step's output once approved (risk: {risk}):"
    if card.kind == "outcome_unknown":
        return (
            f"Baton stopped while calling {code(tool_name(card))} (risk: {risk}) and cannot tell "
            "whether the call took effect. *Retry the call* runs it again, which may do it twice; "
            "*Don't repeat* lets the agent continue without it. The call was:"
        )
    if is_email(card):
        return f"An email, sent with {code(tool_name(card))} (risk: {risk}):"
    return f"Tool {code(tool_name(card))} (risk: {risk}) with these arguments:"


def _quoted(text: str, noun: str, chunks_max: int = ACTION_SECTIONS) -> list[Block]:
    """``text`` as quoted sections with its line breaks, trimmed with a note."""
    chunks, trimmed = split(escape(text), SECTION_BUDGET, chunks_max, prefix=">")
    blocks = [section(chunk) for chunk in chunks]
    if trimmed:
        blocks.append(
            context(f"⚠️ The {noun} is {len(text):,} characters; only the start is shown.")
        )
    return blocks


def email_fields(arguments: dict[str, Any]) -> str:
    """``*To:* …`` lines for To, Cc, Bcc (when given) and Subject, escaped."""
    lines = []
    for name in emails.HEADERS:
        value = arguments.get(name)
        if name in ("cc", "bcc") and not emails.recipients(value):
            continue
        if name == "subject":
            shown = clip(str(value or ""), 500) or "_(no subject)_"
        else:
            shown = clip(", ".join(emails.recipients(value)), ADDRESS_CHARS) or "_(nobody)_"
        lines.append(f"*{name.capitalize()}:* {shown}")
    return "\n".join(lines)


def _email(arguments: dict[str, Any]) -> list[Block]:
    body = str(arguments.get("body") or "")
    blocks = [section(email_fields(arguments))]
    blocks += (
        _quoted(body, "body", EMAIL_SECTIONS) if body.strip() else [section("_The body is empty._")]
    )
    rest = {k: v for k, v in arguments.items() if k not in (*emails.HEADERS, "body")}
    if rest:
        chunks, _ = code_chunks(pretty_json(rest), SECTION_BUDGET, 1)
        blocks.append(section(f"*Other arguments*\n{chunks[0]}"))
    return blocks


def _body(card: ApprovalCard) -> list[Block]:
    """The action itself: an email, arguments as JSON, or the draft as a quote."""
    if card.kind == budget.KIND:
        return []  # the sentence above says it all
    if card.kind == "step_output":
        draft = str(card.action.get("draft") or "")
        if not draft.strip():
            return [section("_The draft is empty._")]
        return _quoted(draft, "draft")
    if is_email(card):
        return _email(dict(card.action.get("arguments") or {}))
    payload: Any = card.action.get("arguments") if "tool" in card.action else card.action
    if not payload:
        return [section("_No arguments._")]
    text = pretty_json(payload)
    chunks, trimmed = code_chunks(text, SECTION_BUDGET, ACTION_SECTIONS)
    blocks = [section(chunk) for chunk in chunks]
    if trimmed:
        blocks.append(
            context(f"⚠️ The arguments are {len(text):,} characters; only the start is shown here.")
        )
    return blocks


def summary_blocks(card: ApprovalCard) -> list[Block]:
    """What the approval is about, shown both before and after the decision."""
    return [
        section(f"{_heading(card)}\n{_what(card)}"),
        *_body(card),
        *checks_blocks(card),
        context(f"Run {code(card.run_id, 40)} · step {code(card.step_id, 64)}"),
    ]


def approval_message(card: ApprovalCard) -> tuple[str, list[Block]]:
    """The message asking for a decision, with Approve / Reject / Edit / Take over."""
    title = clip(one_line(card.step_title), FALLBACK_BUDGET)
    tool = f" ({clip(tool_name(card), 80)})" if tool_name(card) else ""
    lead = "Did this call happen?" if card.kind == "outcome_unknown" else "Approval needed"
    lead = "Budget reached" if card.kind == budget.KIND else lead
    return f"{lead}: {title}{tool}", [*summary_blocks(card), approval_buttons(card)]


def _decision(card: ApprovalCard) -> tuple[str, str]:
    """(fallback word, context line) for the card's status."""
    by = f" by {mention(card.decided_by)}" if card.decided_by else ""
    at = f" at {date(card.decided_at)}" if card.decided_at is not None else ""
    retry = card.kind == "outcome_unknown"
    if card.kind == budget.KIND and card.status in ("approved", "rejected"):
        word = "Budget raised" if card.status == "approved" else "Run stopped"
        return word, f"{'💸' if card.status == 'approved' else '❌'} {word}{by}{at}"
    if card.status == "approved":
        if card.overridden:
            n = len(flags(card))
            verb = "Sent anyway" if is_email(card) else "Approved anyway"
            return verb, f"⚠️ {verb}{by} despite {n} flag{'' if n == 1 else 's'}{at}"
        if card.edited:
            return "Approved with edits", f"✏️ Approved with edits{by}{at}"
        word = "Retry approved" if retry else "Approved"
        return word, f"✅ {word}{by}{at}"
    if card.status == "rejected" and (card.reason or "").startswith(SEND_BACK_LEAD):
        return "Sent back", f"↩️ Sent back to the writer{by}{at}"
    if card.status == "rejected":
        word = "Not repeated" if retry else "Rejected"
        return word, f"❌ {word}{by}{at}"
    if card.status == "taken_over":
        return "Taken over", f"🙋 Taken over{by}{at}"
    if card.status == "expired":
        return "Expired", f"⌛ Expired{at}"
    if card.status == "pending":
        return "Waiting", "⏳ Waiting for a decision"
    word = clip(card.status, 30)
    return word, f"{word}{by}{at}"


def approval_decided(card: ApprovalCard) -> tuple[str, list[Block]]:
    """The approval message after the decision: the same action, no buttons, who and when."""
    word, line = _decision(card)
    blocks = [*summary_blocks(card), context(line)]
    if card.reason:
        blocks.append(section(f"*Reason*\n{mrkdwn_quote(card.reason, REASON_CHARS)}"))
    return f"{word}: {clip(one_line(card.step_title), FALLBACK_BUDGET)}", blocks


def action_summary(card: ApprovalCard, chars: int = 200) -> str:
    """One line saying what an approval would do (for lists such as the Home tab)."""
    if card.kind == budget.KIND:
        return budget.budget_summary(card)
    if card.kind == "step_output":
        draft = clip(one_line(str(card.action.get("draft") or "")), chars)
        return f"Use this draft as the step's output: “{draft}”" if draft else "Use an empty draft"
    verb = "Retry" if card.kind == "outcome_unknown" else "Call"
    if is_email(card):
        arguments = card.action.get("arguments") or {}
        to = clip(", ".join(emails.recipients(arguments.get("to"))), chars) or "nobody"
        subject = clip(one_line(str(arguments.get("subject") or "")), chars)
        return f"{'Retry: send' if verb == 'Retry' else 'Send'} an email to {to}: “{subject}”"
    line = f"{verb} {code(tool_name(card))}"
    arguments = card.action.get("arguments")
    if arguments:
        line += f" with {code(json.dumps(arguments, ensure_ascii=False, default=str), chars)}"
    return line
