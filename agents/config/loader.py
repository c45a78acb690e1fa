"""The config folder: agents, playbooks and MCP servers as files, checked in two passes.

    config/
      agents/*.yaml      one agent per file (agents.config.agent_files)
      playbooks/*.yaml   playbooks (agents.playbook)
      mcp.yaml           MCP servers: ``servers: {name: {...}}`` (agents.mcp)

The first pass (:func:`load_config`) reads each file on its own. The second
(:meth:`LoadedConfig.check_against`) needs the registry: which tools exist, which agents a
playbook may name. A broken file is skipped with its problems; the good ones are used.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.config.agent_files import AgentFile, parse_agent
from agents.config.playbook_files import PlaybookFile, check_playbook, parse_playbook_doc
from agents.config.yaml_marks import Document, Problem, duplicate_keys, kind_of, read_yaml
from agents.errors import ConfigError
from agents.registry import Registry, build_registry
from agents.tools import Tool

if TYPE_CHECKING:
    from agents.agent import Agent
    from agents.settings import Settings

log = logging.getLogger("agents.config")

#: The one top-level key of mcp.yaml.
MCP_KEYS = ("servers",)


@dataclass
class LoadedConfig:
    """What the config folder holds, and everything wrong with it."""

    directory: Path
    #: Agents from ``agents/*.yaml`` that passed the first pass, by name.
    agents: dict[str, Agent] = field(default_factory=dict)
    #: Where playbooks are read from (``<config>/playbooks`` unless BATON_PLAYBOOK_DIR says).
    playbook_dir: Path = Path("playbooks")
    #: Playbook files that passed the shape check, by file name without extension.
    playbooks: dict[str, Path] = field(default_factory=dict)
    #: MCP servers from ``mcp.yaml`` (``agents.mcp.McpServerSpec``), by name.
    mcp_servers: dict[str, Any] = field(default_factory=dict)
    #: Every problem found so far, in file order.
    problems: list[Problem] = field(default_factory=list)
    #: A playbook may not have more steps than a plan (BATON_MAX_STEPS).
    max_steps: int = 20
    _agent_files: dict[str, AgentFile] = field(default_factory=dict, repr=False)
    _playbook_files: list[PlaybookFile] = field(default_factory=list, repr=False)

    def check_against(self, registry: Registry) -> list[Problem]:
        """Problems only the registry can reveal: unknown tools of agents (an MCP tool of a
        server mcp.yaml does not define, too), and playbooks naming unknown agents or tools
        (config agents count as known). Returns them; changes nothing."""
        found: list[Problem] = []
        good: dict[str, Agent] = {}
        for name, entry in self._agent_files.items():
            bad = self._tool_problems(entry, registry)
            found += bad
            if not bad:
                good[name] = entry.agent
        with_config = Registry(agents={**registry.agents, **good}, tools=registry.tools)
        for pb in self._playbook_files:
            found += check_playbook(pb, with_config, max_steps=self.max_steps)
        return found

    def apply_to(self, registry: Registry) -> list[Problem]:
        """Run :meth:`check_against`, record its problems, and add every agent without one to
        ``registry`` (replacing a built-in or plugin agent of the same name)."""
        found = self.check_against(registry)
        self.problems += found
        broken = {p.file for p in found}
        for entry in self._agent_files.values():
            if entry.file not in broken:
                registry.add_agent(entry.agent)
            else:
                self.agents.pop(entry.agent.name, None)
        return found

    def _tool_problems(self, entry: AgentFile, registry: Registry) -> list[Problem]:
        found = []
        for tool, line in entry.tool_lines.items():
            known = registry.tools.get(tool)
            if known is not None and not known.control:
                continue
            if known is not None:
                message = f"{tool!r} is always available to every agent; leave it out of tools"
                found.append(Problem(entry.file, line, message))
                continue
            server = mcp_server_of(tool, self.mcp_servers)
            if server in self.mcp_servers:
                continue  # its tools are known only once the server is reached
            if tool.endswith("__*") and server is not None:
                # "every tool of server X": an optional connection. Until mcp.yaml defines X
                # the agent simply has none of its tools (its SOP says what to do then).
                continue
            if server is not None:
                message = (
                    f"agent {entry.agent.name!r} lists {tool!r}, a tool of MCP server "
                    f"{server!r}, which mcp.yaml does not define"
                )
            else:
                names = sorted(t for t, v in registry.tools.items() if not v.control)
                message = (
                    f"agent {entry.agent.name!r} lists unknown tool {tool!r} "
                    f"(known tools: {', '.join(names) or 'none'})"
                )
            found.append(Problem(entry.file, line, message))
        return found


def load_config(
    directory: str | Path, *, playbook_dir: str | Path | None = None, max_steps: int = 20
) -> LoadedConfig:
    """Read the config folder (a missing folder is no config: built-ins only). Never raises
    for a bad file: its problems are in ``problems`` and it is left out."""
    root = Path(directory)
    config = LoadedConfig(
        directory=root,
        playbook_dir=Path(playbook_dir) if playbook_dir is not None else root / "playbooks",
        max_steps=max_steps,
    )
    if root.exists() and not root.is_dir():
        config.problems.append(Problem(str(root), 1, "the config folder is a file, not a folder"))
        return config
    _load_mcp(config, root / "mcp.yaml")
    _load_agents(config, root / "agents")
    _load_playbooks(config, config.playbook_dir)
    return config


def _documents(folder: Path, problems: list[Problem]) -> Iterable[tuple[Path, Document]]:
    if not folder.is_dir():
        return
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        doc = read_yaml(path, str(path))
        if isinstance(doc, Problem):
            problems.append(doc)
            continue
        dupes = duplicate_keys(doc)
        if dupes:
            problems += dupes
            continue
        yield path, doc


def _load_agents(config: LoadedConfig, folder: Path) -> None:
    for path, doc in _documents(folder, config.problems):
        parsed = parse_agent(doc, default_name=path.stem)
        if isinstance(parsed, list):
            config.problems += parsed
            continue
        name = parsed.agent.name
        earlier = config._agent_files.get(name)
        if earlier is not None:
            config.problems.append(
                Problem(
                    parsed.file,
                    parsed.line,
                    f"agent {name!r} is already defined in {earlier.agent.source}; "
                    "this file is skipped",
                )
            )
            continue
        config._agent_files[name] = parsed
        config.agents[name] = parsed.agent


def _load_playbooks(config: LoadedConfig, folder: Path) -> None:
    for path, doc in _documents(folder, config.problems):
        parsed = parse_playbook_doc(doc)
        if isinstance(parsed, list):
            config.problems += parsed
            continue
        config._playbook_files.append(parsed)
        config.playbooks[path.stem] = path


def _load_mcp(config: LoadedConfig, path: Path) -> None:
    if not path.is_file():
        return
    doc = read_yaml(path, str(path))
    if isinstance(doc, Problem):
        config.problems.append(doc)
        return
    data = {} if doc.data is None else doc.data  # an empty file: no servers
    if not isinstance(data, dict) or not isinstance(data.get("servers") or {}, dict):
        config.problems.append(
            doc.problem(
                "mcp.yaml is a mapping `servers: {name: {...}}`, got "
                + kind_of(data.get("servers") if isinstance(data, dict) else data),
                "servers",
            )
        )
        return
    for key in data:
        if key not in MCP_KEYS:
            config.problems.append(doc.problem(f"unknown key {key!r} (known keys: servers)", key))
    parse = _server_parser()
    for name, spec in (data.get("servers") or {}).items():
        try:
            config.mcp_servers[str(name)] = parse(str(name), spec)
        except ConfigError as exc:
            config.problems.append(doc.problem(str(exc), "servers", str(name)))


def _server_parser() -> Callable[[str, Any], Any]:
    """``agents.mcp.parse_server`` when MCP support is installed; else each server's settings
    are kept as written (a mapping), so agents can still be checked against their names."""
    try:
        module = importlib.import_module("agents.mcp")
    except ImportError:
        module = None
    parse = getattr(module, "parse_server", None)
    if callable(parse):
        return parse  # type: ignore[no-any-return]

    def keep(name: str, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ConfigError(f"MCP server {name!r} must be a mapping, got {kind_of(data)}")
        return data

    return keep


def mcp_server_of(tool: str, servers: Iterable[str] = ()) -> str | None:
    """The MCP server whose tool ``tool`` is (MCP tools are named ``{server}__{tool}``): one of
    ``servers`` if it matches, else the part before the first ``__``; None for other tools."""
    for server in sorted(servers, key=len, reverse=True):
        if tool.startswith(f"{server}__") and len(tool) > len(server) + 2:
            return server
    server, sep, rest = tool.partition("__")
    return server if sep and server and rest else None


_reported: set[str] = set()


def report(problems: Iterable[Problem]) -> None:
    """Log each problem as a warning, once per process (several commands build a registry)."""
    for problem in problems:
        text = str(problem)
        if text not in _reported:
            _reported.add(text)
            log.warning("config problem: %s", text)


def configured_registry(settings: Settings, extra_tools: Iterable[Tool] = ()) -> Registry:
    """Built-ins, plugins and the config folder's agents; the folder's problems are logged
    (once) and its broken files left out, so a bad file never stops Baton."""
    config = load_config(
        settings.config_dir,
        playbook_dir=settings.playbook_dir,
        max_steps=settings.limits.max_steps,
    )
    registry = build_registry(settings.plugins, config=config, extra_tools=extra_tools)
    report(config.problems)
    return registry


def configured_mcp_servers(settings: Settings) -> list[Any]:
    """The MCP server specs of the config folder's ``mcp.yaml`` (problems are logged once)."""
    config = load_config(
        settings.config_dir,
        playbook_dir=settings.playbook_dir,
        max_steps=settings.limits.max_steps,
    )
    report(config.problems)
    return list(config.mcp_servers.values())
