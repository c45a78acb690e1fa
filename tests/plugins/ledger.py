"""A Baton plugin for tests: tools whose side effects land in a ledger file.

Loaded by ``BATON_PLUGINS=tests.plugins.ledger``. Each side effect appends one line
``<idempotency key>\t<tool>\t<entry>`` to ``$BATON_TEST_LEDGER``, so a test can count how often
each effect really happened. ``BATON_TEST_TOOL_DELAY`` (seconds) widens the window a crash can
fall into.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

from pydantic import Field

from agents import Agent, Registry, Risk, ToolContext, tool


def _ledger() -> Path:
    return Path(os.environ.get("BATON_TEST_LEDGER", "ledger.txt"))


def _append(ctx: ToolContext, tool_name: str, entry: str) -> None:
    with _ledger().open("a", encoding="utf-8") as f:
        f.write(f"{ctx.idempotency_key}\t{tool_name}\t{entry}\n")
        f.flush()
        os.fsync(f.fileno())


def _keys() -> set[str]:
    try:
        return {line.split("\t", 1)[0] for line in _ledger().read_text().splitlines()}
    except FileNotFoundError:
        return set()


async def _pause() -> None:
    delay = float(os.environ.get("BATON_TEST_TOOL_DELAY", "0") or 0)
    if delay:
        await asyncio.sleep(delay)


@tool(risk=Risk.WRITES)
async def ledger_write(entry: str, ctx: ToolContext) -> str:
    """Append an entry to the ledger (not idempotent)."""
    await _pause()
    _append(ctx, "ledger_write", entry)
    await _pause()
    return f"wrote {entry}"


@tool(risk=Risk.WRITES, idempotent=True)
async def ledger_upsert(entry: str, ctx: ToolContext) -> str:
    """Record an entry once per idempotency key (safe to retry)."""
    await _pause()
    if ctx.idempotency_key not in _keys():
        _append(ctx, "ledger_upsert", entry)
    await _pause()
    return f"upserted {entry}"


@tool(risk=Risk.EXTERNAL)
async def send_message(
    to: Annotated[str, Field(description="Recipient address")],
    body: Annotated[str, Field(description="Message text")],
    ctx: ToolContext,
) -> str:
    """Send a message to someone (irreversible)."""
    await _pause()
    _append(ctx, "send_message", f"{to}: {body}")
    return f"sent to {to}"


@tool(risk=Risk.READ_ONLY)
async def lookup(topic: str) -> str:
    """Look up facts about a topic."""
    await _pause()
    return f"facts about {topic}"


@tool(risk=Risk.READ_ONLY)
async def broken_lookup(topic: str) -> str:
    """A lookup whose backend is down."""
    raise RuntimeError(f"backend unavailable for {topic}")


@tool(risk=Risk.READ_ONLY)
async def sleep_for(seconds: float) -> str:
    """Wait a number of seconds (to observe overlap)."""
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@tool(risk=Risk.EXTERNAL, outbound=("subject", "body"))
async def send_outreach(to: str, subject: str, body: str, ctx: ToolContext) -> str:
    """Email a prospect (irreversible; its text is grounded against the research first)."""
    _append(ctx, "send_outreach", f"{to}: {subject}: {body}")
    return f"emailed {to}"


def register(registry: Registry) -> None:
    """Add the ledger tools and an agent that may use them."""
    for t in (
        ledger_write,
        ledger_upsert,
        send_message,
        lookup,
        broken_lookup,
        sleep_for,
        send_outreach,
    ):
        registry.add_tool(t)
    registry.add_agent(
        Agent(
            name="outreach",
            role="Writes and sends outreach emails grounded in the research.",
            instructions="Write the email from the research only, then send it.",
            tools=("send_outreach", "lookup"),
        )
    )
    registry.add_agent(
        Agent(
            name="operator",
            role="Carries out actions with the ledger tools.",
            instructions="Use your tools to do the step, then report what you did.",
            tools=("ledger_write", "ledger_upsert", "send_message", "lookup", "broken_lookup"),
        )
    )
