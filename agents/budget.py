"""Per-run caps on model calls, tokens and money, checked before every model call."""

from __future__ import annotations

from dataclasses import dataclass

from agents.errors import LimitExceeded
from agents.settings import Limits


@dataclass
class RunBudget:
    """What a run has used so far, against its limits. One per run, held by its driver."""

    limits: Limits
    model_calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0

    def check(self) -> None:
        """Raise :class:`LimitExceeded` if another model call would break a cap."""
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
        if self.cost_usd >= lim.max_cost_usd:
            raise LimitExceeded(
                f"The run cost ${dollars(self.cost_usd)}, reaching its cap of "
                f"${dollars(lim.max_cost_usd)} "
                "(BATON_MAX_COST_USD), and was stopped."
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
