"""A ``budget`` approval in words: which budget was reached, what was spent, the cap, and what
approving does (the run goes on with that cap raised, for this run only)."""

from __future__ import annotations

from bot.views import _labels
from bot.views.cards import ApprovalCard
from bot.views.text import code, mention

KIND = "budget"


def _amount(card: ApprovalCard, key: str) -> str:
    try:
        return _labels.cost(float(card.action.get(key) or 0))
    except (TypeError, ValueError):
        return "?"


def _lead(card: ApprovalCard) -> str:
    budget = card.action.get("budget")
    spent, cap = _amount(card, "spent"), _amount(card, "cap")
    setting = code(str(card.action.get("setting") or ""), 60)
    if budget == "user_day":
        who = mention(str(card.action.get("who") or ""), "The requester")
        lead = f"{who} has spent {spent} today (UTC), reaching the daily cap per person"
    elif budget == "workspace_day":
        lead = f"This workspace has spent {spent} today (UTC), reaching its daily cap"
    else:
        lead = f"This run has cost {spent}, reaching its cap"
    return f"{lead} of {cap} ({setting})"


def budget_text(card: ApprovalCard) -> str:
    """What happened and what each button does."""
    return (
        f"{_lead(card)}. The run is paused. *Raise the budget* lets it go on until "
        f"{_amount(card, 'raise_to')}; *Stop the run* fails it."
    )


def budget_summary(card: ApprovalCard) -> str:
    """One line for lists such as the Home tab."""
    return f"Raise the budget to {_amount(card, 'raise_to')}: {_lead(card)}"
