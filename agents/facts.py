"""The facts code can see in a sentence, and whether a text carries them: the code-only backstop.

Whatever any model says, every number, amount of money, percentage, year, month and proper name
(person, company, product, place) of an outbound sentence must occur in what supports it, after
normalisation: "$45M" = "$45 million" = "45 million dollars" = "$45,000,000"; "Sept" and "Sep."
= "September"; "40%" = "40 percent"; "3x" = "3 times". A round number stands for a precise one
it rounds ("more than 90,000" for 91,200; "nearly 800" for 790), never for a different one.

Proper names are capitalised words and acronyms. A capitalised word that opens a sentence (or
sits in a title-cased subject line) is a name only if it is not a common English word
(:mod:`agents.words`) and not written in lower case anywhere in the draft or the evidence.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Literal

from agents.domains import HOST_IN_TEXT, URL_IN_TEXT
from agents.words import COMMON, STOP

MONTHS = {
    m[:3]: m
    for m in [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ]
}
MONTHS.update({m: m for m in list(MONTHS.values())} | {"sept": "september"})
WEEKDAYS = frozenset(["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"])
_SCALE = {
    "thousand": 10**3,
    "k": 10**3,
    "million": 10**6,
    "mn": 10**6,
    "mm": 10**6,
    "m": 10**6,
    "billion": 10**9,
    "bn": 10**9,
    "b": 10**9,
    "trillion": 10**12,
}
_WORD_NUMBERS = {
    w: i
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
        ]
    )
} | {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "hundred": 100, "a": 1}
_MULTIPLES = {"doubled": 2, "doubling": 2, "twice": 2, "tripled": 3, "triple": 3, "quadrupled": 4}

_NUM = (
    r"(?P<cur>[$€£¥])?\s?(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?:st|nd|rd|th)?"
    r"(?:\s?(?P<scale>thousand|million|billion|trillion|mn|mm|bn|k|m|b)(?![a-z]))?"
    r"(?:\s?(?P<unit>%|percent|per\s?cent|pct|x(?![a-z])|×|times(?![a-z])|-?fold))?"
)
NUMBER = re.compile(r"(?<![\w.,])" + _NUM, re.IGNORECASE)
#: In evidence, numbers glued to letters count too ("FY2024", "Q3").
NUMBER_LENIENT = re.compile(r"(?<![\d.,])" + _NUM, re.IGNORECASE)
WORD_NUMBER = re.compile(
    r"\b(?P<num>" + "|".join(_WORD_NUMBERS) + r")\s+(?P<scale>hundred|thousand|million|billion)"
    r"|\b(?P<num2>" + "|".join(_WORD_NUMBERS) + r")\s+(?P<unit>percent|times)\b",
    re.IGNORECASE,
)
#: Meeting proposals are not facts: "Thursday at 3pm", "a 15-minute call".
NOT_FACTS = re.compile(
    r"\b\d{1,2}(?::\d{2})?\s?(?:am|pm|a\.m\.|p\.m\.)|\b\d{1,2}:\d{2}\b"
    r"|\b\d{1,3}\s?-?\s?(?:min|mins|minutes?|hours?|hrs?)\b(?=[\w\s-]{0,25}\b(?:call|chat|"
    r"meeting|demo|conversation|walkthrough|slot|intro|of your time))",
    re.IGNORECASE,
)
DURATION = re.compile(r"\b\d{1,3}\s?-?\s?(?:min|mins|minutes?|hours?|hrs?)\b", re.IGNORECASE)
MARKUP = re.compile(
    r"<[@#!][^>]*>|\[([^\]\n]*)\]\([^)\s]*\)|<(?:https?|mailto):[^|>\s]*\|([^>]*)>"
    r"|<a\s[^>]*>|</a\s*>|[\w.+-]+@[\w-]+(?:\.[\w-]+)+",
    re.IGNORECASE,
)
WORD = re.compile(r"(?<![\w'’])(?:(?:[A-Za-z]\.){2,}|[^\W\d_][\w'’&-]*)")
#: Capitalised words that are never facts on their own.
ALWAYS_OK = frozenset(
    {"i", "ok", "ps", "fyi", "asap", "am", "pm", "tl", "dr", "re", "fwd"}
    | {"inc", "ltd", "llc", "corp", "co", "gmbh", "plc", "ag", "sa", "bv"}
)
_OPENERS = ":;\"“”(‘'—–•*>|/[-"

Unit = Literal["", "pct", "x"]


@dataclass(frozen=True)
class Fact:
    """A number, month or name that an outbound sentence states."""

    kind: Literal["number", "month", "name"]
    #: As written in the draft (for the flag).
    shown: str
    #: Normal form: a name or month in lower case, a number's value as text.
    key: str
    unit: Unit = ""


def fold(text: str) -> str:
    """NFKC, accents removed, typographic quotes and dashes made plain."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text))
    text = "".join(c for c in text if not unicodedata.combining(c))
    return text.translate(str.maketrans("‘’“”–—\u00a0", "''\"\"-- "))


