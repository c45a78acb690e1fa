"""SQLModel tables: the durable state of every run.

One table per noun. Timestamps are UTC epoch seconds (floats): they compare the same way on
SQLite and PostgreSQL and never carry a naive-vs-aware time zone bug. JSON columns hold data
whose shape belongs to ``agents/`` (plans, transcripts, tool arguments); storage does not
interpret them.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import JSON, Column, Index, Table, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def _json(**kwargs: Any) -> Any:
    return Field(default=None, sa_column=Column(JSON, **kwargs))


def _text(nullable: bool = True) -> Any:
    return Field(default=None if nullable else "", sa_column=Column(Text, nullable=nullable))


class SchemaVersion(SQLModel, table=True):
    """One row per applied migration."""

    __tablename__ = "schema_version"

    version: int = Field(primary_key=True)
    name: str
    applied_at: float


class Run(SQLModel, table=True):
    """A goal being carried out: its plan, status, usage and who owns it right now."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_status", "status"),
        # The day's spend per requester and per workspace is summed over recent runs.
        Index("ix_runs_requester_updated", "requester", "updated_at"),
        Index("ix_runs_team_updated", "team_id", "updated_at"),
    )

    id: str = Field(primary_key=True, max_length=32)
    goal: str = _text(nullable=False)
    #: planning | running | waiting | done | failed | cancelled | rejected
    status: str = Field(max_length=16)
    #: goal (planned by the model) | playbook (written by a person)
    source: str = Field(max_length=16)
    playbook: str | None = Field(default=None, max_length=200)
    inputs: dict[str, Any] | None = _json()
    plan: dict[str, Any] | None = _json()
    #: Who asked ("cli:alice", "slack:U123") and where updates go (a channel and thread).
    requester: str | None = Field(default=None, max_length=200)
    origin: dict[str, Any] | None = _json()
    #: The Slack workspace the run was asked from (None outside Slack).
    team_id: str | None = Field(default=None, max_length=32)
    error: str | None = _text()
    limits: dict[str, Any] | None = _json()
    model_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    #: The process driving the run and until when its claim holds (a lease).
    owner: str | None = Field(default=None, max_length=200)
    lease_until: float | None = None
    cancel_requested: bool = False
    created_at: float
    updated_at: float
    finished_at: float | None = None


class Step(SQLModel, table=True):
    """One step of a run's plan, with the context it was given and what it produced."""

    __tablename__ = "steps"

    run_id: str = Field(primary_key=True, foreign_key="runs.id", max_length=32)
    step_id: str = Field(primary_key=True, max_length=64)
    position: int
    title: str = _text(nullable=False)
    agent: str | None = Field(default=None, max_length=100)
    tool: str | None = Field(default=None, max_length=100)
    instructions: str | None = _text()
    arguments: dict[str, Any] | None = _json()
    depends_on: list[str] | None = _json()
    needs_approval: bool = False
    #: pending | running | waiting_approval | waiting_human | outcome_unknown | done | failed
    #: | cancelled | skipped
    status: str = Field(max_length=20)
    context: dict[str, Any] | None = _json()
    transcript: list[dict[str, Any]] | None = _json()
    output: str | None = _text()
    error: str | None = _text()
    attempts: int = 0
    model_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    #: When a follow-up step may start (``after:``/``at:`` in the plan), once it is ready.
    not_before: float | None = None
    #: The step's timing and condition from the plan: ``{"after_s", "at", "only_if"}``.
    schedule: dict[str, Any] | None = _json()


