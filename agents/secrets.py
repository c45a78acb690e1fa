"""Secrets never leave the process: a redactor for text, and for every log record.

Secret values are taken from the environment: every variable whose name has a part such as
``KEY``, ``TOKEN``, ``SECRET``, ``PASSWORD``, ``PASSWD``, ``CREDENTIAL`` or ``AUTH``
(``OPENAI_API_KEY``, ``SLACK_BOT_TOKEN``, ``BATON_SMTP_PASSWORD``...), plus the password of
any ``scheme://user:password@host`` URL (``BATON_DATABASE_URL``). Values shorter than
:data:`MIN_SECRET_CHARS` are ignored: they would match ordinary words. Baton's own settings
that are not credentials (:data:`NEVER_SECRET`, such as ``BATON_FETCH_ALLOW_PRIVATE``, whose
name has the part ``PRIVATE``) are never secrets: their values must not vanish from URLs.

Besides known values, :func:`credential_in` recognises credentials by their shape (Slack,
OpenAI, AWS, GitHub tokens, JWTs, ``scheme://user:password@host`` URLs), wherever they came
from. A tool call whose arguments hold either is refused (``agents.guardrails``): the model's
arguments are stored with each one replaced by a marker (:func:`scrub_arguments`), and the
marker is what the refusal sees, so neither the database nor the refusal holds the secret.

The redactor follows the environment as it changes (tests set variables at run time), so it
is read through :func:`redactor` rather than built once.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus, unquote

REDACTED = "[redacted]"
MIN_SECRET_CHARS = 8

# A name is secret-looking when one of its ``_``-separated parts says so. Parts, not
# substrings, so ``GIT_AUTHOR_NAME`` is not a secret while ``SSH_AUTH_SOCK`` is (harmless).
_SECRET_PART = re.compile(
    r"(?:API)?KEYS?|TOKENS?|SECRETS?|PASSWORDS?|PASSWD|PASSPHRASE|CREDENTIALS?|AUTH|"
    r"AUTHORIZATION|COOKIE|SESSION|PRIVATE|APIKEY|DSN"
)
_URL_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]*:([^/\s@]+)@", re.IGNORECASE)
#: Named explicitly, whatever the rule above says (the settings Baton itself reads).
ALWAYS_SECRET = (
    "BATON_SMTP_PASSWORD",
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_CLIENT_SECRET",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "AZURE_API_KEY",
    "GEMINI_API_KEY",
    "GROQ_API_KEY",
    "MISTRAL_API_KEY",
    "COHERE_API_KEY",
    "TOGETHERAI_API_KEY",
    "OPENROUTER_API_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)


#: Baton's settings that are not credentials, whatever their names' parts say: their values
#: are shown and sent as they are (``BATON_FETCH_ALLOW_PRIVATE=true`` is not a secret).
NEVER_SECRET = (
    "BATON_FETCH_ALLOW_PRIVATE",
    "BATON_FETCH_ALLOW_HOSTS",
    "BATON_FETCH_ALLOW_DOMAINS",
    "BATON_FETCH_EGRESS",
    "BATON_FETCH_MAX_BYTES",
    "BATON_FETCH_TIMEOUT",
    "BATON_RECIPIENT_POLICY",
    "BATON_GROUNDING_OVERRIDE",
    "BATON_SENDER_PROFILE",
    "BATON_MAX_TOKENS",
)


@functools.lru_cache(maxsize=1024)
def is_secret_name(name: str) -> bool:
    """Whether an environment variable of this name holds a secret."""
    upper = name.upper()
    if upper in ALWAYS_SECRET:
        return True
    if upper in NEVER_SECRET or (upper.startswith("BATON_") and upper.endswith("_POLICY")):
        return False
    return any(_SECRET_PART.fullmatch(part) for part in upper.split("_") if part)


def secrets_in(env: Mapping[str, str]) -> frozenset[str]:
    """The secret values found in ``env`` (long enough to be worth hiding)."""
    return frozenset(secret_sources(env))


def secret_sources(env: Mapping[str, str]) -> dict[str, str]:
    """Each secret value found in ``env``, with the name of the variable that holds it."""
    found: dict[str, str] = {}
    for name, value in env.items():
        if is_secret_name(name) and len(value) >= MIN_SECRET_CHARS:
            found.setdefault(value, name)
        for m in _URL_PASSWORD.finditer(value):
            for candidate in (m.group(1), unquote(m.group(1))):
                if len(candidate) >= MIN_SECRET_CHARS:
                    found.setdefault(candidate, f"the password in {name}")
    return found


@dataclass(frozen=True)
class Redactor:
    """Replaces every known secret value in text by :data:`REDACTED`."""

    values: frozenset[str]
    #: Where each value came from (a variable's name), to say which secret without showing it.
    sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        ordered = sorted(self.values, key=len, reverse=True)
        pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        object.__setattr__(self, "pattern", pattern)  # derived once; the value stays frozen

    def text(self, text: str) -> str:
        """``text`` with secrets replaced."""
        if self.pattern is None or not text:
            return text
        return self.pattern.sub(REDACTED, text)

    def contains(self, text: str) -> bool:
        """Whether ``text`` holds a secret."""
        return self.pattern is not None and self.pattern.search(text) is not None


_cached: tuple[dict[Any, Any], Redactor] | None = None


def _environ_snapshot() -> dict[Any, Any]:
    # os.environ decodes every item on each read (~100 µs); its raw dict compares in ~1 µs.
    raw = getattr(os.environ, "_data", None)
    return dict(raw) if isinstance(raw, dict) else dict(os.environ)


def redactor() -> Redactor:
    """The redactor for the current environment (rebuilt only when the environment changes)."""
    global _cached
    raw = getattr(os.environ, "_data", None)
    if _cached is not None and (raw if isinstance(raw, dict) else dict(os.environ)) == _cached[0]:
        return _cached[1]
    snapshot = _environ_snapshot()
    sources = secret_sources(os.environ)
    _cached = (snapshot, Redactor(frozenset(sources), sources))
    return _cached[1]


def redact(text: str) -> str:
    """``text`` with every secret of the environment replaced by ``[redacted]``."""
    return redactor().text(text)


# ---- credentials in tool-call arguments ------------------------------------------------------

#: Credentials recognised by their shape, whoever's they are (what each one is, its pattern).
CREDENTIAL_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a Slack token", re.compile(r"(?<![A-Za-z0-9])xox[abposr]-[A-Za-z0-9-]{10,}")),
    ("a Slack app token", re.compile(r"(?<![A-Za-z0-9])xapp-[0-9]+-[A-Za-z0-9-]{10,}")),
    # "sk-", maybe words ("proj-", "ant-api03-"), then a long run of letters and digits:
    # a key, not a slug like "sk-hynix-memory-prices".
    (
        "an OpenAI key",
        re.compile(
            r"(?<![A-Za-z0-9])sk-(?:[A-Za-z0-9]+[-_])*?(?=[A-Za-z0-9]*\d[A-Za-z0-9]*\d)"
            r"[A-Za-z0-9]{16,}[A-Za-z0-9_-]*"
        ),
    ),
    ("an AWS access key", re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")),
    ("a GitHub token", re.compile(r"(?<![A-Za-z0-9])gh[pousr]_[A-Za-z0-9]{30,}")),
    ("a GitHub token", re.compile(r"(?<![A-Za-z0-9])github_pat_[A-Za-z0-9_]{22,}")),
    (
        "a JSON web token",
        re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    ),
    (
        "a password in a URL",
        # The look-behind starts a scheme only where a word starts: linear on long text.
        re.compile(
            r"(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*://[^/\s:@\"'<>]+:[^/\s@\"'<>]+@", re.IGNORECASE
        ),
    ),
)
#: What replaces a secret in a model's tool-call arguments; :data:`REMOVED` finds it again.
REMOVED_MARK = "[redacted secret: {what}]"
REMOVED = re.compile(r"\[redacted secret: ([^\[\]]{1,80})\]")


def credential_in(text: str) -> str | None:
    """What kind of credential ``text`` holds by its shape ("a Slack token"), or None."""
    for what, pattern in CREDENTIAL_SHAPES:
        if pattern.search(text):
            return what
    return None


def secret_in(text: str) -> str | None:
    """What secret ``text`` holds: a known value (named by its variable) or a credential's
    shape, or a marker left by :func:`scrub_arguments`; None if it holds none."""
    r = redactor()
    if r.pattern is not None:
        m = r.pattern.search(text)
        if m:
            return f"the value of {r.sources.get(m.group(0), 'a secret setting')}"
    marked = REMOVED.search(text)
    if marked:
        return marked.group(1)
    return credential_in(text)


def scrub_arguments(arguments: str) -> tuple[str, list[str]]:
    """A model's tool-call arguments (JSON text) with every known secret and every credential
    shape replaced by a marker naming what it was; and the names. Values are matched as they
    are, JSON-escaped and URL-encoded, so a quoted or encoded secret is caught too."""
    found: list[str] = []
    r = redactor()
    variants: dict[str, str] = {}
    for value in r.values:
        what = f"the value of {r.sources.get(value, 'a secret setting')}"
        for form in (value, json.dumps(value)[1:-1], quote(value, safe=""), quote_plus(value)):
            variants.setdefault(form, what)
    if variants:
        ordered = sorted(variants, key=len, reverse=True)
        pattern = re.compile("|".join(map(re.escape, ordered)))

        def known(m: re.Match[str]) -> str:
            found.append(variants[m.group(0)])
            return REMOVED_MARK.format(what=variants[m.group(0)])

        arguments = pattern.sub(known, arguments)
    for what, shape in CREDENTIAL_SHAPES:

        def shaped(m: re.Match[str], what: str = what) -> str:
            found.append(what)
            return REMOVED_MARK.format(what=what)

        arguments = shape.sub(shaped, arguments)
    return arguments, found


# ---- logs -----------------------------------------------------------------------------------


def scrub_record(record: logging.LogRecord) -> None:
    """Redact a log record in place: its message (with args), exception and stack text.

    A record without a secret is left exactly as it was (its ``msg`` and ``args`` intact).
    """
    r = redactor()
    if not r.values:
        return
    try:
        message = record.getMessage()
    except Exception:  # a malformed format string: leave it for logging to report
        return
    if r.contains(message):
        record.msg, record.args = r.text(message), None
    if record.exc_info and not record.exc_text:
        # Formatters reuse exc_text when it is set, so the traceback is shown redacted.
        formatted = logging.Formatter().formatException(record.exc_info)
        if r.contains(formatted):
            record.exc_text = formatted
    if record.exc_text and r.contains(record.exc_text):
        record.exc_text = r.text(record.exc_text)
    if record.stack_info and r.contains(record.stack_info):
        record.stack_info = r.text(record.stack_info)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts secrets from each record it sees (and keeps them all)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record``; never drops it."""
        scrub_record(record)
        return True


_installed = False


def install_log_redaction() -> None:
    """Redact every log record of this process, whichever logger or handler it goes to.

    A filter on the root logger sees only records logged *on* the root logger, not those
    propagated from ``agents.x``; so the filter also goes on the root's handlers, and the
    record factory redacts each record as it is created (handlers added later, such as a
    test's capture handler, see redacted records too). Safe to call more than once.
    """
    global _installed
    root = logging.getLogger()
    for target in (root, *root.handlers):
        if not any(isinstance(f, RedactingFilter) for f in target.filters):
            target.addFilter(RedactingFilter())
    if _installed:
        return
    _installed = True
    make = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        scrub_record(record)
        return record

    logging.setLogRecordFactory(factory)
