"""The terminal front end: progress lines from engine events, and prompts for people.

It is to the CLI what Slack views are to the bot: it renders events and never decides
anything itself; decisions go back through the engine.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

from agents import emails, notices, spending
from agents.approvals import send_back_reason
from agents.events import (
    ApprovalDecided,
    ApprovalRequested,
    CallRefused,
    DueMissed,
    Event,
    HandoffAnswered,
    HandoffRequested,
    OutboundFlagged,
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
from agents.flags import flags_of
from bot.views.checks import FLAG_LABEL
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
                how = " anyway, despite its flags," if event.override else how
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
            case CallRefused():
                line = notices.refusal_text(event.tool, event.target, event.reason)
                return [f"  ⚠ {event.step_id}: refused: {one_line(line, 300)}"]
            case OutboundFlagged():
                text = notices.flags_text(event.tool, event.flags)
                return [f"  ⚠ {event.step_id}: flagged: {one_line(text, 300)}"]
            case RunFinished():
                refused = (
                    f" with {notices.plural(event.refused, 'refused call')}"
                    if event.refused
                    else ""
                )
                out = [
                    f"■ run {event.run_id} {event.status}{refused} in {event.duration_s:.1f}s · "
                    f"{event.model_calls} model calls · {event.tokens} tok · "
                    f"{money(event.cost_usd)}"
                ]
                if event.error:
                    out.append(f"  reason: {event.error}")
                if event.refused:
                    out.append(f"  ⚠ refused calls: `baton show {event.run_id}` lists them")
                if event.output:
                    out += ["", event.output]
                return out
        return []


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x9b]")


def _safe(text: Any) -> str:
    """Model or tool text for a terminal: no control characters (no escape sequences)."""
    return _CONTROL.sub("", str(text if text is not None else ""))


def render_action(approval: Approval) -> list[str]:
    """What exactly will happen if this approval is granted: an email as an email, other
    calls as JSON, then the flags and each claim with its quote and source."""
    action = approval.action or {}
    if approval.kind == "step_output":
        return [
            "Draft:",
            *[f"  {_safe(line)}" for line in str(action.get("draft", "")).splitlines()],
        ]
    if approval.kind == spending.BUDGET_KIND:
        return [f"Budget reached: {spending.describe(action)}", spending.offer(action)]
    head = f"{_safe(action.get('tool'))} (risk: {approval.risk})"
    if approval.kind == "outcome_unknown":
        head = (
            f"Baton stopped during a call to {head} and cannot tell if it happened. "
            "Approve to make the call again; reject to not repeat it."
        )
    arguments = action.get("arguments") or {}
    if emails.action_is_email(action):
        return [f"{head}: an email", *render_email(arguments), *render_grounding(action)]
    args = json.dumps(arguments, indent=2, ensure_ascii=False)
    return [head, *[f"  {_safe(line)}" for line in args.splitlines()], *render_grounding(action)]


def render_email(arguments: dict[str, Any]) -> list[str]:
    """To, Cc, Bcc, Subject, then the body with its line breaks."""
    lines = []
    for name in emails.HEADERS:
        value = arguments.get(name)
        if name == "subject":
            lines.append(f"  Subject: {_safe(one_line(str(value or ''), 300))}")
        elif name == "to" or emails.recipients(value):
            shown = ", ".join(emails.recipients(value)) or "(nobody)"
            lines.append(f"  {name.capitalize() + ':':<8} {_safe(shown)}")
    lines.append("  Body:")
    body = str(arguments.get("body") or "")
    lines += [f"    | {_safe(line)}" for line in body.splitlines() or ["(empty)"]]
    return lines


def render_flags(action: dict[str, Any]) -> list[str]:
    """Each flag on the action, with what is flagged and why (nothing when it is clean)."""
    found = flags_of(action)
    if not found:
        return []
    n = len(found)
    lines = [f"Flagged ({n}): a plain approve does not send this."]
    for f in found:
        label = FLAG_LABEL.get(f.kind, f.kind)
        lines.append(f"  !!  {label}: {_safe(one_line(f.text, 300))} — {_safe(f.problem)}")
    return lines


def render_grounding(action: dict[str, Any]) -> list[str]:
    """The flags, then the grounding check's claims, each with its quote and source."""
    lines = render_flags(action)
    grounding = action.get("grounding")
    if not isinstance(grounding, dict):
        return lines
    lines.append("Claims checked against the research:")
    for claim in grounding.get("claims") or []:
        text = _safe(one_line(str(claim.get("claim") or ""), 300))
        source = _safe(claim.get("url") or claim.get("source") or "")
        if claim.get("supported"):
            lines.append(f"  ok  {text}")
            quote = (
                f"“{_safe(one_line(str(claim.get('quote')), 240))}”" if claim.get("quote") else ""
            )
            said = " — ".join(p for p in (quote, source) if p)
            if said:
                lines.append(f"        {said}")
        else:
            problem = _safe(claim.get("problem") or "no source")
            lines.append(f"  !!  {text}  ({problem})")
    if not grounding.get("claims"):
        lines.append("  (no factual claims found)")
    if grounding.get("error"):
        lines.append(f"  !!  {_safe(grounding['error'])}: check every fact yourself")
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


