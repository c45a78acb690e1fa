"""The registry: which agents and tools exist. Built from built-ins plus plugin modules.

A plugin is an importable module with ``register(registry)``; list plugins in
``BATON_PLUGINS`` (comma separated) to add a team's own tools and agents.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agents.agent import BUILTIN_AGENTS, Agent
from agents.builtin_tools import CONTROL_TOOLS
from agents.errors import ConfigError
from agents.toolbox import builtin_tools
from agents.tools import Tool

if TYPE_CHECKING:
    from agents.config import LoadedConfig


@dataclass
class Registry:
    """Agents and tools by name."""

    agents: dict[str, Agent] = field(default_factory=dict)
    tools: dict[str, Tool] = field(default_factory=dict)

    def add_agent(self, agent: Agent) -> None:
        """Register (or replace) an agent."""
        self.agents[agent.name] = agent

    def add_tool(self, tool: Tool) -> None:
        """Register (or replace) a tool."""
        self.tools[tool.name] = tool

    def agent(self, name: str) -> Agent:
        """The agent called ``name``; a clear error if there is none."""
        try:
            return self.agents[name]
        except KeyError:
            known = ", ".join(sorted(self.agents)) or "none"
            raise ConfigError(f"Unknown agent {name!r}. Known agents: {known}.") from None

    def tool(self, name: str) -> Tool:
        """The tool called ``name``; a clear error if there is none."""
        try:
            return self.tools[name]
        except KeyError:
            known = ", ".join(sorted(t for t in self.tools if not self.tools[t].control))
            raise ConfigError(f"Unknown tool {name!r}. Known tools: {known or 'none'}.") from None

    def tools_for(self, agent: Agent) -> list[Tool]:
        """The tools an agent may call: its own list plus the handoff tools.

        ``server__*`` stands for every tool of that MCP server, and an MCP tool whose server
        is not connected now is left out: the agent works (or asks a person) without it.
        """
        own: list[Tool] = []
        for name in agent.tools:
            if name.endswith("__*"):
                prefix = name[:-1]
                own += [t for n, t in sorted(self.tools.items()) if n.startswith(prefix)]
            elif name in self.tools or "__" not in name:
                own.append(self.tool(name))
        return own + [t for t in self.tools.values() if t.control]

    def check(self) -> None:
        """Every agent's tools exist (MCP tools, ``server__…``, exist once servers connect)."""
        for agent in self.agents.values():
            for name in agent.tools:
                if name not in self.tools and "__" not in name:
                    raise ConfigError(f"Agent {agent.name!r} lists unknown tool {name!r}.")

    def describe(self) -> dict[str, Any]:
        """A compact description for the planner's prompt."""
        return {
            "agents": [
                {"name": a.name, "role": a.role, "tools": list(a.tools)}
                for a in sorted(self.agents.values(), key=lambda a: a.name)
            ],
            "tools": [
                {"name": t.name, "description": t.description, "risk": str(t.risk)}
                for t in sorted(self.tools.values(), key=lambda t: t.name)
                if not t.control
            ],
        }


def build_registry(
    plugins: Iterable[str] = (),
    config: LoadedConfig | None = None,
    extra_tools: Iterable[Tool] = (),
) -> Registry:
    """Built-in agents and tools, then each plugin's ``register(registry)``, then the config
    folder's agents (those whose tools all exist; ``config.problems`` tells about the rest)."""
    registry = Registry()
    for agent in BUILTIN_AGENTS:
        registry.add_agent(agent)
    for control in CONTROL_TOOLS:
        registry.add_tool(control)
    for builtin in builtin_tools():  # http_fetch, send_email (before plugins: they may use them)
        registry.add_tool(builtin)
    for extra in extra_tools:  # a front end's own tools (the bot's Slack tools), likewise
        registry.add_tool(extra)
    for module_name in plugins:
        module_name = module_name.strip()
        if not module_name:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(
                f"Cannot import plugin {module_name!r} (BATON_PLUGINS): {exc}"
            ) from exc
        register = getattr(module, "register", None)
        if not callable(register):
            raise ConfigError(f"Plugin {module_name!r} has no register(registry) function.")
        register(registry)
    registry.check()
    if config is not None:
        # After the check: config agents are checked by apply_to, which also accepts tools of
        # the MCP servers in mcp.yaml (they exist only once the servers are reached).
        config.apply_to(registry)
    return registry
