"""A Baton plugin for the Slack-boundary tests: an agent that reads a page and posts in Slack.

Loaded with ``BATON_PLUGINS=tests.plugins.ledger,tests.plugins.announcer`` by a ``baton serve``
that has ``SLACK_BOT_TOKEN`` (and ``SLACK_API_BASE_URL``) set.

The Slack tools exist in the registry before plugins load whenever a bot token is set, so a
plugin agent may list them.
"""

from __future__ import annotations

from agents import Agent, Registry


def register(registry: Registry) -> None:
    """Add the agent ``announcer``."""
    registry.add_agent(
        Agent(
            name="announcer",
            role="Reads a page and announces its news in a Slack channel.",
            instructions=(
                "Read the page you are given with http_fetch, then post a short announcement "
                "of its news with slack_post_message in the channel you are given."
            ),
            tools=("http_fetch", "slack_post_message"),
        )
    )
