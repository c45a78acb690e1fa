"""Step outputs and the end-of-run summary, trimmed to one section with a "Show full" button."""

from __future__ import annotations

from bot.views import _labels
from bot.views._blocks import (
    FALLBACK_BUDGET,
    SECTION_BUDGET,
    Block,
    actions,
    button,
    context,
    section,
)
from bot.views.cards import RunCard
from bot.views.status import ENDED as ENDED_STATUSES
from bot.views.status import refusal_lines, refused_calls, run_context, run_label
from bot.views.text import clip, escape, mrkdwn_quote, one_line, split, trim

SHOW_OUTPUT = "baton_show_output"
#: The pseudo step id of a run's final output, for the "Show full output" button.
RUN_OUTPUT = "_run"
TITLE_CHARS = 200
GOAL_CHARS = 500
ERROR_CHARS = 1_500
NOTICE_CHARS = 1_000
#: How a run ended, in words; other statuses use their label.
ENDED = {"done": "complete", "failed": "failed", "cancelled": "cancelled", "rejected": "rejected"}


def output_blocks(run_id: str, step_id: str, output: str) -> list[Block]:
    """The output in one section; if it does not fit, a note and a "Show full output" button."""
    if not output.strip():
        return [section("_No output._")]
    chunks, trimmed = split(escape(output), SECTION_BUDGET - 2, 1)
    if not trimmed:
        return [section(chunks[0])]
    return [
        section(f"{chunks[0]}\n…"),
        context(f"Showing the start of {len(output):,} characters."),
        actions(
            f"output:{run_id}|{step_id}",
            button("Show full output", SHOW_OUTPUT, f"{run_id}|{step_id}"),
        ),
    ]


def step_result(run_id: str, step_id: str, title: str, output: str) -> tuple[str, list[Block]]:
    """A finished step's output, posted in the run's thread."""
    heading = f"✅ *{clip(one_line(title), TITLE_CHARS)}*"
    blocks = [section(heading), *output_blocks(run_id, step_id, output)]
    return f"{clip(one_line(title), 100)}: {clip(one_line(output), FALLBACK_BUDGET)}", blocks


def run_summary(card: RunCard, output: str | None) -> tuple[str, list[Block]]:
    """The end of a run: its status, totals, error and final output."""
    emoji, _ = run_label(card)
    ended = f"Run {ENDED.get(card.status, _labels.run_status(card.status)[1].lower())}"
    if card.refusals and card.status in ENDED_STATUSES:
        ended += f" with {refused_calls(len(card.refusals))}"
    goal = clip(one_line(card.goal), GOAL_CHARS)
    blocks = [section(f"{emoji} *{ended}* — {goal}"), context(run_context(card))]
    blocks += refusal_lines(card)
    if card.error:
        blocks.append(section(f"*Error*\n{mrkdwn_quote(card.error, ERROR_CHARS)}"))
    if output is not None:
        blocks += output_blocks(card.run_id, RUN_OUTPUT, output)
    blocks.append(context(_labels.totals(card)))
    return f"{ended}: {clip(one_line(card.goal), FALLBACK_BUDGET)}", blocks


def refusal_message(text: str) -> tuple[str, list[Block]]:
    """A thread reply for a call a guard refused: ``⚠️ refused: send_email to x@…, why``."""
    line = f"⚠️ refused: {clip(one_line(text), NOTICE_CHARS)}"
    return trim(line, FALLBACK_BUDGET), [
        section(f"{line}\n_Nothing was done; the agent was told why._")
    ]


def flag_message(text: str) -> tuple[str, list[Block]]:
    """A thread reply for an outbound call that went to a person flagged."""
    line = f"⚠️ flagged: {clip(one_line(text), NOTICE_CHARS)}"
    return trim(line, FALLBACK_BUDGET), [
        section(f"{line}\n_It waits for a person; the approval lists every problem._")
    ]
