"""The terminal front end: progress lines from engine events, and prompts for people.

It is to the CLI what Slack views are to the bot: it renders events and never decides
anything itself; decisions go back through the engine.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

from agents import spending
from agents.events import (
    ApprovalDecided,
    ApprovalRequested,
    DueMissed,
    Event,
    HandoffAnswered,
    HandoffRequested,
    PlanReady,
    ReminderDue,
    RunFinished,
    RunStarted,
    RunWaiting,
    ScheduleFired,
    StepFailed,
    StepFinished,
    StepRetrying,
    StepScheduled,
    StepSkipped,
    StepStarted,
    ToolCalled,
)
from storage.models import Approval, Handoff, Run, Step


def one_line(text: str | None, limit: int = 100) -> str:
    """First line of ``text``, shortened to ``limit`` characters."""
    first = " ".join((text or "").split())
    return first if len(first) <= limit else first[: limit - 1] + "…"


def when(ts: float) -> str:
    """A local date and time for a terminal."""
    from datetime import datetime

    return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M %Z")


def money(cost: float) -> str:
    """Dollars with enough digits for small model bills."""
    return f"${cost:.4f}" if cost < 1 else f"${cost:.2f}"


class Console:
    """Writes one line per event to ``out``."""

    def __init__(self, out: IO[str] | None = None, *, verbose: bool = False) -> None:
        self.out = out or sys.stdout
        self.verbose = verbose

    def write(self, line: str = "") -> None:
        """Write a line and flush (progress must show as it happens)."""
        self.out.write(line + "\n")
        self.out.flush()

    async def on_event(self, event: Event) -> None:
        """Render one event."""
        for line in self.lines(event):
            self.write(line)

    def lines(self, event: Event) -> list[str]:
        """The lines for one event (pure, for tests)."""
        match event:
            case RunStarted():
                return [f"▶ run {event.run_id}: {one_line(event.goal, 200)}"]
            case PlanReady():
                out = [f"  plan: {len(event.steps)} step(s)"]
                for i, s in enumerate(event.steps, 1):
                    who = s.agent or f"tool {s.tool}"
                    after = f" ← {', '.join(s.depends_on)}" if s.depends_on else ""
                    gate = " [needs approval]" if s.needs_approval else ""
                    out.append(f"    {i}. {s.step_id}: {s.title} ({who}){after}{gate}")
                return out
            case StepStarted():
                who = event.agent or f"tool {event.tool}"
                again = " (resumed)" if event.resumed else ""
                return [f"  … {event.step_id} started{again} ({who})"]
            case StepRetrying():
                return [
                    f"  ↻ {event.step_id}: retry {event.attempt} in {event.delay_s:.1f}s "
                    f"({one_line(event.reason, 120)})"
                ]
            case ToolCalled():
                mark = "→" if event.ok else "✗"
                return [f"    {mark} {event.step_id}: {event.tool} {one_line(event.summary, 80)}"]
            case StepFinished():
                return [
                    f"  ✓ {event.step_id} done in {event.duration_s:.1f}s · {event.tokens} tok · "
                    f"{money(event.cost_usd)}",
                    f"      {one_line(event.output, 160)}",
                ]
            case StepFailed():
                return [f"  ✗ {event.step_id}: {event.error}"]
            case ApprovalRequested():
                return [f"  ⏸ approval {event.approval_id} needed for {event.step_id}"]
            case ApprovalDecided():
                how = " (edited)" if event.edited else ""
                why = f": {event.reason}" if event.reason else ""
                return [f"  ☑ {event.approval_id} {event.decision}{how} by {event.actor}{why}"]
            case HandoffRequested():
                if event.to == "human":
                    return [f"  ✋ {event.step_id} handed to a person ({event.handoff_id})"]
                return [f"  ⇄ {event.step_id} handed to agent {event.to}"]
            case HandoffAnswered():
                return [f"  ☑ handoff {event.handoff_id} answered by {event.actor}"]
            case RunWaiting():
                if not event.approvals and not event.handoffs:  # only follow-ups are left
                    return [f"  ⏸ run {event.run_id} is waiting for its scheduled steps"]
                return [f"  ⏸ run {event.run_id} is waiting for a person"]
            case StepScheduled():
                return [f"  ⏰ {event.step_id} scheduled for {when(event.at)}"]
            case StepSkipped():
                return [f"  ↷ {event.step_id} skipped: {event.reason}"]
            case ReminderDue():
                verb = "escalated" if event.level == "escalate" else "still waiting"
                return [
                    f"  ⏰ approval {event.approval_id} {verb} after "
                    f"{event.waited_s / 3600:.1f} h (run {event.run_id})"
                ]
            case DueMissed():
                return [f"  ⚠ missed while Baton was down: {event.detail}"]
            case ScheduleFired():
                return [f"  ⏰ schedule {event.schedule_id} started run {event.run_id}"]
            case RunFinished():
                out = [
                    f"■ run {event.run_id} {event.status} in {event.duration_s:.1f}s · "
                    f"{event.model_calls} model calls · {event.tokens} tok · "
                    f"{money(event.cost_usd)}"
                ]
                if event.error:
                    out.append(f"  reason: {event.error}")
                if event.output:
                    out += ["", event.output]
                return out
        return []


def render_action(approval: Approval) -> list[str]:
    """What exactly will happen if this approval is granted."""
    action = approval.action or {}
    if approval.kind == "step_output":
        return ["Draft:", *[f"  {line}" for line in str(action.get("draft", "")).splitlines()]]
    if approval.kind == spending.BUDGET_KIND:
        return [f"Budget reached: {spending.describe(action)}", spending.offer(action)]
    head = f"{action.get('tool')} (risk: {approval.risk})"
    if approval.kind == "outcome_unknown":
        head = (
            f"Baton stopped during a call to {head} and cannot tell if it happened. "
            "Approve to make the call again; reject to not repeat it."
        )
    args = json.dumps(action.get("arguments", {}), indent=2, ensure_ascii=False)
    return [head, *[f"  {line}" for line in args.splitlines()], *render_grounding(action)]


def render_grounding(action: dict[str, Any]) -> list[str]:
    """The grounding check's claims and sources, for the person deciding."""
    grounding = action.get("grounding")
    if not isinstance(grounding, dict):
        return []
    lines = ["Claims checked against the research:"]
    for claim in grounding.get("claims") or []:
        if claim.get("supported"):
            lines.append(f"  ok  {claim.get('claim')}  (source: {claim.get('source')})")
        else:
            lines.append(f"  !!  {claim.get('claim')}  ({claim.get('problem') or 'no source'})")
    if not grounding.get("claims"):
        lines.append("  (no factual claims found)")
    if grounding.get("error"):
        lines.append(f"  !!  {grounding['error']}: check every fact yourself")
    return lines