class ToolCall(SQLModel, table=True):
    """A tool call: an intent written before a side effect, its result written after."""

    __tablename__ = "tool_calls"
    __table_args__ = (
        UniqueConstraint("idempotency_key", name="uq_tool_calls_key"),
        Index("ix_tool_calls_step", "run_id", "step_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=200)
    run_id: str = Field(max_length=32)
    step_id: str = Field(max_length=64)
    call_id: str = Field(max_length=100)
    tool: str = Field(max_length=100)
    arguments: dict[str, Any] | None = _json()
    risk: str = Field(max_length=16)
    idempotent: bool = False
    #: intent | done | error | unknown | skipped
    status: str = Field(max_length=16)
    result: str | None = _text()
    created_at: float
    finished_at: float | None = None


class Approval(SQLModel, table=True):
    """A human checkpoint: the exact action waiting, and the single decision taken on it."""

    __tablename__ = "approvals"
    __table_args__ = (Index("ix_approvals_run", "run_id"), Index("ix_approvals_status", "status"))

    id: str = Field(primary_key=True, max_length=32)
    run_id: str = Field(max_length=32)
    step_id: str = Field(max_length=64)
    #: tool_call | step_output | outcome_unknown | budget
    kind: str = Field(max_length=20)
    tool_call_key: str | None = Field(default=None, max_length=200)
    action: dict[str, Any] | None = _json()
    digest: str = Field(max_length=64)
    risk: str = Field(max_length=16)
    #: pending | approved | rejected | expired | taken_over
    status: str = Field(max_length=16)
    requested_by: str | None = Field(default=None, max_length=200)
    decided_by: str | None = Field(default=None, max_length=200)
    decided_at: float | None = None
    reason: str | None = _text()
    edited: dict[str, Any] | None = _json()
    consumed_at: float | None = None
    created_at: float
    expires_at: float | None = None


class Handoff(SQLModel, table=True):
    """A step handed to a person (or to another agent), with the summary they were given."""

    __tablename__ = "handoffs"
    __table_args__ = (Index("ix_handoffs_run", "run_id"),)

    id: str = Field(primary_key=True, max_length=32)
    run_id: str = Field(max_length=32)
    step_id: str = Field(max_length=64)
    #: to_human | to_agent
    kind: str = Field(max_length=16)
    from_agent: str | None = Field(default=None, max_length=100)
    to_agent: str | None = Field(default=None, max_length=100)
    #: Stable reference of what opened it (the tool call's key), so a resume finds it again.
    ref: str | None = Field(default=None, max_length=200)
    question: str | None = _text()
    summary: str | None = _text()
    #: open | answered → closed (result used) | returned → handed_back (given back to the agent)
    status: str = Field(max_length=16)
    answered_by: str | None = Field(default=None, max_length=200)
    answer: str | None = _text()
    created_at: float
    answered_at: float | None = None


class AuditEntry(SQLModel, table=True):
    """Append-only record of who did what: decisions, refusals, cancellations."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_run", "run_id"),)

    id: int | None = Field(default=None, primary_key=True)
    at: float
    actor: str = Field(max_length=200)
    action: str = Field(max_length=64)
    run_id: str | None = Field(default=None, max_length=32)
    subject: str | None = Field(default=None, max_length=200)
    detail: dict[str, Any] | None = _json()


def _table(model: type[SQLModel]) -> Table:
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


#: Core ``Table`` objects, for fast statements on the engine's hot paths.
RUNS = _table(Run)
STEPS = _table(Step)
TOOL_CALLS = _table(ToolCall)
APPROVALS = _table(Approval)
HANDOFFS = _table(Handoff)
AUDIT_LOG = _table(AuditEntry)
SCHEMA_VERSION = _table(SchemaVersion)


class SlackEvent(SQLModel, table=True):
    """An Events API delivery already handled (dedupe by ``event_id``, not retry headers)."""

    __tablename__ = "slack_events"

    event_id: str = Field(primary_key=True, max_length=64)
    team_id: str | None = Field(default=None, max_length=32)
    received_at: float


class SlackMessage(SQLModel, table=True):
    """Where Baton posted something it may need to edit later (a card, an approval...)."""

    __tablename__ = "slack_messages"
    __table_args__ = (
        UniqueConstraint("kind", "ref_id", name="uq_slack_messages_ref"),
        Index("ix_slack_messages_run", "run_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: str | None = Field(default=None, max_length=32)
    #: card | approval | handoff | result
    kind: str = Field(max_length=16)
    ref_id: str = Field(max_length=200)
    team_id: str | None = Field(default=None, max_length=32)
    channel: str = Field(max_length=32)
    ts: str = Field(max_length=32)
    created_at: float


SLACK_EVENTS = _table(SlackEvent)
SLACK_MESSAGES = _table(SlackMessage)


class DueItem(SQLModel, table=True):
    """Work that falls due at a time: the database is the source of truth, timers only wake
    processes up. A process claims a due row with a lease and a fence number; only the holder
    of the current fence may complete it."""

    __tablename__ = "due_items"
    __table_args__ = (
        UniqueConstraint("kind", "ref_id", "due_at", name="uq_due_items_what_when"),
        Index("ix_due_items_status_due", "status", "due_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    #: step_wake | approval_remind | approval_escalate | approval_expire | schedule_fire | message
    kind: str = Field(max_length=32)
    ref_id: str = Field(max_length=200)
    due_at: float
    #: pending | claimed | done | missed | cancelled
    status: str = Field(max_length=16)
    run_id: str | None = Field(default=None, max_length=32)
    payload: dict[str, Any] | None = _json()
    owner: str | None = Field(default=None, max_length=200)
    lease_until: float | None = None
    fence: int = 0
    attempts: int = 0
    last_error: str | None = _text()
    created_at: float
    done_at: float | None = None


class Schedule(SQLModel, table=True):
    """A recurring goal or playbook: when (cron, in a time zone), what, and where."""

    __tablename__ = "schedules"

    id: str = Field(primary_key=True, max_length=32)
    #: The person's words ("every monday 9am") and the cron expression they became.
    spec: str = Field(max_length=200)
    cron: str = Field(max_length=100)
    timezone: str = Field(max_length=64)
    goal: str | None = _text()
    playbook: str | None = Field(default=None, max_length=200)
    inputs: dict[str, Any] | None = _json()
    requester: str | None = Field(default=None, max_length=200)
    origin: dict[str, Any] | None = _json()
    #: active | removed
    status: str = Field(max_length=16)
    next_fire_at: float | None = None
    last_fired_at: float | None = None
    created_at: float


DUE_ITEMS = _table(DueItem)
SCHEDULES = _table(Schedule)
