"""Egress for ``http_fetch``, decided in code: which hosts a run may read, and what a URL may
not carry out of it.

**Hosts.** A run may fetch, without asking, any page on the registrable domain of a host
named in its goal, inputs or a person's answers (or in a playbook's own text), on the domain
of a page it has already read (so the links of a page to its own site can be followed), and
on ``BATON_FETCH_ALLOW_HOSTS``. Any other host goes to a person first
(``BATON_FETCH_EGRESS=approve``, the default) or is refused (``refuse``). The SSRF switch
for private addresses stays ``BATON_FETCH_ALLOW_PRIVATE`` (``agents.toolbox.web_guard``).

**Data.** Whatever the host, a URL is refused outright when it carries a user name or
password, a known secret or a credential's shape, a Baton setting that identifies us (the
SMTP login, Slack ids), or, unless a person or a page gave exactly that URL, an email
address or a long value (:data:`LONG_VALUE` characters) taken from the run's own text: its
inputs, its tools' results, its steps' outputs. That is how a model would carry data out in
a query string. What it cannot stop: data cut into short pieces or encoded beyond
recognition; for those, the approval of a foreign host is the second line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from urllib.parse import unquote_plus, urlsplit

from agents.domains import URL_IN_TEXT, domains_in, host_of, registrable_domain
from agents.flags import Verdict
from agents.recipients import EMAIL
from agents.secrets import secret_in
from agents.supplied import RunMaterial
from agents.toolbox.http_fetch import URL_ARGUMENT

__all__ = ["URL_ARGUMENT", "egress_verdict", "host_allowed"]

#: A value this long (letters and digits, after normalising) found in the run's text is data.
LONG_VALUE = 24
#: Settings whose values say who we are: never in a URL, however short (from 8 characters).
IDENTIFYING = ("BATON_SMTP_USERNAME", "BATON_SMTP_FROM")
IDENTIFYING_CHARS = 8
IDENTIFYING_PREFIXES = ("SLACK_",)
_WORDS = re.compile(r"[^0-9a-z]+")


def egress_verdict(
    url: str,
    material: RunMaterial,
    *,
    fetch_tool: str,
    allow_hosts: Iterable[str] = (),
    policy: str = "approve",
) -> Verdict:
    """What the egress guard says of fetching ``url`` in a run with ``material``."""
    host = host_of(url)
    if host is None:
        return Verdict()  # not an http(s) URL: the tool refuses it with its own reason
    parts = urlsplit(url.strip())
    if "@" in parts.netloc:
        return _refuse(host, "the URL carries a user name or password")
    data = _decoded("#".join((parts.path, parts.query, parts.fragment)))
    what = secret_in(url) or secret_in(data)
    if what:
        return _refuse(host, f"the URL carries a secret ({what})")
    allowed = host_allowed(host, material, fetch_tool=fetch_tool, allow_hosts=allow_hosts)
    setting = _identifying_setting(f"{host}/{data}".lower())
    if setting:
        return _refuse(host, f"the URL carries the value of {setting}")
    if not _given(url, material, fetch_tool):
        if EMAIL.search(data):
            return _refuse(host, "the URL carries an email address")
        # On a site the run may read, a long path is a page's name (a slug like the words of
        # its title); what carries data there is the query. Elsewhere, every part does.
        carried = _decoded(f"{parts.query}#{parts.fragment}") if allowed else f"{host}/{data}"
        if _long_private_value(carried, material):
            return _refuse(
                host,
                f"the URL carries a value of {LONG_VALUE}+ characters taken from this run's "
                "own text (its inputs, tool results or outputs)",
            )
    if allowed:
        return Verdict()
    if policy == "refuse":
        return _refuse(
            host,
            f"{host} is not a host this run was given (its goal, inputs and the pages it read "
            "name other sites; BATON_FETCH_ALLOW_HOSTS lists hosts any run may read)",
        )
    return Verdict(guard="egress", target=host, needs_approval=True)


def host_allowed(
    host: str, material: RunMaterial, *, fetch_tool: str, allow_hosts: Iterable[str] = ()
) -> bool:
    """Whether the run may fetch from ``host`` without asking a person."""
    if any(host == h or host.endswith("." + h) for h in allow_hosts):
        return True
    return registrable_domain(host) in allowed_domains(material, fetch_tool=fetch_tool)


def allowed_domains(material: RunMaterial, *, fetch_tool: str) -> set[str]:
    """Registrable domains named by a person, and those of the pages the run has read."""
    found: set[str] = set()
    for text in material.person:
        found |= domains_in(text)
    for call in material.finished(fetch_tool):
        final = _final_url(call.result or "")
        host = host_of(final) if final else None
        if host:
            found.add(registrable_domain(host))
    return found


def _final_url(result: str) -> str | None:
    # http_fetch's result starts with "URL: <the final URL after redirects>".
    first = result.split("\n", 1)[0]
    return first[5:].strip() if first.startswith("URL: ") else None


def _refuse(host: str, why: str) -> Verdict:
    return Verdict(refused=why, guard="egress", target=host)


def _decoded(text: str) -> str:
    """``text`` with percent-encoding undone (twice-encoded too) and ``+`` read as a space."""
    for _ in range(3):
        plain = unquote_plus(text)
        if plain == text:
            break
        text = plain
    return text


def _normal_url(url: str) -> str:
    """A URL as compared with the URLs a person or a page gave: no scheme, no fragment."""
    parts = urlsplit(url.strip().rstrip(".,;"))
    host = (parts.hostname or "").lower()
    port = f":{parts.port}" if parts.port else ""
    path = parts.path.rstrip("/")
    query = f"?{parts.query}" if parts.query else ""
    return f"{host}{port}{path}{query}"


def _given(url: str, material: RunMaterial, fetch_tool: str) -> bool:
    """Whether exactly this URL was given by a person, or linked from a page the run read
    (a page only links to what its site already knows: it carries none of our data)."""
    try:
        wanted = _normal_url(url)
        texts: Iterator[str] = iter(
            [*material.person, *(c.result or "" for c in material.finished(fetch_tool))]
        )
        return any(_normal_url(u) == wanted for text in texts for u in URL_IN_TEXT.findall(text))
    except ValueError:  # a malformed port, say: not a URL anyone gave
        return False


def _identifying_setting(text: str) -> str | None:
    for name, raw in os.environ.items():
        if name not in IDENTIFYING and not name.startswith(IDENTIFYING_PREFIXES):
            continue
        value = raw.strip().lower()
        if value.startswith(("http://", "https://")):
            continue  # an API's address (SLACK_API_BASE_URL), not who we are
        # "Baton <baton@ourco.example>": the address is what would identify us.
        for candidate in [m.group(0).lower() for m in EMAIL.finditer(value)] or [value]:
            if len(candidate) >= IDENTIFYING_CHARS and candidate in text:
                return name
    return None


def _long_private_value(data: str, material: RunMaterial) -> bool:
    """Whether ``data`` shares a run of :data:`LONG_VALUE` letters and digits with the
    run's own text (compared without case, spaces or punctuation)."""
    # Pieces between the URL's delimiters; the words of one value stay together.
    pieces = [p for p in (_flat(s) for s in re.split(r"[/?&=#;]+", data)) if len(p) >= LONG_VALUE]
    if not pieces:
        return False
    # URLs in the run's text are addresses to read, not data: a page's own links are not
    # private, however long their paths.
    private = [
        _flat(URL_IN_TEXT.sub(" ", t))
        for t in (*material.person, *material.outputs, *(c.result or "" for c in material.calls))
    ]
    for piece in pieces:
        for start in range(len(piece) - LONG_VALUE + 1):
            window = piece[start : start + LONG_VALUE]
            if any(window in text for text in private):
                return True
    return False


def _flat(text: str) -> str:
    return _WORDS.sub("", text.lower())
