"""The App Home tab: approvals waiting for the viewer, then their recent runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.views import _labels
from bot.views._blocks import Block, context, divider, header, section, sections
from bot.views.approval import action_summary, approval_buttons
from bot.views.cards import ApprovalCard, RunCard
from bot.views.text import clip, code, one_line

#: Each pending approval takes two blocks; with the runs below, the tab stays under 100.
PENDING_SHOWN = 20
RUNS_SHOWN = 20
TITLE_CHARS = 150
GOAL_CHARS = 150


def _pending(card: ApprovalCard) -> list[Block]:
    title = clip(one_line(card.step_title), TITLE_CHARS)
    emoji = "❓" if card.kind == "outcome_unknown" else "✋"
    note = " · Baton cannot tell whether this call happened" if emoji == "❓" else ""
    text = (
        f"{emoji} *{title}* · risk: {_labels.risk(card.risk)}\n"
        f"{action_summary(card)}\n"
        f"Run {code(card.run_id, 40)}{note}"
    )
    return [section(text), approval_buttons(card)]


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
