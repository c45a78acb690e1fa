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
from typing import TYPE_CHECKING, Any

from agents import prompts
from agents.builtin_tools import HANDOFF_TO_AGENT, HANDOFF_TO_HUMAN
from agents.errors import ConfigError, LimitExceeded, ModelError, ToolArgumentsError
from agents.gateway import StepCall
from agents.model import ModelReply, ToolCallRequest
from agents.playbook import render, render_value
from agents.tools import Risk, Tool
from storage.models import Step
from storage.repositories import steps

if TYPE_CHECKING:
    from agents.state import RunState, Services

from agents.checkpoints import Checkpoints
from agents.grounding import Grounding
from agents.guardrails import Guardrails, Interrupt
from agents.handing import Handoffs
from agents.outcomes import CallResult, Done, Failed, Outcome, Parked, Refusal, Rejected, Switch
from agents.state import FinalTurn, ToolDone, count_model_call

log = logging.getLogger(__name__)

RESULT_LIMIT = 20_000  # characters of a tool result kept for the model


class StepRunner(Checkpoints, Handoffs, Grounding, Guardrails):
    """Carries one step forward from whatever state storage holds."""

    def __init__(self, svc: Services, state: RunState, step: Step, *, fresh: bool = False) -> None:
        self.svc = svc
        self.state = state
        self.step = step
        self.run_id = state.run_id
        #: Started just now by this driver: nothing of it can be in the ledger yet, so the
        #: resume look-ups are skipped (they matter only after a crash or a checkpoint).
        self.fresh = fresh

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
        except Interrupt as exc:  # a guardrail stopped the step (a budget pause, a refusal)
            return exc.outcome

    # ---- tool steps ---------------------------------------------------------------------
    async def _run_tool_step(self) -> Outcome:
        step = self.step
        tool = self.svc.registry.tool(step.tool or "")
        outputs = self.state.outputs()
        raw_args = render_value(
            step.arguments or {}, goal=self.state.goal, outputs=outputs, inputs=self.state.inputs
        )
        try:
            args = tool.validate(raw_args)
        except ToolArgumentsError as exc:
            return Failed(str(exc))
        key = f"{self.run_id}:{step.step_id}:tool"
        gated = step.needs_approval or self._gated(tool)
        result = await self._call(
            tool, args, key=key, call_id="tool", gated=gated, defer_result=True
        )
        if isinstance(result, Parked | Done):
            return result
        if isinstance(result, Refusal):
            return Rejected(result.reason)
        if result.skipped:
            return Done(result.text)  # a person settled it: the step has nothing more to do
        if not result.ok:
            return Failed(f"{tool.name} failed: {result.text}")
        if result.pending is not None:
            # The ledger's result is committed with the step's completion (one commit).
            return ToolDone(result.text, ledger=result.pending)
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
                if isinstance(got, Switch):
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
            await self._before_model_call()  # runaway caps, money budgets (guardrails)
            reply = await self._complete(agent.model or self.svc.settings.model, transcript, tools)
            reply = self._scrubbed(reply)  # no secret is stored or shown
            transcript = [*transcript, reply.message()]
            if not reply.tool_calls and not step.needs_approval:
                # The final answer: the driver commits this turn with the step's completion
                # and the start of what it makes ready, in one transaction (run_loop).
                output, now = reply.content or "", self.svc.clock()
                return FinalTurn(output, now, reply=reply, transcript=transcript)
            await self._record_turn(reply, transcript)

    def _opening(self, agent_name: str, context: dict[str, Any]) -> list[dict[str, Any]]:
        return opening(self.svc, self.state, self.step, agent_name, context)

    async def _complete(
        self, model: str, transcript: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> ModelReply:
        # Caps, fallbacks and output_schema live in the gateway (agents.gateway).
        call = StepCall(
            svc=self.svc,
            agent=self.svc.registry.agent(self.step.agent or ""),
            run_id=self.run_id,
            step_id=self.step.step_id,
            budget=self.state.budget,
            spent_usd=self.step.cost_usd,
        )
        return await call.complete(model, transcript, tools)

    async def _record_turn(
        self,
        reply: ModelReply,
        transcript: list[dict[str, Any]],
        also: dict[str, Any] | None = None,
    ) -> None:
        await self._record_usage(reply, {"transcript": transcript, **(also or {})})
        self.step.transcript = transcript

    async def _record_usage(self, reply: ModelReply, values: dict[str, Any] | None = None) -> None:
        """Count one model call on the step and the run (with ``values`` set on the step)."""
        async with self.svc.db.transaction() as session:
            await steps.add_usage(
                session,
                run_id=self.run_id,
                step_id=self.step.step_id,
                tokens_in=reply.tokens_in,
                tokens_out=reply.tokens_out,
                cost_usd=reply.cost_usd,
                values=values,
            )
            await count_model_call(session, run_id=self.run_id, reply=reply)
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
    ) -> list[dict[str, Any]] | Parked | Done | Failed | Switch:
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
        repeated = self._repeats(raw_calls, calls)  # the loop detector (guardrails)
        if isinstance(repeated, Failed):
            return repeated
        results = await asyncio.gather(
            *(
                self._refuse_repeat(call)
                if i in repeated
                else self._agent_call(call, allowed, key=f"{base}:{i}")
                for i, call in enumerate(calls)
            )
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
                if isinstance(r, CallResult)
                else str(r),
            }
            for call, r in zip(calls, results, strict=True)
        ]

    async def _agent_call(
        self, call: ToolCallRequest, allowed: dict[str, Tool], *, key: str
    ) -> CallResult | Parked | Done:
        tool = allowed.get(call.name)
        if tool is None:
            names = ", ".join(sorted(n for n in allowed if not allowed[n].control)) or "none"
            return CallResult(
                f"Error: there is no tool {call.name!r} for you. Your tools: {names}.", False
            )
        try:
            parsed = json.loads(call.arguments or "{}")
        except json.JSONDecodeError as exc:
            return CallResult(f"Error: the arguments are not valid JSON ({exc.msg}).", False)
        try:
            args = tool.validate(parsed)
        except ToolArgumentsError as exc:
            return CallResult(f"Error: {exc}", False)
        result = await self._call(tool, args, key=key, call_id=call.id, gated=self._gated(tool))
        if isinstance(result, Refusal):
            return CallResult(
                f"A person rejected this call, so it was not made. Their reason: {result.reason}",
                False,
            )
        return result

    def _gated(self, tool: Tool) -> bool:
        # Fixed in code: what the model writes cannot lift an approval.
        if tool.risk is Risk.EXTERNAL:
            return True
        return tool.risk is Risk.WRITES and self.svc.settings.approve_writes


def step_context(state: RunState, step: Step) -> dict[str, Any]:
    """What a step is given: its instructions with references filled, and its inputs' outputs."""
    outputs = state.outputs()
    deps = {
        dep: {"title": state.steps[dep].title, "output": outputs.get(dep, "")}
        for dep in step.depends_on or []
        if dep in state.steps
    }
    instructions = render(
        step.instructions or "", goal=state.goal, outputs=outputs, inputs=state.inputs
    )
    return {"instructions": instructions, "dependencies": deps, "epoch": 0}


def opening(
    svc: Services, state: RunState, step: Step, agent_name: str, context: dict[str, Any]
) -> list[dict[str, Any]]:
    """The first messages of an agent's step: its system prompt and the step's brief."""
    agent = svc.registry.agent(agent_name)
    user = prompts.step_prompt(
        goal=state.goal,
        title=step.title,
        instructions=str(context.get("instructions", "")),
        dependencies=context.get("dependencies", {}),
    )
    system = prompts.system_prompt(
        name=agent.name, role=agent.role, instructions=agent.instructions
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]
