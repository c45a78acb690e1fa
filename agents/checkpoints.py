"""Checkpoints and the tool-call ledger of a step: approval, intent, call, result.

A side-effecting call is recorded as an intent (with its idempotency key) before it runs and
its result after; a resume reuses a recorded result, retries an intent only for idempotent
tools, and otherwise asks a person (``outcome_unknown``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from agents import notices, prompts
from agents.approvals import action_digest
from agents.events import ApprovalRequested, ToolCalled
from agents.flags import Flag, Verdict
from agents.flags import dump as dump_flags
from agents.followups import schedule_checkpoint
from agents.ids import new_id
from agents.secrets import redact
from agents.tools import Risk, Tool, ToolContext
from storage.models import Approval, Step
from storage.repositories import approvals, handoffs, steps, tool_calls

if TYPE_CHECKING:
    from agents.grounding import Report
    from agents.state import RunState, Services

from typing import TYPE_CHECKING

from agents.outcomes import (
    CallResult,
    Done,
    LedgerResult,
    Outcome,
    Parked,
    Refusal,
    Rejected,
)

log = logging.getLogger(__name__)

MAX_DRAFT_REJECTIONS = 3


class Checkpoints:
    """Approvals and ledger calls (mixed into :class:`~agents.runtime.StepRunner`)."""

    # Provided by StepRunner.
    svc: Services
    state: RunState
    step: Step
    run_id: str
    fresh: bool

    if TYPE_CHECKING:

        async def _save(self, **values: Any) -> None: ...

        async def _within_budget(self) -> Parked | Done | None: ...

        async def _approval_holds(
            self,
            tool: Tool,
            args: dict[str, Any],
            key: str,
            call_id: str,
            approval: Approval | None,
        ) -> CallResult | None: ...

        async def _check_grounding(self, tool: Tool, args: dict[str, Any]) -> Report | None: ...

        async def _policy(self, tool: Tool, args: dict[str, Any], *, key: str) -> Verdict: ...

        async def _refused(
            self, tool: Tool, args: dict[str, Any], verdict: Verdict
        ) -> CallResult: ...

        def _grounding_rounds(
            self, tool: Tool | None = None, args: dict[str, Any] | None = None
        ) -> int: ...

    # ---- the ledger: approval, intent, call, result ---------------------------------------
    async def _call(
        self,
        tool: Tool,
        args: dict[str, Any],
        *,
        key: str,
        call_id: str,
        gated: bool,
        defer_result: bool = False,
    ) -> CallResult | Parked | Done | Refusal:
        """Make one tool call through its checkpoints and the ledger.

        ``defer_result``: a successful call's ledger result is not committed here but returned
        (``CallResult.pending``) for the caller to commit with what it commits next.
        """
        row, found = None, []
        report: Report | None = None
        if not self.fresh:  # only a resumed step can have this call in its ledger already
            async with self.svc.db.transaction() as session:
                row = await tool_calls.get_by_key(session, key=key)
                found = await approvals.find_for_step(
                    session,
                    run_id=self.run_id,
                    step_id=self.step.step_id,
                    kind="tool_call",
                    tool_call_key=key,
                )
        if row is not None and row.status in ("done", "error", "skipped"):
            return CallResult(row.result or "", row.status == "done", row.status == "skipped")
        if row is not None:  # an intent with no result: we stopped during the call
            if tool.idempotent:
                return await self._execute(tool, row.arguments or args, key, call_id, intent=False)
            return await self._unknown_outcome(tool, row.arguments or args, key, call_id)
        held = await self._within_budget()  # a used-up money budget parks the step (guardrails)
        if held is not None:
            return held
        approved_args = args
        # An ungated call can still have an approval: its guards or grounding escalated it.
        # The newest one still in use (a re-flagged edit replaces its used-up approval).
        approval: Approval | None = (
            next((a for a in reversed(found) if a.consumed_at is None), found[-1])
            if found
            else None
        )
        flags: list[Flag] = []
        if approval is None:
            # Guards fixed in code (secrets, recipients and volume, egress), whatever any
            # model says: a refusal is final and shown; a flag sends the call to a person.
            verdict = await self._policy(tool, args, key=key)
            if verdict.refused is not None:
                return await self._refused(tool, args, verdict)
            flags.extend(verdict.flags)
            gated = gated or verdict.needs_approval or bool(flags)
        if approval is None and tool.outbound:
            # Outbound text is grounded before anyone is asked: an agent fixes what it can,
            # a person sees the claims and their sources (or what failed) on the approval.
            report = await self._check_grounding(tool, args)
            if report is not None and not report.ok:
                revisable = call_id != "tool" and report.error is None
                if (
                    revisable
                    and self._grounding_rounds(tool, args) < self.svc.settings.grounding_retries
                ):
                    return CallResult(report.feedback(tool.name), False)
                gated = True  # unsupported claims always go to a person
            if report is not None:
                flags.extend(report.flags)
        if approval is None and gated:
            return await self._ask(tool, args, key, report if tool.outbound else None, flags)
        if gated or approval is not None:  # an ungated outbound call may have been escalated
            if approval is None:
                return await self._request_approval(
                    "tool_call", {"tool": tool.name, "arguments": args}, tool.risk, key=key
                )
            if approval.status == "pending":
                return Parked(approval.id)
            if approval.status == "taken_over":
                return await self._taken_over(approval)
            if approval.status != "approved":
                await self._consume(approval)
                return Refusal(approval.reason or "no reason given")
            if "edited_from" in (approval.action or {}):  # asked again for a person's edit
                approved_args = dict((approval.action or {}).get("arguments") or {})
            if approval.edited and "arguments" in approval.edited:
                approved_args = approval.edited["arguments"]
                again = await self._recheck_edit(tool, approval, approved_args, key)
                if again is not None:
                    return again
        result = await self._execute(
            tool,
            approved_args,
            key,
            call_id,
            intent=tool.risk is not Risk.READ_ONLY,
            approval=approval,
            defer_result=defer_result,
        )
        if approved_args != args:
            # The model must know what was really done, not what it had asked for.
            edited = json.dumps(approved_args, ensure_ascii=False)
            return CallResult(
                f"A person edited the arguments before approving; the call was made with "
                f"{edited}. Result: {result.text}",
                result.ok,
                pending=result.pending,
            )
        return result

    async def _recheck_edit(
        self, tool: Tool, approval: Approval, edited: dict[str, Any], key: str
    ) -> CallResult | Parked | None:
        """A person's edit passes the same guards as the model's text before it can go.

        None: the edit may run. Otherwise the old approval is used up and either the guards
        refuse the edit, or (still flagged: a new claim, a new recipient) a new approval is
        asked for the edited arguments, with their flags, under the same ledger key.
        """
        verdict = await self._policy(tool, edited, key=key)
        if verdict.refused is not None:
            await self._consume(approval)
            return await self._refused(tool, edited, verdict)
        flags: list[Flag] = list(verdict.flags)
        report = await self._check_grounding(tool, edited) if tool.outbound else None
        if report is not None:
            flags.extend(report.flags)
        if not flags:
            return None
        await self._consume(approval)
        return await self._ask(tool, edited, key, report, flags, edited_from=approval.id)

    async def _ask(
        self,
        tool: Tool,
        args: dict[str, Any],
        key: str,
        report: Report | None,
        flags: list[Flag],
        *,
        edited_from: str | None = None,
    ) -> Parked:
        """Ask a person about a tool call, with its grounding report and flags on the card."""
        action: dict[str, Any] = {"tool": tool.name, "arguments": args}
        if report is not None:
            action["grounding"] = report.as_dict()
        if flags:
            action["flags"] = dump_flags(flags)
        if edited_from is not None:
            action["edited_from"] = edited_from
        parked = await self._request_approval("tool_call", action, tool.risk, key=key)
        if flags:  # every flag is an event and an audit entry (agents.notices)
            await notices.flagged(
                self.svc,
                run_id=self.run_id,
                step_id=self.step.step_id,
                tool=tool.name,
                approval_id=parked.waiting_for,
                flags=action["flags"],
            )
        return parked

    async def _execute(
        self,
        tool: Tool,
        args: dict[str, Any],
        key: str,
        call_id: str,
        *,
        intent: bool,
        approval: Approval | None = None,
        defer_result: bool = False,
    ) -> CallResult:
        refused = await self._approval_holds(tool, args, key, call_id, approval)
        if refused is not None:  # re-checked in code right before the side effect
            return refused
        now = self.svc.clock()
        row = {
            "idempotency_key": key,
            "run_id": self.run_id,
            "step_id": self.step.step_id,
            "call_id": call_id[:100],
            "tool": tool.name,
            "arguments": args,
            "risk": str(tool.risk),
            "idempotent": tool.idempotent,
            "status": "intent",
            "created_at": now,
        }
        if intent:
            # The intent is durable before the side effect starts.
            async with self.svc.db.transaction() as session:
                if self.fresh or await tool_calls.get_by_key(session, key=key) is None:
                    await tool_calls.insert(session, values=row)
                if approval is not None:
                    await approvals.consume(session, approval_id=approval.id, now=now)
                if self.step.status != "running":
                    await steps.update_step(
                        session,
                        run_id=self.run_id,
                        step_id=self.step.step_id,
                        values={"status": "running"},
                    )
                    self.step.status = "running"
        ctx = ToolContext(run_id=self.run_id, step_id=self.step.step_id, idempotency_key=key)
        try:
            text, ok = await tool.call(args, ctx), True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a tool error is news for the model, not a crash
            log.info("tool %s failed: %s", tool.name, exc)
            # An error's text may quote a remote server (a reason phrase, an MCP error, a
            # page's words): it reaches the model fenced, as data, never as instructions.
            said = prompts.fence(f"{type(exc).__name__}: {exc}", source=f"error from {tool.name}")
            text, ok = f"Error from {tool.name}: {said}", False
        text = redact(text)  # stored, shown to the model and to people: never with a secret
        done = {
            "status": "done" if ok else "error",
            "result": text,
            "finished_at": self.svc.clock(),
        }
        whole: dict[str, Any] | None = None  # None: the row exists (an intent), finish it
        if not intent:
            if self.fresh:
                whole = {**row, **done}
            else:
                async with self.svc.db.transaction() as session:
                    if await tool_calls.get_by_key(session, key=key) is None:
                        whole = {**row, **done}
        if defer_result and ok:
            # Committed by the driver with the step's completion: one commit, not two. A
            # crash before it leaves the intent without a result, as a crash during the call
            # would, and a read-only call is simply made again.
            pending = LedgerResult(key, done, whole, tool.name, args)
            return CallResult(text, ok, pending=pending)
        async with self.svc.db.transaction() as session:
            await tool_calls.record_result(session, key=key, values=done, row=whole)
        await self.svc.bus.publish(
            ToolCalled(self.run_id, self.step.step_id, tool.name, args, ok, text[:200])
        )
        return CallResult(text, ok)

    async def _unknown_outcome(
        self, tool: Tool, args: dict[str, Any], key: str, call_id: str
    ) -> CallResult | Parked | Done:
        async with self.svc.db.transaction() as session:
            found = await approvals.find_for_step(
                session,
                run_id=self.run_id,
                step_id=self.step.step_id,
                kind="outcome_unknown",
                tool_call_key=key,
            )
        approval = found[-1] if found else None
        if approval is None:
            return await self._request_approval(
                "outcome_unknown",
                {"tool": tool.name, "arguments": args},
                tool.risk,
                key=key,
                step_status="outcome_unknown",
            )
        if approval.status == "pending":
            return Parked(approval.id)
        if approval.status == "taken_over":
            taken = await self._taken_over(approval)
            if not isinstance(taken, Refusal):
                return taken
            approval.reason = taken.reason
        elif approval.status == "approved" and approval.consumed_at is None:
            # A person said: make the call again. Once: the approval is consumed with the
            # new attempt, so a crash during it asks again instead of repeating it.
            return await self._execute(tool, args, key, call_id, intent=True, approval=approval)
        elif approval.status == "approved":
            return await self._request_approval(
                "outcome_unknown",
                {"tool": tool.name, "arguments": args},
                tool.risk,
                key=key,
                step_status="outcome_unknown",
            )
        note = approval.reason or "not retried"
        async with self.svc.db.transaction() as session:
            await approvals.consume(session, approval_id=approval.id, now=self.svc.clock())
            await tool_calls.finish(
                session,
                key=key,
                values={
                    "status": "skipped",
                    "result": f"Baton stopped during this call and a person chose not to "
                    f"repeat it: {note}",
                    "finished_at": self.svc.clock(),
                },
            )
            await steps.update_step(
                session,
                run_id=self.run_id,
                step_id=self.step.step_id,
                values={"status": "running"},
            )
        return CallResult(
            f"Not repeated after an unknown outcome; a person said: {note}", False, skipped=True
        )

    async def _request_approval(
        self,
        kind: str,
        action: dict[str, Any],
        risk: Risk | str,
        *,
        key: str | None,
        step_status: str = "waiting_approval",
    ) -> Parked:
        now = self.svc.clock()
        approval_id = new_id("a")
        digest = action_digest(action)
        async with self.svc.db.transaction() as session:
            expires_at = await schedule_checkpoint(
                self.svc.settings,
                session,
                approval_id=approval_id,
                run_id=self.run_id,
                risk=str(risk),
                now=now,
            )
            await approvals.insert(
                session,
                values={
                    "expires_at": expires_at,
                    "id": approval_id,
                    "run_id": self.run_id,
                    "step_id": self.step.step_id,
                    "kind": kind,
                    "tool_call_key": key,
                    "action": action,
                    "digest": digest,
                    "risk": str(risk),
                    "status": "pending",
                    "requested_by": self.state.requester,
                    "created_at": now,
                },
            )
            await steps.update_step(
                session,
                run_id=self.run_id,
                step_id=self.step.step_id,
                values={"status": step_status},
            )
        self.step.status = step_status
        timings = self.svc.settings.checkpoint_timings.get(str(risk))
        first = (
            min(
                (t for t in (timings.remind_s, timings.escalate_s, timings.expire_s) if t > 0),
                default=None,
            )
            if timings
            else None
        )
        if first is not None:
            self.svc.poke(now + first)
        await self.svc.bus.publish(
            ApprovalRequested(
                self.run_id, approval_id, self.step.step_id, kind, action, digest, str(risk)
            )
        )
        return Parked(approval_id)

    async def _consume(self, approval: Approval, **step_values: Any) -> None:
        async with self.svc.db.transaction() as session:
            await approvals.consume(session, approval_id=approval.id, now=self.svc.clock())
            await steps.update_step(
                session,
                run_id=self.run_id,
                step_id=self.step.step_id,
                values={"status": "running", **step_values},
            )

    # ---- a draft that needs approval before it counts -------------------------------------
    async def _draft_checkpoint(
        self, draft: str, transcript: list[dict[str, Any]]
    ) -> Outcome | list[dict[str, Any]]:
        async with self.svc.db.transaction() as session:
            found = await approvals.find_for_step(
                session,
                run_id=self.run_id,
                step_id=self.step.step_id,
                kind="step_output",
                tool_call_key=None,
            )
        latest = found[-1] if found else None
        fresh = latest is None or (latest.consumed_at is not None and latest.status == "rejected")
        if fresh:
            rejections = sum(1 for a in found if a.status == "rejected")
            if rejections >= MAX_DRAFT_REJECTIONS:
                return Rejected(
                    f"the draft was rejected {rejections} times; last reason: "
                    f"{found[-1].reason or 'none given'}"
                )
            return await self._request_approval(
                "step_output", {"step": self.step.title, "draft": draft}, Risk.WRITES, key=None
            )
        assert latest is not None
        if latest.status == "pending":
            return Parked(latest.id)
        if latest.status == "expired":
            return Rejected(latest.reason or "the approval expired")
        if latest.status == "taken_over":
            taken = await self._taken_over(latest)
            if not isinstance(taken, Refusal):
                return taken
            latest.reason = taken.reason
        elif latest.status == "approved":
            await self._consume(latest)
            edited = (latest.edited or {}).get("draft")
            return Done(edited if isinstance(edited, str) else draft)
        note = {
            "role": "user",
            "content": "A person rejected this draft. Their reason:\n"
            + prompts.fence(latest.reason or "none given", source="reviewer")
            + "\nRevise the draft accordingly and reply with the new draft only.",
        }
        transcript = [*transcript, note]
        await self._consume(latest, transcript=transcript)
        self.step.transcript = transcript
        return transcript

    async def _taken_over(self, approval: Approval) -> Parked | Done | Refusal:
        """A person took this checkpoint over: wait for them, use their result, or continue."""
        async with self.svc.db.transaction() as session:
            found = await handoffs.list_handoffs(
                session, run_id=self.run_id, step_id=self.step.step_id
            )
        handoff = next((h for h in reversed(found) if h.ref == f"takeover:{approval.id}"), None)
        if handoff is None or handoff.status == "open":
            return Parked(handoff.id if handoff else approval.id)
        if handoff.status in ("returned", "handed_back"):
            await self._close_handoff(handoff.id, handoff.status)
            note = handoff.answer or "no note"
            return Refusal(f"a person took this over, then handed it back: {note}")
        await self._close_handoff(handoff.id, "answered")
        return Done(handoff.answer or "")

    async def _close_handoff(self, handoff_id: str, expected: str) -> None:
        # answered → closed, returned → handed_back: final states that still say which it was,
        # so a resume after a crash takes the same branch again.
        final = {"answered": "closed", "returned": "handed_back"}.get(expected, expected)
        async with self.svc.db.transaction() as session:
            await handoffs.close_if(
                session, handoff_id=handoff_id, expected=expected, values={"status": final}
            )
            await steps.update_step(
                session,
                run_id=self.run_id,
                step_id=self.step.step_id,
                values={"status": "running"},
            )
