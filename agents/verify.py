"""The checker's answer, verified in code, sentence by sentence (see :mod:`agents.grounding`).

Nothing the checker says is taken on trust: a sentence it leaves out is "not checked"; a quote
must occur in the evidence it cites and carry the claim's facts; and every number, date and
name of every sentence must be found in the evidence cited for it, in the sender's material or
in what names the recipient (the backstop), whatever kind the checker gave the sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agents.claims import NON_FACTUAL, Claim, Report, SentenceCheck
from agents.evidence import Evidence, context_of, flat
from agents.facts import Fact, Known, facts, vocabulary
from agents.flags import Flag
from agents.sentences import Sentence

#: A quote shorter than this proves nothing.
MIN_QUOTE_CHARS = 4
_KINDS = {"call to action": "call_to_action", "cta": "call_to_action", "subject": "heading"}


def _kind(raw: Any) -> str:
    kind = str(raw or "").strip().lower().replace("-", "_")
    return _KINDS.get(kind.replace("_", " "), kind)


def _entries(raw: Any) -> tuple[dict[str, dict[str, Any]], str | None]:
    """The checker's entries by sentence id ("S1"), or why its answer is unusable."""
    if not isinstance(raw, dict):
        return {}, "the checker's reply had no list of sentences"
    items = raw.get("sentences")
    if not isinstance(items, list):
        if isinstance(raw.get("claims"), list):  # the old format: no sentence accounted for
            return {}, None
        return {}, "the checker's reply had no list of sentences"
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        sid = str(item.get("id") or "").strip().upper()
        sid = sid if sid.startswith("S") else f"S{sid}"
        claims = [c for c in item.get("claims") or [] if isinstance(c, dict)]
        entry = out.setdefault(sid, {"kind": _kind(item.get("kind")), "claims": []})
        entry["claims"] += claims
        if _kind(item.get("kind")) in ("claim", "sender"):
            entry["kind"] = _kind(item.get("kind"))
    return out, None


def _shown(missing: Sequence[Fact]) -> str:
    return ", ".join(f'"{f.shown}"' for f in missing)


class _Checker:
    def __init__(self, evidence: Sequence[Evidence], recipient: str, vocab: set[str]) -> None:
        self.by_id = {e.id: e for e in evidence}
        self.known = {e.id: Known.of(e.text, e.url or "") for e in evidence}
        self.base = self.known.get("sender", Known()) | Known.of(recipient)
        self.everything = Known()
        for k in self.known.values():
            self.everything = self.everything | k
        self.vocab = vocab

    def claim(self, item: dict[str, Any], s: Sentence, kind: str) -> tuple[Claim, Known | None]:
        """One claim verified: its quote occurs in the cited evidence and carries its facts."""
        text = str(item.get("claim") or "").strip()[:500] or s.text
        eid, quote = item.get("evidence_id"), item.get("quote")
        if not eid or not quote:
            return Claim(text, False, problem="no source for it", sentence=s.id), None
        found = self.by_id.get(str(eid))
        if found is None:
            problem = f"cites {eid!r}, which is not evidence (only what tools read and people gave)"
            return Claim(text, False, problem=problem, sentence=s.id), None
        cited = {"source": found.source, "url": found.url, "sentence": s.id}
        if kind == "sender" and found.id != "sender":
            problem = "a claim about the sender must rest on the sender's profile or inputs"
            return Claim(text, False, problem=problem, **cited), None
        context = (
            context_of(found.text, str(quote)) if len(flat(str(quote))) >= MIN_QUOTE_CHARS else None
        )
        if context is None:
            return Claim(text, False, problem="the cited source does not say so", **cited), None
        carried = Known.of(context) | self.base
        missing = [f for f in facts(text, self.vocab) if not carried.has(f)]
        if missing:
            problem = f"the quote does not support it: it does not mention {_shown(missing)}"
            return Claim(text, False, problem=problem, **cited), None
        return Claim(text, True, quote=str(quote).strip()[:200], **cited), carried


def _no_claim(s: Sentence) -> tuple[Claim, Known | None]:
    return Claim(s.text, False, problem="no claim or source was given for it", sentence=s.id), None


def verify(
    raw: Any,
    sentences: Sequence[Sentence],
    evidence: Sequence[Evidence],
    *,
    recipient: str = "",
    extra: Sequence[Flag] = (),
    error: str | None = None,
    message: str = "",
) -> Report:
    """Check the checker's answer ``raw`` in code; ``recipient``: text naming the recipient
    (always allowed); ``extra``: flags found elsewhere (links); ``error``: the check failed."""
    entries: dict[str, dict[str, Any]] = {}
    if error is None:
        entries, error = _entries(raw)
    vocab = vocabulary([s.text for s in sentences] + [e.text for e in evidence])
    check = _Checker(evidence, recipient, vocab)
    # First every claim, so that a sentence stating no fact of its own (a subject line, a
    # closing "congrats again on the Series B") may repeat what a verified quote carries.
    verified: dict[str, list[tuple[Claim, Known | None]]] = {}
    quoted = Known()
    for s in sentences:
        entry = entries.get(s.id)
        if entry is None or error is not None:
            continue
        if entry["claims"] or entry["kind"] in ("claim", "sender"):
            mine = [check.claim(c, s, entry["kind"]) for c in entry["claims"]] or [_no_claim(s)]
            verified[s.id] = mine
            for _, known in mine:
                quoted = quoted | (known or Known())
    checks: list[SentenceCheck] = []
    claims: list[Claim] = []
    flags: list[Flag] = []
    for s in sentences:
        found = facts(s.text, vocab)
        entry = entries.get(s.id)
        problems: list[str] = []
        allowed, carried = check.base | quoted, Known()
        if error is not None:
            kind, allowed = "not_checked", check.everything
        elif entry is None and s.form:
            kind = s.form
        elif entry is None or entry["kind"] not in (*NON_FACTUAL, "claim", "sender"):
            kind, allowed = "not_checked", check.everything
            why = "the checker did not account for this sentence"
            if entry is not None:
                why = f"the checker gave it an unknown kind {entry['kind']!r}"
            problems.append(why)
            flags.append(Flag("not_checked", s.text, why))
        else:
            kind = entry["kind"]
        done = verified.get(s.id)
        if done is not None and entry is not None:
            for c, known in done:
                claims.append(c)
                if not c.supported:
                    problems.append(f"{c.text}: {c.problem}")
                    flags.append(Flag("claim", c.text, c.problem or "no source for it"))
                carried = carried | (known or Known())
            allowed = check.base
            for c in entry["claims"]:
                if (eid := str(c.get("evidence_id"))) in check.known:
                    allowed = allowed | check.known[eid]
        missing = [f for f in found if not allowed.has(f)]
        if missing:
            why = (
                f"{_shown(missing)} is found in no evidence cited for this sentence, "
                "nor in what the sender supplied"
            )
            problems.append(why)
            flags.append(Flag("backstop", s.text, why))
        if done is not None and any(c.supported for c, _ in done):
            # Numbers and dates must come from the quotes themselves (names: from what they cite).
            unquoted = [
                f
                for f in found
                if f.kind != "name" and f not in missing and not (carried | check.base).has(f)
            ]
            if unquoted:
                why = f"the quote does not support it: no quote cited mentions {_shown(unquoted)}"
                problems.append(why)
                flags.append(Flag("claim", s.text, why))
        checks.append(SentenceCheck(s.id, s.text, kind, tuple(problems)))
    flags += extra
    return Report(tuple(claims), error, tuple(checks), tuple(flags), message, tuple(evidence))
