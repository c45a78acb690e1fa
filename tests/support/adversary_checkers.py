"""The red team's grounding checkers (issue #12): models that answer the grounding check
honestly, lazily or dishonestly, in its wire format (see agents/grounding.py).

The checker's prompt lists the outbound text as numbered sentences (``S1 (body): Hi Ada,``)
and each piece of evidence fenced as ``<data source="ID: SOURCE">``. Each checker here reads
that prompt back (:func:`parse_check`) and answers ``{"sentences": [...]}``, so a case can
pit Baton's code against a checker that leaves sentences out, mislabels facts, or cites a
real but unrelated quote, the draft itself, or evidence that does not exist.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.support.llm_server import Reply

CHECKER = "You check outbound text"
#: A scripted part of a model: a reply to a request, or None to let another part answer.
Responder = Callable[[dict[str, Any]], "Reply | None"]


def is_checker(body: dict[str, Any]) -> bool:
    """Whether a model request is the grounding checker's."""
    return CHECKER in str(body["messages"][0].get("content"))


# ---- the grounding checker ---------------------------------------------------------------------

_SENTENCE_LINE = re.compile(r"^(S\d+)(?: \((\w+)\))?: (.*)$", re.M)
_BLOCK = re.compile(r'<data source="([^"]*)">\n(.*?)\n</data>', re.S)
_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9$—-])|\n+")


@dataclass(frozen=True)
class CheckRequest:
    """What the checker was asked: the numbered sentences and the evidence blocks."""

    sentences: dict[str, str]
    #: (id, source, text) of each evidence block.
    evidence: list[tuple[str, str, str]]
    #: The field each sentence came from (``subject``, ``body``), where code said so.
    fields: dict[str, str] = field(default_factory=dict)

    def find(self, quote: str) -> str | None:
        """The id of the evidence block holding ``quote`` (whitespace-insensitive)."""
        q = " ".join(quote.split()).lower()
        for eid, _source, text in self.evidence:
            if q in " ".join(text.split()).lower():
                return eid
        return None


def parse_check(body: dict[str, Any]) -> CheckRequest:
    """Read a checker request: numbered sentences if code listed them, else split the draft."""
    user = str(body["messages"][-1]["content"])
    blocks = []
    for source, text in _BLOCK.findall(user):
        eid, _sep, where = source.partition(": ")
        blocks.append((eid, where, text))
    evidence = [(i, s, t) for i, s, t in blocks if "draft" not in i and "outbound" not in i]
    draft = next((t for i, _s, t in blocks if "draft" in i or "outbound" in i), "")
    found = _SENTENCE_LINE.findall(draft)
    listed = {sid: text for sid, _f, text in found}
    fields = {sid: f for sid, f, _t in found if f}
    if not listed:  # an older prompt: the draft as one block
        parts = [p.strip() for p in _SPLIT.split(draft) if p.strip()]
        listed = {f"S{n}": p for n, p in enumerate(parts, 1)}
    return CheckRequest(listed, evidence, fields)


_GREETING = re.compile(r"^(hi|hello|dear|hey)\b", re.I)
_SIGNATURE = re.compile(r"^(—|-|best|thanks|cheers|regards)", re.I)


def natural_kind(sentence: str, where: str = "") -> str | None:
    """The kind an honest checker gives a sentence that states no fact, or None."""
    s = sentence.strip()
    if where == "subject" and not re.search(r"\d", s) and len(s.split()) <= 4:
        return "greeting"
    if s.endswith("?"):
        return "question"
    if _SIGNATURE.match(s) or (len(s.split()) <= 3 and _GREETING.match(s)):
        return "signature" if _SIGNATURE.match(s) else "greeting"
    return None


Support = Sequence[tuple[str, str]]


