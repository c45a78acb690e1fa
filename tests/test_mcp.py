"""MCP servers as tools: a real CRM server (tests/support/crm_mcp.py) over stdio and streamable
HTTP, spoken to by the real ``mcp`` client; the agent's model is the scripted LLM over HTTP."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from agents.agent import Agent
from agents.approvals import DecisionRequest
from agents.bootstrap import open_engine
from agents.errors import ConfigError, ToolArgumentsError
from agents.mcp import McpServerSpec, McpToolPolicy, open_hub, parse_server
from agents.mcp.connection import McpError
from agents.mcp.hub import McpHub, tool_name
from agents.plan import Plan, PlanStep
from agents.registry import build_registry
from agents.settings import Settings
from agents.tools import Risk, Tool, ToolContext
from storage.repositories import approvals
from tests.support.fixtures import TEST_MODEL
from tests.support.llm_server import Reply, ScriptedLLM

REPO = Path(__file__).resolve().parents[1]
CRM_TOOLS = {"crm__find_contacts", "crm__log_activity", "crm__has_reply"}
ADA_CALL = {"contact_email": "ada@acme.test", "kind": "call", "summary": "Talked pricing"}


@pytest.fixture
def crm(tmp_path: Path) -> McpServerSpec:
    """The CRM as a stdio server, on a fresh SQLite file."""
    return McpServerSpec(
        name="crm",
        command=sys.executable,
        args=("-m", "tests.support.crm_mcp"),
        env={"CRM_DB": str(tmp_path / "crm.db"), "CRM_PID_FILE": str(tmp_path / "crm.pids")},
        cwd=str(REPO),
    )


def _activities(spec: McpServerSpec) -> list[tuple[str, str, str, str | None]]:
    path = Path(spec.env["CRM_DB"])
    if not path.exists():
        return []
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT contact_email, kind, summary, idempotency_key FROM activities ORDER BY id"
        ).fetchall()


def _pids(spec: McpServerSpec) -> list[int]:
    return [int(line) for line in Path(spec.env["CRM_PID_FILE"]).read_text().split()]


def _break_database(spec: McpServerSpec) -> None:
    """Make the CRM's database path a directory, so a restarted server cannot start."""
    path = Path(spec.env["CRM_DB"])
    path.unlink()
    path.mkdir()


def _ctx(key: str) -> ToolContext:
    return ToolContext(run_id="r1", step_id="s1", idempotency_key=key)


def _by_name(hub: McpHub) -> dict[str, Tool]:
    return {t.name: t for t in hub.tools()}


async def test_tools_are_listed_named_and_described(crm: McpServerSpec):
    hub = await open_hub([crm])
    try:
        assert hub.problems == []
        assert hub.running() == ["crm"]
        tools = _by_name(hub)
        assert set(tools) == CRM_TOOLS
        schema = tools["crm__log_activity"].schema()["function"]
        assert schema["name"] == "crm__log_activity"
        assert schema["description"].startswith("Record an activity")
        assert schema["parameters"]["required"] == ["contact_email", "kind", "summary"]
        text = await tools["crm__find_contacts"].call({"company": "acme"}, _ctx("k0"))
        assert "ada@acme.test" in text and "bob@acme.test" in text and "globex" not in text
    finally:
        await hub.close()


async def test_arguments_are_checked_against_the_schema_before_the_call(crm: McpServerSpec):
    hub = await open_hub([crm])
    try:
        log = _by_name(hub)["crm__log_activity"]
        with pytest.raises(ToolArgumentsError) as caught:
            log.validate({"contact_email": 7, "kind": "call"})
        message = str(caught.value)
        assert message.startswith("Invalid arguments for crm__log_activity:")
        assert "contact_email: 7 is not of type 'string'" in message
        assert "'summary' is a required property" in message
        with pytest.raises(ToolArgumentsError, match="takes a JSON object"):
            log.validate(["not", "an", "object"])
        assert log.validate(ADA_CALL) == ADA_CALL
        assert _activities(crm) == []
    finally:
        await hub.close()


async def test_a_call_writes_one_row_and_a_repeat_with_its_key_writes_none(crm: McpServerSpec):
    hub = await open_hub([crm])
    try:
        log = _by_name(hub)["crm__log_activity"]
        assert await log.call(ADA_CALL, _ctx("run1:step1:0")) == "logged"
        # A retry of the same call carries the same key in _meta: the server dedupes it.
        assert await log.call(ADA_CALL, _ctx("run1:step1:0")) == "already logged"
        assert _activities(crm) == [("ada@acme.test", "call", "Talked pricing", "run1:step1:0")]
        # The server's own error (isError) reaches the model as an error, not as a result.
        with pytest.raises(McpError, match=r"reported an error: .*no contact zed@acme\.test"):
            await log.call({**ADA_CALL, "contact_email": "zed@acme.test"}, _ctx("k2"))
        assert len(_activities(crm)) == 1
    finally:
        await hub.close()


