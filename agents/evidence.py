"""What counts as evidence for outbound text: what the world said, never what a model wrote.

Evidence is
* ``tool:N``: the result of a read-only tool call that finished (a fetched page, cited by its
  URL; a CRM record). Text the model itself wrote into the call's arguments is cut out of the
  result first, so a tool that echoes its input ("facts about Acme raised $50M") proves nothing;
* ``goal`` and ``inputs``: what the requester typed;
* ``handoff:ID``: an answer a person gave;
* ``sender``: the sender's own inputs (``offer``, ``sender``, ``signature``...) and the configured
  profile (``BATON_SENDER_PROFILE``): the only support for claims about the sender.

Outputs of model-written steps are not evidence (a draft could rest on what another model made
up, or on itself): claims cite the fetched text directly. Any sentence of a draft of this run
(this one or an earlier one, sent back or shown on an approval) is cut out of every piece of
evidence, so a draft never supports itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.errors import ConfigError
from agents.facts import fold
from agents.sentences import NEVER_END, split

#: Inputs that describe the sender, not the recipient (a playbook may add ``sender_*``/``our_*``).
SENDER_INPUTS = frozenset({"offer", "sender", "sender_profile", "signature", "from"})
#: Inputs that name the recipient's company (always allowed in a sentence).
COMPANY_INPUTS = frozenset(
    {"account", "company", "organisation", "organization", "prospect", "customer", "client"}
)
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
#: A draft sentence this short is not cut out of evidence (it could be a common phrase).
MIN_DRAFT_WORDS = 4


@dataclass(frozen=True)
class Evidence:
    """One piece of material a claim may rest on."""

    id: str
    #: What a person would cite: a URL, "the goal", "a person's answer".
    source: str
    text: str
    #: The page's address, when the evidence is a fetched page.
    url: str | None = None


def is_sender_input(name: str) -> bool:
    """Whether the input ``name`` describes the sender (checked only as ``sender`` evidence)."""
    name = name.lower()
    return name in SENDER_INPUTS or name.startswith(("sender_", "our_"))


def sender_profile(raw: str) -> str:
    """``BATON_SENDER_PROFILE``: the text itself, or ``@path`` to a file holding it."""
    raw = raw.strip()
    if not raw.startswith("@"):
        return raw
    try:
        return Path(raw[1:]).expanduser().read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"BATON_SENDER_PROFILE: cannot read {raw[1:]!r}: {exc}") from None


def input_lines(inputs: dict[str, str], *, sender: bool) -> str:
    """The inputs as ``name: value`` lines, only the sender's (or only the others)."""
    return "\n".join(
        f"{k}: {v}" for k, v in inputs.items() if str(v).strip() and is_sender_input(k) == sender
    )


def url_of(result: str) -> str | None:
    """The URL a tool result starts with (http_fetch's ``URL: …`` line), if any."""
    first = result.lstrip().split("\n", 1)[0].strip()
    match = re.search(r"https?://\S+", first)
    return match.group(0) if match else None


def _loose(text: str) -> re.Pattern[str]:
    """``text`` as a pattern matching it with any spacing and case."""
    words = [re.escape(w) for w in text.split()]
    return re.compile(r"\s+".join(words), re.IGNORECASE)


def scrub(text: str, written: list[str]) -> str:
    """``text`` with every model-written piece in ``written`` cut out."""
    for piece in written:
        piece = piece.strip()
        if len(piece) >= 6:
            text = _loose(piece).sub(" ", text)
    return text


def draft_pieces(drafts: list[str]) -> list[str]:
    """The sentences of ``drafts`` long enough to cut out of evidence."""
    return [s for d in drafts for s in split(d) if len(s.split()) >= MIN_DRAFT_WORDS]


def written_args(args: Any) -> list[str]:
    """Every string the model wrote into a call's arguments."""
    if isinstance(args, str):
        return [args]
    if isinstance(args, dict):
        return [s for v in args.values() for s in written_args(v)]
    if isinstance(args, list):
        return [s for v in args for s in written_args(v)]
    return []


def normal(text: str) -> str:
    """Lower case, plain punctuation, one space between words (newlines kept as ``\\n``)."""
    text = fold(text).lower()
    text = re.sub(r"[ \t\f\v]*\n\s*", "\n", text)
    return re.sub(r"[ \t\f\v]+", " ", text).strip()


def flat(text: str) -> str:
    """:func:`normal`, on one line, trimmed of surrounding punctuation (for quotes)."""
    return normal(text).replace("\n", " ").strip(" .,;:!?\"'")


def _sentence_start(text: str, at: int) -> int:
    """Where the sentence holding position ``at`` of normal ``text`` starts."""
    i = at
    while i > 0:
        if text[i - 1] == "\n":
            return i
        if text[i - 1] == " " and i >= 2 and text[i - 2] in ".!?":
            word = re.search(r"([\w.]+)[.!?]$", text[max(0, i - 12) : i - 1])
            if not word or word.group(1).rstrip(".") not in NEVER_END:
                return i
        i -= 1
    return 0


def context_of(evidence: str, quote: str) -> str | None:
    """The sentence(s) of ``evidence`` holding ``quote``, with its URL and title lines; None
    when the quote does not occur in it."""
    text = normal(evidence)
    q = flat(quote)
    at = text.replace("\n", " ").find(q) if q else -1
    if at < 0:
        return None
    start = _sentence_start(text, at)
    end = at + len(q)
    stop = re.compile(r"\n|[.!?](?= |$)")
    found = stop.search(text, end)
    head = "\n".join(line for line in text.split("\n")[:3] if line.startswith(("url:", "title:")))
    return f"{head}\n{text[start : found.end() if found else len(text)]}"


def addresses(args: dict[str, Any], outbound: tuple[str, ...]) -> list[str]:
    """The email addresses a call is aimed at (in its arguments that are not its text)."""
    out: list[str] = []
    for name, value in args.items():
        if name not in outbound:
            out += EMAIL.findall(" ".join(written_args(value)))
    return sorted({a.lower() for a in out})


def recipient_text(to: list[str], inputs: dict[str, str], evidence: list[Evidence]) -> str:
    """What names the recipient: the address's parts, the company inputs, and every line of
    the inputs or evidence that holds the address ("Ada Lovelace,ada@acme.test,CTO")."""
    parts = [v for k, v in inputs.items() if k.lower() in COMPANY_INPUTS]
    texts = [input_lines(inputs, sender=False)] + [e.text for e in evidence if e.id != "sender"]
    for address in to:
        local, _, domain = address.partition("@")
        parts += [*re.split(r"[._+-]", local), domain.split(".")[0]]
        for text in texts:
            for line in text.split("\n"):
                # The sentence (or CSV row) that holds the address, not the whole page.
                for piece in re.split(r"(?<=[.!?])\s+", line):
                    at = piece.lower().find(address)
                    if at >= 0:
                        parts.append(piece[max(0, at - 120) : at + 120])
    return "\n".join(parts)
