"""Agents and SOPs as files: the config folder, ``baton check``, model fallbacks, structured
output and the per-step spend cap.

``baton check`` and ``baton run`` are real subprocesses; the model-gateway scenarios run the
engine in process against the scripted LLM (real litellm over HTTP), which a second model name
(``openai/<name>``) reaches too, so a primary and its fallback can be scripted apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agents.bootstrap import open_engine
from agents.config import load_config
from agents.engine import Engine
from agents.events import Event, StepRetrying
from agents.plan import Plan, PlanStep
from agents.registry import build_registry
from agents.settings import Settings
from storage.repositories import steps
from tests.conftest import Result, run_baton
from tests.support.fixtures import TEST_MODEL
from tests.support.llm_server import RecordedRequest, Reply, ScriptedLLM

PLUGIN = "tests.plugins.ledger"

TRIAGE = """\
name: triage
role: Sorts support requests by urgency.
model: openai/gpt-4o-mini
fallbacks: [openai/backup-model]
instructions: |
  Read the request and decide its priority.
  Never promise a refund: hand over to a person when money is involved.
tools: [lookup]
max_iterations: 5
max_cost_usd: 0.5
output_schema:
  type: object
  properties:
    priority: {type: string, enum: [low, high]}
  required: [priority]
"""

TRIAGE_PLAYBOOK = """\
name: triage
inputs:
  request: The customer's message
goal: "Triage: {inputs.request}"
steps:
  - id: sort
    title: Sort the request
    agent: triage
    instructions: "Sort this request: {inputs.request}"
