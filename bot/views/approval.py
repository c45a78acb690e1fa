"""Approval messages: exactly what will happen, the buttons to decide, and the decision."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bot.views import _labels, budget
from bot.views._blocks import (
    FALLBACK_BUDGET,
    SECTION_BUDGET,
    Block,
    actions,
    button,
    context,
    section,
    sections,
)
from bot.views.cards import ApprovalCard
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
TITLE_CHARS = 200
#: Sections an action (arguments or draft) may fill before it is trimmed with a note.
ACTION_SECTIONS = 3
CLAIMS_SHOWN = 10
CLAIM_CHARS = 300
REASON_CHARS = 2_000


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
            button("Retry the call", APPROVE, value, "primary"),
            button("Don't repeat", REJECT, value, "danger"),
            button("Take over", TAKEOVER, value),
        ]
    else:
        elements = [
            button("Approve", APPROVE, value, "primary"),
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
    return f"Tool {code(tool_name(card))} (risk: {risk}) with these arguments:"


def _body(card: ApprovalCard) -> list[Block]:
    """The action itself: arguments as JSON, or the draft as a quote, trimmed with a note."""
    if card.kind == budget.KIND:
        return []  # the sentence above says it all
    if card.kind == "step_output":
        draft = str(card.action.get("draft") or "")
        if not draft.strip():
            return [section("_The draft is empty._")]
        chunks, trimmed = split(escape(draft), SECTION_BUDGET, ACTION_SECTIONS, prefix=">")
        size, noun = len(draft), "draft is"
    else:
        payload: Any = card.action.get("arguments") if "tool" in card.action else card.action
        if not payload:
            return [section("_No arguments._")]
        text = pretty_json(payload)
        chunks, trimmed = code_chunks(text, SECTION_BUDGET, ACTION_SECTIONS)
        size, noun = len(text), "arguments are"
    blocks = [section(chunk) for chunk in chunks]
    if trimmed:
        blocks.append(context(f"⚠️ The {noun} {size:,} characters; only the start is shown here."))
    return blocks


def _claim_text(claim: Any) -> str:
    if isinstance(claim, Mapping):
        text = str(claim.get("text") or claim.get("claim") or "")
        source = claim.get("source")
        if "supported" in claim:  # a grounding check's verdict
            mark = "✅" if claim.get("supported") else "⚠️"
            problem = claim.get("problem")
            why = f"source: {source}" if claim.get("supported") else (problem or "no source")
            return f"{mark} {text} ({why})"
        return f"{text} (source: {source})" if source else text
    return str(claim)


def _claims_heading(card: ApprovalCard) -> str:
    grounding = card.action.get("grounding")
    if not isinstance(grounding, Mapping):
        return "*The agent claims — check before approving*"
    unsupported = sum(
        1 for c in card.claims if isinstance(c, Mapping) and not c.get("supported", True)
    )
    if unsupported:
        return f"*⚠️ {unsupported} claim(s) not supported by the research — check before approving*"
    return "*Every claim was checked against the research*"


def _claims(card: ApprovalCard) -> list[Block]:
    grounding = card.action.get("grounding")
    error = grounding.get("error") if isinstance(grounding, Mapping) else None
    if not card.claims and not error:
        return []
    lines = [f"• {clip(one_line(_claim_text(c)), CLAIM_CHARS)}" for c in card.claims[:CLAIMS_SHOWN]]
    if len(card.claims) > CLAIMS_SHOWN:
        lines.append(f"…and {len(card.claims) - CLAIMS_SHOWN} more")
    if error:
        lines.append(f"⚠️ {clip(one_line(str(error)), CLAIM_CHARS)} — check every fact yourself")
    return sections([_claims_heading(card), *lines])


def summary_blocks(card: ApprovalCard) -> list[Block]:
    """What the approval is about, shown both before and after the decision."""
    return [
        section(f"{_heading(card)}\n{_what(card)}"),
        *_body(card),
        *_claims(card),
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
        if card.edited:
            return "Approved with edits", f"✏️ Approved with edits{by}{at}"
        word = "Retry approved" if retry else "Approved"
        return word, f"✅ {word}{by}{at}"
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
    line = f"{verb} {code(tool_name(card))}"
    arguments = card.action.get("arguments")
    if arguments:
        line += f" with {code(json.dumps(arguments, ensure_ascii=False, default=str), chars)}"
    return line
