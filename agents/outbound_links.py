"""Links in outbound text, checked in code: none may be disguised, none may lead somewhere new.

* A link whose visible text is a URL or domain other than its target (markdown ``[text](url)``,
  HTML ``<a href>``, Slack ``<url|text>``) is flagged: the reader would be misled.
* A link, or a bare domain ("acme.example"), whose registrable domain occurs in none of the
  evidence, the inputs or the sender's profile is flagged: the run was never given that site.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from agents.domains import HOST_IN_TEXT, _psl, domains_in, host_of, registrable_domain
from agents.flags import Flag

MARKDOWN = re.compile(r"\[([^\]\n]{1,300})\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML = re.compile(r"<a\s[^>]*?href\s*=\s*[\"']?([^\"'\s>]+)[\"']?[^>]*>(.*?)</a\s*>", re.I | re.S)
SLACK = re.compile(r"<([a-z][a-z0-9+.-]*:[^|>\s]+)\|([^>]*)>", re.I)
BARE_URL = re.compile(r"(?:https?|mailto):[^\s<>\"'|)\]]+", re.I)
#: Reserved names (RFC 2606/6761) that are domains though the suffix list does not know them.
RESERVED = frozenset({"test", "example", "invalid", "localhost"})


def _domain_of(target: str) -> str | None:
    if target.lower().startswith("mailto:"):
        address = target[7:].split("?", 1)[0]
        return registrable_domain(address.rpartition("@")[2]) if "@" in address else None
    host = host_of(target)
    return registrable_domain(host) if host else None


def _bare_domains(text: str) -> set[str]:
    """Domains named in prose ("see acme.example") that really are domains ("Node.js" is not)."""
    out = set()
    for host in HOST_IN_TEXT.findall(text):
        tld = host.lower().rsplit(".", 1)[-1]
        if tld in RESERVED or _psl.publicsuffix(host.lower(), accept_unknown=False):
            out.add(registrable_domain(host))
    return out


def links(text: str) -> list[tuple[str, str]]:
    """Every (visible text, target) of a masked link in ``text``."""
    found = [(m.group(1), m.group(2)) for m in MARKDOWN.finditer(text)]
    found += [(re.sub(r"<[^>]+>", "", m.group(2)), m.group(1)) for m in HTML.finditer(text)]
    found += [(m.group(2), m.group(1)) for m in SLACK.finditer(text)]
    return found


def check(text: str, known: Iterable[str]) -> list[Flag]:
    """The link flags of outbound ``text``; ``known`` are the texts whose domains it may name
    (the evidence, its sources, the goal and inputs, the sender's profile)."""
    allowed: set[str] = set()
    for piece in known:
        allowed |= domains_in(piece) | {d for u in BARE_URL.findall(piece) if (d := _domain_of(u))}
    flags: list[Flag] = []
    targets: set[str] = set()
    for visible, target in links(text):
        domain = _domain_of(target)
        shown = f"{visible.strip()} → {target}"
        if domain is None:
            flags.append(Flag("link", shown, "the link's target is not a web address"))
            continue
        targets.add(domain)
        named = domains_in(visible) | {
            registrable_domain(a.rpartition("@")[2]) for a in re.findall(r"\S+@\S+", visible)
        }
        if named and domain not in named:
            flags.append(
                Flag(
                    "link", shown, f"the link shows {', '.join(sorted(named))} but goes to {domain}"
                )
            )
    targets |= {d for u in BARE_URL.findall(text) if (d := _domain_of(u))}
    targets |= _bare_domains(re.sub(r"[\w.+-]+@[\w.-]+", " ", text))
    for domain in sorted(targets - allowed):
        flags.append(
            Flag(
                "link",
                domain,
                f"links to {domain}, a domain found in no evidence, input or sender profile",
            )
        )
    return flags
