"""Grounding: outbound text may only state what the world said, with a cited source.

Before a tool sends text to people outside (an email, a channel post: the tool's ``outbound``
arguments), code splits that text into sentences (:mod:`agents.sentences`) and a checker model
accounts for each one: the claims it makes, each with the evidence it rests on and a verbatim
quote; or a label saying it states no fact (a greeting, a question, an offer...); or the
sender's claims about themselves, resting on the sender's profile. The model only helps find
support. Code decides:

* a sentence the checker left out is flagged "not checked" (an empty answer is never clean);
* a quote must occur in the evidence it cites and carry the claim's numbers, names and dates
  (:func:`agents.evidence.context_of`): a real but unrelated sentence supports nothing;
* the backstop (:mod:`agents.facts`): every number, date and name of every sentence, whatever
  the checker called it, must occur in the evidence cited for it, in what the sender supplied,
  or name the recipient;
* links may not be disguised or lead to a domain the run was never given
  (:mod:`agents.outbound_links`);
* only what the world said is evidence (:mod:`agents.evidence`), never a model's step output.

An agent gets every flagged sentence back to fix, a bounded number of times per message; after
that, or for a tool step no agent wrote, the call goes to a person with the flags shown, and a
plain Approve cannot send it (:func:`agents.flags.is_flagged`).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from agents import outbound_links
from agents.checker_prompt import SCHEMA, SYSTEM, checker_messages
from agents.claims import MARKER, Claim, Report, SentenceCheck
from agents.errors import ConfigError, ModelError
from agents.evidence import (
    Evidence,
    addresses,
    draft_pieces,
    input_lines,
    recipient_text,
    scrub,
    sender_profile,
    url_of,
    written_args,
)
from agents.retry import with_retries
from agents.sentences import Sentence, sentences_of
from agents.tools import Risk, Tool
from agents.verify import verify
from storage.repositories import handoffs, tool_calls

if TYPE_CHECKING:
    from agents.model import ModelReply
    from agents.state import RunState, Services
    from storage.models import Step, ToolCall

__all__ = [
    "MARKER",
    "SCHEMA",
    "SYSTEM",
    "Claim",
    "Evidence",
    "Grounding",
    "Report",
    "SentenceCheck",
    "checker_messages",
    "outbound_text",
    "verify",
]

log = logging.getLogger(__name__)


def outbound_fields(tool: Tool, args: dict[str, Any]) -> list[tuple[str, str]]:
    """The (argument, text) pairs of a call that would reach people outside."""
    return [
        (name, value)
        for name in tool.outbound
        if isinstance(value := args.get(name), str) and value.strip()
    ]


def outbound_text(tool: Tool, args: dict[str, Any]) -> str:
    """The text of a call that would reach people outside ("" if the tool sends none)."""
    fields = outbound_fields(tool, args)
    if len(tool.outbound) > 1:
        return "\n".join(f"{name}: {value}" for name, value in fields)
    return "\n".join(value for _, value in fields)


def message_key(tool: Tool, args: dict[str, Any]) -> str:
    """Names one outbound message: its tool and where it goes ("send_email to=ada@acme.test")."""
    aims = [
        f"{name}={','.join(written_args(value))}"
        for name, value in sorted(args.items())
        if name not in tool.outbound and written_args(value)
    ]
    return " ".join([tool.name, *aims])[:200]


def _natural(key: str) -> list[tuple[int, str]]:
    return [(int(p), "") if p.isdigit() else (-1, p) for p in key.split(":")]


def _parse(content: str | None) -> tuple[Any, str | None]:
    raw = (content or "").strip()
    if raw.startswith("```"):
        raw = raw.strip("`").removeprefix("json").strip()
    try:
        return json.loads(raw), None
    except json.JSONDecodeError:
        return None, "the grounding check returned something that is not JSON"


class Grounding:
    """Grounding of outbound calls (mixed into :class:`~agents.runtime.StepRunner`)."""

    svc: Services
    state: RunState
    step: Step
    run_id: str

    if TYPE_CHECKING:

        async def _record_usage(
            self, reply: ModelReply, values: dict[str, Any] | None = None
        ) -> None: ...

    def _drafts(self) -> tuple[list[tuple[int, str]], dict[str, int]]:
        """Outbound texts this step's model wrote, each with the transcript index of the turn
        that wrote it; and that index for every tool call of the step (by call id)."""
        drafts: list[tuple[int, str]] = []
        turn_of: dict[str, int] = {}
        for i, m in enumerate(self.step.transcript or []):
            for call in m.get("tool_calls") or [] if m.get("role") == "assistant" else []:
                turn_of[str(call.get("id"))] = i
                fn = call.get("function") or {}
                tool = self.svc.registry.tools.get(str(fn.get("name")))
                if tool is None or not tool.outbound:
                    continue
                try:
                    args = json.loads(fn.get("arguments") or "{}")
                except (TypeError, json.JSONDecodeError):
                    continue
                if isinstance(args, dict):
                    drafts.append((i, outbound_text(tool, args)))
        return drafts, turn_of

    def _written_before(self, call: ToolCall, calls: list[ToolCall]) -> list[str]:
        """Drafts that existed before ``call`` ran (it may have read them back: a thread, an
        outbox): earlier outbound calls of the run, and earlier turns of this step."""
        drafts = []
        for other in calls:
            tool = self.svc.registry.tools.get(other.tool)
            earlier = other.created_at < call.created_at
            if tool is not None and tool.outbound and other.arguments and earlier:
                drafts.append(outbound_text(tool, other.arguments))
        if call.step_id == self.step.step_id:
            mine, turn_of = self._drafts()
            at = turn_of.get(call.call_id, -1)
            drafts += [text for i, text in mine if i < at]
        return draft_pieces(drafts)

    async def _evidence(self) -> list[Evidence]:
        """What the world said in this run (:mod:`agents.evidence`): read-only tool results
        first, then the goal, the inputs, people's answers, and the sender's own material."""
        async with self.svc.db.transaction() as session:
            calls = await tool_calls.list_for_run(session, run_id=self.run_id)
            answers = await handoffs.list_handoffs(session, run_id=self.run_id, limit=1000)
        # Numbered in the order the calls were asked for (plan order, then turn and index),
        # not the order they finished in, so the ids are the same however a run is replayed.
        position = {sid: st.position for sid, st in self.state.steps.items()}
        calls.sort(key=lambda c: (position.get(c.step_id, 0), _natural(c.idempotency_key)))
        found: list[Evidence] = []
        for call in calls:
            if call.status == "done" and call.risk == str(Risk.READ_ONLY) and call.result:
                url = url_of(call.result)
                head, body = "", call.result
                if url and call.result.lstrip().startswith("URL:"):
                    head, _, body = call.result.lstrip().partition("\n")
                # What the model wrote into the call (a URL, a query) proves nothing; nor does
                # a draft the call may have read back.
                written = written_args(call.arguments or {}) + self._written_before(call, calls)
                text = f"{head}\n{scrub(body, written)}" if head else scrub(body, written)
                found.append(
                    Evidence(f"tool:{len(found) + 1}", url or f"tool {call.tool}", text, url)
                )
        found.append(Evidence("goal", "the goal, as the requester wrote it", self.state.goal))
        people = input_lines(self.state.inputs, sender=False)
        if people:
            found.append(Evidence("inputs", "the playbook's inputs", people))
        for h in answers:
            if h.kind == "to_human" and h.answer and h.answer.strip():
                found.append(Evidence(f"handoff:{h.id}", f"answer of {h.answered_by}", h.answer))
        try:
            profile = sender_profile(self.svc.settings.sender_profile)
        except ConfigError as exc:  # fail closed: the sender's claims then rest on nothing
            log.warning("%s", exc)
            profile = ""
        sender = "\n".join(p for p in (profile, input_lines(self.state.inputs, sender=True)) if p)
        if sender:
            found.append(Evidence("sender", "the sender's profile and inputs", sender))
        return found

    async def _check_grounding(self, tool: Tool, args: dict[str, Any]) -> Report | None:
        """Check a call's outbound text; None when the tool sends no text or grounding is off."""
        fields = outbound_fields(tool, args)
        if not fields or not self.svc.settings.grounding:
            return None
        sentences = sentences_of(fields if len(tool.outbound) > 1 else [("", fields[0][1])])
        evidence = await self._evidence()
        text = "\n".join(value for _, value in fields)
        known = [e.text for e in evidence] + [e.url for e in evidence if e.url]
        link_flags = outbound_links.check(text, known)
        recipient = recipient_text(addresses(args, tool.outbound), self.state.inputs, evidence)
        raw, error = await self._ask_checker(sentences, evidence)
        report = verify(
            raw,
            sentences,
            evidence,
            recipient=recipient,
            extra=link_flags,
            error=error,
            message=message_key(tool, args),
        )
        log.info(
            "grounding of %s in %s/%s: %d sentences, %d flags",
            tool.name,
            self.run_id,
            self.step.step_id,
            len(sentences),
            len(report.flags),
        )
        return report

    async def _ask_checker(
        self, sentences: list[Sentence], evidence: list[Evidence]
    ) -> tuple[Any, str | None]:
        """The checker model's parsed answer, or why there is none."""
        s = self.svc.settings
        self.state.budget.check()
        try:
            reply = await with_retries(
                lambda: self.svc.model.complete(
                    model=s.grounding_model or s.model,
                    messages=checker_messages(sentences, evidence),
                    response_format={
                        "type": "json_schema",
                        "json_schema": {"name": "grounding", "schema": SCHEMA},
                    },
                    timeout_s=s.model_timeout_s,
                ),
                retries=s.model_retries,
                base=s.retry_base_s,
                cap=s.retry_max_s,
            )
        except ModelError as exc:
            return None, f"the grounding check could not run: {exc}"
        self.state.budget.add(tokens=reply.tokens_in + reply.tokens_out, cost_usd=reply.cost_usd)
        await self._record_usage(reply)
        return _parse(reply.content)

    def _grounding_rounds(
        self, tool: Tool | None = None, args: dict[str, Any] | None = None
    ) -> int:
        """How many times this outbound message was already sent back in this step (read from
        its transcript): each message (tool and recipients) has its own count, so one bad
        email does not use up the retries of the step's other emails."""
        needle = f"(message: {message_key(tool, args or {})})" if tool is not None else ""
        return sum(
            1
            for m in self.step.transcript or []
            if m.get("role") == "tool"
            and MARKER in (content := str(m.get("content") or ""))
            and needle in content
        )
