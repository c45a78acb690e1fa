"""One MCP server's live session, owned by a long-lived task.

The ``mcp`` client is built on anyio: its transports and sessions are context managers holding
task groups, which must be entered and exited by the same task. So each server gets an *owner*
task that enters them, lists the tools, and then holds them open until told to stop. Calls are
made from the callers' own tasks through the open session (a request only creates and leaves
its own cancel scopes, in the caller's task), so slow calls do not queue behind each other.

A server that died (its process exited, its session closed) is restarted once, by the next
call; a call that was in flight when it died fails with a message that says its effect is
unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx2
import mcp_types
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CONNECTION_CLOSED, CallToolResult, RequestParamsMeta

from agents.errors import BatonError, ConfigError
from agents.mcp.spec import McpServerSpec, expand

log = logging.getLogger(__name__)

#: The ``_meta`` key carrying Baton's idempotency key, so a server can dedupe a repeated call.
IDEMPOTENCY_META = "baton/idempotency_key"
#: How long an HTTP response stream may stay silent (the mcp client's own default).
_SSE_READ_S = 300.0
_LIST_PAGES = 100
_CLOSE_S = 10.0


class McpError(BatonError):
    """An MCP server could not be reached, failed a call, or reported the call as an error."""


class McpConnection:
    """A session with one MCP server: started by :meth:`connect`, used by :meth:`call`."""

    def __init__(self, spec: McpServerSpec) -> None:
        self.spec = spec
        self._client: Client | None = None
        self._owner: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._broken = False
        #: The last HTTP error status the server answered (the mcp client does not say it).
        self._http_status: int | None = None

    async def connect(self) -> list[mcp_types.Tool]:
        """Start (or reach) the server and list its tools; :class:`McpError` if it cannot."""
        spec = self.spec
        ready: asyncio.Future[list[mcp_types.Tool]] = asyncio.get_running_loop().create_future()
        self._stop = asyncio.Event()
        self._broken = False
        self._http_status = None
        self._owner = asyncio.create_task(self._own(ready), name=f"mcp:{spec.name}")
        try:
            async with asyncio.timeout(spec.timeout_s):
                return await asyncio.shield(ready)
        except TimeoutError:
            await self.close()
            raise McpError(
                f"MCP server {spec.name!r} did not start and list its tools within "
                f"{spec.timeout_s:g} s (timeout_s)."
            ) from None
        except McpError:
            await self.close()
            raise
        except Exception as exc:
            await self.close()
            failed = "could not be started" if spec.command else "could not be reached"
            reason = _say(exc)
            if self._http_status is not None:
                reason = f"it answered HTTP {self._http_status} (check its url and headers)"
            raise McpError(f"MCP server {spec.name!r} {failed}: {reason}") from None

    async def call(self, tool: str, arguments: dict[str, Any], key: str) -> CallToolResult:
        """Call ``tool`` on the server, restarting it once first if it died."""
        spec = self.spec
        client = await self._live()
        meta = cast(RequestParamsMeta, {IDEMPOTENCY_META: key})
        try:
            async with asyncio.timeout(spec.timeout_s):
                return await client.call_tool(tool, arguments, meta=meta)
        except TimeoutError:
            raise McpError(
                f"MCP server {spec.name!r} did not answer {tool} within {spec.timeout_s:g} s "
                "(timeout_s); whether the call took effect is unknown."
            ) from None
        except MCPError as exc:
            if exc.code != CONNECTION_CLOSED:
                raise McpError(f"MCP server {spec.name!r} refused {tool}: {exc}") from None
            self._broken = True
            raise McpError(
                f"MCP server {spec.name!r} went away during {tool}; whether the call took "
                "effect is unknown. It will be restarted on the next call."
            ) from None
        except (OSError, httpx2.HTTPError) as exc:
            self._broken = True
            raise McpError(
                f"MCP server {spec.name!r} could not be reached for {tool}: {_say(exc)}"
            ) from None

    async def close(self) -> None:
        """End the session (stopping a stdio server's process)."""
        owner, self._owner = self._owner, None
        serving, self._client = self._client is not None, None
        if owner is None:
            return
        self._stop.set()
        if serving:
            # The owner unwinds the transport itself; the wait bounds a server slow to exit.
            done, _ = await asyncio.wait([owner], timeout=_CLOSE_S)
            if done:
                return
        owner.cancel()  # still starting (or stuck): nothing to unwind politely
        with contextlib.suppress(asyncio.CancelledError):
            await owner

    @property
    def alive(self) -> bool:
        """Whether the session is up (the next call will not need a restart)."""
        return self._client is not None and self._alive(self._client)

    async def _live(self) -> Client:
        async with self._lock:
            client = self._client
            if client is not None and self._alive(client):
                return client
            log.warning("MCP server %r is not connected; reconnecting", self.spec.name)
            await self.close()
            try:
                await self.connect()
            except McpError as exc:
                raise McpError(f"{exc} (It had stopped and could not be restarted.)") from None
            assert self._client is not None  # connect() returned: the owner published it
            return self._client

    def _alive(self, client: Client) -> bool:
        if self._broken or self._owner is None or self._owner.done():
            return False
        # The client has no public "closed" flag; its dispatcher's tells us whether the
        # server hung up since the last call, so a call is never sent into a dead session.
        dispatcher = getattr(client.session, "_dispatcher", None)
        return not getattr(dispatcher, "_closed", False)

    async def _own(self, ready: asyncio.Future[list[mcp_types.Tool]]) -> None:
        try:
            async with self._open() as client:
                tools = await _list_tools(client)
                self._client = client
                ready.set_result(tools)
                await self._stop.wait()
        except asyncio.CancelledError:
            if not ready.done():
                ready.cancel()
            raise
        except Exception as exc:
            # Startup errors go to connect(); later ones (the transport failing) end the session.
            if not ready.done():
                ready.set_exception(exc)
            elif not self._stop.is_set():
                log.warning("MCP server %r session ended: %s", self.spec.name, _say(exc))
            else:  # closing a session whose server is gone (an HTTP goodbye that fails)
                log.debug("MCP server %r closed: %s", self.spec.name, _say(exc))
        finally:
            self._client = None

    async def _note_status(self, response: httpx2.Response) -> None:
        if response.status_code >= 400:
            self._http_status = response.status_code

    @contextlib.asynccontextmanager
    async def _open(self) -> AsyncIterator[Client]:
        spec = self.spec
        async with contextlib.AsyncExitStack() as stack:
            if spec.command is not None:
                env = {k: expand(v, where=f"env.{k}") for k, v in spec.env.items()}
                server: Any = StdioServerParameters(
                    command=spec.command, args=list(spec.args), env=env or None, cwd=spec.cwd
                )
            else:
                headers = {k: expand(v, where=f"headers.{k}") for k, v in spec.headers.items()}
                http = httpx2.AsyncClient(
                    headers=headers,
                    timeout=httpx2.Timeout(spec.timeout_s, read=_SSE_READ_S),
                    event_hooks={"response": [self._note_status]},
                )
                await stack.enter_async_context(http)
                server = streamable_http_client(str(spec.url), http_client=http)
            client = await stack.enter_async_context(Client(server))
            yield client


async def _list_tools(client: Client) -> list[mcp_types.Tool]:
    tools: list[mcp_types.Tool] = []
    cursor: str | None = None
    for _ in range(_LIST_PAGES):  # a server whose cursor never ends cannot hang start-up
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _say(exc: BaseException) -> str:
    """An exception as a short sentence (exception groups: their first leaf)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, ConfigError | McpError):
        return str(exc)
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
