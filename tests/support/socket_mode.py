"""``FakeSocketMode``: Slack's side of Socket Mode, in front of :class:`FakeSlack`.

A real aiohttp server on ``127.0.0.1`` (ephemeral port, own thread and event loop, like
``FakeSlack``) with one base URL for everything an app talks to:

* ``POST /api/apps.connections.open`` is forwarded to ``FakeSlack`` (which checks the
  ``xapp-`` token and records the call); the ``url`` it answers is replaced by this server's
  own websocket URL, ``ws://127.0.0.1:<port>/link/?ticket=…&app_id=…``;
* every other ``/api/<method>`` is forwarded to ``FakeSlack`` unchanged (method, query,
  headers, body) and its answer relayed (status, body, ``Retry-After``), so
  ``SLACK_API_BASE_URL=fake_socket.base_url`` serves the Web API too;
* ``GET /link/?ticket=…`` is the websocket. Tickets are single use, like Slack's URLs.

The protocol is Slack's (docs.slack.dev/apis/events-api/using-socket-mode, slack.md §5) as
``slack_sdk.socket_mode.aiohttp.SocketModeClient`` speaks it:

* on connect the server sends ``{"type": "hello", "num_connections", "debug_info",
  "connection_info": {"app_id"}}``;
* the test pushes envelopes ``{"envelope_id", "type": "slash_commands" | "interactive" |
  "events_api", "payload", "accepts_response_payload"}`` (events also carry
  ``retry_attempt``/``retry_reason``) with :meth:`FakeSocketMode.slash_command`,
  :meth:`~FakeSocketMode.event`, :meth:`~FakeSocketMode.interactive` or
  :meth:`~FakeSocketMode.send`;
* the app acks with ``{"envelope_id", "payload"?}``; every ack is recorded
  (:class:`Ack`, with its arrival time) and :meth:`~FakeSocketMode.wait_for_ack` waits for one;
* websocket pings are answered with a pong carrying the same data and recorded (the SDK
  pings ``sdk-ping-pong:<time>`` right after connecting and then periodically);
  :meth:`~FakeSocketMode.ping` sends one from the server side;
* :meth:`~FakeSocketMode.disconnect` sends ``{"type": "disconnect", "reason":
  "refresh_requested" | "warning" | …}``; the SDK then opens a new connection (a new
  ``apps.connections.open``), and the old one is closed by whichever side gets there first.

Times (``sent_at``, ``at``) are ``time.monotonic()`` in this process, so an ack's latency is
``ack.at - envelope.sent_at``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp import WSMsgType, web

from tests.support import slack_requests
from tests.support.slack_api import FakeSlack

__all__ = ["Ack", "Connection", "Envelope", "FakeSocketMode", "Ping"]

#: Headers not to copy when relaying a request or an answer (hop-by-hop or recomputed).
_HOP_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "content-encoding",
        "date",
        "server",
        "accept-encoding",
    }
)


@dataclass(frozen=True)
class Envelope:
    """One envelope the server sent."""

    envelope_id: str
    type: str
    payload: dict[str, Any]
    accepts_response_payload: bool
    connection: int
    sent_at: float
    message: dict[str, Any]


@dataclass(frozen=True)
class Ack:
    """One acknowledgement the app sent back."""

    envelope_id: str
    payload: dict[str, Any] | None
    connection: int
    at: float
    message: dict[str, Any]


@dataclass(frozen=True)
class Ping:
    """A websocket ping or pong frame (``from_app`` tells the direction)."""

    kind: str  # "ping" | "pong"
    data: bytes
    from_app: bool
    connection: int
    at: float


@dataclass
class Connection:
    """One websocket connection from the app."""

    id: int
    ticket: str
    opened_at: float
    closed_at: float | None = None
    close_code: int | None = None
    #: Text frames from the app that were not acks (anything unexpected lands here).
    other: list[str] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.closed_at is None


class FakeSocketMode:
    """Slack's Socket Mode endpoint plus a relay to ``slack``'s Web API (see module doc)."""

    def __init__(
        self,
        slack: FakeSlack,
        *,
        app_id: str = slack_requests.API_APP_ID,
        send_hello: bool = True,
    ) -> None:
        self.slack = slack
        self.app_id = app_id
        self.send_hello = send_hello
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._tickets: set[str] = set()
        self._connections: list[Connection] = []
        self._sockets: dict[int, web.WebSocketResponse] = {}
        self._envelopes: list[Envelope] = []
        self._acks: list[Ack] = []
        self._pings: list[Ping] = []
        self._ids = itertools.count(1)
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> Self:
        """Start serving (idempotent; starts ``slack`` too); returns self."""
        if self._thread is not None:
            return self
        self.slack.start()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            runner = web.AppRunner(self._build_app(), access_log=None, shutdown_timeout=0.5)
            try:
                self._session = loop.run_until_complete(self._new_session())
                loop.run_until_complete(runner.setup())
                loop.run_until_complete(web.SockSite(runner, sock).start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._close_all())
                loop.run_until_complete(runner.cleanup())
                loop.close()

        self._thread = threading.Thread(
            target=serve, name=f"FakeSocketMode:{self._port}", daemon=True
        )
        self._thread.start()
        if not ready.wait(10) or failure:
            self._thread = None
            raise RuntimeError("FakeSocketMode failed to start") from (
                failure[0] if failure else None
            )
        return self

    @staticmethod
    async def _new_session() -> aiohttp.ClientSession:
        # trust_env=False: never send loopback traffic through a proxy from the environment.
        return aiohttp.ClientSession(trust_env=False, auto_decompress=False)

    async def _close_all(self) -> None:
        for ws in list(self._sockets.values()):
            await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"server stopping")
        if self._session is not None:
            await self._session.close()

    def stop(self) -> None:
        """Close every connection, stop serving and join the thread (idempotent).

        ``slack`` is left running: whoever started it stops it.
        """
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._thread = None
        self._loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeSocketMode is not started")
        return self._port

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """Web API base URL (``SLACK_API_BASE_URL``): Socket Mode and the relay to FakeSlack."""
        return f"{self.root_url}/api/"

    # --- reading what happened (thread-safe snapshots) -------------------------------

    @property
    def connections(self) -> list[Connection]:
        with self._lock:
            return [
                Connection(c.id, c.ticket, c.opened_at, c.closed_at, c.close_code, list(c.other))
                for c in self._connections
            ]

    @property
    def open_connections(self) -> list[Connection]:
        return [c for c in self.connections if c.open]

    @property
    def envelopes(self) -> list[Envelope]:
        with self._lock:
            return list(self._envelopes)

    @property
    def acks(self) -> list[Ack]:
        with self._lock:
            return list(self._acks)

    @property
    def pings(self) -> list[Ping]:
        with self._lock:
            return list(self._pings)

    def acks_for(self, envelope_id: str) -> list[Ack]:
        return [a for a in self.acks if a.envelope_id == envelope_id]

    def envelope(self, envelope_id: str) -> Envelope:
        found = [e for e in self.envelopes if e.envelope_id == envelope_id]
        if not found:
            raise KeyError(envelope_id)
        return found[-1]

    def latency(self, envelope_id: str) -> float:
        """Seconds from sending the envelope to its first ack."""
        ack = self.wait_for_ack(envelope_id, timeout=0)
        return ack.at - self.envelope(envelope_id).sent_at

    # --- waiting ---------------------------------------------------------------------

    def _wait(self, what: str, check: Any, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = check()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{what} not seen within {timeout:.1f}s; "
                        f"connections={self._connections!r}, acks={self._acks[-5:]!r}"
                    )
                self._changed.wait(left)

    def wait_for_connection(self, count: int = 1, timeout: float = 30.0) -> Connection:
        """Wait until ``count`` connections were opened in all; return the latest."""

        def check() -> Connection | None:
            return self._connections[-1] if len(self._connections) >= count else None

        found: Connection = self._wait(f"connection #{count}", check, timeout)
        return found

    def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> Ack:
        """The first ack of ``envelope_id`` (AssertionError if none within ``timeout``)."""

        def check() -> Ack | None:
            return next((a for a in self._acks if a.envelope_id == envelope_id), None)

        found: Ack = self._wait(f"ack of {envelope_id}", check, timeout)
        return found

    def wait_for_ping(self, *, from_app: bool = True, timeout: float = 5.0) -> Ping:
        """The first ping (from the app, or a pong to the server's ping)."""
        kind = "ping" if from_app else "pong"

        def check() -> Ping | None:
            return next((p for p in self._pings if p.kind == kind and p.from_app), None)

        found: Ping = self._wait(f"{kind} from the app", check, timeout)
        return found

    def wait_for_close(self, connection: int, timeout: float = 15.0) -> Connection:
        def check() -> Connection | None:
            c = self._connections[connection - 1]
            return c if not c.open else None

        found: Connection = self._wait(f"close of connection {connection}", check, timeout)
        return found

    # --- driving the app (call from test threads) ------------------------------------

    def _run(self, coro: Any, timeout: float = 10.0) -> Any:
        if self._loop is None:
            raise RuntimeError("FakeSocketMode is not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def send(
        self,
        type: str,
        payload: Mapping[str, Any],
        *,
        accepts_response_payload: bool,
        envelope_id: str | None = None,
        connection: int | None = None,
        **extra: Any,
    ) -> Envelope:
        """Send one envelope on ``connection`` (default: the newest open one)."""
        message: dict[str, Any] = {
            "envelope_id": envelope_id or str(uuid.uuid4()),
            "payload": dict(payload),
            "type": type,
            "accepts_response_payload": accepts_response_payload,
            **extra,
        }
        result: Envelope = self._run(self._send(message, connection))
        return result

    def slash_command(self, text: str, **fields: Any) -> Envelope:
        """``/orchestrate TEXT`` (fields as :func:`slack_requests.slash_command` takes them)."""
        body, _ctype = slack_requests.slash_command(text, **fields)
        payload = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
        return self.send("slash_commands", payload, accepts_response_payload=True)

    def event(
        self,
        event: Mapping[str, Any],
        *,
        event_id: str | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
        envelope_id: str | None = None,
        **fields: Any,
    ) -> Envelope:
        """An Events API callback around ``event``; reuse ``event_id`` for a redelivery."""
        body, _ctype = slack_requests.event_callback(event, event_id=event_id, **fields)
        return self.send(
            "events_api",
            json.loads(body),
            accepts_response_payload=False,
            envelope_id=envelope_id,
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
        )

    def interactive(self, body: bytes) -> Envelope:
        """An interaction, from a form body built by :mod:`tests.support.slack_requests`."""
        form = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
        payload = json.loads(form["payload"])
        return self.send(
            "interactive",
            payload,
            accepts_response_payload=payload.get("type") == "view_submission",
        )

    def disconnect(
        self, reason: str = "refresh_requested", *, connection: int | None = None
    ) -> None:
        """Ask the app to reconnect (Slack does this every few hours, and before deploys)."""
        message = {
            "type": "disconnect",
            "reason": reason,
            "debug_info": {"host": f"applink-fake-{self.port}"},
        }
        self._run(self._send_raw(message, connection))

    def close(self, connection: int | None = None, code: int = 1001) -> None:
        """Close a connection from the server side."""
        self._run(self._close(connection, code))

    def ping(self, data: bytes = b"fake-slack-ping", connection: int | None = None) -> None:
        """Send a websocket ping (the app's pong is recorded)."""
        self._run(self._ping(data, connection))

    # --- server side -----------------------------------------------------------------

    def _socket(self, connection: int | None) -> tuple[int, web.WebSocketResponse]:
        with self._lock:
            if connection is None:
                open_ids = [c.id for c in self._connections if c.open and c.id in self._sockets]
                if not open_ids:
                    raise RuntimeError("the app has no open Socket Mode connection")
                connection = open_ids[-1]
            ws = self._sockets.get(connection)
        if ws is None:
            raise RuntimeError(f"connection {connection} is not open")
        return connection, ws

    async def _send(self, message: dict[str, Any], connection: int | None) -> Envelope:
        conn, ws = self._socket(connection)
        text = json.dumps(message)
        with self._changed:
            envelope = Envelope(
                envelope_id=message["envelope_id"],
                type=message["type"],
                payload=message["payload"],
                accepts_response_payload=bool(message["accepts_response_payload"]),
                connection=conn,
                sent_at=time.monotonic(),
                message=message,
            )
            self._envelopes.append(envelope)
        await ws.send_str(text)
        return envelope

    async def _send_raw(self, message: dict[str, Any], connection: int | None) -> None:
        _conn, ws = self._socket(connection)
        await ws.send_str(json.dumps(message))

    async def _close(self, connection: int | None, code: int) -> None:
        _conn, ws = self._socket(connection)
        await ws.close(code=code)

    async def _ping(self, data: bytes, connection: int | None) -> None:
        conn, ws = self._socket(connection)
        with self._changed:
            self._pings.append(Ping("ping", data, False, conn, time.monotonic()))
        await ws.ping(data)

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/link/", self._on_link)
        app.router.add_route("*", "/api/{method}", self._on_api)
        return app

    async def _on_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        async with self._session.request(
            request.method,
            f"{self.slack.root_url}{request.path_qs}",
            headers=headers,
            data=await request.read(),
            allow_redirects=False,
        ) as upstream:
            body = await upstream.read()
            out_headers = {
                k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS
            }
            status = upstream.status
        if method == "apps.connections.open" and status == 200:
            body = self._own_url(body)
        return web.Response(status=status, body=body, headers=out_headers)

    def _own_url(self, body: bytes) -> bytes:
        """Swap FakeSlack's (unserved) websocket URL for this server's, remembering the ticket."""
        data = json.loads(body)
        if not data.get("ok"):
            return body
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(str(data["url"])).query)
        ticket = (query.get("ticket") or [uuid.uuid4().hex])[0]
        with self._lock:
            self._tickets.add(ticket)
        data["url"] = f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"
        return json.dumps(data).encode()

    async def _on_link(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        with self._lock:
            known = ticket in self._tickets
            self._tickets.discard(ticket)  # single use
        if not known:
            return web.Response(status=401, text="invalid or used ticket")
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        with self._changed:
            conn = Connection(next(self._ids), ticket, time.monotonic())
            self._connections.append(conn)
            self._sockets[conn.id] = ws
            live = sum(1 for c in self._connections if c.open)
            self._changed.notify_all()
        if self.send_hello:
            await ws.send_str(
                json.dumps(
                    {
                        "type": "hello",
                        "num_connections": live,
                        "debug_info": {
                            "host": f"applink-fake-{self.port}",
                            "build_number": 1,
                            "approximate_connection_time": 18060,
                        },
                        "connection_info": {"app_id": self.app_id},
                    }
                )
            )
        try:
            async for msg in ws:
                now = time.monotonic()
                if msg.type == WSMsgType.TEXT:
                    self._on_text(conn, str(msg.data), now)
                elif msg.type == WSMsgType.PING:
                    with self._changed:
                        self._pings.append(Ping("ping", bytes(msg.data), True, conn.id, now))
                        self._changed.notify_all()
                    await ws.pong(msg.data)
                elif msg.type == WSMsgType.PONG:
                    with self._changed:
                        self._pings.append(Ping("pong", bytes(msg.data), True, conn.id, now))
                        self._changed.notify_all()
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.ERROR):
                    break
        finally:
            with self._changed:
                conn.closed_at = time.monotonic()
                conn.close_code = ws.close_code
                self._sockets.pop(conn.id, None)
                self._changed.notify_all()
        return ws

    def _on_text(self, conn: Connection, text: str, now: float) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        with self._changed:
            if isinstance(message, dict) and isinstance(message.get("envelope_id"), str):
                payload = message.get("payload")
                self._acks.append(
                    Ack(
                        envelope_id=message["envelope_id"],
                        payload=payload if isinstance(payload, dict) else None,
                        connection=conn.id,
                        at=now,
                        message=message,
                    )
                )
            else:
                conn.other.append(text)
            self._changed.notify_all()
