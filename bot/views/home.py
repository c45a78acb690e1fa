"""The App Home tab: approvals waiting for the viewer, then their recent runs.

Each waiting approval shows what the message shows, in three blocks: the action (an email
as To, Subject and its body as text), its flags and each claim with its quote and source,
and the same buttons (a flagged one has no Approve).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.views import _labels
from bot.views._blocks import SECTION_BUDGET, Block, context, divider, header, section, sections
from bot.views.approval import action_summary, approval_buttons, email_fields, is_email
from bot.views.cards import ApprovalCard, RunCard
from bot.views.checks import claims_lines, fit, flag_lines
from bot.views.text import clip, code, escape, one_line, split

#: Each pending approval takes up to three blocks; with the runs below, the tab stays under 100.
PENDING_SHOWN = 20
RUNS_SHOWN = 20
TITLE_CHARS = 150
GOAL_CHARS = 150
#: Characters of an email's body shown on the Home tab (the message has all of it).
BODY_CHARS = 1_200
FLAGS_SHOWN = 5
CLAIMS_SHOWN = 5


def _action(card: ApprovalCard) -> str:
    if not is_email(card):
        return action_summary(card)
    arguments = dict(card.action.get("arguments") or {})
    body = str(arguments.get("body") or "")
    chunks, trimmed = split(escape(body), BODY_CHARS, 1, prefix=">")
    quoted = chunks[0] + ("\n>…" if trimmed else "")
    return f"{email_fields(arguments)}\n{quoted}"


def _pending(card: ApprovalCard) -> list[Block]:
    title = clip(one_line(card.step_title), TITLE_CHARS)
    emoji = "❓" if card.kind == "outcome_unknown" else "✋"
    note = " · Baton cannot tell whether this call happened" if emoji == "❓" else ""
    text = (
        f"{emoji} *{title}* · risk: {_labels.risk(card.risk)}\n"
        f"{_action(card)}\n"
        f"Run {code(card.run_id, 40)}{note}"
    )
    blocks = [section("\n".join(fit(text.split("\n"), SECTION_BUDGET)))]
    checks = [*flag_lines(card, FLAGS_SHOWN), *claims_lines(card, CLAIMS_SHOWN)]
    if checks:
        blocks.append(section("\n".join(fit(checks, SECTION_BUDGET))))
    return [*blocks, approval_buttons(card)]


def _run_line(card: RunCard) -> str:
    emoji, label = _labels.run_status(card.status)
    goal = clip(one_line(card.goal), GOAL_CHARS)
    return f"{emoji} *{label}* — {goal}\n      {code(card.run_id, 40)} · {_labels.totals(card)}"


def home_view(pending: Sequence[ApprovalCard], runs: Sequence[RunCard]) -> dict[str, Any]:
    """The Home tab (``views.publish``) for one person."""
    blocks: list[Block] = [
        context("Start a run with `/orchestrate &lt;goal&gt;` · `/orchestrate help` for more"),
        header("Waiting for you"),
    ]
    if not pending:
        blocks.append(section("_Nothing is waiting for you._"))
    for card in pending[:PENDING_SHOWN]:
        blocks += _pending(card)
    if len(pending) > PENDING_SHOWN:
        more = len(pending) - PENDING_SHOWN
        blocks.append(context(f"…and {more} more waiting; decide these first to see them."))
    blocks += [divider(), header("Your recent runs")]
    if not runs:
        blocks.append(section("_No runs yet._"))
    blocks += sections(_run_line(card) for card in runs[:RUNS_SHOWN])
    if len(runs) > RUNS_SHOWN:
        blocks.append(context(f"…and {len(runs) - RUNS_SHOWN} more runs"))
    return {"type": "home", "blocks": blocks}
