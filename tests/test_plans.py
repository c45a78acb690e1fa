"""Plans, playbooks and tool schemas: validation that names every problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.errors import ConfigError, PlaybookError, ToolArgumentsError
from agents.plan import Plan, PlanStep, find_cycle, problems
from agents.playbook import bind, load_playbook, parse_playbook, render
from agents.registry import build_registry
from agents.tools import Risk, ToolContext, make_tool, tool


@pytest.fixture
def registry():
    return build_registry(["tests.plugins.ledger"])


def _plan(*steps: dict) -> Plan:
    return Plan(steps=[PlanStep(**s) for s in steps])


def test_valid_plan_has_no_problems(registry):
    plan = _plan(
        {"id": "a", "title": "A", "agent": "researcher"},
        {
            "id": "b",
            "title": "B",
            "tool": "lookup",
            "arguments": {"topic": "x"},
            "depends_on": ["a"],
        },
    )
    assert problems(plan, registry, max_steps=5) == []


def test_every_problem_is_named_at_once(registry):
    plan = _plan(
        {"id": "a", "title": "A", "agent": "ghost"},
        {"id": "a", "title": "dup", "agent": "writer", "depends_on": ["nowhere"]},
        {"id": "c d", "title": "C", "agent": "writer", "tool": "lookup"},
        {"id": "e", "title": "E", "tool": "handoff_to_human"},
    )
    found = " | ".join(problems(plan, registry, max_steps=3))
    assert "unknown agent 'ghost'" in found
    assert "'a' is used twice" in found
    assert "depends on 'nowhere'" in found
    assert "exactly one agent or one tool" in found
    assert "letters, digits" in found
    assert "unknown tool 'handoff_to_human'" in found  # control tools are not plan steps
    assert "the limit is 3" in found


def test_cycle_is_reported_with_its_path(registry):
    plan = _plan(
        {"id": "a", "title": "A", "agent": "writer", "depends_on": ["c"]},
        {"id": "b", "title": "B", "agent": "writer", "depends_on": ["a"]},
        {"id": "c", "title": "C", "agent": "writer", "depends_on": ["b"]},
    )
    cycle = find_cycle(plan)
    assert cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    assert any("cycle" in p for p in problems(plan, registry, max_steps=10))


PLAYBOOK = """\
name: brief
description: Research an account
goal: Research {inputs.account}
inputs:
  account: Company name
  tone: {default: friendly}
steps:
  - id: research
    title: Research {inputs.account}
    agent: researcher
    instructions: Find facts about {inputs.account}.
  - id: draft
    title: Draft
    agent: writer
    instructions: "Write a {inputs.tone} note using {steps.research.output}"
  - id: log
    title: Log it
    tool: ledger_write
    arguments: {entry: "{inputs.account}: {steps.draft.output}"}
"""


def test_playbook_binds_inputs_and_implies_dependencies(registry):
    goal, plan = bind(parse_playbook(PLAYBOOK), {"account": "Acme"}, registry, max_steps=10)
    assert goal == "Research Acme"
    assert plan.step("research").title == "Research Acme"
    assert plan.inputs == {"account": "Acme", "tone": "friendly"}
    assert plan.step("draft").depends_on == ["research"]
    assert plan.step("log").depends_on == ["draft"]
    text = render(
        plan.step("draft").instructions,
        goal=goal,
        outputs={"research": "FACTS"},
        inputs=plan.inputs,
    )
    assert text == "Write a friendly note using FACTS"
    research = render(plan.step("research").instructions, goal=goal, outputs={}, inputs=plan.inputs)
    assert research == "Find facts about Acme."


def test_values_are_never_read_again_as_references(registry):
    sneaky = {"account": "{steps.draft.output} {goal}"}
    goal, plan = bind(parse_playbook(PLAYBOOK), sneaky, registry, max_steps=10)
    text = render(
        plan.step("research").instructions,
        goal=goal,
        outputs={"draft": "SECRET"},
        inputs=plan.inputs,
    )
    assert text == "Find facts about {steps.draft.output} {goal}."


def test_playbook_input_errors_are_listed(registry):
    with pytest.raises(PlaybookError) as exc:
        bind(parse_playbook(PLAYBOOK), {"acount": "typo"}, registry, max_steps=10)
    msg = str(exc.value)
    assert "Missing input 'account'" in msg and "Unknown input 'acount'" in msg


def test_playbook_yaml_error_names_file_and_line(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsteps:\n  - id: a\n    title: [unclosed\n")
    with pytest.raises(PlaybookError, match=r"bad.yaml:\d+: not valid YAML"):
        load_playbook(bad)


def test_playbook_unknown_agent_and_reference(registry):
    text = PLAYBOOK.replace("agent: writer", "agent: poet").replace(
        "{steps.research.output}", "{steps.nope.output}"
    )
    with pytest.raises(PlaybookError) as exc:
        bind(parse_playbook(text), {"account": "A"}, registry, max_steps=10)
    assert "{steps.nope.output}" in str(exc.value)


def test_playbook_shape_errors(tmp_path: Path):
    with pytest.raises(PlaybookError, match="steps"):
        parse_playbook("name: x\nstep: []\n", source="p.yaml")
    with pytest.raises(PlaybookError, match="Cannot read playbook"):
        load_playbook(tmp_path / "missing.yaml")


async def test_tool_schema_comes_from_type_hints():
    @tool(risk=Risk.EXTERNAL)
    async def email(to: str, subject: str, cc: list[str] | None = None, *, ctx: ToolContext) -> str:
        """Send an email.

        Longer text that the model does not need."""
        return f"{to}:{subject}:{cc}:{ctx.idempotency_key}"

    schema = email.schema()["function"]
    assert schema["name"] == "email" and schema["description"] == "Send an email."
    assert schema["parameters"]["required"] == ["to", "subject"]
    assert "ctx" not in schema["parameters"]["properties"]
    assert schema["parameters"]["additionalProperties"] is False
    args = email.validate({"to": "a@b.c", "subject": "hi"})
    ctx = ToolContext(run_id="r", step_id="s", idempotency_key="k1")
    assert await email.call(args, ctx) == "a@b.c:hi:None:k1"
    with pytest.raises(ToolArgumentsError, match="subject"):
        email.validate({"to": "a@b.c"})
    with pytest.raises(ToolArgumentsError, match="bcc"):
        email.validate({"to": "a", "subject": "b", "bcc": "x"})
    with pytest.raises(ToolArgumentsError, match="JSON object"):
        email.validate(["a"])


def test_sync_functions_are_refused():
    def not_async(x: int) -> int:
        return x

    with pytest.raises(ConfigError, match="async"):
        make_tool(not_async, risk=Risk.READ_ONLY)  # type: ignore[arg-type]


def test_unknown_plugin_is_a_clear_error():
    with pytest.raises(ConfigError, match="Cannot import plugin"):
        build_registry(["tests.plugins.does_not_exist"])