"""


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def plain_agent(name: str, **extra: str) -> str:
    lines = [f"name: {name}", f"role: The {name} agent.", "instructions: Do the step well."]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


# ---- loading good files ----------------------------------------------------------------------


def test_good_files_load_with_every_field(tmp_path: Path):
    cfg = tmp_path / "config"
    write(cfg, "agents/triage.yaml", TRIAGE)
    write(cfg, "agents/writer.yml", "role: Writes tersely.\ninstructions: Be brief.\n")
    write(cfg, "playbooks/triage.yaml", TRIAGE_PLAYBOOK)
    write(
        cfg,
        "mcp.yaml",
        "servers:\n  crm:\n    command: python\n    args: [-m, tests.support.crm_mcp]\n",
    )

    config = load_config(cfg)
    assert config.problems == []
    triage = config.agents["triage"]
    assert triage.role == "Sorts support requests by urgency."
    assert triage.model == "openai/gpt-4o-mini"
    assert triage.fallbacks == ("openai/backup-model",)
    assert triage.instructions.startswith("Read the request and decide its priority.\nNever")
    assert triage.tools == ("lookup",)
    assert triage.max_iterations == 5
    assert triage.max_cost_usd == 0.5
    assert triage.output_schema == {
        "type": "object",
        "properties": {"priority": {"type": "string", "enum": ["low", "high"]}},
        "required": ["priority"],
    }
    assert triage.source == f"{cfg}/agents/triage.yaml:1"
    # The name defaults to the file's; the model to BATON_MODEL (None here).
    assert config.agents["writer"].model is None
    assert config.agents["writer"].source == f"{cfg}/agents/writer.yml:1"
    assert config.playbooks == {"triage": cfg / "playbooks" / "triage.yaml"}
    assert config.playbook_dir == cfg / "playbooks"
    assert set(config.mcp_servers) == {"crm"}

    registry = build_registry([PLUGIN], config=config)
    assert config.problems == []
    assert registry.agent("triage") is triage
    assert registry.agent("writer").instructions == "Be brief."  # a file overrides a built-in
    assert registry.agent("researcher").role  # the other built-ins stay


def test_a_missing_folder_is_built_ins_only(tmp_path: Path):
    config = load_config(tmp_path / "nowhere")
    assert config.problems == [] and config.agents == {} and config.playbooks == {}
    registry = build_registry([], config=config)
    assert set(registry.agents) == {"researcher", "writer", "reviewer", "analyst"}


def test_settings_config_dir_and_playbook_dir():
    assert Settings.from_env({}).config_dir == "config"
    assert Settings.from_env({}).playbook_dir == "config/playbooks"
    moved = Settings.from_env({"BATON_CONFIG_DIR": "/etc/baton"})
    assert (moved.config_dir, moved.playbook_dir) == ("/etc/baton", "/etc/baton/playbooks")
    both = Settings.from_env({"BATON_CONFIG_DIR": "/etc/baton", "BATON_PLAYBOOK_DIR": "/pb"})
    assert both.playbook_dir == "/pb"


# ---- baton check -----------------------------------------------------------------------------


@pytest.fixture
def check_env(baton_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    env = dict(baton_env)
    env["BATON_CONFIG_DIR"] = str(tmp_path / "config")
    return env


def check(env: dict[str, str]) -> Result:
    result = run_baton(["check"], env)
    assert "Traceback" not in result.err + result.out, result.err
    return result


def test_check_passes_with_a_summary(check_env: dict[str, str], tmp_path: Path):
    cfg = tmp_path / "config"
    write(cfg, "agents/triage.yaml", TRIAGE)
    write(cfg, "playbooks/triage.yaml", TRIAGE_PLAYBOOK)
    result = check(check_env)
    assert result.code == 0, result.out + result.err
    assert f"triage ({cfg}/agents/triage.yaml:1)" in result.out
    assert "Playbooks: 1" in result.out and "(triage)" in result.out
    assert "lookup" in result.out  # the plugin's tools are listed
    assert "No problems found." in result.out


BAD_FILES = {
    "yaml_syntax": (
        "agents/broken.yaml",
        "role: Broken.\ninstructions: Fine.\n  tools: [lookup]\n",
        3,
        "not valid YAML: mapping values are not allowed here",
    ),
    "unknown_key": (
        "agents/typo.yaml",
        "role: Typo.\ninstructions: Fine.\nmax_iteration: 3\n",
        3,
        "unknown key 'max_iteration' (did you mean 'max_iterations'?)",
    ),
    "wrong_type": (
        "agents/cost.yaml",
        "role: Cost.\ninstructions: Fine.\n\nmax_cost_usd: lots\n",
        4,
        "'max_cost_usd' must be a number, got text",
    ),
    "list_not_text": (
        "agents/role.yaml",
        "role: [a, b]\ninstructions: Fine.\n",
        1,
        "'role' must be text, got a list",
    ),
    "empty_model": (
        "agents/model.yaml",
        "role: Model.\ninstructions: Fine.\nmodel: ''\n",
        3,
        "'model' must not be empty",
    ),
    "unknown_tool": (
        "agents/tools.yaml",
        "role: Tools.\ninstructions: Fine.\ntools:\n  - lookup\n  - teleport\n",
        5,
        "agent 'tools' lists unknown tool 'teleport' (known tools:",
    ),
    "bad_schema": (
        "agents/schema.yaml",
        "role: Schema.\ninstructions: Fine.\noutput_schema:\n  type: object\n"
        "  properties:\n    a: {type: 12}\n",
        6,
        "'output_schema' is not a valid JSON schema",
    ),
    "mcp_tool_of_undefined_server": (
        "agents/crm.yaml",
        "role: CRM.\ninstructions: Fine.\ntools: [lookup, crm__find_contact]\n",
        3,
        "agent 'crm' lists 'crm__find_contact', a tool of MCP server 'crm', which mcp.yaml "
        "does not define",
    ),
    "mcp_bad_server": (
        "mcp.yaml",
        "servers:\n  crm:\n    command: python\n  files:\n    comand: ls\n",
        4,
        "MCP server 'files': unknown setting(s) comand.",
    ),
    "playbook_unknown_agent": (
        "playbooks/bad.yaml",
        "name: bad\nsteps:\n  - id: one\n    title: One\n    agent: ghost\n",
        5,
        "step 'one' names unknown agent 'ghost'",
    ),
    "playbook_unknown_key": (
        "playbooks/typo.yaml",
        "name: typo\nsteps:\n  - id: one\n    title: One\n    agent: writer\n    need_approval: true\n",
        6,
        "unknown key 'steps.0.need_approval'",
    ),
    "playbook_yaml_syntax": (
        "playbooks/syntax.yaml",
        "name: syntax\nsteps:\n  - id: one\n   title: One\n",
        4,
        "not valid YAML",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_check_names_the_file_and_line(case: str, check_env: dict[str, str], tmp_path: Path):
    rel, text, line, message = BAD_FILES[case]
    cfg = tmp_path / "config"
    write(cfg, "agents/good.yaml", plain_agent("good", tools="[lookup]"))
    path = write(cfg, rel, text)
    result = check(check_env)
    assert result.code == 1, result.out
    assert f"{path}:{line}: {message}" in result.out, result.out
    assert "good.yaml" not in result.out  # the good file beside it has no problem
    assert "1 problem(s) in 1 file(s)." in result.out


def test_check_accepts_tools_of_configured_mcp_servers(check_env: dict[str, str], tmp_path: Path):
    cfg = tmp_path / "config"
    write(cfg, "mcp.yaml", "servers:\n  crm:\n    command: python\n    args: [-m, x]\n")
    write(cfg, "agents/crm.yaml", plain_agent("crm", tools="[crm__find_contact]"))
    result = check(check_env)
    assert result.code == 0, result.out
    assert "MCP servers: 1 (crm)" in result.out
    assert "crm (" in result.out


def test_check_lists_every_problem_including_duplicate_names(
    check_env: dict[str, str], tmp_path: Path
):
    cfg = tmp_path / "config"
    first = write(cfg, "agents/a.yaml", plain_agent("twin"))
    second = write(cfg, "agents/b.yaml", plain_agent("twin"))
    typo = write(cfg, "agents/c.yaml", "role: C.\ninstructions: Fine.\ntool: [lookup]\n")
    pb = write(
        cfg, "playbooks/p.yaml", "name: p\nsteps:\n  - id: x\n    title: X\n    tool: nope\n"
    )
    result = check(check_env)
    assert result.code == 1
    assert f"{second}:1: agent 'twin' is already defined in {first}:1; this file is skipped" in (
        result.out
    )
    assert f"{typo}:3: unknown key 'tool' (did you mean 'tools'?)" in result.out
    assert f"{pb}:5: step 'x' names unknown tool 'nope'" in result.out
    assert "3 problem(s) in 3 file(s)." in result.out


def test_check_reports_a_bad_setting(check_env: dict[str, str]):
    result = check({**check_env, "BATON_MAX_STEPS": "many"})
    assert result.code == 1
    assert "BATON_MAX_STEPS must be a whole number" in result.err


# ---- baton run with a broken file beside good ones ---------------------------------------------


def test_run_uses_good_files_and_skips_a_broken_one(
    check_env: dict[str, str], llm: ScriptedLLM, tmp_path: Path
):
    cfg = tmp_path / "config"
    write(cfg, "agents/triage.yaml", TRIAGE.replace("max_cost_usd: 0.5\n", ""))
    broken = write(cfg, "agents/broken.yaml", "role: Broken.\ninstructions: x\nmodle: gpt\n")
    playbook = write(cfg, "playbooks/triage.yaml", TRIAGE_PLAYBOOK)
    llm.rule("Your step: Sort the request\n", Reply.json({"priority": "high"}))

    result = run_baton(
        ["run", "--playbook", str(playbook), "-i", "request=Refund me now"], check_env
    )
    assert "Traceback" not in result.err, result.err
    assert result.code == 0, result.out + result.err
    assert "✓ sort done" in result.out
    assert '{"priority": "high"}' in result.out
    # The broken file is named once, with its line, and did not stop the run.
    assert result.err.count(f"{broken}:3: unknown key 'modle'") == 1, result.err
    [request] = llm.requests_matching("Your step: Sort the request\n")
    system = request.messages[0]["content"]
    assert system.startswith("You are triage: Sorts support requests by urgency.")
    assert "Never promise a refund" in system
    assert "lookup" in request.tool_names
    assert request.json["response_format"]["json_schema"]["name"] == "triage"


# ---- the model gateway in process: fallbacks, output_schema, max_cost_usd ------------------------


async def gateway_engine(tmp_path: Path, agent_yaml: str) -> Engine:
    cfg = tmp_path / "config"
    write(cfg, "agents/agent.yaml", agent_yaml)
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/baton.db",
        model=TEST_MODEL,
        plugins=(PLUGIN,),
        config_dir=str(cfg),
        playbook_dir=str(cfg / "playbooks"),
        model_retries=1,
        retry_base_s=0.01,
        retry_max_s=0.02,
    )
    return await open_engine(settings)


def one_step(agent: str = "triage") -> Plan:
    return Plan(
        steps=[PlanStep(id="sort", title="Sort the request", agent=agent, instructions="Sort.")]
    )


async def finish(engine: Engine, run_id: str) -> tuple[str, str | None, Any]:
    summary = await engine.wait(run_id)
    async with engine.svc.db.transaction() as session:
        [row] = await steps.get_steps(session, run_id=run_id)
    await engine.close()
    await engine.svc.db.close()
    return summary.status, summary.error, row


def agent_yaml(**fields: Any) -> str:
    base: dict[str, Any] = {
        "name": "triage",
        "role": "Sorts requests.",
        "instructions": "Sort it.",
    }
    base.update(fields)
    return json.dumps(base)  # JSON is YAML


def by_model(name: str) -> Any:
    return lambda body: body.get("model") == name


@pytest.mark.parametrize("status", [500, 404])
async def test_a_failing_primary_falls_back(status: int, llm_env: ScriptedLLM, tmp_path: Path):
    llm_env.rule(by_model("primary-down"), Reply.error(status, "primary is down"))
    llm_env.rule(by_model("gpt-4o-mini"), Reply.text("sorted by the fallback"))
    engine = await gateway_engine(
        tmp_path, agent_yaml(model="openai/primary-down", fallbacks=[TEST_MODEL])
    )
    seen: list[Event] = []

    async def keep(event: Event) -> None:
        seen.append(event)

    engine.bus.subscribe(keep)
    run_id = await engine.start_plan("sort it", one_step())
    status_, error, row = await finish(engine, run_id)
    assert (status_, error) == ("done", None)
    assert row.output == "sorted by the fallback"
    models = [r.model for r in llm_env.chat_requests]
    # A 500 is retried (BATON_MODEL_RETRIES=1) before the fallback; a 404 is not.
    primary_calls = 2 if status == 500 else 1
    assert models == ["primary-down"] * primary_calls + ["gpt-4o-mini"]
    switches = [e for e in seen if isinstance(e, StepRetrying) and "fallback" in e.reason]
    assert [e.reason for e in switches] == [f"openai/primary-down failed; fallback {TEST_MODEL}"]
    assert row.model_calls == 1 and row.tokens_in > 0  # usage recorded as before


async def test_every_model_failing_fails_the_step_naming_each(llm_env: ScriptedLLM, tmp_path: Path):
    llm_env.rule(by_model("primary-down"), Reply.error(404, "no such model"))
    llm_env.rule(by_model("backup-down"), Reply.error(401, "bad key"))
    engine = await gateway_engine(
        tmp_path,
        agent_yaml(model="openai/primary-down", fallbacks=["openai/backup-down"]),
    )
    run_id = await engine.start_plan("sort it", one_step())
    status, _, row = await finish(engine, run_id)
    assert status == "failed"
    assert "Every model of triage failed" in row.error
    assert "openai/primary-down" in row.error and "openai/backup-down" in row.error


SCHEMA = {
    "type": "object",
    "properties": {"priority": {"type": "string", "enum": ["low", "high"]}},
    "required": ["priority"],
}


async def test_output_schema_is_asked_for_and_a_valid_answer_passes(
    llm_env: ScriptedLLM, tmp_path: Path
):
    llm_env.default(Reply.json({"priority": "low"}))
    engine = await gateway_engine(tmp_path, agent_yaml(output_schema=SCHEMA))
    run_id = await engine.start_plan("sort it", one_step())
    status, _, row = await finish(engine, run_id)
    assert status == "done"
    assert json.loads(row.output) == {"priority": "low"}
    [request] = llm_env.chat_requests
    assert request.json["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "triage", "schema": SCHEMA, "strict": False},
    }


def corrective(request: RecordedRequest) -> bool:
    return "does not match the required JSON schema" in str(request.messages[-1].get("content"))


async def test_an_invalid_answer_gets_one_correction(llm_env: ScriptedLLM, tmp_path: Path):
    llm_env.rule(
        lambda body: "does not match the required JSON schema" in json.dumps(body["messages"][-1]),
        Reply.json({"priority": "high"}),
    )
    llm_env.default(Reply.json({"priority": "urgent"}))
    engine = await gateway_engine(tmp_path, agent_yaml(output_schema=SCHEMA))
    run_id = await engine.start_plan("sort it", one_step())
    status, _, row = await finish(engine, run_id)
    assert status == "done"
    assert json.loads(row.output) == {"priority": "high"}
    first, second = llm_env.chat_requests
    assert not corrective(first) and corrective(second)
    assert "priority: 'urgent' is not one of ['low', 'high']" in second.messages[-1]["content"]
    assert second.messages[-2]["content"] == '{"priority": "urgent"}'
    assert row.model_calls == 1 and row.tokens_in > 0


async def test_a_second_invalid_answer_fails_the_step(llm_env: ScriptedLLM, tmp_path: Path):
    llm_env.default(Reply.text("High priority, I think."))
    engine = await gateway_engine(tmp_path, agent_yaml(output_schema=SCHEMA))
    run_id = await engine.start_plan("sort it", one_step())
    status, _, row = await finish(engine, run_id)
    assert status == "failed"
    assert "triage's answer did not match its output_schema" in row.error
    assert "not JSON" in row.error
    assert len(llm_env.chat_requests) == 2


async def test_the_per_step_cost_cap_stops_the_step(llm_env: ScriptedLLM, tmp_path: Path):
    llm_env.rule(
        lambda body: not any(m["role"] == "tool" for m in body["messages"]),
        Reply.tool_calls([("lookup", {"topic": "acme"})]),
    )
    llm_env.default(Reply.text("never reached"))
    engine = await gateway_engine(tmp_path, agent_yaml(tools=["lookup"], max_cost_usd=0.000001))
    run_id = await engine.start_plan("sort it", one_step())
    status, _, row = await finish(engine, run_id)
    assert status == "failed"
    assert "reaching the cap of $0.000001 per step of agent triage (max_cost_usd" in row.error
    assert "agent.yaml:1)" in row.error
    assert len(llm_env.chat_requests) == 1  # checked before the second call, which never went
    assert row.cost_usd > 0.000001
