"""What a step, or one tool call, came to: the typed outcomes the engine branches on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Done:
    """The step produced its output."""

    output: str
    #: Already committed as done (with the model turn that produced it), at ``finished_at``.
    finished_at: float | None = None


@dataclass(frozen=True)
class Parked:
    """The step waits for a person (approval, handoff, or an unknown outcome)."""

    waiting_for: str


@dataclass(frozen=True)
class Failed:
    """The step cannot finish; the run fails with this reason."""

    error: str


@dataclass(frozen=True)
class Rejected:
    """A person rejected the step's action; the run ends rejected."""

    reason: str


Outcome = Done | Parked | Failed | Rejected


@dataclass(frozen=True)
class LedgerResult:
    """A tool call's result not written to the ledger yet: the driver writes it with the
    step's completion, in one transaction (the intent, if any, was committed before the
    call)."""

    key: str
    #: The columns that finish the ledger row (status, result, finished_at).
    values: dict[str, Any]
    #: The whole row to insert (a read-only call has no intent row), or None to update it.
    row: dict[str, Any] | None = None
    #: For the ToolCalled event, published once the result is committed.
    tool: str = ""
    arguments: dict[str, Any] | None = None


@dataclass(frozen=True)
class CallResult:
    """A tool call's result as the model will see it."""

    text: str
    ok: bool = True
    #: A person chose not to repeat a call whose outcome was unknown.
    skipped: bool = False
    #: Set when the caller asked to commit the ledger's result itself (plan tool steps).
    pending: LedgerResult | None = None


@dataclass(frozen=True)
class Refusal:
    """A person said no (or the checkpoint expired or was handed back)."""

    reason: str


@dataclass(frozen=True)
class Switch:
    """The step passes to another agent with a fresh transcript."""

    agent: str
    transcript: list[dict[str, Any]]
