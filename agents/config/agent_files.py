"""One agent per YAML file: its fields checked one by one, each problem at its line.

name: support_triage            # default: the file name without .yaml
role: Sorts incoming support requests and drafts first answers.
model: openai/gpt-4o-mini       # default: BATON_MODEL
fallbacks: [anthropic/claude-3-5-haiku-latest]
instructions: |
  The SOP: rules, steps, boundaries, and when to hand over to a person.
tools: [lookup]
max_iterations: 8
max_cost_usd: 0.25
output_schema: {type: object, properties: {...}}
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from agents.agent import Agent
from agents.config.yaml_marks import Document, Problem, kind_of

NAME = re.compile(r"^[a-z0-9_-]{1,64}$")
_SCIENTIFIC = re.compile(r"^[+]?[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+$")
KEYS = (
    "name",
    "role",
    "model",
    "fallbacks",
    "instructions",
    "tools",
    "max_iterations",
    "max_cost_usd",
    "output_schema",
)


@dataclass
class AgentFile:
    """An agent read from a file, with the lines the second pass (tools) needs."""

    agent: Agent
    file: str
    line: int
    #: Line of each tool name in ``tools``, to point at an unknown one.
    tool_lines: dict[str, int] = field(default_factory=dict)


def parse_agent(doc: Document, default_name: str) -> AgentFile | list[Problem]:
    """The agent in ``doc``, or every problem with it (all at once, so one edit fixes all)."""
    data = doc.data
    if not isinstance(data, dict):
        return [
            doc.problem(
                f"an agent file is a YAML mapping with role and instructions, got {kind_of(data)}"
            )
        ]
    problems: list[Problem] = []
    for key in data:
        if key not in KEYS:
            near = difflib.get_close_matches(str(key), KEYS, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else f" (known keys: {', '.join(KEYS)})"
            problems.append(doc.problem(f"unknown key {key!r}{hint}", str(key)))

    def text(key: str, *, required: bool) -> str | None:
        value = data.get(key)
        if value is None:
            if required:
                problems.append(doc.problem(f"{key!r} is required", key))
            return None
        if not isinstance(value, str):
            problems.append(doc.problem(f"{key!r} must be text, got {kind_of(value)}", key))
            return None
        if not value.strip():
            problems.append(doc.problem(f"{key!r} must not be empty", key))
            return None
        return value.strip()

    name = data.get("name", default_name)
    if not isinstance(name, str) or not NAME.match(name):
        where = "name" if "name" in data else "the file name"
        problems.append(
            doc.problem(
                f"the agent's name ({where}: {name!r}) must be 1-64 of a-z, 0-9, _ and -",
                "name",
            )
        )
    role = text("role", required=True)
    instructions = text("instructions", required=True)
    model = text("model", required=False) if "model" in data else None
    fallbacks = _strings(doc, data, "fallbacks", problems)
    tools = _strings(doc, data, "tools", problems)
    max_iterations = _number(doc, data, "max_iterations", problems, whole=True)
    max_cost = _number(doc, data, "max_cost_usd", problems, whole=False)
    schema = _schema(doc, data, problems)
    if len(set(tools)) != len(tools):
        problems.append(doc.problem("'tools' lists a tool twice", "tools"))
    if problems:
        return problems
    assert isinstance(name, str) and role is not None and instructions is not None
    line = doc.line("name") if "name" in data else 1
    agent = Agent(
        name=name,
        role=role,
        instructions=instructions,
        model=model,
        tools=tuple(tools),
        max_iterations=int(max_iterations) if max_iterations is not None else 10,
        fallbacks=tuple(fallbacks),
        max_cost_usd=float(max_cost) if max_cost is not None else None,
        output_schema=schema,
        source=f"{doc.path}:{line}",
    )
    tool_lines = {t: doc.line("tools", i) for i, t in enumerate(tools)}
    return AgentFile(agent, doc.path, line, tool_lines)


def _strings(doc: Document, data: dict[str, Any], key: str, problems: list[Problem]) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]  # `tools: lookup` reads naturally; a list of one is meant
    if not isinstance(value, list):
        problems.append(doc.problem(f"{key!r} must be a list of names, got {kind_of(value)}", key))
        return []
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            problems.append(doc.problem(f"{key!r} item {i + 1} must be non-empty text", key, i))
            continue
        out.append(item.strip())
    return out


def _number(
    doc: Document, data: dict[str, Any], key: str, problems: list[Problem], *, whole: bool
) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if not whole and isinstance(value, str) and _SCIENTIFIC.match(value.strip()):
        value = float(value)  # PyYAML reads `1e-6` (no dot) as text; a person means a number
    ok = isinstance(value, int) if whole else isinstance(value, int | float)
    if isinstance(value, bool) or not ok:
        what = "a whole number" if whole else "a number"
        problems.append(doc.problem(f"{key!r} must be {what}, got {kind_of(value)}", key))
        return None
    if value <= 0:
        problems.append(doc.problem(f"{key!r} must be more than 0, got {value}", key))
        return None
    return float(value)


def _schema(doc: Document, data: dict[str, Any], problems: list[Problem]) -> dict[str, Any] | None:
    value = data.get("output_schema")
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.append(
            doc.problem(
                f"'output_schema' must be a JSON schema (a mapping), got {kind_of(value)}",
                "output_schema",
            )
        )
        return None
    import jsonschema

    try:
        jsonschema.validators.validator_for(value).check_schema(value)
    except jsonschema.SchemaError as exc:
        problems.append(
            doc.problem(
                f"'output_schema' is not a valid JSON schema: {exc.message}",
                "output_schema",
                *exc.absolute_path,
            )
        )
        return None
    return value
