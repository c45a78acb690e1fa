"""Agents, playbooks and MCP servers as files in a config folder (``BATON_CONFIG_DIR``)."""

from agents.config.loader import (
    LoadedConfig,
    configured_mcp_servers,
    configured_registry,
    load_config,
    report,
)
from agents.config.yaml_marks import Problem

__all__ = [
    "LoadedConfig",
    "Problem",
    "configured_mcp_servers",
    "configured_registry",
    "load_config",
    "report",
]
