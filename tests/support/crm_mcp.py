"""A small CRM as an MCP server, for tests: contacts and activities in a SQLite file.

Run it the way Baton's config would::

    python -m tests.support.crm_mcp            # stdio
    python -m tests.support.crm_mcp http       # streamable HTTP on 127.0.0.1, a free port

Environment:

* ``CRM_DB``: the SQLite file (created and seeded with a few contacts on first use).
* ``CRM_PID_FILE``: if set, the server appends its pid there on start (tests kill it).
* ``CRM_TOKEN``: if set (HTTP only), requests must carry ``Authorization: Bearer <token>``.

In HTTP mode the server prints ``PORT <n>`` on stdout once it listens.

``log_activity`` dedupes on the ``baton/idempotency_key`` the caller sends in the request's
``_meta``: a repeated key records nothing new, so a retried call writes one row.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import sys
from datetime import UTC, datetime
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

IDEMPOTENCY_META = "baton/idempotency_key"

SEED = (
    ("ada@acme.test", "Ada Lovelace", "Acme"),
    ("bob@acme.test", "Bob Byte", "Acme"),
    ("cy@globex.test", "Cy Globe", "Globex"),
)

server = MCPServer("crm", log_level="WARNING")


def _db() -> sqlite3.Connection:
    conn = sqlite3.connect(os.environ.get("CRM_DB", "crm.db"))
    conn.row_factory = sqlite3.Row
    conn.executescript(
        """
        CREATE TABLE IF NOT EXISTS contacts (
            email TEXT PRIMARY KEY, name TEXT NOT NULL, company TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS activities (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            contact_email TEXT NOT NULL, kind TEXT NOT NULL, summary TEXT NOT NULL,
            idempotency_key TEXT UNIQUE, created_at TEXT NOT NULL);
        """
    )
    conn.executemany("INSERT OR IGNORE INTO contacts VALUES (?, ?, ?)", SEED)
    conn.commit()
    return conn


@server.tool()
def find_contacts(company: str) -> list[dict[str, Any]]:
    """Find the contacts who work at a company."""
    with _db() as conn:
        rows = conn.execute(
            "SELECT email, name, company FROM contacts WHERE company = ? COLLATE NOCASE "
            "ORDER BY email",
            (company,),
        ).fetchall()
    return [dict(r) for r in rows]


@server.tool()
def log_activity(contact_email: str, kind: str, summary: str, ctx: Context) -> str:
    """Record an activity (call, email, meeting, reply) on a contact."""
    meta = ctx.request_context.meta or {}
    key = meta.get(IDEMPOTENCY_META)
    with _db() as conn:
        if conn.execute("SELECT 1 FROM contacts WHERE email = ?", (contact_email,)).fetchone():
            cur = conn.execute(
                "INSERT OR IGNORE INTO activities "
                "(contact_email, kind, summary, idempotency_key, created_at) VALUES (?, ?, ?, ?, ?)",
                (contact_email, kind, summary, key, datetime.now(UTC).isoformat()),
            )
        else:
            raise ToolError(f"no contact {contact_email}")
    return "logged" if cur.rowcount else "already logged"


@server.tool()
def has_reply(contact_email: str, since: str) -> bool:
    """Whether the contact replied on or after ``since`` (an ISO date)."""
    with _db() as conn:
        row = conn.execute(
            "SELECT 1 FROM activities WHERE contact_email = ? AND kind = 'reply' "
            "AND created_at >= ?",
            (contact_email, since),
        ).fetchone()
    return row is not None


def _serve_http() -> None:
    import anyio
    import uvicorn
    from starlette.types import ASGIApp, Receive, Scope, Send

    token = os.environ.get("CRM_TOKEN")
    app = server.streamable_http_app()

    def guarded(inner: ASGIApp) -> ASGIApp:
        async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
            if token and scope["type"] == "http":
                headers = dict(scope.get("headers") or [])
                if headers.get(b"authorization") != f"Bearer {token}".encode():
                    await send({"type": "http.response.start", "status": 401, "headers": []})
                    await send({"type": "http.response.body", "body": b"unauthorized"})
                    return
            await inner(scope, receive, send)

        return asgi

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(guarded(app), log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    anyio.run(lambda: uv.serve(sockets=[sock]))


def main() -> None:
    """Serve over stdio, or over streamable HTTP when the first argument is ``http``."""
    pid_file = os.environ.get("CRM_PID_FILE")
    if pid_file:
        with open(pid_file, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")
    _db().close()
    if sys.argv[1:2] == ["http"]:
        _serve_http()
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
