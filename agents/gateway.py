"""One model turn of an agent's step: caps first, the agent's model, then its fallbacks, and
its final answer checked against its ``output_schema``.

- Before every model call the run's budget and the agent's per-step cap (``max_cost_usd``)
  are checked; reaching either fails the step with a message naming the cap.
- A model is tried with the usual retries of transient errors. If it still fails (retries
  used up, or an error no retry fixes: unknown model, refused key, rejected request), each
  fallback is tried in turn. A switch is announced as a ``StepRetrying`` event and logged.
- With ``output_schema`` the model is asked for JSON of that schema (``response_format``). A
  final answer that does not match gets one corrective turn listing the errors; a second
  miss fails the step. The corrective exchange is not kept in the transcript: the reply
  returned is the corrected one, carrying the usage of both calls.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agents.budget import RunBudget, dollars
from agents.errors import LimitExceeded, ModelError
from agents.events import StepRetrying
from agents.model import ModelReply
from agents.retry import with_retries

if TYPE_CHECKING:
    from agents.agent import Agent
    from agents.state import Services

log = logging.getLogger(__name__)

MAX_SCHEMA_ERRORS = 8


@dataclass
class StepCall:
    """Who is calling: the step, its agent, and what the step has spent before this turn."""

    svc: Services
    agent: Agent
    run_id: str
    step_id: str
    budget: RunBudget
    spent_usd: float

    async def complete(
        self, model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> ModelReply:
        """One turn: a reply from ``model`` or a fallback, matching the schema if there is one."""
        reply = await self._any_model(model, messages, tools)
        schema = self.agent.output_schema
        if schema is None or reply.tool_calls:
            return reply
        errors = schema_errors(reply.content, schema)
        if not errors:
            return reply
        fix = [
            *messages,
            reply.message(),
            {"role": "user", "content": correction(errors)},
        ]
        again = await self._any_model(model, fix, tools)
        if again.tool_calls:
            return _with_usage_of(again, reply)  # it went back to work: the loop carries on
        still = schema_errors(again.content, schema)
        if still:
            raise ModelError(
                f"{self.agent.name}'s answer did not match its output_schema, even after being "
                f"told what was wrong: {'; '.join(still[:3])}"
            )
        return _with_usage_of(again, reply)

    async def _any_model(
        self, model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> ModelReply:
        models = [model, *(m for m in self.agent.fallbacks if m != model)]
        failures: list[tuple[str, ModelError]] = []
        for i, name in enumerate(models):
            try:
                reply = await self._one_model(name, messages, tools)
            except ModelError as exc:
                failures.append((name, exc))
                if i + 1 == len(models):
                    break
                nxt = models[i + 1]
                log.warning(
                    "step %s of run %s: %s failed (%s); trying fallback %s",
                    self.step_id,
                    self.run_id,
                    name,
                    exc,
                    nxt,
                )
                await self.svc.bus.publish(
                    StepRetrying(
                        self.run_id, self.step_id, i + 1, 0.0, f"{name} failed; fallback {nxt}"
                    )
                )
                continue
            if i:
                log.info(
                    "step %s of run %s answered by fallback %s", self.step_id, self.run_id, name
                )
            return reply
        if len(failures) == 1:
            raise failures[0][1]
        raise ModelError(
            f"Every model of {self.agent.name} failed: "
            + " | ".join(f"{name}: {exc}" for name, exc in failures)
        )

    async def _one_model(
        self, model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> ModelReply:
        s = self.svc.settings
        response_format = _response_format(self.agent) if self.agent.output_schema else None

        async def call() -> ModelReply:
            self._check_caps()
            return await self.svc.model.complete(
                model=model,
                messages=messages,
                tools=tools,
                response_format=response_format,
                timeout_s=s.model_timeout_s,
            )

        async def on_retry(attempt: int, delay: float, exc: ModelError) -> None:
            await self.svc.bus.publish(
                StepRetrying(self.run_id, self.step_id, attempt, delay, str(exc))
            )

        reply = await with_retries(
            call, retries=s.model_retries, base=s.retry_base_s, cap=s.retry_max_s, on_retry=on_retry
        )
        self.budget.add(tokens=reply.tokens_in + reply.tokens_out, cost_usd=reply.cost_usd)
        self.spent_usd += reply.cost_usd
        return reply

    def _check_caps(self) -> None:
        self.budget.check()
        cap = self.agent.max_cost_usd
        if cap is not None and self.spent_usd >= cap:
            where = f" ({self.agent.source})" if self.agent.source else ""
            raise LimitExceeded(
                f"Step {self.step_id} cost ${dollars(self.spent_usd)}, reaching the cap of "
                f"${dollars(cap)} per step of agent {self.agent.name} (max_cost_usd{where}), "
                "and was stopped."
            )


def schema_errors(content: str | None, schema: dict[str, Any]) -> list[str]:
    """What is wrong with ``content`` as JSON of ``schema``; empty when it matches."""
    import jsonschema

    text = _unfence(content or "")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return [f"the answer is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"]
    validator = jsonschema.validators.validator_for(schema)(schema)
    found = []
    for err in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        found.append(f"{where}: {err.message}")
    return found[:MAX_SCHEMA_ERRORS]


def correction(errors: list[str]) -> str:
    """The corrective message: what did not match, and what to send instead."""
    listed = "\n".join(f"- {e}" for e in errors)
    return (
        "Your answer does not match the required JSON schema:\n"
        f"{listed}\n"
        "Reply again with only the corrected JSON: no prose, no code fence."
    )


def _unfence(text: str) -> str:
    # Models often wrap JSON in a ```json fence even when asked not to; the JSON is what counts.
    m = re.fullmatch(r"\s*```(?:json)?\s*(.*?)\s*```\s*", text, re.DOTALL)
    return m.group(1) if m else text


def _response_format(agent: Agent) -> dict[str, Any]:
    name = re.sub(r"[^A-Za-z0-9_-]", "_", agent.name)[:64] or "answer"
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": agent.output_schema, "strict": False},
    }


def _with_usage_of(reply: ModelReply, earlier: ModelReply) -> ModelReply:
    """``reply`` counting ``earlier``'s tokens and cost too (one turn made of two calls)."""
    reply.tokens_in += earlier.tokens_in
    reply.tokens_out += earlier.tokens_out
    reply.cost_usd += earlier.cost_usd
    return reply
