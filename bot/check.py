"""``baton check``: every problem in the config folder as ``path:line: message``, or a summary.

It reads what ``baton serve`` would read (settings, plugins, the config folder) without opening
the database or calling a model, so it is safe in CI and in a pre-commit hook.
"""

from __future__ import annotations

from typing import TextIO

EXIT_OK, EXIT_FAILED = 0, 1


def check(out: TextIO) -> int:
    """Check settings, plugins and the config folder; 0 when all is well, else 1."""
    from agents.config import load_config
    from agents.registry import build_registry
    from agents.settings import Settings

    settings = Settings.from_env()  # a bad setting is a ConfigError: the CLI prints it
    config = load_config(
        settings.config_dir,
        playbook_dir=settings.playbook_dir,
        max_steps=settings.limits.max_steps,
    )
    from bot.slack_tools import slack_tools_from_env

    # The Slack tools exist when a bot token is set, as in `baton serve` and `baton run`.
    registry = build_registry(settings.plugins, config=config, extra_tools=slack_tools_from_env())
    if config.problems:
        problems = sorted(config.problems, key=lambda p: (p.file, p.line))
        for problem in problems:
            out.write(f"{problem}\n")
        files = len({p.file for p in problems})
        out.write(f"{len(problems)} problem(s) in {files} file(s).\n")
        return EXIT_FAILED
    if not config.directory.is_dir():
        out.write(f"No config folder at {config.directory} (BATON_CONFIG_DIR): built-ins only.\n")
    from_files = [
        f"{a.name} ({a.source})" for a in sorted(config.agents.values(), key=lambda a: a.name)
    ]
    tools = sorted(name for name, t in registry.tools.items() if not t.control)
    out.write(
        f"Agents: {len(registry.agents)} ({', '.join(sorted(registry.agents))})\n"
        f"  from files: {', '.join(from_files) or 'none'}\n"
        f"Tools: {len(tools)} ({', '.join(tools) or 'none'})\n"
        f"Playbooks: {len(config.playbooks)} in {config.playbook_dir} "
        f"({', '.join(sorted(config.playbooks)) or 'none'})\n"
        f"MCP servers: {len(config.mcp_servers)} ({', '.join(sorted(config.mcp_servers)) or 'none'})\n"
        "No problems found.\n"
    )
    return EXIT_OK
