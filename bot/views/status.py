"""The live status card of a run: goal, requester, checklist of steps, usage, error."""

from __future__ import annotations

from bot.views import _labels
from bot.views._blocks import FALLBACK_BUDGET, Block, context, section, sections
from bot.views.cards import RunCard, StepLine
from bot.views.text import clip, code, mention, mrkdwn_quote, one_line

GOAL_CHARS = 1_000
ERROR_CHARS = 1_500
#: The whole checklist's share of the message; Slack refuses messages near 13k characters
#: of block text (slack.md §7), so long plans shorten titles and then collapse the tail.
CHECKLIST_BUDGET = 8_000
TITLE_CHARS = (40, 120)
WHO_CHARS = 40
#: Characters of a step line besides its title, at most: emoji, who, words, duration.
LINE_OVERHEAD = 100
REFUSALS_SHOWN = 5
REFUSAL_CHARS = 300
ENDED = ("done", "failed", "cancelled", "rejected")


def refused_calls(n: int) -> str:
    """``1 refused call``, ``2 refused calls``."""
    return f"{n} refused call" + ("" if n == 1 else "s")


def run_label(card: RunCard) -> tuple[str, str]:
    """Emoji and label of a run; one that ended with refused calls says so, never a plain
    "Done" (``⚠️ Done with 2 refused calls``)."""
    emoji, label = _labels.run_status(card.status)
    if card.refusals and card.status in ENDED:
        label = f"{label} with {refused_calls(len(card.refusals))}"
        emoji = "⚠️" if card.status == "done" else emoji
    return emoji, label


def refusal_lines(card: RunCard) -> list[Block]:
    """The calls a guard refused, one line each (the first few), as a section."""
    if not card.refusals:
        return []
    lines = [f"• {clip(one_line(r), REFUSAL_CHARS)}" for r in card.refusals[:REFUSALS_SHOWN]]
    if len(card.refusals) > REFUSALS_SHOWN:
        lines.append(f"…and {len(card.refusals) - REFUSALS_SHOWN} more (`baton show` lists all)")
    return [section("*⚠️ Refused by Baton's guards — nothing was done*\n" + "\n".join(lines))]


def run_context(card: RunCard) -> str:
    """``Asked by <@U…> · playbook `x` · run `r_…```."""
    parts = [f"Asked by {mention(card.requester)}"] if card.requester else []
    if card.source == "playbook" or card.playbook:
        parts.append(f"playbook {code(card.playbook or '?', 60)}")
    parts.append(f"run {code(card.run_id, 40)}")
    return " · ".join(parts)


def step_line(step: StepLine, title_chars: int = TITLE_CHARS[1]) -> str:
    """``✅ Research the account · researcher · 4.2s``."""
    emoji, words = _labels.step_status(step.status)
    parts = [f"{emoji} {clip(one_line(step.title), title_chars)}"]
    if step.who:
        parts.append(clip(one_line(step.who), WHO_CHARS))
    if words:
        parts.append(f"_{words}_")
    if step.duration_s is not None and step.status != "pending":
        parts.append(_labels.duration(step.duration_s))
    return " · ".join(parts)


def checklist(steps: tuple[StepLine, ...], budget: int = CHECKLIST_BUDGET) -> list[str]:
    """One line per step, as many as fit in ``budget`` characters, then ``…and N more``."""
    if not steps:
        return []
    low, high = TITLE_CHARS
    title_chars = max(low, min(high, budget // len(steps) - LINE_OVERHEAD))
    lines: list[str] = []
    used = 0
    for index, step in enumerate(steps):
        line = step_line(step, title_chars)
        if used + len(line) + 1 > budget - 40:
            rest = steps[index:]
            done = sum(1 for s in rest if s.status == "done")
            lines.append(f"…and {len(rest)} more steps ({done} done)")
            break
        lines.append(line)
        used += len(line) + 1
    return lines


def status_card(card: RunCard) -> tuple[str, list[Block]]:
    """The run's status message, edited in place as the run progresses."""
    emoji, label = run_label(card)
    goal = clip(one_line(card.goal), GOAL_CHARS)
    blocks: list[Block] = [section(f"{emoji} *{label}* — {goal}"), context(run_context(card))]
    lines = checklist(card.steps)
    if lines:
        blocks += sections(lines)
    elif card.status == "planning":
        blocks.append(section("_Planning the steps…_"))
    blocks += refusal_lines(card)
    if card.error and card.status in ("failed", "cancelled", "rejected"):
        blocks.append(section(f"*Error*\n{mrkdwn_quote(card.error, ERROR_CHARS)}"))
    blocks.append(context(_labels.totals(card)))
    text = f"{label}: {clip(one_line(card.goal), FALLBACK_BUDGET)}"
    return text, blocks