#: What must be typed at the terminal to send a flagged action anyway.
SEND_ANYWAY_WORDS = "send anyway"


class Prompter:
    """Asks a person at the terminal about approvals and handoffs.

    ``override``: whether a flagged action may be sent anyway here (``BATON_GROUNDING_OVERRIDE``
    is ``confirm``); the engine refuses it otherwise, whatever is answered.
    """

    def __init__(self, console: Console, reader: LineReader, *, override: bool = True) -> None:
        self.console = console
        self.reader = reader
        self.closed = False
        self.override = override

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
        if flags_of(approval.action):
            return await self._flagged(approval)
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
            if choice in ("e", "edit") and approval.kind in ("step_output", "tool_call"):
                edited = await self._edit(approval)
                if edited is None:
                    return None
                if edited:
                    return edited
                continue
            if choice in ("s", "skip", ""):
                return None
            self.console.write("  Please answer a, r, e or s.")

    async def _flagged(self, approval: Approval) -> dict[str, Any] | None:
        """A flagged action: back to the writer, edit, or (its own answer) send anyway."""
        found = flags_of(approval.action)
        override = "  [o]verride (send anyway)" if self.override else ""
        while True:
            choice = await self.ask(f"  [b]ack to the writer  [e]dit{override}  [s]kip > ")
            if choice is None:
                return None
            choice = choice.strip().lower()
            if choice in ("a", "approve", "y", "yes"):
                self.console.write(
                    f"  Not sent: it has {len(found)} flag(s), so approving alone does not "
                    "send it. Send it back, edit it" + (", or override." if self.override else ".")
                )
                continue
            if choice in ("b", "back"):
                note = await self.ask("  A note for the writer (optional): ")
                if note is None:
                    return None
                return {"decision": "reject", "reason": send_back_reason(approval.action, note)}
            if choice in ("e", "edit"):
                edited = await self._edit(approval)
                if edited is None:
                    return None
                if edited:
                    return edited
                continue
            if choice in ("o", "override") and self.override:
                self.console.write(f"  Sending anyway ignores these {len(found)} flag(s):")
                for line in render_flags(approval.action or {})[1:]:
                    self.console.write(f"  {line}")
                typed = await self.ask(f'  Type "{SEND_ANYWAY_WORDS}" to send it anyway: ')
                if typed is None:
                    return None
                if " ".join(typed.lower().split()) == SEND_ANYWAY_WORDS:
                    return {"decision": "approve", "override": True}
                self.console.write("  Not sent.")
                continue
            if choice in ("s", "skip", ""):
                return None
            self.console.write("  Please answer b, e, " + ("o " if self.override else "") + "or s.")

    async def _edit(self, approval: Approval) -> dict[str, Any] | None:
        """The edit's decision fields; ``{}`` to ask again; None once input has ended."""
        action = approval.action or {}
        if approval.kind == "step_output":
            draft = await self.ask_block("  New draft:")
            return None if draft is None else {"decision": "approve", "draft": draft}
        if emails.action_is_email(action):
            return await self._edit_email(dict(action.get("arguments") or {}))
        raw = await self.ask("  New arguments as JSON on one line: ")
        if raw is None:
            return None
        try:
            arguments = json.loads(raw)
        except json.JSONDecodeError as exc:
            self.console.write(f"  That is not valid JSON ({exc.msg}); try again.")
            return {}
        return {"decision": "approve", "arguments": arguments}

    async def _edit_email(self, arguments: dict[str, Any]) -> dict[str, Any] | None:
        """Edit an email field by field (Enter keeps a field); checked before it is sent."""
        edited = dict(arguments)
        for name in ("to", "cc", "subject"):
            now = (
                ", ".join(emails.recipients(arguments.get(name)))
                if name != "subject"
                else str(arguments.get(name) or "")
            )
            clear = " ('-' for none)" if name == "cc" else ""
            typed = await self.ask(f"  {name.capitalize()} [{_safe(one_line(now, 80))}]{clear}: ")
            if typed is None:
                return None
            if name == "cc" and typed.strip() == "-":
                edited[name] = None
            elif typed.strip():
                edited[name] = typed.strip()
        body = await self.ask_block("  New body (only '.' at once keeps the current one):")
        if body is None:
            return None
        if body.strip():
            edited["body"] = body
        wrong = emails.problems(edited)
        if wrong:
            for name, why in wrong.items():
                self.console.write(f"  {name}: {why}")
            return {}
        return {"decision": "approve", "arguments": edited}

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