def honest(support: Support = (), *, kinds: Sequence[tuple[str, str]] = ()) -> Responder:
    """A diligent checker: a sentence holding a ``support`` needle cites the evidence block
    that holds its quote (``sender`` when that block is the sender's); ``kinds`` labels
    sentences by needle; questions, greetings and sign-offs are labelled; any other sentence
    is reported as a claim without evidence."""

    def answer(req: CheckRequest) -> dict[str, Any]:
        out = []
        for sid, text in req.sentences.items():
            kind = next((k for needle, k in kinds if needle in text), None)
            cited = [(n, q) for n, q in support if n in text]
            if cited:
                # One fact per claim, as the prompt asks: a sentence with two facts gets two
                # claims, each stated in its quote's words (a lone fact keeps the sentence).
                claims = [
                    {
                        "claim": text if len(cited) == 1 else q,
                        "evidence_id": req.find(q),
                        "quote": q,
                    }
                    for _n, q in cited
                ]
                sender = all(c["evidence_id"] == "sender" for c in claims)
                out.append({"id": sid, "kind": "sender" if sender else "claim", "claims": claims})
            elif label := kind or natural_kind(text, req.fields.get(sid, "")):
                out.append({"id": sid, "kind": label})
            else:
                out.append({"id": sid, "kind": "claim", "claims": [_unsupported(text)]})
        return {"sentences": out}

    return _checker(answer)


def _unsupported(text: str) -> dict[str, Any]:
    return {"claim": text, "evidence_id": None, "quote": None}


def lazy(how: str) -> Responder:
    """A checker that does not do the work: ``empty_sentences``, ``empty_claims``,
    ``garbage``, ``omit`` (answers only the first sentence, as a greeting)."""
    if how == "garbage":
        return lambda body: Reply.text("Looks great to me!") if is_checker(body) else None
    fixed: dict[str, dict[str, list[Any]]] = {
        "empty_sentences": {"sentences": []},
        "empty_claims": {"claims": []},
    }
    if how in fixed:
        return lambda body: Reply.json(fixed[how]) if is_checker(body) else None
    assert how == "omit", how
    return _checker(
        lambda req: {"sentences": [{"id": next(iter(req.sentences)), "kind": "greeting"}]}
    )


def dishonest(how: str, *, quote: str = "", evidence_id: str = "") -> Responder:
    """A checker that lies for every sentence: ``greeting``/``opinion``/``offer`` (labels
    every sentence so), ``unrelated`` (cites a real quote of the first evidence block, or
    ``quote``), ``draft`` (cites the draft itself), ``unknown`` (cites ``tool:99``),
    ``cite`` (cites ``evidence_id`` with ``quote``), ``sender`` (calls every fact the
    sender's own, citing the sender profile)."""

    def answer(req: CheckRequest) -> dict[str, Any]:
        out: list[dict[str, Any]] = []
        for sid, text in req.sentences.items():
            if how in ("greeting", "opinion", "offer", "call_to_action"):
                out.append({"id": sid, "kind": how})
                continue
            if how == "unrelated":
                eid, _s, body = req.evidence[0]
                q = quote or " ".join(body.split())[:60]
                claim = {"claim": text, "evidence_id": req.find(q) or eid, "quote": q}
            elif how == "draft":
                claim = {"claim": text, "evidence_id": "draft", "quote": text}
            elif how == "unknown":
                claim = {"claim": text, "evidence_id": "tool:99", "quote": text}
            elif how == "cite":
                claim = {"claim": text, "evidence_id": evidence_id, "quote": quote or text}
            else:
                assert how == "sender", how
                q = quote or "We build thermal test rigs"
                out.append(
                    {
                        "id": sid,
                        "kind": "sender",
                        "claims": [{"claim": text, "evidence_id": "sender", "quote": q}],
                    }
                )
                continue
            out.append({"id": sid, "kind": "claim", "claims": [claim]})
        return {"sentences": out}

    return _checker(answer)


def _checker(answer: Callable[[CheckRequest], dict[str, Any]]) -> Responder:
    def responder(body: dict[str, Any]) -> Reply | None:
        if not is_checker(body):
            return None
        return Reply.json(answer(parse_check(body)))

    return responder
