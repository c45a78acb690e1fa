"""Grounding: outbound text may only claim what earlier steps found, with a cited source.

Before a tool sends text to people outside (an email, a channel post: the tool's ``outbound``
arguments), that text is checked against the evidence the run has gathered: the goal and
inputs a person gave, the outputs of finished steps, and the results of read-only tool calls
(a fetched page is cited by its URL).

A model lists the factual claims and, for each, the evidence it rests on and a verbatim quote.
The model's word is not trusted: code then checks that the quote really occurs in the cited
evidence. A claim without such a quote is unsupported. An agent gets its unsupported claims
back to fix (a bounded number of times); after that, or for a tool step that no agent wrote,
the call goes to a person with the claims and their sources shown on the approval.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agents import prompts
from agents.errors import ModelError
from agents.flags import Flag
from agents.retry import with_retries
from agents.tools import Risk, Tool
from storage.repositories import tool_calls

if TYPE_CHECKING:
    from agents.model import ModelReply
    from agents.state import RunState, Services
    from storage.models import Step

log = logging.getLogger(__name__)

#: Starts every message that sends a draft back to its agent (counted to bound the retries).
MARKER = "[grounding check failed]"
#: Characters of one piece of evidence shown to the checker.
EVIDENCE_LIMIT = 12_000
#: A quote shorter than this proves nothing.
MIN_QUOTE_CHARS = 4

SYSTEM = (
    "You check outbound text (an email or a message to people outside the team) against "
    "evidence. List every factual claim the text makes about the recipient, their company, "
    "people, products, numbers, dates or events. Do not list greetings, opinions, questions, "
    "offers or statements about the sender's own product. For each claim give the id of the "
    "evidence that supports it and a short verbatim quote from that evidence (copied exactly, "
    "at most 200 characters). If no evidence supports a claim, set evidence_id and quote to "
    'null. Reply with JSON only: {"claims": [{"claim": str, "evidence_id": str|null, '
    '"quote": str|null}]}.\n\n' + prompts.UNTRUSTED_RULE
)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "claims": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "claim": {"type": "string"},
                    "evidence_id": {"type": ["string", "null"]},
                    "quote": {"type": ["string", "null"]},
                },
                "required": ["claim", "evidence_id", "quote"],
            },
        }
    },
    "required": ["claims"],
}


@dataclass(frozen=True)
class Evidence:
    """One piece of material a claim may rest on."""

    id: str
    #: What a person would cite: a URL, "the goal", "step research".
    source: str
    text: str


@dataclass(frozen=True)
class Claim:
    """One factual claim of the outbound text, and what (if anything) supports it."""

    text: str
    supported: bool
    source: str | None = None
    quote: str | None = None
    #: Why it is unsupported (for the agent and the approver).
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form, as stored on the approval."""
        out: dict[str, Any] = {"claim": self.text, "supported": self.supported}
        if self.source:
            out["source"] = self.source
        if self.quote:
            out["quote"] = self.quote
        if self.problem:
            out["problem"] = self.problem
        return out


@dataclass(frozen=True)
class Report:
    """The result of one grounding check."""

    claims: tuple[Claim, ...]
    #: Set when the check itself could not be done (the text then goes to a person).
    error: str | None = None

    @property
    def unsupported(self) -> list[Claim]:
        """Claims with no verified source."""
        return [c for c in self.claims if not c.supported]

    @property
    def flags(self) -> list[Flag]:
        """What the approver must see flagged (and what a plain Approve cannot send)."""
        out = [Flag("claim", c.text, c.problem or "no source for it") for c in self.unsupported]
        if self.error:
            out.append(Flag("check_failed", "the grounding check", self.error))
        return out

    @property
    def ok(self) -> bool:
        """Every claim is supported and the check ran."""
        return self.error is None and not self.unsupported

    def as_dict(self) -> dict[str, Any]:
        """JSON form, shown on the approval (``action["grounding"]``)."""
        out: dict[str, Any] = {
            "claims": [c.as_dict() for c in self.claims],
            "unsupported": len(self.unsupported),
        }
        if self.error:
            out["error"] = self.error
        return out

    def feedback(self, tool: str) -> str:
        """What the agent is told when its text is sent back."""
        lines = [
            f"{MARKER} {tool} was not called. These claims are not supported by the evidence "
            "gathered in this run:"
        ]
        lines += [f"- {c.text} ({c.problem})" for c in self.unsupported]
        lines.append(
            "Remove or rephrase them so that every fact comes from the research, then call "
            f"{tool} again. Do not invent sources."
        )
        return "\n".join(lines)


def outbound_text(tool: Tool, args: dict[str, Any]) -> str:
    """The text of a call that would reach people outside ("" if the tool sends none)."""
    parts = []
    for name in tool.outbound:
        value = args.get(name)
        if isinstance(value, str) and value.strip():
            parts.append(f"{name}: {value}" if len(tool.outbound) > 1 else value)
    return "\n".join(parts)


_PUNCT = str.maketrans("‘’“”–—", "''\"\"--")


