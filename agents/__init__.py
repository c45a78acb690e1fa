"""Orchestration: planner, engine, agent runtime, tools and guardrails. No Slack in here."""

from agents.agent import Agent
from agents.approvals import DecisionRequest
from agents.engine import Engine
from agents.errors import BatonError
from agents.events import Event, EventBus
from agents.registry import Registry, build_registry
from agents.settings import Settings
from agents.state import RunSummary, Services
from agents.tools import Risk, Tool, ToolContext, tool

__all__ = [
    "Agent",
    "BatonError",
    "DecisionRequest",
    "Engine",
    "Event",
    "EventBus",
    "Registry",
    "Risk",
    "RunSummary",
    "Services",
    "Settings",
    "Tool",
    "ToolContext",
    "build_registry",
    "tool",
]
