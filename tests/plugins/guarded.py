"""A Baton plugin for the guardrail tests: tools that leak secrets, and a narrow agent.

Loaded with ``BATON_PLUGINS=tests.plugins.ledger,tests.plugins.guarded`` (its agent ``reader``
may only ``lookup``, so it can be caught trying the ledger's tools).
"""

from __future__ import annotations

import os

from agents import Agent, Registry, Risk, tool


@tool(risk=Risk.READ_ONLY)
async def read_setting(name: str) -> str:
    """Read an environment variable (a careless tool that echoes secrets)."""
    return f"{name} is {os.environ.get(name, '(unset)')}"


@tool(risk=Risk.READ_ONLY)
async def leaky_backend(name: str) -> str:
    """A tool whose error message quotes a secret."""
    raise RuntimeError(f"login refused for key {os.environ.get(name, '')}")


def register(registry: Registry) -> None:
    """Add the leaky tools, an agent that uses them, and one that may only look things up."""
    registry.add_tool(read_setting)
    registry.add_tool(leaky_backend)
    registry.add_agent(
        Agent(
            name="leaker",
            role="Reads settings.",
            instructions="Read the settings asked for and report them.",
            tools=("read_setting", "leaky_backend"),
        )
    )
    registry.add_agent(
        Agent(
            name="reader",
            role="Looks things up, nothing else.",
            instructions="Look the topic up and report.",
            tools=("lookup",),
        )
    )
