"""MCP servers as a source of tools: a team's CRM, calendar or warehouse behind the Model
Context Protocol.

``spec`` holds the configuration (no ``mcp`` import, so parsing a config stays cheap);
``connection`` and ``hub`` talk to the servers and are imported only when some are configured
(the ``mcp`` package takes about a second to import).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from agents.mcp.spec import McpServerSpec, McpToolPolicy, parse_server

if TYPE_CHECKING:
    from agents.mcp.hub import McpHub

__all__ = ["McpHub", "McpServerSpec", "McpToolPolicy", "open_hub", "parse_server"]


async def open_hub(specs: Iterable[McpServerSpec]) -> McpHub:
    """Connect every server (concurrently); see :meth:`McpHub.open`."""
    from agents.mcp.hub import McpHub

    return await McpHub.open(specs)


def __getattr__(name: str) -> object:
    # ``from agents.mcp import McpHub`` works without importing mcp for everyone else.
    if name == "McpHub":
        from agents.mcp.hub import McpHub

        return McpHub
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
