"""Typed events the engine emits after each committed state change. Subscribers render them.

Every event carries a ``kind`` literal so a subscriber can ``match`` on it and so events can be
serialised as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepInfo:
    """A step as shown to people."""

    step_id: str
    title: str
    agent: str | None
    tool: str | None
    depends_on: tuple[str, ...]
    needs_approval: bool
    status: str = "pending"


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    goal: str
    source: str
    requester: str | None
    origin: dict[str, Any] | None
    kind: Literal["run_started"] = "run_started"


@dataclass(frozen=True)
class PlanReady:
    run_id: str
    steps: tuple[StepInfo, ...]
    kind: Literal["plan_ready"] = "plan_ready"


@dataclass(frozen=True)
class StepStarted:
    run_id: str
    step_id: str
    title: str
    agent: str | None
    tool: str | None
    resumed: bool = False
    kind: Literal["step_started"] = "step_started"


@dataclass(frozen=True)
class StepRetrying:
    run_id: str
    step_id: str
    attempt: int
    delay_s: float
    reason: str
    kind: Literal["step_retrying"] = "step_retrying"


@dataclass(frozen=True)
class ToolCalled:
    run_id: str
    step_id: str
    tool: str
    arguments: dict[str, Any]
    ok: bool
    summary: str
    kind: Literal["tool_called"] = "tool_called"


@dataclass(frozen=True)
class StepFinished:
    run_id: str
    step_id: str
    title: str
    output: str
    duration_s: float
    tokens: int
    cost_usd: float
    kind: Literal["step_finished"] = "step_finished"


@dataclass(frozen=True)
class StepFailed:
    run_id: str
    step_id: str
    title: str
    error: str
    kind: Literal["step_failed"] = "step_failed"


@dataclass(frozen=True)
class ApprovalRequested:
    run_id: str
    approval_id: str
    step_id: str
    approval_kind: str
    action: dict[str, Any]
    digest: str
    risk: str
    kind: Literal["approval_requested"] = "approval_requested"


@dataclass(frozen=True)
class ApprovalDecided:
    run_id: str
    approval_id: str
    step_id: str
    decision: str
    actor: str
    reason: str | None
    edited: bool
    kind: Literal["approval_decided"] = "approval_decided"
    #: Sent anyway despite its flags ("Send anyway", ``baton approve --send-anyway``).
    override: bool = False


@dataclass(frozen=True)
class HandoffRequested:
    run_id: str
    handoff_id: str
    step_id: str
    to: str
    question: str
    summary: str
    kind: Literal["handoff_requested"] = "handoff_requested"


@dataclass(frozen=True)
class HandoffAnswered:
    run_id: str
    handoff_id: str
    step_id: str
    actor: str
    kind: Literal["handoff_answered"] = "handoff_answered"


@dataclass(frozen=True)
class RunWaiting:
    run_id: str
    approvals: tuple[str, ...]
    handoffs: tuple[str, ...]
    kind: Literal["run_waiting"] = "run_waiting"


@dataclass(frozen=True)
class RunFinished:
    run_id: str
    status: str
    error: str | None
    output: str | None
    model_calls: int
    tokens: int
    cost_usd: float
    duration_s: float
    #: Calls a guard refused during the run (audit ``guardrail.refused``): the end says so.
    refused: int = 0
    kind: Literal["run_finished"] = "run_finished"


@dataclass(frozen=True)
class StepScheduled:
    run_id: str
    step_id: str
    title: str
    at: float
    kind: Literal["step_scheduled"] = "step_scheduled"


@dataclass(frozen=True)
class StepSkipped:
    run_id: str
    step_id: str
    title: str
    reason: str
    kind: Literal["step_skipped"] = "step_skipped"


@dataclass(frozen=True)
class ReminderDue:
    """A pending approval needs a nudge (``level`` remind) or a backup (escalate)."""

    run_id: str
    approval_id: str
    level: str
    waited_s: float
    kind: Literal["reminder_due"] = "reminder_due"


@dataclass(frozen=True)
class DueMissed:
    """Something fell due while Baton was down, beyond the grace period: not run late."""

    run_id: str
    item_kind: str
    ref_id: str
    due_at: float
    requester: str | None
    detail: str
    kind: Literal["due_missed"] = "due_missed"


@dataclass(frozen=True)
class CallRefused:
    """A guard in code refused a tool call: nothing was done (the thread and terminal show it).

    ``guard`` names what refused it (``recipients``, ``egress``, ``secrets``, ``approval``,
    ``grounding``...); ``target`` is what the call was aimed at (an address, a host), if any.
    """

    run_id: str
    step_id: str
    tool: str
    guard: str
    reason: str
    target: str | None = None
    kind: Literal["call_refused"] = "call_refused"


@dataclass(frozen=True)
class OutboundFlagged:
    """An outbound call was flagged (grounding, backstop, links, recipients) before approval.

    ``flags`` is the JSON form of :class:`agents.flags.Flag` values.
    """

    run_id: str
    step_id: str
    tool: str
    approval_id: str | None
    flags: tuple[dict[str, str], ...]
    kind: Literal["outbound_flagged"] = "outbound_flagged"


@dataclass(frozen=True)
class ScheduleFired:
    run_id: str
    schedule_id: str
    next_at: float | None
    kind: Literal["schedule_fired"] = "schedule_fired"


Event = (
    RunStarted
    | PlanReady
    | StepStarted
    | StepRetrying
    | ToolCalled
    | StepFinished
    | StepFailed
    | ApprovalRequested
    | ApprovalDecided
    | HandoffRequested
    | HandoffAnswered
    | RunWaiting
    | RunFinished
    | StepScheduled
    | StepSkipped
    | ReminderDue
    | DueMissed
    | ScheduleFired
    | CallRefused
    | OutboundFlagged
)

Subscriber = Callable[[Event], Awaitable[None]]


@dataclass
class EventBus:
    """Delivers each event to every subscriber, in order; a failing subscriber is logged."""

    subscribers: list[Subscriber] = field(default_factory=list)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it."""
        self.subscribers.append(subscriber)
        return lambda: self.subscribers.remove(subscriber)

    async def publish(self, event: Event) -> None:
        """Send ``event`` to every subscriber."""
        for subscriber in list(self.subscribers):
            try:
                await subscriber(event)
            except Exception:
                log.exception("event subscriber failed on %s", event.kind)