def _unit(raw: str | None) -> Unit:
    raw = (raw or "").lower().replace(" ", "")
    if raw in ("%", "percent", "percent", "pct", "percent") or raw.startswith("per"):
        return "pct"
    if raw in ("x", "×", "times") or raw.endswith("fold"):
        return "x"
    return ""


def _numbers(text: str, pattern: re.Pattern[str]) -> list[tuple[str, Decimal, Unit, bool]]:
    """(as written, value, unit, plain) for every number in ``text``; plain: no scale, money
    or unit (a year must then match exactly)."""
    out = []
    for m in pattern.finditer(text):
        try:
            value = Decimal(m.group("num").replace(",", ""))
        except InvalidOperation:
            continue
        scale = (m.group("scale") or "").lower()
        value *= _SCALE.get(scale, 1)
        unit = _unit(m.group("unit"))
        plain = not (scale or m.group("cur") or unit)
        out.append((m.group(0).strip(), value, unit, plain))
    for m in WORD_NUMBER.finditer(text):
        word = (m.group("num") or m.group("num2") or "").lower()
        value = Decimal(_WORD_NUMBERS[word])
        if m.group("scale"):
            value *= _SCALE.get(m.group("scale").lower(), 100)
        out.append((m.group(0), value, _unit(m.group("unit")), False))
    return out


def _stem(word: str) -> str:
    # "ies" keeps a shorter stem so that "flies" and "flying" meet at "fly".
    for suffix, repl, least in (
        ("ies", "y", 2),
        ("ing", "", 3),
        ("ed", "", 3),
        ("es", "", 3),
        ("s", "", 3),
        ("ly", "", 3),
    ):
        if word.endswith(suffix) and len(word) - len(suffix) >= least:
            return word[: -len(suffix)] + repl
    return word


def _key(word: str) -> str:
    word = re.sub(r"['’]s?$", "", word.lower())
    return word.replace(".", "")


@dataclass
class Known:
    """What a text (or several) supports: its words, months and numbers, normalised."""

    words: set[str] = field(default_factory=set)
    months: set[str] = field(default_factory=set)
    numbers: list[tuple[Decimal, Unit]] = field(default_factory=list)

    @classmethod
    def of(cls, *texts: str) -> Known:
        """The facts carried by ``texts``."""
        known = cls()
        for text in texts:
            low = fold(text).lower()
            for w in WORD.findall(low):
                w = w.strip("'&-")
                known.words.update({w, _key(w), *(_key(p) for p in w.split("-") if p)})
                if (month := MONTHS.get(w.rstrip("."))) is not None:
                    known.months.add(month)
                if w in _MULTIPLES:
                    known.numbers.append((Decimal(_MULTIPLES[w]), "x"))
            known.numbers += [(v, u) for _, v, u, _ in _numbers(low, NUMBER_LENIENT)]
        return known

    def __or__(self, other: Known) -> Known:
        return Known(
            self.words | other.words, self.months | other.months, self.numbers + other.numbers
        )

    def has(self, fact: Fact) -> bool:
        """Whether this text carries ``fact``."""
        if fact.kind == "name":
            return fact.key in self.words or _stem(fact.key) in self.words
        if fact.kind == "month":
            return fact.key in self.months
        value = Decimal(fact.key)
        plain_year = fact.unit == "" and value == value.to_integral() and 1900 <= value <= 2100
        for have, unit in self.numbers:
            if fact.unit and unit != fact.unit:
                continue
            if have == value or (not plain_year and _rounds_to(have, value)):
                return True
        return False


