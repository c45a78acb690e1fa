"""Handoff messages: a step handed to a person, and what became of it."""

from __future__ import annotations

from bot.views._blocks import FALLBACK_BUDGET, Block, actions, button, context, section
from bot.views.cards import HandoffCard
from bot.views.text import clip, code, date, mention, mrkdwn_quote, one_line

SUBMIT, RETURN = "baton_submit_result", "baton_return"
TITLE_CHARS = 200
QUESTION_CHARS = 2_000
SUMMARY_CHARS = 2_800
ANSWER_CHARS = 2_800


def _heading(card: HandoffCard, lead: str) -> list[Block]:
    title = clip(one_line(card.step_title), TITLE_CHARS)
    question = mrkdwn_quote(card.question, QUESTION_CHARS) if card.question.strip() else ">—"
    return [section(f"{lead} — {title}\n*Question*\n{question}")]


def _summary(card: HandoffCard) -> list[Block]:
    if not card.summary.strip():
        return []
    return [section(f"*What happened so far*\n{mrkdwn_quote(card.summary, SUMMARY_CHARS)}")]


def _where(card: HandoffCard) -> Block:
    return context(f"Run {code(card.run_id, 40)} · step {code(card.step_id, 64)}")


def handoff_message(card: HandoffCard) -> tuple[str, list[Block]]:
    """The message asking a person to do a step, with Submit result / Return to agent."""
    buttons = actions(
        f"handoff:{card.handoff_id}",
        button("Submit result", SUBMIT, card.handoff_id, "primary"),
        button("Return to agent", RETURN, card.handoff_id),
    )
    blocks = [*_heading(card, "🙋 *A person is needed*"), *_summary(card), _where(card), buttons]
    return f"A person is needed: {clip(one_line(card.step_title), FALLBACK_BUDGET)}", blocks


def handoff_closed(card: HandoffCard) -> tuple[str, list[Block]]:
    """The handoff message once answered or returned: who, when and what they said."""
    by = f" by {mention(card.answered_by)}" if card.answered_by else ""
    at = f" at {date(card.answered_at)}" if card.answered_at is not None else ""
    if card.status == "answered":
        word, line, label = "Answered", f"✅ Answered{by}{at}", "*Result*"
    elif card.status == "returned":
        word, line, label = "Returned", f"↩️ Returned to the agent{by}{at}", "*Note*"
    else:
        word = clip(card.status.capitalize(), 30)
        line, label = f"☑️ {word}{by}{at}", "*Answer*"
    blocks = [*_heading(card, "🙋 *Handed to a person*"), *_summary(card), _where(card)]
    blocks.append(context(line))
    if card.answer and card.answer.strip():
        blocks.append(section(f"{label}\n{mrkdwn_quote(card.answer, ANSWER_CHARS)}"))
    return f"{word}: {clip(one_line(card.step_title), FALLBACK_BUDGET)}", blocks
