"""Bolt listeners, one concern per module, each with ``register(app, ctx)``."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.listeners import actions, commands, dedupe, events, modals
from bot.slack_app import BotContext


def register_all(app: AsyncApp, ctx: BotContext) -> None:
    """Register the dedupe middleware first, then every listener."""
    dedupe.register(app, ctx)
    commands.register(app, ctx)
    events.register(app, ctx)
    actions.register(app, ctx)
    modals.register(app, ctx)
