"""The plan: steps with dependencies (a DAG), each done by one agent or one tool.

The same model validates a plan from the planner (model output) and from a playbook (a
person's YAML); ``problems()`` lists everything wrong at once so a repair round, or a person,
can fix it in one go.
"""

from __future__ import annotations

import copy
import functools
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.errors import PlanError
from agents.registry import Registry
from agents.timing import condition_problems, parse_duration, parse_instant

STEP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class PlanStep(BaseModel):
    """One unit of work."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Short unique id: letters, digits, - or _ (e.g. 'research').")
    title: str = Field(description="What this step does, in a few words.")
    agent: str | None = Field(default=None, description="Agent that does the step.")
    tool: str | None = Field(default=None, description="Or: a tool called directly.")
    instructions: str = Field(default="", description="What exactly to do and produce.")
    arguments: dict[str, Any] | None = Field(
        default=None, description="For a tool step: the tool's arguments."
    )
    depends_on: list[str] = Field(
        default_factory=list, description="Ids of steps whose results this step needs."
    )
    needs_approval: bool = Field(
        default=False, description="True if a person must approve the result before it counts."
    )
    after: str | None = Field(
        default=None,
        description="A follow-up: wait this long after the step is ready (e.g. '3d', '2h').",
    )
    at: str | None = Field(
        default=None, description="A follow-up: do not start before this ISO 8601 date-time."
    )
    only_if: dict[str, str] | None = Field(
        default=None,
        description="Run only if an earlier step's output passes a test, e.g. "
        "{'step': 'check_reply', 'contains': 'no reply'}; otherwise the step is skipped.",
    )


class Plan(BaseModel):
    """A validated DAG of steps."""

    model_config = ConfigDict(extra="forbid")

    steps: list[PlanStep]
    #: A playbook's input values, filled into ``{inputs.NAME}`` when each step starts.
    inputs: dict[str, str] = Field(default_factory=dict)

    def step(self, step_id: str) -> PlanStep:
        """The step with this id."""
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)


def parse_plan(data: Any) -> Plan:
    """Shape-check raw data into a :class:`Plan`, or raise :class:`PlanError`."""
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or 'plan'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise PlanError("The plan is not in the expected shape.", problems) from None


def problems(plan: Plan, registry: Registry, *, max_steps: int) -> list[str]:
    """Everything wrong with a plan; empty when it can run."""
    found: list[str] = []
    if not plan.steps:
        found.append("The plan has no steps.")
    if len(plan.steps) > max_steps:
        found.append(f"The plan has {len(plan.steps)} steps; the limit is {max_steps}.")
    ids = [s.id for s in plan.steps]
    seen: set[str] = set()
    for s in plan.steps:
        if not STEP_ID.match(s.id):
            found.append(f"Step id {s.id!r} must be letters, digits, - or _ (at most 64).")
        if s.id in seen:
            found.append(f"Step id {s.id!r} is used twice.")
        seen.add(s.id)
        if bool(s.agent) == bool(s.tool):
            found.append(f"Step {s.id!r} must name exactly one agent or one tool.")
        if s.agent and s.agent not in registry.agents:
            known = ", ".join(sorted(registry.agents))
            found.append(f"Step {s.id!r} names unknown agent {s.agent!r} (known: {known}).")
        if s.tool:
            tool = registry.tools.get(s.tool)
            if tool is None or tool.control:
                found.append(f"Step {s.id!r} names unknown tool {s.tool!r}.")
        for dep in s.depends_on:
            if dep == s.id:
                found.append(f"Step {s.id!r} depends on itself.")
            elif dep not in ids:
                found.append(f"Step {s.id!r} depends on {dep!r}, which is not in the plan.")
    for s in plan.steps:
        found += [f"Step {s.id!r}: {p}" for p in timing_problems(s, set(ids))]
    cycle = find_cycle(plan)
    if cycle:
        found.append("The steps depend on each other in a cycle: " + " → ".join(cycle) + ".")
    return found


def timing_problems(step: PlanStep, ids: set[str]) -> list[str]:
    """Problems with a step's ``after``/``at``/``only_if``."""
    found = []
    if step.after and step.at:
        found.append("give either after or at, not both")
    try:
        if step.after:
            parse_duration(step.after)
        if step.at:
            parse_instant(step.at)
    except PlanError as exc:
        found.append(str(exc))
    found += condition_problems(step.only_if, ids)
    if step.only_if and step.only_if.get("step") not in step.depends_on:
        found.append("only_if must test a step listed in depends_on")
    return found


def step_schedule(step: PlanStep) -> dict[str, Any] | None:
    """The stored form of a step's timing and condition (None when it has neither)."""
    # Only a playbook's step (a person's) can allow more than one message per recipient.
    allowance = getattr(step, "max_per_recipient", None)
    if not (step.after or step.at or step.only_if or allowance):
        return None
    stored: dict[str, Any] = {
        "after_s": parse_duration(step.after) if step.after else None,
        "at": parse_instant(step.at) if step.at else None,
        "only_if": step.only_if,
    }
    if allowance:
        stored["max_per_recipient"] = int(allowance)
    return stored


def validate(plan: Plan, registry: Registry, *, max_steps: int) -> Plan:
    """Return the plan if it can run, else raise :class:`PlanError` listing every problem."""
    found = problems(plan, registry, max_steps=max_steps)
    if found:
        raise PlanError("The plan is invalid.", found)
    return plan


def find_cycle(plan: Plan) -> list[str]:
    """One dependency cycle as a list of ids (first id repeated at the end), or []."""
    deps = {s.id: [d for d in s.depends_on if d != s.id] for s in plan.steps}
    state: dict[str, int] = {}  # 1 = on the stack, 2 = finished
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for dep in deps.get(node, []):
            if dep not in deps:
                continue
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in deps:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


@functools.cache
def _plan_schema() -> dict[str, Any]:
    schema = Plan.model_json_schema()
    schema.get("properties", {}).pop("inputs", None)
    return schema


def plan_json_schema() -> dict[str, Any]:
    """JSON schema of a plan, for structured output (inputs are a playbook's, not the model's).
    Built once; each caller gets its own copy."""
    return copy.deepcopy(_plan_schema())
