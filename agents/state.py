"""What a run is while it is being driven, and what the engine needs around it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agents.budget import RunBudget
from agents.events import EventBus
from agents.model import ModelClient
from agents.registry import Registry
from agents.settings import Limits, Settings
from storage.database import Database
from storage.models import Run, Step

log = logging.getLogger(__name__)

TERMINAL = ("done", "failed", "cancelled", "rejected")
WAITING_STEP = ("waiting_approval", "waiting_human", "outcome_unknown")
#: A follow-up step waiting for its time (woken by due work, not by a person).
SCHEDULED_STEP = "scheduled"
FINISHED_STEP = ("done", "skipped")
POLL_S = 1.0
#: Handoff states that carry news for the step (a result, or the step given back).
HANDED_BACK = ("answered", "returned")


@dataclass
class Services:
    """What every part of a run needs from the outside."""

    db: Database
    registry: Registry
    settings: Settings
    model: ModelClient
    bus: EventBus
    clock: Callable[[], float] = time.time
    #: Wakes this process's timer for something newly due (set by the engine).
    poke: Callable[[float], None] = lambda _at: None


@dataclass
class RunState:
    """A run as its driver holds it in memory (mirrors what is committed)."""

    run_id: str
    goal: str
    requester: str | None
    limits: Limits
    budget: RunBudget
    steps: dict[str, Step] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    #: A playbook's input values (for ``{inputs.NAME}`` in instructions and arguments).
    inputs: dict[str, str] = field(default_factory=dict)

    def outputs(self) -> dict[str, str]:
        """Outputs of finished steps by id."""
        return {k: s.output or "" for k, s in self.steps.items() if s.status == "done"}


@dataclass(frozen=True)
class RunSummary:
    """Where a run stands after its driver stopped."""

    run_id: str
    status: str
    error: str | None = None


def load_state(run: Run, rows: list[Step]) -> RunState:
    limits = Limits(**(run.limits or {}))
    budget = RunBudget(
        limits,
        model_calls=run.model_calls,
        tokens=run.tokens_in + run.tokens_out,
        cost_usd=run.cost_usd,
    )
    inputs = {str(k): str(v) for k, v in ((run.plan or {}).get("inputs") or {}).items()}
    steps = {s.step_id: s for s in rows}
    return RunState(run.id, run.goal, run.requester, limits, budget, steps, inputs=inputs)


def sinks(state: RunState) -> list[str]:
    needed = {d for s in state.steps.values() for d in s.depends_on or []}
    return [k for k in state.steps if k not in needed]
