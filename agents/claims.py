"""What a grounding check found: each sentence, each claim and its source, and the flags.

Stored on the approval as ``action["grounding"]`` (:meth:`Report.as_dict`) and, as
:class:`~agents.flags.Flag` values, as ``action["flags"]`` (:attr:`Report.flags`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agents.evidence import Evidence
from agents.flags import Flag

#: Starts every message that sends a draft back to its agent (counted to bound the retries).
MARKER = "[grounding check failed]"
#: Kinds of sentence that state no fact (their names and numbers still need support).
NON_FACTUAL = frozenset(
    {"greeting", "question", "opinion", "offer", "call_to_action", "signature", "heading"}
)


@dataclass(frozen=True)
class Claim:
    """One factual claim of the outbound text, and what (if anything) supports it."""

    text: str
    supported: bool
    source: str | None = None
    quote: str | None = None
    #: Why it is unsupported (for the agent and the approver).
    problem: str | None = None
    #: The sentence it belongs to ("S2").
    sentence: str | None = None
    #: The cited page's address, for a link on the card.
    url: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form, as stored on the approval (``action["grounding"]["claims"]``)."""
        return {
            "claim": self.text,
            "supported": self.supported,
            "sentence": self.sentence,
            "source": self.source,
            "url": self.url,
            "quote": self.quote,
            "problem": self.problem,
        }


@dataclass(frozen=True)
class SentenceCheck:
    """How one sentence came out: its kind (as the checker said, or ``not_checked``)."""

    id: str
    text: str
    kind: str
    problems: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON form (``action["grounding"]["sentences"]``)."""
        status = "flagged" if self.problems else "ok"
        return {
            "id": self.id,
            "text": self.text,
            "kind": self.kind,
            "status": status,
            "problems": list(self.problems),
        }


@dataclass(frozen=True)
class Report:
    """The result of one grounding check."""

    claims: tuple[Claim, ...]
    #: Set when the check itself could not be done (the text then goes to a person).
    error: str | None = None
    sentences: tuple[SentenceCheck, ...] = ()
    #: Everything code found wrong (claims, sentences not checked, backstop, links).
    problems: tuple[Flag, ...] = ()
    #: Which outbound message this is (tool and recipients), to count its send-backs.
    message: str = ""
    #: The evidence it was checked against (not stored: for logs and tests).
    evidence: tuple[Evidence, ...] = field(default=(), compare=False, repr=False)

    @property
    def unsupported(self) -> list[Claim]:
        """Claims with no verified source."""
        return [c for c in self.claims if not c.supported]

    @property
    def flags(self) -> list[Flag]:
        """Everything the approver must see flagged (and that a plain Approve cannot send)."""
        out = list(self.problems)
        if self.error:
            out.append(Flag("check_failed", "the grounding check", self.error))
        return out

    @property
    def ok(self) -> bool:
        """Nothing flagged and the check ran."""
        return not self.flags

    def as_dict(self) -> dict[str, Any]:
        """JSON form, shown on the approval (``action["grounding"]``)."""
        return {
            "sentences": [s.as_dict() for s in self.sentences],
            "claims": [c.as_dict() for c in self.claims],
            "unsupported": len(self.problems),
            "error": self.error,
        }

    def feedback(self, tool: str) -> str:
        """What the agent is told when its text is sent back: every flagged sentence and why."""
        lines = [
            f"{MARKER} {tool} was not called (message: {self.message or tool}). These parts "
            "of the text are not supported by the evidence gathered in this run:"
        ]
        lines += [f"- {f.text!r}: {f.problem}" for f in self.flags]
        lines.append(
            "Remove or rephrase them so that every fact (each number, date and name) comes "
            "from what the tools read or people gave, cite no other step's summary, then call "
            f"{tool} again. Do not invent sources."
        )
        return "\n".join(lines)
