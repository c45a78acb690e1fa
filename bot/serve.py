"""``baton serve``: one process serves Slack, drives runs, and resumes unfinished ones.

Socket Mode when ``SLACK_APP_TOKEN`` is set (no public URL needed), otherwise HTTP on
``/slack/events``. Without ``SLACK_BOT_TOKEN`` it runs the engine alone (headless).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys

from aiohttp import web

from agents.engine import Engine
from agents.settings import Settings
from bot.settings import SlackSettings
from bot.worker import serve_engine

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"


def choose_mode(slack: SlackSettings, requested: str | None) -> str:
    """socket, http or headless."""
    if requested:
        return requested
    if not slack.configured:
        return "headless"
    return "socket" if slack.app_token else "http"


async def serve(
    engine: Engine,
    settings: Settings,
    slack: SlackSettings,
    *,
    mode: str | None = None,
    host: str = "0.0.0.0",
    port: int | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (or cancellation)."""
    mode = choose_mode(slack, mode)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    say = sys.stdout.write
    worker = asyncio.create_task(serve_engine(engine))
    runner: web.AppRunner | None = None
    handler = None
    app = None
    try:
        if mode == "headless":
            say("Slack is not configured (SLACK_BOT_TOKEN unset): running the engine only.\n")
        else:
            slack.check(mode)
            from bot.slack_app import build_app
            from bot.slack_tools import register_slack_tools

            app = build_app(engine, settings, slack, socket=mode == "socket")
            # Agents' Slack tools use the app's poster: its pooled session, pacing, token state.
            register_slack_tools(engine.svc.registry, app.baton.poster)  # type: ignore[attr-defined]
            if mode == "http":
                runner = web.AppRunner(app.web_app(path=EVENTS_PATH))
                await runner.setup()
                bind_port = port if port is not None else slack.port
                site = web.TCPSite(runner, host, bind_port)
                await site.start()
                say(f"Baton is listening on http://{host}:{bind_port}{EVENTS_PATH}\n")
            else:
                from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

                handler = AsyncSocketModeHandler(app, slack.app_token)
                await handler.connect_async()  # type: ignore[no-untyped-call]
                say("Baton is connected to Slack (Socket Mode).\n")
        sys.stdout.flush()
        # Start-up imports (litellm, pydantic, SQLAlchemy, Bolt) leave ~500k long-lived
        # objects; freezing them keeps full collections short, and with them the ack tail.
        gc.collect()
        gc.freeze()
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        if handler is not None or runner is not None:
            # Let the last card edits and thread posts out before stopping (bounded).
            ctx = getattr(app, "baton", None)
            if ctx is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ctx.renderer.drain(), timeout=5)
                await ctx.renderer.close()
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        if handler is not None:
            await handler.close_async()  # type: ignore[no-untyped-call]
        session = getattr(getattr(app, "client", None), "session", None)
        if session is not None and not session.closed:
            await session.close()
        if runner is not None:
            await runner.cleanup()