async def test_risk_is_external_by_default_and_config_overrides_it(crm: McpServerSpec):
    spec = replace(
        crm,
        tools={
            "find_contacts": McpToolPolicy(Risk.READ_ONLY, idempotent=True),
            "has_reply": McpToolPolicy(Risk.READ_ONLY, idempotent=True),
            "no_such_tool": McpToolPolicy(Risk.READ_ONLY, idempotent=True),
        },
        allow=("find_contacts", "log_activity"),
    )
    hub = await open_hub([spec])
    try:
        tools = _by_name(hub)
        assert set(tools) == {"crm__find_contacts", "crm__log_activity"}  # allow wins
        assert (tools["crm__log_activity"].risk, tools["crm__log_activity"].idempotent) == (
            Risk.EXTERNAL,
            False,
        )
        assert (tools["crm__find_contacts"].risk, tools["crm__find_contacts"].idempotent) == (
            Risk.READ_ONLY,
            True,
        )
        [problem] = hub.problems  # a typo in the config is reported, not silently ignored
        assert "has no tool 'no_such_tool'" in problem and "find_contacts" in problem
    finally:
        await hub.close()


async def test_a_server_that_cannot_start_is_a_problem_and_the_others_still_work(
    crm: McpServerSpec, tmp_path: Path
):
    missing = McpServerSpec(name="calendar", command=str(tmp_path / "no-such-server"))
    unset = McpServerSpec(
        name="warehouse", command=sys.executable, env={"WH_TOKEN": "${BATON_TEST_UNSET_VAR}"}
    )
    hub = await open_hub([missing, crm, unset])
    try:
        assert set(_by_name(hub)) == CRM_TOOLS
        assert hub.running() == ["crm"]
        problems = "\n".join(hub.problems)
        assert "MCP server 'calendar' could not be started" in problems
        assert "no-such-server" in problems
        assert "${BATON_TEST_UNSET_VAR}, which is not set" in problems
        text = await _by_name(hub)["crm__find_contacts"].call({"company": "globex"}, _ctx("k"))
        assert "cy@globex.test" in text
    finally:
        await hub.close()


async def test_a_killed_server_is_restarted_by_the_next_call(crm: McpServerSpec):
    hub = await open_hub([crm])
    try:
        log = _by_name(hub)["crm__log_activity"]
        await log.call(ADA_CALL, _ctx("k1"))
        [first] = _pids(crm)
        os.kill(first, signal.SIGKILL)
        for _ in range(500):  # until the client has seen the pipe close (no timing asserted)
            if not hub.running():
                break
            await asyncio.sleep(0.01)
        assert hub.running() == []
        assert await log.call({**ADA_CALL, "kind": "email"}, _ctx("k2")) == "logged"
        assert hub.running() == ["crm"]
        assert len(_pids(crm)) == 2 and _pids(crm)[1] != first
        assert [row[1] for row in _activities(crm)] == ["call", "email"]
    finally:
        await hub.close()


async def test_a_server_that_cannot_be_restarted_gives_a_clear_error(crm: McpServerSpec):
    hub = await open_hub([crm])
    try:
        tools = _by_name(hub)
        _break_database(crm)
        os.kill(_pids(crm)[0], signal.SIGKILL)
        for _ in range(500):
            if not hub.running():
                break
            await asyncio.sleep(0.01)
        with pytest.raises(McpError, match="had stopped and could not be restarted"):
            await tools["crm__find_contacts"].call({"company": "acme"}, _ctx("k"))
    finally:
        await hub.close()


