"""Block Kit views of the Slack bot: pure functions from view models to messages and views.

Messages are ``(fallback_text, blocks)``; modals and the Home tab are view dicts. Nothing here
does I/O. All text that may come from a model, a tool or a person is escaped
(:mod:`bot.views.text`), and every view stays within Slack's limits whatever its input.
"""

from bot.views.approval import approval_decided, approval_message
from bot.views.cards import ApprovalCard, HandoffCard, RunCard, StepLine
from bot.views.handoff import handoff_closed, handoff_message
from bot.views.help import help_text, usage_error
from bot.views.home import home_view
from bot.views.modals import (
    edit_arguments_modal,
    edit_draft_modal,
    edit_email_modal,
    full_output_modal,
    reject_modal,
    result_modal,
    return_modal,
    send_anyway_modal,
)
from bot.views.results import run_summary, step_result
from bot.views.status import status_card
from bot.views.text import escape, mrkdwn_quote, trim

__all__ = [
    "ApprovalCard",
    "HandoffCard",
    "RunCard",
    "StepLine",
    "approval_decided",
    "approval_message",
    "edit_arguments_modal",
    "edit_draft_modal",
    "edit_email_modal",
    "escape",
    "full_output_modal",
    "handoff_closed",
    "handoff_message",
    "help_text",
    "home_view",
    "mrkdwn_quote",
    "reject_modal",
    "result_modal",
    "return_modal",
    "run_summary",
    "send_anyway_modal",
    "status_card",
    "step_result",
    "trim",
    "usage_error",
]