def _rounds_to(precise: Decimal, rough: Decimal) -> bool:
    """Whether ``rough`` is ``precise`` rounded (to fewer significant digits, within 5%)."""
    if rough == 0 or precise == 0:
        return False
    digits = len(rough.normalize().as_tuple().digits)
    if digits >= len(precise.normalize().as_tuple().digits):
        return False
    exponent = Decimal(1).scaleb(precise.adjusted() - digits + 1)
    rounded = precise.quantize(exponent, rounding=ROUND_HALF_UP)
    return rounded == rough and abs(rough - precise) <= abs(precise) * Decimal("0.05")


def vocabulary(texts: Iterable[str]) -> set[str]:
    """Words written in lower case somewhere in ``texts``: common words, not names."""
    out: set[str] = set()
    for text in texts:
        out.update(w.lower() for w in WORD.findall(fold(text)) if w[0].islower())
    # With their stems, so a sentence opening "Moving 12,000 containers" finds the page's
    # "moves" (a capitalised common word is then not taken for a name).
    return out | {_stem(w) for w in out}


def _clean(text: str) -> str:
    """The sentence without links, addresses, mentions and meeting times (no facts there)."""
    text = MARKUP.sub(lambda m: f" {m.group(1) or m.group(2) or ''} ", fold(text))
    text = URL_IN_TEXT.sub(" ", text)
    text = HOST_IN_TEXT.sub(" ", text)
    if text.rstrip().endswith("?"):  # "Worth 20 minutes next week?": asking for time
        text = DURATION.sub(" ", text)
    return NOT_FACTS.sub(" ", text)


def facts(sentence: str, vocab: set[str] | None = None) -> list[Fact]:
    """Every number, month and proper name ``sentence`` states (each once)."""
    vocab = vocab or set()
    text = _clean(sentence)
    out: dict[tuple[str, str, str], Fact] = {}
    for shown, value, unit, _ in _numbers(text, NUMBER):
        out.setdefault(("number", str(value), unit), Fact("number", shown, str(value), unit))
    words = list(WORD.finditer(text))
    # A title-cased line ("Quick Question About Your Roadmap"): no lower-case word but short
    # function words; there a capitalised common word is not a name.
    rest = [w.group(0) for w in words[1:]]
    title_case = len(rest) >= 2 and not any(
        w[0].islower() and (len(w) > 3 or w.lower() not in STOP) for w in rest
    )
    for i, m in enumerate(words):
        before = text[: m.start()].rstrip()
        initial = i == 0 or not before or before[-1] in _OPENERS or before[-1] in ".!?"
        for part in re.sub(r"['’]s?$", "", m.group(0)).split("-"):
            fact = _name_or_month(part, initial, title_case, vocab, text[m.end() : m.end() + 6])
            if fact is not None:
                out.setdefault((fact.kind, fact.key, ""), fact)
    return list(out.values())


def _name_or_month(
    part: str, initial: bool, title_case: bool, vocab: set[str], after: str
) -> Fact | None:
    if not part or not part[0].isalpha():
        return None
    if not (part[0].isupper() or any(c.isupper() for c in part[1:])):
        return None
    low = _key(part)
    month = MONTHS.get(low)
    dated = re.match(r"\s?\d", after)
    if month is not None and (dated or (len(low) > 3 and low != "may") or after[:1] == "."):
        return Fact("month", part, month)
    if low in STOP or low in ALWAYS_OK or low in WEEKDAYS or low in MONTHS or low in _WORD_NUMBERS:
        return None
    acronym = len(low) >= 2 and part.isupper()
    common = any(w in COMMON or w in vocab for w in (low, _stem(low)))
    if common and not acronym and (initial or title_case):
        return None
    return Fact("name", part, low)
