"""What a run is while it is being driven, and what the engine needs around it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.budget import RunBudget
from agents.events import EventBus
from agents.model import ModelClient, ModelReply
from agents.outcomes import Done, LedgerResult
from agents.registry import Registry
from agents.settings import Limits, Settings
from storage.database import Database, Session
from storage.models import Run
from storage.repositories import runs

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


@dataclass(slots=True)
class StepState:
    """A step as its driver holds it in memory: the columns of a ``steps`` row.

    A plain object on purpose: the driver reads and sets these fields many times per step, and
    an ORM row object (SQLModel/SQLAlchemy instrumentation, validation on load) cost more than
    the step's own database work. Only :mod:`storage` rows are table models.
    """

    run_id: str
    step_id: str
    position: int
    title: str
    status: str
    agent: str | None = None
    tool: str | None = None
    instructions: str | None = None
    arguments: dict[str, Any] | None = None
    depends_on: list[str] | None = None
    needs_approval: bool = False
    context: dict[str, Any] | None = None
    transcript: list[dict[str, Any]] | None = None
    output: str | None = None
    error: str | None = None
    attempts: int = 0
    model_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    not_before: float | None = None
    schedule: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> StepState:
        """From a ``steps`` row (a mapping of its columns, or the values just inserted)."""
        return cls(**{k: v for k, v in row.items() if k in _STEP_FIELDS})


_STEP_FIELDS = frozenset(StepState.__dataclass_fields__)


@dataclass
class RunState:
    """A run as its driver holds it in memory (mirrors what is committed)."""

    run_id: str
    goal: str
    requester: str | None
    limits: Limits
    budget: RunBudget
    steps: dict[str, StepState] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    #: A playbook's input values (for ``{inputs.NAME}`` in instructions and arguments).
    inputs: dict[str, str] = field(default_factory=dict)
    #: When the run was created (epoch seconds), for its duration; None: read at the end.
    created_at: float | None = None
    #: Outputs of the steps that are done, kept as steps finish (see :meth:`outputs`).
    _outputs: dict[str, str] | None = field(default=None, repr=False)

    def outputs(self) -> dict[str, str]:
        """Outputs of finished steps by id (read-only: kept up to date by :meth:`done`)."""
        if self._outputs is None:
            self._outputs = {k: s.output or "" for k, s in self.steps.items() if s.status == "done"}
        return self._outputs

    def done(self, step: StepState, output: str, finished_at: float) -> None:
        """Mark ``step`` done in memory (after its completion is committed)."""
        step.status, step.output, step.finished_at = "done", output, finished_at
        if self._outputs is not None:
            self._outputs[step.step_id] = output

    def forget_outputs(self) -> None:
        """Statuses changed outside :meth:`done` (read back from storage): rebuild lazily."""
        self._outputs = None


@dataclass(frozen=True)
class FinalTurn(Done):
    """A step's final model turn, not committed yet: the driver commits it with the step's
    completion (and the start of the steps that makes ready) in one transaction."""

    reply: ModelReply | None = None
    transcript: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ToolDone(Done):
    """A tool step's call succeeded; its ledger result is not committed yet: the driver
    commits it with the step's completion in one transaction, then says so (events)."""

    ledger: LedgerResult | None = None


@dataclass(frozen=True)
class RunSummary:
    """Where a run stands after its driver stopped."""

    run_id: str
    status: str
    error: str | None = None


def load_state(run: Run, rows: Sequence[Mapping[Any, Any]]) -> RunState:
    """The in-memory state of a run read back from storage (``rows``: its ``steps`` rows)."""
    limits = Limits(**(run.limits or {}))
    budget = RunBudget(
        limits,
        model_calls=run.model_calls,
        tokens=run.tokens_in + run.tokens_out,
        cost_usd=run.cost_usd,
    )
    inputs = {str(k): str(v) for k, v in ((run.plan or {}).get("inputs") or {}).items()}
    steps = {str(r["step_id"]): StepState.from_row(r) for r in rows}
    return RunState(
        run.id,
        run.goal,
        run.requester,
        limits,
        budget,
        steps,
        inputs=inputs,
        created_at=run.created_at,
    )


def sinks(state: RunState) -> list[str]:
    needed = {d for s in state.steps.values() for d in s.depends_on or []}
    return [k for k in state.steps if k not in needed]


async def count_model_call(session: Session, *, run_id: str, reply: ModelReply) -> None:
    """Add one model call (``reply``'s tokens and cost) to the run's committed totals."""
    await runs.add_usage(
        session,
        run_id=run_id,
        model_calls=1,
        tokens_in=reply.tokens_in,
        tokens_out=reply.tokens_out,
        cost_usd=reply.cost_usd,
    )
