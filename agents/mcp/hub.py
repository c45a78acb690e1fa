"""The hub: every configured MCP server connected, and its tools as Baton tools.

A server that cannot be started is a *problem* (logged, listed in :attr:`McpHub.problems`)
and contributes no tools; it never stops Baton. Each MCP tool becomes a :class:`Tool` named
``{server}__{tool}`` whose arguments are checked against the tool's own input schema before
the call, and whose risk comes from the configuration (by default ``external``: a person
approves every call), never from the server.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Iterable
from typing import Any

import mcp_types
from mcp_types import CallToolResult

from agents.mcp.connection import McpConnection, McpError
from agents.mcp.spec import McpServerSpec
from agents.tools import Tool, ToolContext

log = logging.getLogger(__name__)

#: OpenAI function names: ``[a-zA-Z0-9_-]{1,64}``.
NAME_LIMIT = 64
_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")


class McpHub:
    """Connections to the configured MCP servers and the tools they contribute."""

    def __init__(self) -> None:
        #: One sentence per server (or tool) that could not be used, for logs and ``doctor``.
        self.problems: list[str] = []
        self._connections: list[McpConnection] = []
        self._tools: list[Tool] = []

    @classmethod
    async def open(cls, specs: Iterable[McpServerSpec]) -> McpHub:
        """Connect every server at once; failures become :attr:`problems`, not errors."""
        hub = cls()
        unique: dict[str, McpServerSpec] = {}
        for spec in specs:
            if spec.name in unique:
                hub._problem(
                    f"MCP server {spec.name!r} is configured twice; the first one is used."
                )
            else:
                unique[spec.name] = spec
        connections = [McpConnection(spec) for spec in unique.values()]
        results = await asyncio.gather(*(c.connect() for c in connections), return_exceptions=True)
        taken: set[str] = set()
        for conn, result in zip(connections, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result  # cancelled: not a server's fault
                hub._problem(str(result) if isinstance(result, McpError) else repr(result))
                continue
            hub._connections.append(conn)
            hub._tools.extend(hub._adopt(conn, result, taken))
            log.info(
                "MCP server %r (%s): %d tool(s)",
                conn.spec.name,
                conn.spec.transport,
                sum(1 for t in hub._tools if t.extra.get("mcp_server") == conn.spec.name),
            )
        return hub

    def tools(self) -> list[Tool]:
        """The Baton tools of every connected server."""
        return list(self._tools)

    def running(self) -> list[str]:
        """Names of the servers whose session is up now (a dead one restarts on its next call)."""
        return [c.spec.name for c in self._connections if c.alive]

    async def close(self) -> None:
        """End every session (stdio servers' processes stop)."""
        connections, self._connections = self._connections, []
        await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)

    def _problem(self, text: str) -> None:
        log.warning("%s", text)
        self.problems.append(text)

    def _adopt(
        self, conn: McpConnection, offered: list[mcp_types.Tool], taken: set[str]
    ) -> list[Tool]:
        spec = conn.spec
        names = {t.name for t in offered}
        wanted = set(spec.allow) if spec.allow is not None else names
        for name in sorted((wanted | set(spec.tools)) - names):
            self._problem(
                f"MCP server {spec.name!r} has no tool {name!r} (named in its allow or tools "
                f"settings). It offers: {', '.join(sorted(names)) or 'none'}."
            )
        out: list[Tool] = []
        for remote in offered:
            if remote.name not in wanted:
                continue
            try:
                out.append(_make_tool(conn, remote, taken))
            except McpError as exc:
                self._problem(str(exc))
        return out


def tool_name(server: str, tool: str, taken: set[str]) -> str:
    """``{server}__{tool}`` made safe for model APIs, unique among ``taken`` (then added)."""
    name = f"{server}__{_UNSAFE.sub('_', tool)}"
    if len(name) > NAME_LIMIT or name in taken:
        # Truncated or clashing: keep it recognisable and make it unique with a short hash.
        digest = hashlib.sha256(f"{server}/{tool}".encode()).hexdigest()[:8]
        name = f"{name[: NAME_LIMIT - 9]}_{digest}"
    taken.add(name)
    return name


def result_text(result: CallToolResult) -> str:
    """A call's result as text for the model: its text parts, else its structured content."""
    texts: list[str] = []
    others: list[str] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            texts.append(block.text)
        elif isinstance(block, mcp_types.ResourceLink):
            others.append(f"[resource {block.uri}]")
        else:
            others.append(f"[{block.type} content omitted]")
    if texts:
        return "\n".join(texts + others)
    if result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False, default=str)
    return "\n".join(others) or "(no content)"


def _make_tool(conn: McpConnection, remote: mcp_types.Tool, taken: set[str]) -> Tool:
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import Draft202012Validator, validator_for

    spec = conn.spec
    schema = dict(remote.input_schema)
    try:
        validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as exc:
        raise McpError(
            f"MCP server {spec.name!r}: tool {remote.name!r} has an invalid input schema "
            f"({exc.message}); it is left out."
        ) from None
    if schema.get("type") != "object":
        raise McpError(
            f"MCP server {spec.name!r}: tool {remote.name!r} does not take an object of "
            "arguments; it is left out."
        )
    policy = spec.policy(remote.name)
    remote_name = remote.name

    async def call(arguments: dict[str, Any], ctx: ToolContext) -> str:
        result = await conn.call(remote_name, arguments, ctx.idempotency_key)
        text = result_text(result)
        if result.is_error:
            raise McpError(f"{spec.name} {remote_name} reported an error: {text}")
        return text

    description = (remote.description or remote.title or remote.name).strip()
    return Tool(
        name=tool_name(spec.name, remote.name, taken),
        description=description,
        fn=call,
        risk=policy.risk,
        idempotent=policy.idempotent,
        args_model=None,
        json_schema=schema,
        extra={"mcp_server": spec.name, "mcp_tool": remote.name},
    )
