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
class CallResult:
    """A tool call's result as the model will see it."""

    text: str
    ok: bool = True
    #: A person chose not to repeat a call whose outcome was unknown.
    skipped: bool = False


@dataclass(frozen=True)
class Refusal:
    """A person said no (or the checkpoint expired or was handed back)."""

    reason: str


@dataclass(frozen=True)
class Switch:
    """The step passes to another agent with a fresh transcript."""

    agent: str
    transcript: list[dict[str, Any]]
