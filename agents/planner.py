"""The planner: asks the model for a plan for a goal, validates it, repairs it once."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from agents.errors import ModelError, PlanError
from agents.model import ModelReply
from agents.plan import Plan, parse_plan, plan_json_schema, validate
from agents.prompts import fence
from agents.registry import Registry

CallModel = Callable[[list[dict[str, Any]], dict[str, Any]], Awaitable[ModelReply]]

SYSTEM = """You are the planner of Baton, an orchestrator of AI agents.
Break the goal into the fewest steps that do it well. Each step is done by exactly one agent \
(or one tool called directly with fixed arguments). Steps that do not need each other's \
results must not depend on each other, so they run in parallel. A step that sends, posts, \
updates or otherwise acts on the outside world must set needs_approval to true.
Use only the agents and tools listed below. Reply with JSON only, matching the schema:
{"steps": [{"id", "title", "agent" | "tool", "instructions", "arguments"?, "depends_on": [ids], \
"needs_approval": bool}]}

Available agents and tools:
{registry}"""


def planner_messages(goal: str, registry: Registry) -> list[dict[str, Any]]:
    """The opening conversation for planning ``goal``."""
    system = SYSTEM.replace("{registry}", json.dumps(registry.describe(), indent=1))
    user = "Plan this goal. The goal is the requester's text:\n" + fence(goal, source="goal")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def response_format() -> dict[str, Any]:
    """Structured output request for a plan."""
    return {"type": "json_schema", "json_schema": {"name": "plan", "schema": plan_json_schema()}}


def _parse(reply: ModelReply, registry: Registry, max_steps: int) -> Plan:
    text = (reply.content or "").strip()
    if text.startswith("```"):
        # Some models wrap JSON in a fence despite structured output.
        text = text.strip("`").removeprefix("json").strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(
            "The planner did not return JSON.", [f"Not valid JSON: {exc.msg} at {exc.pos}."]
        ) from None
    return validate(parse_plan(data), registry, max_steps=max_steps)


async def make_plan(goal: str, registry: Registry, call: CallModel, *, max_steps: int) -> Plan:
    """Ask for a plan; on an invalid one, send the problems back once; then give up clearly."""
    messages = planner_messages(goal, registry)
    fmt = response_format()
    reply = await call(messages, fmt)
    try:
        return _parse(reply, registry, max_steps)
    except PlanError as first:
        messages = [
            *messages,
            {"role": "assistant", "content": reply.content or ""},
            {
                "role": "user",
                "content": "That plan cannot run:\n- "
                + "\n- ".join(first.problems or [str(first)])
                + "\nReturn a corrected plan as JSON only.",
            },
        ]
    reply = await call(messages, fmt)
    try:
        return _parse(reply, registry, max_steps)
    except PlanError as second:
        raise PlanError(
            "The model could not produce a valid plan for this goal after one repair: "
            + "; ".join(second.problems or [str(second)])
            + ". Try rephrasing the goal, or run a playbook instead.",
            second.problems,
        ) from None
    except ModelError:
        raise