@pytest.fixture
def crm_http(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The CRM as a streamable HTTP server that wants a bearer token; (url, its database)."""
    db = tmp_path / "crm-http.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env.update({"CRM_DB": str(db), "CRM_TOKEN": "s3cret-token"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.crm_mcp", "http"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("PORT "), f"the CRM did not start: {line!r}"
        yield f"http://127.0.0.1:{int(line.split()[1])}/mcp", db
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


async def test_streamable_http_server_with_headers_from_the_environment(
    crm_http: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
):
    url, db = crm_http
    monkeypatch.setenv("BATON_TEST_CRM_TOKEN", "s3cret-token")
    good = parse_server(
        "crm", {"url": url, "headers": {"Authorization": "Bearer ${BATON_TEST_CRM_TOKEN}"}}
    )
    bad = parse_server("crm_anon", {"url": url, "timeout_s": 10})
    hub = await open_hub([good, bad])
    try:
        assert set(_by_name(hub)) == CRM_TOOLS
        [problem] = hub.problems
        assert "'crm_anon' could not be reached: it answered HTTP 401" in problem
        assert "s3cret-token" not in problem
        text = await _by_name(hub)["crm__log_activity"].call(ADA_CALL, _ctx("http-1"))
        assert text == "logged"
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT idempotency_key FROM activities").fetchall() == [
                ("http-1",)
            ]
    finally:
        await hub.close()


def test_parse_server_reads_config_and_names_what_is_wrong():
    spec = parse_server(
        "crm",
        {
            "command": "crm-mcp",
            "args": ["--port", 8080],
            "env": {"CRM_TOKEN": "${CRM_TOKEN}"},
            "risk": "writes",
            "tools": {"find_contacts": {"risk": "read_only", "idempotent": True}},
            "allow": ["find_contacts", "log_activity"],
            "timeout_s": 5,
        },
    )
    assert spec.args == ("--port", "8080") and spec.env == {"CRM_TOKEN": "${CRM_TOKEN}"}
    assert spec.policy("log_activity") == McpToolPolicy(Risk.WRITES, idempotent=False)
    assert spec.policy("find_contacts") == McpToolPolicy(Risk.READ_ONLY, idempotent=True)
    assert "CRM_TOKEN" not in repr(spec)  # env and headers stay out of logs
    bad = {
        "Bad-Name": ({"command": "x"}, "must be 1-32 characters"),
        "my__crm": ({"command": "x"}, "without __"),
        "both": ({"command": "x", "url": "http://h/mcp"}, "exactly one of 'command'"),
        "neither": ({}, "exactly one of 'command'"),
        "risky": ({"command": "x", "risk": "harmless"}, "risk must be one of read_only"),
        "typo": ({"command": "x", "timeout": 3}, "unknown setting(s) timeout"),
        "ftp": ({"url": "ftp://h"}, "must start with http:// or https://"),
        "envs": ({"command": "x", "env": ["A=1"]}, "env must be a mapping"),
        "slow": ({"command": "x", "timeout_s": 0}, "timeout_s must be a positive number"),
        "pol": ({"command": "x", "tools": {"t": {"risk": "nope"}}}, "tools.t.risk must be one"),
        "var": ({"command": "x", "env": {"A": "${1A}"}}, "${1A} is not a valid variable"),
    }
    for name, (data, message) in bad.items():
        with pytest.raises(ConfigError, match=re.escape(message)):
            parse_server(name, data)


def test_tool_names_fit_model_apis():
    taken: set[str] = set()
    assert tool_name("crm", "find.contacts v2", taken) == "crm__find_contacts_v2"
    clash = tool_name("crm", "find contacts/v2", taken)
    assert clash != "crm__find_contacts_v2" and clash.startswith("crm__find_contacts_v2_")
    long = tool_name("warehouse", "x" * 100, taken)
    assert len(long) == 64 and long.startswith("warehouse__xxx")


async def test_an_agent_calls_the_crm_and_the_row_appears_only_after_approval(
    llm_env: ScriptedLLM, crm: McpServerSpec, tmp_path: Path
):
    llm = llm_env
    llm.rule(
        "Your step: Log the call\n",
        Reply.tool_calls([("crm__log_activity", ADA_CALL)]),
        Reply.text("Logged the call with Ada."),
    )
    registry = build_registry(())
    registry.add_agent(
        Agent(
            name="crm_clerk",
            role="Keeps the CRM up to date.",
            instructions="Record what happened in the CRM.",
            tools=("crm__find_contacts", "crm__log_activity"),
        )
    )
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'baton.db'}", model=TEST_MODEL, model_timeout_s=10
    )
    engine = await open_engine(settings, registry=registry, mcp_servers=[crm])
    try:
        plan = Plan(steps=[PlanStep(id="log", title="Log the call", agent="crm_clerk")])
        run_id = await engine.start_plan("Log my call with Ada", plan)
        assert (await engine.wait(run_id)).status == "waiting"
        async with engine.svc.db.transaction() as s:
            [pending] = await approvals.list_approvals(s, run_id=run_id, statuses=["pending"])
        assert pending.action["tool"] == "crm__log_activity"
        assert pending.action["arguments"] == ADA_CALL
        assert _activities(crm) == []  # nothing reaches the CRM before a person approves

        await engine.decide(DecisionRequest(pending.id, "approve", "u1", digest=pending.digest))
        summary = await engine.wait(run_id)
        assert summary.status == "done"
        [row] = _activities(crm)
        assert row[:3] == ("ada@acme.test", "call", "Talked pricing")
        assert row[3] and row[3].startswith(run_id)  # Baton's idempotency key, via _meta
        tool_messages = [
            m for r in llm.chat_requests for m in r.messages if m.get("role") == "tool"
        ]
        assert tool_messages and "logged" in str(tool_messages[-1]["content"])
    finally:
        mcp_hub = engine.mcp
        await engine.close()
        await engine.svc.db.close()
    assert mcp_hub is not None and mcp_hub.running() == []  # the server stopped with Baton
