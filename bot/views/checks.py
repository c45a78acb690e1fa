"""What code checked in an action: its flags, and each claim with its quote and source.

Shown on every approval card (the message and the Home tab). A claim's source link is built
only from a URL of the evidence (the grounding report's ``url``, or a ``source`` that is a
URL) and shows that URL as its own text (:func:`bot.views.text.link`); nothing a model wrote
becomes a link's label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agents.flags import Flag, flags_of
from bot.views._blocks import Block, sections
from bot.views.cards import ApprovalCard
from bot.views.text import clip, link, one_line

CLAIMS_SHOWN = 10
FLAGS_SHOWN = 10
CLAIM_CHARS = 300
QUOTE_CHARS = 240
PROBLEM_CHARS = 200
#: Characters of flags and claims on a message, so that it stays under Slack's total.
CHECKS_BUDGET = 3_000

#: How each kind of flag reads on a card.
FLAG_LABEL: dict[str, str] = {
    "claim": "Unsupported claim",
    "not_checked": "Not checked",
    "backstop": "Not in the evidence",
    "link": "Link",
    "recipient": "Recipient nobody gave",
    "volume": "Too many messages",
    "check_failed": "Check failed",
}


def flags(card: ApprovalCard) -> list[Flag]:
    """The flags stored on the card's action."""
    return flags_of(card.action)


def flag_line(flag: Flag) -> str:
    """``• ⚠️ *Unsupported claim:* text — why`` (escaped)."""
    label = FLAG_LABEL.get(flag.kind, clip(flag.kind, 30))
    text = clip(one_line(flag.text), CLAIM_CHARS)
    problem = clip(one_line(flag.problem), PROBLEM_CHARS)
    return f"• ⚠️ *{label}:* {text}" + (f" — {problem}" if problem else "")


def flag_lines(card: ApprovalCard, shown: int = FLAGS_SHOWN) -> list[str]:
    """The heading and one line per flag (empty when nothing is flagged)."""
    found = flags(card)
    if not found:
        return []
    n = len(found)
    ask = ": check each one before this can go" if card.status == "pending" else ""
    lines = [f"*⚠️ {n} flag{'' if n == 1 else 's'}{ask}*"]
    lines += [flag_line(f) for f in found[:shown]]
    if n > shown:
        lines.append(f"…and {n - shown} more")
    return lines


def source_of(claim: Mapping[str, Any]) -> str:
    """Where a claim comes from: a link to its evidence URL, or the source named in words."""
    for key in ("url", "source"):
        value = claim.get(key)
        if isinstance(value, str) and value.strip().lower().startswith(("http://", "https://")):
            return link(value)
    source = claim.get("source")
    return clip(one_line(str(source)), 120) if source else ""


def claim_lines(claim: Any) -> list[str]:
    """One claim: its text and verdict, then its quote and source on the next line."""
    if not isinstance(claim, Mapping):
        return [f"• {clip(one_line(str(claim)), CLAIM_CHARS)}"]
    text = clip(one_line(str(claim.get("text") or claim.get("claim") or "")), CLAIM_CHARS)
    source = source_of(claim)
    if "supported" not in claim:  # a claim the agent listed, not checked by code
        return [f"• {text}" + (f" (source: {source})" if source else "")]
    if not claim.get("supported"):
        problem = clip(one_line(str(claim.get("problem") or "no source for it")), PROBLEM_CHARS)
        where = f" (cited: {source})" if source else ""
        return [f"• ⚠️ {text} — {problem}{where}"]
    lines = [f"• ✅ {text}"]
    quote = claim.get("quote")
    said = f"“{clip(one_line(str(quote)), QUOTE_CHARS)}”" if quote else ""
    if said or source:
        lines.append("      " + " — ".join(p for p in (said, source) if p))
    return lines


def _heading(card: ApprovalCard) -> str:
    grounding = card.action.get("grounding")
    if not isinstance(grounding, Mapping):
        return "*The agent claims — check before approving*"
    unsupported = sum(
        1 for c in card.claims if isinstance(c, Mapping) and not c.get("supported", True)
    )
    if unsupported:
        return f"*⚠️ {unsupported} claim(s) not supported by the research*"
    if flags(card):
        return "*Claims and their sources (the flags above still stand)*"
    return "*Every claim was checked against the research*"


def claims_lines(card: ApprovalCard, shown: int = CLAIMS_SHOWN) -> list[str]:
    """The claims heading, each claim with its quote and source, and a failed check's note."""
    grounding = card.action.get("grounding")
    error = grounding.get("error") if isinstance(grounding, Mapping) else None
    claims: Sequence[Any] = card.claims
    if not claims and not error:
        return []
    lines = [_heading(card)]
    for claim in claims[:shown]:
        lines += claim_lines(claim)
    if len(claims) > shown:
        lines.append(f"…and {len(claims) - shown} more")
    if error:
        lines.append(f"⚠️ {clip(one_line(str(error)), CLAIM_CHARS)} — check every fact yourself")
    return lines


def fit(lines: Sequence[str], budget: int) -> list[str]:
    """Whole lines, as many as fit in ``budget`` characters (never half a link or entity),
    and a note saying how many more there are."""
    kept: list[str] = []
    used = 0
    for line in lines:
        if used + len(line) + 1 > budget - 60:
            kept.append(f"…and {len(lines) - len(kept)} more line(s): `baton show` lists them all")
            break
        kept.append(line)
        used += len(line) + 1
    return kept


def checks_blocks(card: ApprovalCard, budget: int = CHECKS_BUDGET) -> list[Block]:
    """The flags, then the claims, as sections (flags first when not everything fits)."""
    flagged, claims = flag_lines(card), claims_lines(card)
    gap = [""] if flagged and claims else []
    return sections(fit([*flagged, *gap, *claims], budget))
