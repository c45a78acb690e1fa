"""Modal submissions: the reason for a rejection, edited arguments, email or draft, the
confirmation of a "Send anyway", a handed-off step's result, a note when returning a step to
its agent.

Input that cannot count (invalid JSON, arguments that fail the tool's schema, an address that
is not one, a confirmation not typed, an empty result) is answered inside the modal with
``response_action: errors``; nothing is decided. What passes goes to the engine's ``decide``,
whose rules (a flagged action needs an edit or an override) apply whatever the form said.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from agents import emails
from agents.approvals import DecisionRequest
from agents.errors import BatonError, ToolArgumentsError
from agents.flags import is_flagged
from bot.listeners.actions import already_message, approval_for_click, handoff_for_click
from bot.slack_app import BotContext
from bot.views.modals import EMAIL_INPUTS, SEND_ANYWAY_WORDS
from storage.models import Approval
from storage.repositories import approvals

log = logging.getLogger(__name__)


def value(view: dict[str, Any], block: str, action: str) -> str:
    """A plain-text input's value ('' when empty)."""
    state = (view.get("state") or {}).get("values") or {}
    return str(((state.get(block) or {}).get(action) or {}).get("value") or "")


def register(app: AsyncApp, ctx: BotContext) -> None:
    """Register the view-submission listeners."""

    @app.view("baton_reject_modal")
    async def rejected(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        reason = value(view, "reason", "reason_input").strip()
        if not reason:
            await ack(
                response_action="errors", errors={"reason": "Say why, so the agent can adjust."}
            )
            return
        await ack()
        found = await approval_for_click(ctx, body, view.get("private_metadata"))
        if found is None:
            return
        approval, digest, user = found
        await _decide(
            ctx,
            body,
            DecisionRequest(approval.id, "reject", f"slack:{user}", reason=reason, digest=digest),
        )

    @app.view("baton_edit_modal")
    async def edited(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        approval_id, _, digest = str(view.get("private_metadata", "")).partition("|")
        async with ctx.engine.svc.db.transaction() as session:
            approval = await approvals.get(session, approval_id=approval_id)
        if approval is None:
            await ack(response_action="errors", errors={"arguments": "This approval is gone."})
            return
        request: DecisionRequest
        if approval.kind == "step_output":
            draft = value(view, "draft", "draft_input").strip()
            if not draft:
                await ack(response_action="errors", errors={"draft": "The draft is empty."})
                return
            request = DecisionRequest(approval.id, "approve", "", draft=draft, digest=digest)
        elif _is_email_form(view):
            arguments, errors = _email_arguments(ctx, approval, view)
            if errors:
                await ack(response_action="errors", errors=errors)
                return
            request = DecisionRequest(
                approval.id, "approve", "", arguments=arguments, digest=digest
            )
        else:
            raw = value(view, "arguments", "arguments_input")
            try:
                arguments = json.loads(raw)
                tool = ctx.engine.svc.registry.tool(str((approval.action or {}).get("tool")))
                tool.validate(arguments)
            except json.JSONDecodeError as exc:
                await ack(
                    response_action="errors",
                    errors={"arguments": f"Not valid JSON: {exc.msg} (line {exc.lineno})."},
                )
                return
            except (ToolArgumentsError, BatonError) as exc:
                await ack(response_action="errors", errors={"arguments": str(exc)[:2000]})
                return
            request = DecisionRequest(
                approval.id, "approve", "", arguments=arguments, digest=digest
            )
        await ack()
        found = await approval_for_click(ctx, body, view.get("private_metadata"))
        if found is None:
            return
        _approval, _digest, user = found
        await _decide(
            ctx,
            body,
            DecisionRequest(
                request.approval_id,
                "approve",
                f"slack:{user}",
                arguments=request.arguments,
                draft=request.draft,
                digest=request.digest,
            ),
        )

    @app.view("baton_send_anyway_modal")
    async def send_anyway(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        typed = " ".join(value(view, "confirm", "confirm_input").lower().split())
        if typed != SEND_ANYWAY_WORDS:
            await ack(
                response_action="errors",
                errors={"confirm": f"Type “{SEND_ANYWAY_WORDS}” to send it despite the flags."},
            )
            return
        if ctx.engine.svc.settings.grounding_override == "never":
            await ack(
                response_action="errors",
                errors={"confirm": "Sending anyway is turned off (BATON_GROUNDING_OVERRIDE)."},
            )
            return
        await ack()
        found = await approval_for_click(ctx, body, view.get("private_metadata"))
        if found is None:
            return
        approval, digest, user = found
        await _decide(
            ctx,
            body,
            DecisionRequest(approval.id, "approve", f"slack:{user}", digest=digest, override=True),
        )

    @app.view("baton_result_modal")
    async def submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        result = value(view, "result", "result_input").strip()
        if not result:
            await ack(response_action="errors", errors={"result": "Write the step's result."})
            return
        await ack()
        handoff = await handoff_for_click(ctx, body, str(view.get("private_metadata", "")))
        if handoff is None:
            return
        user = str((body.get("user") or {}).get("id", ""))
        try:
            await ctx.engine.answer_handoff(handoff.id, actor=f"slack:{user}", answer=result)
        except BatonError as exc:
            await ctx.poster.direct(user, already_message(str(exc)))

    @app.view("baton_return_modal")
    async def returned(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        await ack()
        handoff = await handoff_for_click(ctx, body, str(view.get("private_metadata", "")))
        if handoff is None:
            return
        user = str((body.get("user") or {}).get("id", ""))
        note = value(view, "note", "note_input")
        try:
            await ctx.engine.return_handoff(handoff.id, actor=f"slack:{user}", note=note)
        except BatonError as exc:
            await ctx.poster.direct(user, already_message(str(exc)))


async def _decide(ctx: BotContext, body: dict[str, Any], request: DecisionRequest) -> None:
    try:
        await ctx.engine.decide(request)
    except BatonError as exc:
        user = str((body.get("user") or {}).get("id", ""))
        await ctx.poster.direct(user, already_message(str(exc)))


def _is_email_form(view: dict[str, Any]) -> bool:
    values = (view.get("state") or {}).get("values") or {}
    return "to" in values and "body" in values


def _email_arguments(
    ctx: BotContext, approval: Approval, view: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The edited email's arguments, and what is wrong with them by input (block id)."""
    original = dict((approval.action or {}).get("arguments") or {})
    arguments = dict(original)
    for name, _label, _one_line in EMAIL_INPUTS:
        typed = value(view, name, f"{name}_input")
        if name in ("to", "cc", "bcc"):
            before = original.get(name)
            shown = ", ".join(emails.recipients(before))
            # Unchanged stays exactly as it was (a list stays a list); empty means none.
            if typed.strip() == shown:
                continue
            arguments[name] = typed.strip() or None
        else:
            arguments[name] = typed.strip() if name == "subject" else typed
    errors = emails.problems(arguments)
    if errors:
        return arguments, errors
    try:
        tool = ctx.engine.svc.registry.tool(str((approval.action or {}).get("tool")))
        arguments = tool.validate(arguments)
    except (ToolArgumentsError, BatonError) as exc:
        return arguments, {"body": str(exc)[:2000]}
    if arguments == original and is_flagged(approval.action):
        return arguments, {
            "body": "Nothing was changed, so the flags still stand: edit what is "
            "flagged, or close this and send it back or send it anyway."
        }
    return arguments, {}
