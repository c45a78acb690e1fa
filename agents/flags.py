"""Flags: what code found wrong with an outbound call, shown on its approval and decided on.

Every guard that inspects an outbound call (grounding, the code-only fact backstop, links,
recipients and volume, egress) reports what it found as :class:`Flag` values. They are stored
on the approval's action as ``action["flags"]`` (a list of :meth:`Flag.as_dict`), so that:

* the card (Slack, terminal, App Home) can show each one;
* :func:`is_flagged` decides, in code, that a plain Approve is not enough: a flagged call can
  only be sent back, edited (then checked again) or sent anyway with a confirmation that lists
  the flags (and only where ``BATON_GROUNDING_OVERRIDE`` allows it).

A flag is never a verdict from a model alone: models may help find support, code decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

FlagKind = Literal[
    "claim",  # a claim without a verified source, or a quote that does not support it
    "not_checked",  # a sentence the checker did not account for
    "backstop",  # a number, date or name found in no evidence (code-only check)
    "link",  # a disguised link, or a link to a domain found in no evidence
    "recipient",  # an address nobody supplied for this run
    "volume",  # more messages to one recipient than the playbook allows
    "check_failed",  # the grounding check itself could not run
]


@dataclass(frozen=True)
class Flag:
    """One problem found in an outbound call."""

    kind: FlagKind
    #: What is flagged, as shown to the approver: the sentence, the claim, the address.
    text: str
    #: Why, in one sentence.
    problem: str

    def as_dict(self) -> dict[str, str]:
        """JSON form, as stored on the approval (``action["flags"]``)."""
        return {"kind": self.kind, "text": self.text, "problem": self.problem}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Flag:
        """The flag stored as ``raw`` (tolerant of older rows)."""
        kind = str(raw.get("kind") or "claim")
        return cls(kind, str(raw.get("text") or ""), str(raw.get("problem") or ""))  # type: ignore[arg-type]


def flags_of(action: Mapping[str, Any] | None) -> list[Flag]:
    """The flags stored on an approval's action (an empty list when there are none)."""
    raw = (action or {}).get("flags")
    if not isinstance(raw, list):
        return []
    return [Flag.from_dict(f) for f in raw if isinstance(f, Mapping)]


def is_flagged(action: Mapping[str, Any] | None) -> bool:
    """Whether a plain Approve must not send this action (code decides, not the approver)."""
    return bool(flags_of(action))


def dump(flags: Iterable[Flag]) -> list[dict[str, str]]:
    """JSON form of several flags, without repeats, in order."""
    seen: set[tuple[str, str, str]] = set()
    out: list[dict[str, str]] = []
    for f in flags:
        key = (f.kind, f.text, f.problem)
        if key not in seen:
            seen.add(key)
            out.append(f.as_dict())
    return out


@dataclass(frozen=True)
class Verdict:
    """What the code-only guards say of one call before anyone is asked.

    ``refused``: the call must not be made, and why (the caller tells the model and publishes
    :class:`agents.events.CallRefused`). ``flags``: shown on the approval; a flagged call always
    goes to a person. ``needs_approval``: the call goes to a person even without flags (a
    fetch of a host the run was never given, say).
    """

    refused: str | None = None
    #: The guard that refused or flagged (``recipients``, ``egress``, ``secrets``...).
    guard: str | None = None
    #: What the call was aimed at (an address, a host), for the refusal notice.
    target: str | None = None
    flags: tuple[Flag, ...] = ()
    needs_approval: bool = False

    def merged(self, other: Verdict) -> Verdict:
        """Both verdicts at once: the first refusal wins; flags and approval needs add up."""
        if self.refused is not None:
            return self
        if other.refused is not None:
            return other
        return Verdict(
            flags=(*self.flags, *other.flags),
            needs_approval=self.needs_approval or other.needs_approval,
            guard=self.guard or other.guard,
        )
