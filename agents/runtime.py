"""Running one step until it is done, parked for a person, or failed.

A step is resumable from storage at any point: its transcript is saved after every model turn,
and every tool call is in the ledger (``tool_calls``) under an idempotency key made of stable
ids (run, step, agent epoch, turn, index). Re-running a step after a crash therefore repeats
no finished call: a recorded result is reused; an intent without a result is retried only for
idempotent tools, otherwise a person is asked (``outcome_unknown``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agents import prompts
from agents.approvals import action_digest
from agents.builtin_tools import HANDOFF_TO_AGENT, HANDOFF_TO_HUMAN
from agents.errors import ConfigError, LimitExceeded, ModelError, ToolArgumentsError
from agents.events import ApprovalRequested, HandoffRequested, StepRetrying, ToolCalled
from agents.followups import schedule_checkpoint
from agents.ids import new_id
from agents.model import ModelReply, ToolCallRequest
from agents.playbook import render, render_value
from agents.retry import with_retries
from agents.summaries import handoff_summary
from agents.tools import Risk, Tool, ToolContext
from storage.models import Approval, Step
from storage.repositories import approvals, handoffs, runs, steps, tool_calls

if TYPE_CHECKING:
    from agents.state import RunState, Services

log = logging.getLogger(__name__)

MAX_AGENT_HANDOFFS = 3
MAX_DRAFT_REJECTIONS = 3
RESULT_LIMIT = 20_000  # characters of a tool result kept for the model


@dataclass(frozen=True)
class Done:
    """The step produced its output."""

    output: str


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
class _Result:
    text: str
    ok: bool = True


class StepRunner:
    """Carries one step forward from whatever state storage holds."""

    def __init__(self, svc: Services, state: RunState, step: Step) -> None:
        self.svc = svc
        self.state = state
        self.step = step
        self.run_id = state.run_id

    # ---- entry -------------------------------------------------------------------------
    async def run(self) -> Outcome:
        """Advance the step as far as it can go now."""
        try:
            async with asyncio.timeout(self.state.limits.step_timeout_s):
                if self.step.tool:
                    return await self._run_tool_step()
                return await self._run_agent_step()
        except TimeoutError:
            return Failed(
                f"it took longer than {self.state.limits.step_timeout_s:g} s (BATON_STEP_TIMEOUT)"
            )
        except LimitExceeded as exc:
            return Failed(str(exc))
        except ModelError as exc:
            return Failed(str(exc))
        except ConfigError as exc:
            return Failed(str(exc))

    # ---- tool steps ---------------------------------------------------------------------
    async def _run_tool_step(self) -> Outcome:
        step = self.step
        tool = self.svc.registry.tool(step.tool or "")
        outputs = self.state.outputs()
        raw_args = render_value(step.arguments or {}, goal=self.state.goal, outputs=outputs)
        try:
            args = tool.validate(raw_args)
        except ToolArgumentsError as exc:
            return Failed(str(exc))
        key = f"{self.run_id}:{step.step_id}:tool"
        gated = step.needs_approval or self._gated(tool)
        result = await self._call(tool, args, key=key, call_id="tool", gated=gated)
        if isinstance(result, Parked | Done):
            return result
        if isinstance(result, _Rejection):
            return Rejected(result.reason)
        if not result.ok:
            return Failed(f"{tool.name} failed: {result.text}")
        return Done(result.text)

    # ---- agent steps --------------------------------------------------------------------
    async def _run_agent_step(self) -> Outcome:
        step = self.step
        context = dict(step.context or {})
        epoch = int(context.get("epoch", 0))
        transcript = list(step.transcript or [])
        if not transcript:
            transcript = self._opening(step.agent or "", context)
            await self._save(transcript=transcript)
        while True:
            agent = self.svc.registry.agent(step.agent or "")
            last = transcript[-1]
            turn = len(transcript) - 1
            if last["role"] == "assistant" and last.get("tool_calls"):
                got = await self._tool_turn(agent.name, last["tool_calls"], epoch, turn)
                if isinstance(got, Parked | Done | Failed):
                    return got
                if isinstance(got, _Switch):
                    epoch += 1
                    context["epoch"] = epoch
                    transcript = got.transcript
                    step.agent = got.agent
                    await self._save(transcript=transcript, agent=got.agent, context=context)
                    continue
                transcript = [*transcript, *got]
            elif last["role"] == "assistant":
                draft = last.get("content") or ""
                if not step.needs_approval:
                    return Done(draft)
                decided = await self._draft_checkpoint(draft, transcript)
                if not isinstance(decided, list):
                    return decided
                transcript = decided
            turns = sum(1 for m in transcript if m["role"] == "assistant")
            if turns >= agent.max_iterations:
                return Failed(
                    f"{agent.name} did not finish within {agent.max_iterations} model turns "
                    "(its iteration cap)"
                )
            tools = [t.schema() for t in self.svc.registry.tools_for(agent)]
            reply = await self._complete(agent.model or self.svc.settings.model, transcript, tools)
            transcript = [*transcript, reply.message()]
            await self._record_turn(reply, transcript)

    def _opening(self, agent_name: str, context: dict[str, Any]) -> list[dict[str, Any]]:
        agent = self.svc.registry.agent(agent_name)
        user = prompts.step_prompt(
            goal=self.state.goal,
            title=self.step.title,
            instructions=str(context.get("instructions", "")),
            dependencies=context.get("dependencies", {}),
        )
        return [
            {
                "role": "system",
                "content": prompts.system_prompt(
                    name=agent.name, role=agent.role, instructions=agent.instructions
                ),
            },
            {"role": "user", "content": user},
        ]

    async def _complete(
        self, model: str, transcript: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> ModelReply:
        budget = self.state.budget
        budget.check()

        async def on_retry(attempt: int, delay: float, exc: ModelError) -> None:
            await self.svc.bus.publish(
                StepRetrying(self.run_id, self.step.step_id, attempt, delay, str(exc))
            )

        s = self.svc.settings
        reply = await with_retries(
            lambda: self.svc.model.complete(
                model=model, messages=transcript, tools=tools, timeout_s=s.model_timeout_s
            ),
            retries=s.model_retries,
            base=s.retry_base_s,
            cap=s.retry_max_s,
            on_retry=on_retry,
        )
        budget.add(tokens=reply.tokens_in + reply.tokens_out, cost_usd=reply.cost_usd)
        return reply

    async def _record_turn(self, reply: ModelReply, transcript: list[dict[str, Any]]) -> None:
        now = self.svc.clock()
        async with self.svc.db.transaction() as session:
            await steps.add_usage(
                session,
                run_id=self.run_id,
                step_id=self.step.step_id,
                tokens_in=reply.tokens_in,
                tokens_out=reply.tokens_out,
                cost_usd=reply.cost_usd,
                values={"transcript": transcript},
            )
            await runs.add_usage(
                session,
                run_id=self.run_id,
                model_calls=1,
                tokens_in=reply.tokens_in,
                tokens_out=reply.tokens_out,
                cost_usd=reply.cost_usd,
                now=now,
            )
        self.step.transcript = transcript
        self.step.model_calls += 1
        self.step.tokens_in += reply.tokens_in
        self.step.tokens_out += reply.tokens_out
        self.step.cost_usd += reply.cost_usd

    async def _save(self, **values: Any) -> None:
        async with self.svc.db.transaction() as session:
            await steps.update_step(
                session, run_id=self.run_id, step_id=self.step.step_id, values=values
            )
        for k, v in values.items():
            setattr(self.step, k, v)

    # ---- one assistant turn's tool calls -------------------------------------------------
    async def _tool_turn(
        self, agent_name: str, raw_calls: list[dict[str, Any]], epoch: int, turn: int
    ) -> list[dict[str, Any]] | Parked | Done | Failed | _Switch:
        calls = [
            ToolCallRequest(
                id=c["id"], name=c["function"]["name"], arguments=c["function"]["arguments"]
            )
            for c in raw_calls
        ]
        base = f"{self.run_id}:{self.step.step_id}:{epoch}:{turn}"
        for i, call in enumerate(calls):
            if call.name == HANDOFF_TO_HUMAN:
                return await self._handoff_to_human(
                    call, calls, key=f"{base}:{i}", agent=agent_name
                )
            if call.name == HANDOFF_TO_AGENT:
                return await self._handoff_to_agent(call, agent_name, epoch)
        agent = self.svc.registry.agent(agent_name)
        allowed = {t.name: t for t in self.svc.registry.tools_for(agent)}
        results = await asyncio.gather(
            *(self._agent_call(call, allowed, key=f"{base}:{i}") for i, call in enumerate(calls))
        )
        # A person who took a call over did the whole step: their result is its output.
        for r in results:
            if isinstance(r, Done):
                return r
        parked = [r for r in results if isinstance(r, Parked)]
        if parked:
            return parked[0]
        return [
            {
                "role": "tool",
                "tool_call_id": call.id,
                "content": prompts.tool_result_text(r.text[:RESULT_LIMIT], tool=call.name)
                if isinstance(r, _Result)
                else str(r),
            }
            for call, r in zip(calls, results, strict=True)
        ]

    async def _agent_call(
        self, call: ToolCallRequest, allowed: dict[str, Tool], *, key: str
    ) -> _Result | Parked | Done:
        tool = allowed.get(call.name)
        if tool is None:
            names = ", ".join(sorted(n for n in allowed if not allowed[n].control)) or "none"
            return _Result(
                f"Error: there is no tool {call.name!r} for you. Your tools: {names}.", False
            )
        try:
            parsed = json.loads(call.arguments or "{}")
        except json.JSONDecodeError as exc:
            return _Result(f"Error: the arguments are not valid JSON ({exc.msg}).", False)
        try:
            args = tool.validate(parsed)
        except ToolArgumentsError as exc:
            return _Result(f"Error: {exc}", False)
        result = await self._call(tool, args, key=key, call_id=call.id, gated=self._gated(tool))
        if isinstance(result, _Rejection):
            return _Result(
                f"A person rejected this call, so it was not made. Their reason: {result.reason}",
                False,
            )
        return result

    def _gated(self, tool: Tool) -> bool:
        # Fixed in code: what the model writes cannot lift an approval.
        if tool.risk is Risk.EXTERNAL:
            return True
        return tool.risk is Risk.WRITES and self.svc.settings.approve_writes

    # ---- the ledger: approval, intent, call, result ---------------------------------------
    async def _call(
        self, tool: Tool, args: dict[str, Any], *, key: str, call_id: str, gated: bool
    ) -> _Result | Parked | Done | _Rejection:
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
            return _Result(row.result or "", row.status == "done")
        if row is not None:  # an intent with no result: we stopped during the call
            if tool.idempotent:
                return await self._execute(tool, row.arguments or args, key, call_id, intent=False)
            return await self._unknown_outcome(tool, row.arguments or args, key, call_id)
        approved_args = args
        approval: Approval | None = None
        if gated:
            approval = found[-1] if found else None
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
                return _Rejection(approval.reason or "no reason given")
            if approval.edited and "arguments" in approval.edited:
                approved_args = approval.edited["arguments"]
        return await self._execute(
            tool,
            approved_args,
            key,
            call_id,
            intent=tool.risk is not Risk.READ_ONLY,
            approval=approval,
        )

    async def _execute(
        self,
        tool: Tool,
        args: dict[str, Any],
        key: str,
        call_id: str,
        *,
        intent: bool,
        approval: Approval | None = None,
    ) -> _Result:
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
                if await tool_calls.get_by_key(session, key=key) is None:
                    await tool_calls.insert(session, values=row)
                if approval is not None:
                    await approvals.consume(session, approval_id=approval.id, now=now)
                await steps.update_step(
                    session,
                    run_id=self.run_id,
                    step_id=self.step.step_id,
                    values={"status": "running"},
                )
        ctx = ToolContext(run_id=self.run_id, step_id=self.step.step_id, idempotency_key=key)
        try:
            text, ok = await tool.call(args, ctx), True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a tool error is news for the model, not a crash
            log.info("tool %s failed: %s", tool.name, exc)
            text, ok = f"Error from {tool.name}: {type(exc).__name__}: {exc}", False
        done = {
            "status": "done" if ok else "error",
            "result": text,
            "finished_at": self.svc.clock(),
        }
        async with self.svc.db.transaction() as session:
            if intent:
                await tool_calls.finish(session, key=key, values=done)
            else:
                existing = await tool_calls.get_by_key(session, key=key)
                if existing is None:
                    await tool_calls.insert(session, values={**row, **done})
                else:
                    await tool_calls.finish(session, key=key, values=done)
        await self.svc.bus.publish(
            ToolCalled(self.run_id, self.step.step_id, tool.name, args, ok, text[:200])
        )
        return _Result(text, ok)

    async def _unknown_outcome(
        self, tool: Tool, args: dict[str, Any], key: str, call_id: str
    ) -> _Result | Parked | Done:
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
            if not isinstance(taken, _Rejection):
                return taken
            approval.reason = taken.reason
        elif approval.status == "approved":  # a person said: make the call again
            return await self._execute(tool, args, key, call_id, intent=True, approval=approval)
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
        return _Result(f"Not repeated after an unknown outcome; a person said: {note}", False)

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
            if not isinstance(taken, _Rejection):
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

    async def _taken_over(self, approval: Approval) -> Parked | Done | _Rejection:
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
            return _Rejection(f"a person took this over, then handed it back: {note}")
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

    # ---- handoffs ---------------------------------------------------------------------------
    async def _handoff_to_human(
        self, call: ToolCallRequest, calls: list[ToolCallRequest], *, key: str, agent: str
    ) -> Parked | Done | list[dict[str, Any]]:
        async with self.svc.db.transaction() as session:
            existing = await handoffs.list_handoffs(
                session, run_id=self.run_id, step_id=self.step.step_id
            )
        current = next((h for h in reversed(existing) if h.ref == key), None)
        if current is None:
            try:
                args = json.loads(call.arguments or "{}")
            except json.JSONDecodeError:
                args = {}
            question = str(args.get("question") or "Please complete this step.")
            summary = await self.handoff_summary(str(args.get("summary") or ""))
            return await self.open_handoff(question, summary, agent=agent, ref=key)
        if current.status == "open":
            return Parked(current.id)
        if current.status in ("answered", "returned"):
            await self._close_handoff(current.id, current.status)
        if current.status in ("returned", "handed_back"):
            note = current.answer or "no note"
            return [
                {
                    "role": "tool",
                    "tool_call_id": c.id,
                    "content": f"The person handed the step back to you without doing it. "
                    f"Their note: {note}"
                    if c.id == call.id
                    else "Not run: the step was with a person.",
                }
                for c in calls
            ]
        return Done(current.answer or "")

    async def open_handoff(
        self, question: str, summary: str, *, agent: str | None, ref: str | None = None
    ) -> Parked:
        """Give the step to a person with ``summary``; their answer becomes the output."""
        now = self.svc.clock()
        handoff_id = new_id("h")
        async with self.svc.db.transaction() as session:
            await handoffs.insert(
                session,
                values={
                    "id": handoff_id,
                    "run_id": self.run_id,
                    "step_id": self.step.step_id,
                    "kind": "to_human",
                    "from_agent": agent,
                    "ref": ref,
                    "question": question,
                    "summary": summary,
                    "status": "open",
                    "created_at": now,
                },
            )
            await steps.update_step(
                session,
                run_id=self.run_id,
                step_id=self.step.step_id,
                values={"status": "waiting_human"},
            )
        self.step.status = "waiting_human"
        await self.svc.bus.publish(
            HandoffRequested(self.run_id, handoff_id, self.step.step_id, "human", question, summary)
        )
        return Parked(handoff_id)

    async def handoff_summary(self, agent_summary: str) -> str:
        """Goal, the step, the evidence from earlier steps, and the calls made so far."""
        async with self.svc.db.transaction() as session:
            calls = await tool_calls.list_for_run(
                session, run_id=self.run_id, step_id=self.step.step_id
            )
        return handoff_summary(
            goal=self.state.goal, step=self.step, calls=calls, agent_summary=agent_summary
        )

    async def _handoff_to_agent(
        self, call: ToolCallRequest, from_agent: str, epoch: int
    ) -> _Switch | list[dict[str, Any]]:
        try:
            args = json.loads(call.arguments or "{}")
        except json.JSONDecodeError:
            args = {}
        target = str(args.get("agent") or "")
        note = str(args.get("note") or "")
        problem = None
        if target not in self.svc.registry.agents:
            problem = f"there is no agent {target!r}; agents: {', '.join(sorted(self.svc.registry.agents))}"
        elif target == from_agent:
            problem = "you cannot hand a step to yourself"
        elif epoch >= MAX_AGENT_HANDOFFS:
            problem = f"this step was already handed over {epoch} times"
        if problem:
            return [
                {
                    "role": "tool",
                    "tool_call_id": call.id,
                    "content": f"Handoff refused: {problem}. Continue the step yourself.",
                }
            ]
        context = dict(self.step.context or {})
        opening = self._opening(target, context)
        opening[-1]["content"] += "\n\n" + (
            f"Agent {from_agent} handed this step to you with this note:\n"
            + prompts.fence(note, source=f"agent {from_agent}")
        )
        now = self.svc.clock()
        async with self.svc.db.transaction() as session:
            await handoffs.insert(
                session,
                values={
                    "id": new_id("h"),
                    "run_id": self.run_id,
                    "step_id": self.step.step_id,
                    "kind": "to_agent",
                    "from_agent": from_agent,
                    "to_agent": target,
                    "summary": note,
                    "status": "closed",
                    "created_at": now,
                    "answered_at": now,
                },
            )
        await self.svc.bus.publish(
            HandoffRequested(self.run_id, "", self.step.step_id, target, "", note)
        )
        return _Switch(agent=target, transcript=opening)


@dataclass(frozen=True)
class _Rejection:
    reason: str


@dataclass(frozen=True)
class _Switch:
    agent: str
    transcript: list[dict[str, Any]]


def step_context(state: RunState, step: Step) -> dict[str, Any]:
    """What a step is given: its instructions with references filled, and its inputs' outputs."""
    outputs = state.outputs()
    deps = {
        dep: {"title": state.steps[dep].title, "output": outputs.get(dep, "")}
        for dep in step.depends_on or []
        if dep in state.steps
    }
    instructions = render(step.instructions or "", goal=state.goal, outputs=outputs)
    return {"instructions": instructions, "dependencies": deps, "epoch": 0}