def _normal(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower().translate(_PUNCT)
    return re.sub(r"\s+", " ", text).strip(" .,;:!?\"'")


def verify(raw: Any, evidence: list[Evidence]) -> Report:
    """Check the model's claim list in code: each quote must occur in the evidence it cites."""
    if not isinstance(raw, dict) or not isinstance(raw.get("claims"), list):
        return Report((), error="the checker's reply had no list of claims")
    by_id = {e.id: e for e in evidence}
    normal = {e.id: _normal(e.text) for e in evidence}
    claims: list[Claim] = []
    for item in raw["claims"]:
        if not isinstance(item, dict) or not str(item.get("claim") or "").strip():
            continue
        text = str(item["claim"]).strip()[:500]
        eid, quote = item.get("evidence_id"), item.get("quote")
        if not eid or not quote:
            claims.append(Claim(text, False, problem="no source for it"))
            continue
        found = by_id.get(str(eid))
        if found is None:
            claims.append(Claim(text, False, problem=f"cites unknown evidence {eid!r}"))
            continue
        q = _normal(str(quote))
        if len(q) < MIN_QUOTE_CHARS or q not in normal[found.id]:
            claims.append(
                Claim(text, False, source=found.source, problem="the cited source does not say so")
            )
            continue
        claims.append(Claim(text, True, source=found.source, quote=str(quote).strip()[:200]))
    return Report(tuple(claims))


def checker_messages(text: str, evidence: list[Evidence]) -> list[dict[str, Any]]:
    """The checker's prompt: the outbound text and every piece of evidence, fenced."""
    parts = ["The outbound text to check:", prompts.fence(text, source="outbound draft")]
    parts.append("The evidence (cite it by id):")
    for e in evidence:
        parts.append(prompts.fence(e.text[:EVIDENCE_LIMIT], source=f"{e.id}: {e.source}"))
    if not evidence:
        parts.append("(There is no evidence: every factual claim is unsupported.)")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def _natural(key: str) -> list[tuple[int, str]]:
    return [(int(p), "") if p.isdigit() else (-1, p) for p in key.split(":")]


def _source_of(tool_name: str, result: str) -> str:
    first = result.lstrip().split("\n", 1)[0].strip()
    match = re.search(r"https?://\S+", first)
    return match.group(0) if match else f"tool {tool_name}"


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

    async def _evidence(self) -> list[Evidence]:
        """Everything this run has gathered that a claim may rest on: primary sources (what
        read-only tools returned, a fetched page first of all) before the steps' summaries of
        them, then what people gave (the goal, a playbook's inputs)."""
        async with self.svc.db.transaction() as session:
            calls = await tool_calls.list_for_run(session, run_id=self.run_id)
        # Numbered in the order the calls were asked for (plan order, then turn and index),
        # not the order they finished in, so the ids are the same however a run is replayed.
        position = {sid: st.position for sid, st in self.state.steps.items()}
        calls.sort(key=lambda c: (position.get(c.step_id, 0), _natural(c.idempotency_key)))
        found: list[Evidence] = []
        for call in calls:
            if call.status == "done" and call.risk == str(Risk.READ_ONLY) and call.result:
                source = _source_of(call.tool, call.result)
                found.append(Evidence(f"tool:{len(found) + 1}", source, call.result))
        for step_id, output in self.state.outputs().items():
            if output.strip() and step_id != self.step.step_id:
                found.append(Evidence(f"step:{step_id}", f"step {step_id}", output))
        found.append(Evidence("goal", "the goal, as the requester wrote it", self.state.goal))
        if self.state.inputs:
            found.append(Evidence("inputs", "the playbook's inputs", json.dumps(self.state.inputs)))
        return found

    async def _check_grounding(self, tool: Tool, args: dict[str, Any]) -> Report | None:
        """Check a call's outbound text; None when the tool sends no text or grounding is off."""
        text = outbound_text(tool, args)
        if not text or not self.svc.settings.grounding:
            return None
        evidence = await self._evidence()
        s = self.svc.settings
        model = s.grounding_model or s.model
        budget = self.state.budget
        budget.check()
        try:
            reply = await with_retries(
                lambda: self.svc.model.complete(
                    model=model,
                    messages=checker_messages(text, evidence),
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
            return Report((), error=f"the grounding check could not run: {exc}")
        budget.add(tokens=reply.tokens_in + reply.tokens_out, cost_usd=reply.cost_usd)
        await self._record_usage(reply)
        raw = (reply.content or "").strip()
        if raw.startswith("```"):
            raw = raw.strip("`").removeprefix("json").strip()
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            return Report((), error="the grounding check returned something that is not JSON")
        report = verify(data, evidence)
        log.info(
            "grounding of %s in %s/%s: %d claims, %d unsupported",
            tool.name,
            self.run_id,
            self.step.step_id,
            len(report.claims),
            len(report.unsupported),
        )
        return report

    def _grounding_rounds(self) -> int:
        """How many times this step's text was already sent back (read from its transcript)."""
        return sum(
            1
            for m in self.step.transcript or []
            if m.get("role") == "tool" and MARKER in str(m.get("content") or "")
        )
