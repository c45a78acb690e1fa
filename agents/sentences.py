"""Splitting outbound text into the sentences the grounding check accounts for, one by one.

Code splits, not a model, so that no sentence can be skipped by a checker that was never shown
it. The splitter knows the shapes of an email: a greeting on its own ("Dear Ada,"), a signature
("— The team", "Best,\\nMaria"), line breaks and bullets, abbreviations that do not end a
sentence ("Inc.", "e.g.", "Sept. 3"), decimals ("$4.5M") and URLs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agents.words import COMMON

#: Abbreviations after which a full stop never ends a sentence.
NEVER_END = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "e.g", "i.e", "eg", "ie"}
    | {"approx", "incl", "no", "nos", "fig", "cf", "ca"}
)
#: Abbreviations that end a sentence only when a common sentence opener follows.
MAY_END = frozenset(
    {"inc", "ltd", "co", "corp", "llc", "plc", "gmbh", "etc", "a.m", "p.m", "al"}
    | {"jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"}
)

GREETING = re.compile(
    r"^((?:dear|hi|hello|hey|greetings|good\s+(?:morning|afternoon|evening))\b"
    r"[^,!:.?\n]{0,60}[,!:])\s+(?=\S)",
    re.IGNORECASE,
)
GREETING_ALONE = re.compile(
    r"^(?:dear|hi|hello|hey|greetings|good\s+(?:morning|afternoon|evening))\b"
    r"(?:\s+[A-Z][\w'’.-]*){0,3}\s*[,!:.]?$|^[A-Z][\w'’-]*(?:\s+[A-Z][\w'’-]*)?,$",
    re.IGNORECASE,
)
SIGN_OFF = re.compile(
    r"^(?:best|best regards|kind regards|warm regards|regards|cheers|thanks|thank you|"
    r"many thanks|sincerely|yours|yours truly|warmly|all the best|talk soon|speak soon)[,.!]?$",
    re.IGNORECASE,
)
#: "Worth a chat? — The team": a dash and a few words closing the text.
TRAILING_SIGNATURE = re.compile(r"(?<=[.!?)])\s+((?:[—–]|--)\s*[^—–.!?\n]{1,60})$")
DASH_SIGNATURE = re.compile(r"^(?:[—–]|--)\s*\S")
BULLET = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.)])\s+")
BOUNDARY = re.compile(r"[.!?…]+[\"'”’)\]]*\s+")


@dataclass(frozen=True)
class Sentence:
    """One sentence of an outbound text, as the checker sees it (``S1``, ``S2``...)."""

    id: str
    text: str
    #: The tool argument it comes from ("subject", "body", "text").
    field: str = ""
    #: "greeting" or "signature" when code recognises the form (the backstop still applies).
    form: str | None = None


def _blocks(text: str) -> list[str]:
    """Lines, with a wrapped line (no closing punctuation, next starts lower-case) joined."""
    out: list[str] = []
    joinable = False
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.strip()
        if not line:
            joinable = False
            continue
        if joinable and out and line[0].islower() and not BULLET.match(raw):
            out[-1] = f"{out[-1]} {line}"
        else:
            out.append(line)
        joinable = not re.search(r"[.!?:;,]$", out[-1])
    return out


def _ends_here(piece: str, nxt: str, punct: str) -> bool:
    """Whether the full stop ending ``piece`` ends the sentence, given the text after it."""
    if not nxt or nxt[0].islower():
        return False
    if punct.strip()[:1] != ".":
        return True
    word = re.search(r"([\w.]+)\.?$", piece.rstrip(".\"'”’)]"))
    last = (word.group(1) if word else "").lower().rstrip(".")
    first = re.match(r"[\w']+", nxt)
    opener = first.group(0).lower() if first is not None else ""
    if len(last) == 1 and last.isalpha():  # an initial ("J. Smith"), not "Series B. As"
        return opener in COMMON
    if last in NEVER_END:
        return False
    if last in MAY_END:
        return opener in COMMON
    return True


def _split_block(block: str) -> list[str]:
    pieces: list[str] = []
    greeting = GREETING.match(block)
    if greeting:
        pieces.append(greeting.group(1))
        block = block[greeting.end() :]
    signature = TRAILING_SIGNATURE.search(block)
    tail = None
    if signature and len(signature.group(1).split()) <= 7:
        tail = signature.group(1).strip()
        block = block[: signature.start()]
    start = 0
    for m in BOUNDARY.finditer(block):
        piece = block[start : m.end()].strip()
        if _ends_here(
            block[start : m.start() + len(m.group(0).rstrip())], block[m.end() :], m.group(0)
        ):
            pieces.append(piece)
            start = m.end()
    pieces.append(block[start:].strip())
    if tail:
        pieces.append(tail)
    return [p for p in pieces if re.search(r"\w", p)]


def split(text: str) -> list[str]:
    """The sentences of ``text``, in order (greetings and signatures are sentences too)."""
    out: list[str] = []
    for block in _blocks(text):
        out.extend(_split_block(block))
    return out


def form_of(text: str, previous: str | None, last_lines: bool) -> str | None:
    """The form ("greeting" or "signature") when the sentence has it alone, else None."""
    if SIGN_OFF.match(text) or DASH_SIGNATURE.match(text):
        return "signature"
    after_sign_off = previous is not None and (SIGN_OFF.match(previous) or previous == "sig")
    if last_lines and after_sign_off and len(text.split()) <= 8:
        return None if re.search(r"[.!?]$", text) else "signature"
    if GREETING_ALONE.match(text):
        return "greeting"
    return None


def sentences_of(fields: list[tuple[str, str]]) -> list[Sentence]:
    """Numbered sentences of a call's outbound fields (``[("subject", ...), ("body", ...)]``)."""
    out: list[Sentence] = []
    for field, text in fields:
        pieces = split(text)
        previous: str | None = None
        for i, piece in enumerate(pieces):
            form = form_of(piece, previous, last_lines=len(pieces) - i <= 3)
            out.append(Sentence(f"S{len(out) + 1}", piece, field, form))
            previous = "sig" if form == "signature" else piece
    return out