def summary_table(run: Run, steps: Sequence[Step]) -> list[str]:
    """Per-step time, tokens and cost, then the run's totals."""
    rows = [f"{'step':<20} {'status':<17} {'time':>7} {'tokens':>8} {'cost':>9}"]
    for s in steps:
        took = (s.finished_at - s.started_at) if s.finished_at and s.started_at else None
        rows.append(
            f"{s.step_id[:20]:<20} {s.status:<17} "
            f"{(f'{took:.1f}s' if took is not None else '-'):>7} "
            f"{s.tokens_in + s.tokens_out:>8} {money(s.cost_usd):>9}"
        )
    total = (run.finished_at or run.updated_at) - run.created_at
    rows.append(
        f"{'total':<20} {run.status:<17} {f'{total:.1f}s':>7} "
        f"{run.tokens_in + run.tokens_out:>8} {money(run.cost_usd):>9}"
    )
    return rows


@dataclass
class LineReader:
    """Reads stdin lines on a daemon thread, so a pending prompt never blocks exit."""

    loop: asyncio.AbstractEventLoop
    stream: IO[str]

    def __post_init__(self) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        threading.Thread(target=self._pump, daemon=True, name="baton-stdin").start()

    def _pump(self) -> None:
        for line in self.stream:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, line.rstrip("\n"))
        self.loop.call_soon_threadsafe(self.queue.put_nowait, None)

    async def readline(self) -> str | None:
        """The next line, or None at end of input."""
        return await self.queue.get()


