"""Assemble an engine from settings: database, registry, model client, event bus."""

from __future__ import annotations

from agents.engine import Engine
from agents.events import EventBus
from agents.model import LiteLLMClient, ModelClient, check_credentials
from agents.plan import Plan
from agents.registry import Registry, build_registry
from agents.settings import Settings
from agents.state import Services
from storage.database import Database


async def open_engine(
    settings: Settings,
    *,
    model: ModelClient | None = None,
    registry: Registry | None = None,
    db: Database | None = None,
) -> Engine:
    """Open the database (migrating it), load plugins, and build the engine."""
    registry = registry or build_registry(settings.plugins)
    db = db or await Database.open(settings.database_url)
    svc = Services(
        db=db, registry=registry, settings=settings, model=model or LiteLLMClient(), bus=EventBus()
    )
    return Engine(svc)


def models_needed(settings: Settings, registry: Registry, plan: Plan | None) -> set[str]:
    """Which model strings a run may call: the planner's (no plan yet) and its agents'."""
    if plan is None:
        names = set(registry.agents)
        found = {settings.planner_model or settings.model}
    else:
        names = {s.agent for s in plan.steps if s.agent}
        found = set()
    for name in names:
        found.add(registry.agents[name].model or settings.model)
    return found


def check_models(models: set[str]) -> None:
    """Raise a clear :class:`~agents.errors.ConfigError` if a provider key is missing."""
    if models:
        check_credentials(models)
