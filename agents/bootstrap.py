"""Assemble an engine from settings: database, registry, model client, event bus."""

from __future__ import annotations

from collections.abc import Sequence

from agents.config import configured_mcp_servers, configured_registry
from agents.engine import Engine
from agents.events import EventBus
from agents.mcp.spec import McpServerSpec
from agents.model import LiteLLMClient, ModelClient, check_credentials
from agents.plan import Plan
from agents.registry import Registry
from agents.settings import Settings
from agents.state import Services
from agents.tools import Tool
from storage.database import Database


async def open_engine(
    settings: Settings,
    *,
    model: ModelClient | None = None,
    registry: Registry | None = None,
    db: Database | None = None,
    mcp_servers: Sequence[McpServerSpec] = (),
    extra_tools: Sequence[Tool] = (),
) -> Engine:
    """Open the database (migrating it), load plugins and the config folder, build the engine.

    ``mcp_servers`` are connected and their tools registered; the engine closes them. Without
    an explicit registry, the config folder supplies both the agents and the servers.
    """
    if registry is None:
        registry = configured_registry(settings, extra_tools)
        if not mcp_servers:
            mcp_servers = configured_mcp_servers(settings)
    hub = None
    if mcp_servers:
        from agents.mcp import open_hub  # imports the mcp package: only when servers exist

        hub = await open_hub(mcp_servers)
        for mcp_tool in hub.tools():
            registry.add_tool(mcp_tool)
    try:
        db = db or await Database.open(settings.database_url)
    except BaseException:
        if hub is not None:
            await hub.close()  # its stdio servers are child processes: do not leave them
        raise
    svc = Services(
        db=db, registry=registry, settings=settings, model=model or LiteLLMClient(), bus=EventBus()
    )
    engine = Engine(svc)
    engine.mcp = hub
    return engine


def models_needed(settings: Settings, registry: Registry, plan: Plan | None) -> set[str]:
    """Which model strings a run may call: the planner's (no plan yet) and its agents' (with
    their fallbacks)."""
    if plan is None:
        names = set(registry.agents)
        found = {settings.planner_model or settings.model}
    else:
        names = {s.agent for s in plan.steps if s.agent}
        found = set()
    for name in names:
        found.add(registry.agents[name].model or settings.model)
        found.update(registry.agents[name].fallbacks)
    return found


def check_models(models: set[str]) -> None:
    """Raise a clear :class:`~agents.errors.ConfigError` if a provider key is missing."""
    if models:
        check_credentials(models)
