"""Slack settings, read once from the environment (documented one by one in README)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from agents.errors import ConfigError
from bot.policy import ApprovalPolicy


@dataclass(frozen=True)
class SlackSettings:
    """How to reach Slack and who may decide what."""

    #: ``xoxb-…``: the bot's token (OAuth & Permissions).
    bot_token: str | None = None
    #: Verifies that HTTP requests come from Slack (Basic Information → Signing Secret).
    signing_secret: str | None = None
    #: ``xapp-…`` with ``connections:write``: enables Socket Mode (no public URL needed).
    app_token: str | None = None
    #: Web API base URL; point it at a proxy or a local stand-in. Default Slack's.
    api_base_url: str | None = None
    #: Port for the HTTP endpoint ``/slack/events``.
    port: int = 3000
    policy: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    #: Who hears about an approval left waiting past its escalation time: user ids (DM),
    #: channel ids (a post there) or user group ids (mentioned in the thread).
    escalate_to: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SlackSettings:
        """Read ``SLACK_*`` and the approval policy (``BATON_APPROVERS_*``)."""
        env = os.environ if env is None else env
        port_raw = env.get("BATON_PORT") or env.get("PORT") or "3000"
        try:
            port = int(port_raw)
        except ValueError:
            raise ConfigError(f"BATON_PORT must be a port number, got {port_raw!r}") from None
        return cls(
            bot_token=env.get("SLACK_BOT_TOKEN") or None,
            signing_secret=env.get("SLACK_SIGNING_SECRET") or None,
            app_token=env.get("SLACK_APP_TOKEN") or None,
            api_base_url=env.get("SLACK_API_BASE_URL") or None,
            port=port,
            policy=ApprovalPolicy.from_env(env),
            escalate_to=tuple(
                t.strip() for t in env.get("BATON_ESCALATE_TO", "").split(",") if t.strip()
            ),
        )

    @property
    def configured(self) -> bool:
        """Whether there is a bot token at all (otherwise ``baton serve`` runs headless)."""
        return bool(self.bot_token)

    def check(self, mode: str) -> None:
        """Say exactly which setting is missing for ``mode`` (socket or http)."""
        if not self.bot_token:
            raise ConfigError(
                "SLACK_BOT_TOKEN is not set (the xoxb- token from OAuth & Permissions)."
            )
        if mode == "socket" and not self.app_token:
            raise ConfigError(
                "Socket Mode needs SLACK_APP_TOKEN (an xapp- token with connections:write, "
                "from Basic Information → App-Level Tokens)."
            )
        if mode == "http" and not self.signing_secret:
            raise ConfigError(
                "HTTP mode needs SLACK_SIGNING_SECRET (Basic Information → Signing Secret)."
            )
