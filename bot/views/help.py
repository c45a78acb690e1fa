"""How to use ``/orchestrate``: the help text, and explanations of a mistyped command."""

from __future__ import annotations

from bot.views._blocks import Block, context, section
from bot.views.text import clip, one_line

EXAMPLE_GOAL = "/orchestrate Research ACME and draft a short account brief"
EXAMPLE_PLAYBOOK = '/orchestrate playbook account_brief account=ACME contact="their CTO"'


def help_text() -> str:
    """Everything ``/orchestrate`` does, in ``mrkdwn``."""
    return "\n".join(
        [
            "*Baton* turns a goal into a plan of steps carried out by agents. Steps that change "
            "something wait for your approval in the thread.",
            "",
            "• `/orchestrate &lt;goal&gt;`: plan and run a goal",
            "• `/orchestrate playbook &lt;name&gt; key=value …`: run a written playbook with inputs",
            "• `/orchestrate status [run]`: the status of a run (your latest if none is given)",
            "• `/orchestrate cancel &lt;run&gt;`: stop a run; steps already done stay done",
            '• `/orchestrate schedule "&lt;when&gt;" &lt;goal&gt;` (or `playbook &lt;name&gt; …`): '
            'run it on a schedule in your time zone, e.g. "every monday 9am", "daily 17:30"',
            "• `/orchestrate schedules` / `unschedule &lt;id&gt;`: list or stop your schedules",
            "• `/orchestrate help`: this message",
            "",
            "*Examples*",
            f"`{EXAMPLE_GOAL}`",
            f"`{EXAMPLE_PLAYBOOK}`",
        ]
    )


def usage_error(message: str) -> tuple[str, list[Block]]:
    """An ephemeral explanation of what was wrong with a command, with an example."""
    explained = clip(one_line(message), 1_000) or "That command was not understood."
    blocks = [
        section(f"⚠️ {explained}"),
        section(f"*For example*\n`{EXAMPLE_GOAL}`\n`{EXAMPLE_PLAYBOOK}`"),
        context("`/orchestrate help` lists everything Baton can do."),
    ]
    return clip(one_line(message), 300) or "Usage error", blocks
