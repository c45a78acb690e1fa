"""What Baton needs to know about one MCP server: how to reach it and how risky its tools are.

A spec holds the configuration as written: ``${VAR}`` references in ``env`` and ``headers`` are
kept unexpanded and are only expanded (by :func:`expand`) when the server is connected, so a
secret never sits in a spec, a log line or an error message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.errors import ConfigError
from agents.tools import Risk

NAME_RE = re.compile(r"^[a-z0-9_]{1,32}$")
_VAR_RE = re.compile(r"\$\{([^}]*)\}")
_VAR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RISKS = ", ".join(r.value for r in Risk)


@dataclass(frozen=True)
class McpToolPolicy:
    """How Baton treats one of a server's tools (overrides the server's defaults)."""

    risk: Risk
    idempotent: bool


@dataclass(frozen=True)
class McpServerSpec:
    """One MCP server: a command to start (stdio) or a URL to reach (streamable HTTP)."""

    #: ``[a-z0-9_]{1,32}`` without ``__``; its tools are named ``{name}__{tool}``.
    name: str
    #: stdio: the executable to start, with its arguments, extra environment and directory.
    command: str | None = None
    args: tuple[str, ...] = ()
    #: Values may reference ``${VAR}`` from Baton's environment (expanded at connect time).
    env: dict[str, str] = field(default_factory=dict, repr=False)
    cwd: str | None = None
    #: streamable HTTP: the endpoint, and headers sent with every request (``${VAR}`` too).
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    #: The default for its tools: ``external`` means every call waits for a person.
    risk: Risk = Risk.EXTERNAL
    idempotent: bool = False
    #: Per-tool overrides, by the tool's name on the server.
    tools: dict[str, McpToolPolicy] = field(default_factory=dict)
    #: Only these tools (by their name on the server); ``None`` means all of them.
    allow: tuple[str, ...] | None = None
    #: Seconds to start/reach the server, and for each call.
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name) or "__" in self.name:
            raise ConfigError(
                f"MCP server name {self.name!r} must be 1-32 characters of a-z, 0-9 and _, "
                "without __ (it prefixes its tools' names: {server}__{tool})."
            )
        if (self.command is None) == (self.url is None):
            raise ConfigError(
                f"MCP server {self.name!r} needs exactly one of 'command' (a program to start, "
                "spoken to over stdio) or 'url' (a streamable HTTP endpoint)."
            )
        if self.timeout_s <= 0:
            raise ConfigError(f"MCP server {self.name!r}: timeout_s must be positive.")

    def policy(self, tool: str) -> McpToolPolicy:
        """The risk and idempotency Baton gives the server's tool ``tool``."""
        return self.tools.get(tool) or McpToolPolicy(self.risk, self.idempotent)

    @property
    def transport(self) -> str:
        """``stdio`` or ``http``."""
        return "stdio" if self.command is not None else "http"


def expand(value: str, *, where: str, environ: Mapping[str, str] | None = None) -> str:
    """``value`` with each ``${VAR}`` replaced from the environment; a clear error if unset.

    ``where`` names the field for the message (which never contains the value).
    """
    env = os.environ if environ is None else environ

    def one(match: re.Match[str]) -> str:
        var = match.group(1)
        if var not in env:
            raise ConfigError(f"{where} uses ${{{var}}}, which is not set in Baton's environment.")
        return env[var]

    return _VAR_RE.sub(one, value)


def parse_server(name: str, data: Any) -> McpServerSpec:
    """A spec from one entry of the configuration's ``mcp_servers`` mapping.

    Raises :class:`ConfigError` naming the server and the field for anything wrong.
    """
    where = f"MCP server {name!r}"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping of settings, got {_kind(data)}.")
    known = {
        "command",
        "args",
        "env",
        "cwd",
        "url",
        "headers",
        "risk",
        "idempotent",
        "tools",
        "allow",
        "timeout_s",
    }
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown setting(s) {', '.join(unknown)}. "
            f"Known settings: {', '.join(sorted(known))}."
        )
    risk = _risk(data.get("risk", Risk.EXTERNAL.value), f"{where}: risk")
    idempotent = _bool(data.get("idempotent", False), f"{where}: idempotent")
    url = _opt_str(data.get("url"), f"{where}: url")
    if url is not None and not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: url must start with http:// or https://, got {url!r}.")
    allow = data.get("allow")
    return McpServerSpec(
        name=name if isinstance(name, str) else str(name),
        command=_opt_str(data.get("command"), f"{where}: command"),
        args=tuple(_str_list(data.get("args", []), f"{where}: args")),
        env=_str_map(data.get("env", {}), f"{where}: env"),
        cwd=_opt_str(data.get("cwd"), f"{where}: cwd"),
        url=url,
        headers=_str_map(data.get("headers", {}), f"{where}: headers"),
        risk=risk,
        idempotent=idempotent,
        tools=_policies(data.get("tools", {}), where, risk, idempotent),
        allow=None if allow is None else tuple(_str_list(allow, f"{where}: allow")),
        timeout_s=_positive(data.get("timeout_s", 30.0), f"{where}: timeout_s"),
    )


def _policies(data: Any, where: str, risk: Risk, idempotent: bool) -> dict[str, McpToolPolicy]:
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{where}: tools must map tool names to {{risk, idempotent}}, got {_kind(data)}."
        )
    out: dict[str, McpToolPolicy] = {}
    for tool, settings in data.items():
        at = f"{where}: tools.{tool}"
        if not isinstance(settings, Mapping):
            raise ConfigError(f"{at} must be a mapping with risk and/or idempotent.")
        extra = sorted(str(k) for k in settings if k not in ("risk", "idempotent"))
        if extra:
            raise ConfigError(
                f"{at}: unknown setting(s) {', '.join(extra)} (use risk, idempotent)."
            )
        out[str(tool)] = McpToolPolicy(
            risk=_risk(settings.get("risk", risk.value), f"{at}.risk"),
            idempotent=_bool(settings.get("idempotent", idempotent), f"{at}.idempotent"),
        )
    return out


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _risk(value: Any, where: str) -> Risk:
    try:
        return Risk(value)
    except ValueError:
        raise ConfigError(f"{where} must be one of {_RISKS}, got {value!r}.") from None


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {value!r}.")
    return value


def _positive(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where} must be a positive number of seconds, got {value!r}.")
    return float(value)


def _scalar(value: Any, where: str) -> str:
    # YAML turns `8080` or `true` into numbers and booleans; an argument is still text.
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise ConfigError(f"{where} must be text, got {_kind(value)}.")


def _opt_str(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where} must be non-empty text, got {value!r}.")
    return value


def _str_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{where} must be a list, got {_kind(value)}.")
    return [_scalar(v, f"{where}[{i}]") for i, v in enumerate(value)]


def _str_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping of names to text, got {_kind(value)}.")
    out: dict[str, str] = {}
    for key, item in value.items():
        text = _scalar(item, f"{where}.{key}")
        for var in _VAR_RE.findall(text):
            if not _VAR_NAME_RE.match(var):
                raise ConfigError(f"{where}.{key}: ${{{var}}} is not a valid variable name.")
        out[str(key)] = text
    return out
