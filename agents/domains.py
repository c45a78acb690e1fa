"""Host names and their registrable domain ("www.acme.co.uk" → "acme.co.uk").

The registrable domain is what a company owns: links on the same registrable domain as a page
the run was given are the same site; anything else is somebody else's. It comes from the
Public Suffix List bundled with ``publicsuffixlist`` (no download at run time).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from urllib.parse import urlsplit

from publicsuffixlist import PublicSuffixList

_psl = PublicSuffixList(only_icann=False)
#: A bare host name in text ("acme.example", "www.acme.co.uk"): labels, dots, a letter TLD.
HOST_IN_TEXT = re.compile(
    r"(?<![\w@.-])((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{1,62})(?![\w-])",
    re.IGNORECASE,
)
URL_IN_TEXT = re.compile(r"https?://[^\s<>\"'|)\]]+", re.IGNORECASE)


def normal_host(host: str) -> str:
    """``host`` lower-cased, without a trailing dot, IDNA-encoded where it can be."""
    host = host.strip().rstrip(".").lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return host.encode("idna").decode("ascii") if host else host
    except UnicodeError:
        return host


@functools.lru_cache(maxsize=4096)
def registrable_domain(host: str) -> str:
    """The registrable domain of ``host``; an IP address or a single label is its own."""
    host = normal_host(host)
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    return _psl.privatesuffix(host) or host


def host_of(url: str) -> str | None:
    """The host of an http(s) URL, normalised; None if it has none."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return normal_host(parts.hostname)


def hosts_in(text: str) -> set[str]:
    """Every host named in ``text``: in URLs and as bare names ("acme.example")."""
    found = {h for url in URL_IN_TEXT.findall(text) if (h := host_of(url))}
    found |= {normal_host(m) for m in HOST_IN_TEXT.findall(text)}
    return found


def domains_in(text: str) -> set[str]:
    """The registrable domains of every host named in ``text``."""
    return {registrable_domain(h) for h in hosts_in(text)}
