"""View models: the plain, frozen data a view needs, built by callers from runs and rows.

Views never read the database; whoever renders a card fills one of these first. Every string
here may come from a model, a tool or a person, so views escape all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StepLine:
    """One line of a run's checklist."""

    step_id: str
    title: str
    #: The agent's name, or ``"tool <name>"`` for a step that calls a tool directly.
    who: str
    #: pending | running | waiting_approval | waiting_human | outcome_unknown | done | failed
    #: | rejected | cancelled | skipped
    status: str
    #: Seconds the step took (or has taken so far); ``None`` when unknown or not started.
    duration_s: float | None = None


@dataclass(frozen=True)
class RunCard:
    """A run as shown on its live status card and in summaries."""

    run_id: str
    goal: str
    #: Slack user id (``"U123"``; ``"slack:U123"`` is accepted too), another actor, or ``None``.
    requester: str | None
    #: planning | running | waiting | done | failed | cancelled | rejected
    status: str
    steps: tuple[StepLine, ...]
    tokens: int = 0
    cost_usd: float = 0.0
    error: str | None = None
    #: goal (planned by the model) | playbook (written by a person)
    source: str = "goal"
    playbook: str | None = None
    #: Wall-clock seconds of the whole run, when known (shown in summaries).
    duration_s: float | None = None
    #: Calls a guard refused, one line each (``send_email to x@evil.example, not a recipient
    #: of this run``): a run that ended with refusals says so instead of a plain "Done".
    refusals: tuple[str, ...] = ()


@dataclass(frozen=True)
class ApprovalCard:
    """A human checkpoint: the exact action waiting for a decision, or the decision taken."""

    approval_id: str
    run_id: str
    step_id: str
    step_title: str
    #: tool_call | step_output | outcome_unknown | budget
    kind: str
    #: tool_call and outcome_unknown: ``{"tool": name, "arguments": {...}}``;
    #: step_output: ``{"step": title, "draft": text}``; budget: ``{"budget": "run" |
    #: "user_day" | "workspace_day", "who", "spent", "cap", "raise_to", "setting"}``.
    action: dict[str, Any]
    #: Binds a click to this exact action; travels in every button's value.
    digest: str
    #: read_only | writes | external (other values are shown as they are)
    risk: str
    #: pending | approved | rejected | expired | taken_over
    status: str = "pending"
    #: Slack user id, or another actor such as ``"cli:alice"``.
    decided_by: str | None = None
    #: UTC epoch seconds.
    decided_at: float | None = None
    reason: str | None = None
    #: Approved with edited arguments or an edited draft.
    edited: bool = False
    #: Sent anyway despite its flags (``action["flags"]``), by ``decided_by``.
    overridden: bool = False
    #: Statements the agent makes that a person should check: strings, or mappings with
    #: ``text`` (or ``claim``) and optional ``source``.
    claims: tuple[Any, ...] = ()


@dataclass(frozen=True)
class HandoffCard:
    """A step handed to a person, with the summary they were given and their answer."""

    handoff_id: str
    run_id: str
    step_id: str
    step_title: str
    question: str
    summary: str
    #: open | answered | returned | closed
    status: str = "open"
    #: Slack user id, or another actor such as ``"cli:alice"``.
    answered_by: str | None = None
    #: The result a person submitted, or their note when returning it to the agent.
    answer: str | None = None
    #: UTC epoch seconds.
    answered_at: float | None = None
