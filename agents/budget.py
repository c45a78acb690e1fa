"""Per-run caps on model calls, tokens and money, checked before every model call.

Model calls and tokens are runaway guards: reaching one fails the run. Money is a budget:
reaching it pauses the run and asks a person (:mod:`agents.spending`, checked before each
model and tool call of a step; planning, one call and at most one repair, is not checked).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from agents.errors import LimitExceeded
from agents.settings import Limits


@dataclass
class RunBudget:
    """What a run has used so far, against its limits. One per run, held by its driver."""

    limits: Limits
    model_calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    #: Money caps people raised for this run (budget name → cap in dollars), read from the
    #: run's approved ``budget`` approvals on first use (None: not read yet).
    raised: dict[str, float] | None = None
    #: The Slack workspace of the run (read with ``raised``), for the per-workspace budget.
    team_id: str | None = None
    #: Day totals read from storage: budget name → (total, this run's cost then, monotonic
    #: time read, UTC day start), so a hot loop does not query on every call.
    day_totals: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    #: Serialises asking for more money, so concurrent calls of one step ask once.
    asking: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False, compare=False)

    def check(self) -> None:
        """Raise :class:`LimitExceeded` if another model call would break the model-call or
        token cap (money is checked by :mod:`agents.spending`, which pauses instead)."""
        lim = self.limits
        if self.model_calls >= lim.max_model_calls:
            raise LimitExceeded(
                f"The run reached its cap of {lim.max_model_calls} model calls "
                "(BATON_MAX_MODEL_CALLS) and was stopped."
            )
        if self.tokens >= lim.max_tokens:
            raise LimitExceeded(
                f"The run used {self.tokens} tokens, reaching its cap of {lim.max_tokens} "
                "(BATON_MAX_TOKENS), and was stopped."
            )

    def add(self, *, tokens: int, cost_usd: float) -> None:
        """Count one model call."""
        self.model_calls += 1
        self.tokens += tokens
        self.cost_usd += cost_usd


def dollars(amount: float) -> str:
    """Dollars without rounding small amounts to zero or writing them as 1e-05."""
    text = f"{amount:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "0") or amount == 0 else f"{amount:.2e}"
