"""How statuses, risks and numbers read on cards: emoji, words and units."""

from __future__ import annotations

from bot.views.cards import RunCard
from bot.views.text import clip

#: Step status → (emoji, words shown after the step; empty when the emoji says enough).
STEP_STATUS: dict[str, tuple[str, str]] = {
    "pending": ("⚪", ""),
    "running": ("🔄", "running"),
    "waiting_approval": ("✋", "waiting for approval"),
    "waiting_human": ("🙋", "waiting for a person"),
    "outcome_unknown": ("❓", "outcome unknown, waiting for a decision"),
    "done": ("✅", ""),
    "failed": ("❌", "failed"),
    "rejected": ("🚫", "rejected"),
    "cancelled": ("⏹️", "cancelled"),
    "skipped": ("⏭️", "skipped"),
}

#: Run status → (emoji, label).
RUN_STATUS: dict[str, tuple[str, str]] = {
    "planning": ("📝", "Planning"),
    "running": ("🔄", "Running"),
    "waiting": ("✋", "Waiting for a person"),
    "done": ("✅", "Done"),
    "failed": ("❌", "Failed"),
    "cancelled": ("⏹️", "Cancelled"),
    "rejected": ("🚫", "Rejected"),
}

#: Tool risk → label.
RISK: dict[str, str] = {
    "read_only": "🟢 read-only",
    "writes": "🟠 writes data",
    "external": "🔴 acts outside (external)",
}


def step_status(status: str) -> tuple[str, str]:
    """Emoji and words for a step status (unknown statuses are shown as they are)."""
    return STEP_STATUS.get(status, ("▫️", clip(status, 30)))


def run_status(status: str) -> tuple[str, str]:
    """Emoji and label for a run status (unknown statuses are shown as they are)."""
    return RUN_STATUS.get(status, ("▫️", clip(status, 30)))


def risk(value: str) -> str:
    """A tool risk in words."""
    return RISK.get(value, clip(value, 30))


def duration(seconds: float) -> str:
    """``4.2s``, ``2m 05s`` or ``1h 02m``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def cost(usd: float) -> str:
    """``$0.00``, ``$0.0042`` (under a cent) or ``$1.23``."""
    if usd == 0:
        return "$0.00"
    return f"${usd:.4f}" if abs(usd) < 0.01 else f"${usd:,.2f}"


def progress(card: RunCard) -> str:
    """``3/5 steps done``."""
    done = sum(1 for step in card.steps if step.status == "done")
    return f"{done}/{len(card.steps)} steps done"


def totals(card: RunCard) -> str:
    """Steps done, tokens, cost and (when known) duration, on one line."""
    parts = [progress(card)] if card.steps else []
    parts += [f"{card.tokens:,} tokens", cost(card.cost_usd)]
    if card.duration_s is not None:
        parts.append(duration(card.duration_s))
    return " · ".join(parts)
