"""The grounding checker's prompt and the JSON schema of its answer (the wire format).

The system message starts with "You check outbound text" (tests match on it) and spells the
format out, so that anyone can script an honest checker from it: one entry per numbered
sentence, ``claim`` / ``sender`` with claims and quotes, or a label for a sentence that states
no fact.
"""

from __future__ import annotations

from typing import Any

from agents import prompts
from agents.claims import NON_FACTUAL
from agents.evidence import Evidence
from agents.sentences import Sentence

#: Characters of one piece of evidence shown to the checker.
EVIDENCE_LIMIT = 12_000

SYSTEM = (
    "You check outbound text (an email or a message to people outside the team) against "
    "evidence. The text is split into numbered sentences S1..Sn. Account for EVERY sentence, "
    "including greetings and signatures, with exactly one entry each, in order:\n"
    '- "claim": the sentence states a fact about the recipient, their company, people, '
    "products, customers, numbers, dates, places or events (or mixes such a fact with "
    "anything else). List each fact as its own claim, with the id of the evidence that says "
    "it and a quote copied exactly from that evidence (at most 200 characters) that itself "
    "contains the fact's numbers, names and dates. If no evidence says it, give the claim "
    "with evidence_id and quote null.\n"
    '- "sender": the sentence states a fact about the sender, the sender\'s company or '
    'product ("we cut test time by 40%"). Its claims cite evidence_id "sender" only.\n'
    f"- otherwise one of {', '.join(repr(k) for k in sorted(NON_FACTUAL))} "
    '("heading": a subject line or heading that states no fact), with no claims.\n'
    "Evidence ids: tool:N (what a tool read, e.g. a web page), goal, inputs, handoff:ID (a "
    "person's answer), sender (the sender's own inputs and profile). Nothing else is "
    "evidence. Reply with JSON only, exactly in this form:\n"
    '{"sentences": [{"id": "S1", "kind": "greeting"}, {"id": "S2", "kind": "claim", "claims": '
    '[{"claim": "Acme raised $20M", "evidence_id": "tool:1", "quote": "Acme raised $20 '
    'million"}]}, {"id": "S3", "kind": "sender", "claims": [{"claim": "We cut test time by '
    '40%", "evidence_id": "sender", "quote": "cut test time by 40%"}]}]}\n\n'
    + prompts.UNTRUSTED_RULE
)

_CLAIM = {
    "type": "object",
    "properties": {
        "claim": {"type": "string"},
        "evidence_id": {"type": ["string", "null"]},
        "quote": {"type": ["string", "null"]},
    },
    "required": ["claim", "evidence_id", "quote"],
}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "sentences": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "kind": {"type": "string", "enum": ["claim", "sender", *sorted(NON_FACTUAL)]},
                    "claims": {"type": "array", "items": _CLAIM},
                },
                "required": ["id", "kind"],
            },
        }
    },
    "required": ["sentences"],
}


def checker_messages(sentences: list[Sentence], evidence: list[Evidence]) -> list[dict[str, Any]]:
    """The checker's prompt: the numbered sentences and every piece of evidence, fenced."""
    listed = "\n".join(f"{s.id}{f' ({s.field})' if s.field else ''}: {s.text}" for s in sentences)
    parts = [
        "The outbound text, in numbered sentences:",
        prompts.fence(listed, source="outbound draft"),
    ]
    parts.append("The evidence (cite it by id):")
    for e in evidence:
        parts.append(prompts.fence(e.text[:EVIDENCE_LIMIT], source=f"{e.id}: {e.source}"))
    if not evidence:
        parts.append("(There is no evidence: every factual claim is unsupported.)")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]