class Prompter:
    """Asks a person at the terminal about approvals and handoffs."""

    def __init__(self, console: Console, reader: LineReader) -> None:
        self.console = console
        self.reader = reader
        self.closed = False

    async def ask(self, question: str) -> str | None:
        """Show ``question`` and read one line (None once input has ended)."""
        if self.closed:
            return None
        self.console.out.write(question)
        self.console.out.flush()
        line = await self.reader.readline()
        if line is None:
            self.closed = True
        return line

    async def ask_block(self, question: str) -> str | None:
        """Read lines until one holding only '.'; None if input ends first (nothing half-typed
        is ever submitted)."""
        if self.closed:
            return None
        self.console.write(question + " (end with a line containing only '.')")
        lines: list[str] = []
        while True:
            line = await self.reader.readline()
            if line is None:
                self.closed = True
                return None
            if line.strip() == ".":
                return "\n".join(lines)
            lines.append(line)

    async def approval(self, approval: Approval) -> dict[str, Any] | None:
        """Ask about one approval. Returns the decision's fields, or None to decide later."""
        self.console.write("")
        self.console.write(
            f"⏸ Approval {approval.id} — step '{approval.step_id}' of run {approval.run_id}:"
        )
        for line in render_action(approval):
            self.console.write(f"  {line}")
        while True:
            edit = "[e]dit draft" if approval.kind == "step_output" else "[e]dit arguments"
            if approval.kind in ("outcome_unknown", spending.BUDGET_KIND):
                edit = ""
            choice = await self.ask(f"  [a]pprove  [r]eject  {edit}  [s]kip > ")
            if choice is None:
                return None
            choice = choice.strip().lower()
            if choice in ("a", "approve", "y", "yes"):
                return {"decision": "approve"}
            if choice in ("r", "reject", "n", "no"):
                who = "the run fails with it" if approval.kind == spending.BUDGET_KIND else None
                reason = await self.ask(f"  Reason ({who or 'the agent will see it'}): ")
                if reason is None:
                    return None
                return {"decision": "reject", "reason": reason}
            if choice in ("e", "edit") and approval.kind == "step_output":
                draft = await self.ask_block("  New draft:")
                if draft is None:
                    return None
                return {"decision": "approve", "draft": draft}
            if choice in ("e", "edit") and approval.kind == "tool_call":
                raw = await self.ask("  New arguments as JSON on one line: ")
                if raw is None:
                    return None
                try:
                    arguments = json.loads(raw)
                except json.JSONDecodeError as exc:
                    self.console.write(f"  That is not valid JSON ({exc.msg}); try again.")
                    continue
                return {"decision": "approve", "arguments": arguments}
            if choice in ("s", "skip", ""):
                return None
            self.console.write("  Please answer a, r, e or s.")

    async def handoff(self, handoff: Handoff) -> str | None:
        """Ask a person to do a handed-off step; their answer, or None to answer later."""
        self.console.write("")
        self.console.write(f"✋ Handoff {handoff.id} — step '{handoff.step_id}' needs you:")
        self.console.write(f"  {handoff.question}")
        for line in (handoff.summary or "").splitlines():
            self.console.write(f"  | {line}")
        answer = await self.ask_block("  Your answer becomes the step's result; empty to skip.")
        if answer is None or not answer.strip():
            return None
        return answer
