"""Built-in tools every registry has: ``http_fetch`` (read a web page) and ``send_email``.

Their settings (``BATON_FETCH_*``, ``BATON_SMTP_*``) are read when the registry is built;
Slack tools live in ``bot.slack_tools`` because ``agents`` never imports Slack.
"""

from __future__ import annotations

from collections.abc import Mapping

from agents.toolbox.email import EmailError, make_send_email
from agents.toolbox.http_fetch import make_http_fetch
from agents.toolbox.settings import FetchSettings, SmtpSettings
from agents.toolbox.web_guard import FetchError
from agents.tools import Tool

__all__ = [
    "EmailError",
    "FetchError",
    "FetchSettings",
    "SmtpSettings",
    "builtin_tools",
    "make_http_fetch",
    "make_send_email",
]


def builtin_tools(env: Mapping[str, str] | None = None) -> list[Tool]:
    """The built-in tools, configured from ``env`` (default: the process environment)."""
    return [
        make_http_fetch(FetchSettings.from_env(env)),
        make_send_email(SmtpSettings.from_env(env)),
    ]
