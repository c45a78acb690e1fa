"""``http_fetch``: read a web page as text, safely.

Every hop (the URL, then each redirect, at most :data:`MAX_REDIRECTS`) is checked by
:mod:`agents.toolbox.web_guard` before it is requested (a redirect to another registrable
domain is not followed: the run's egress policy judged only the first URL), and names are resolved by a resolver
that refuses non-public addresses, so the connection goes to the address that was checked.
The body is read up to ``BATON_FETCH_MAX_BYTES`` and the whole fetch, redirects included,
ends after ``BATON_FETCH_TIMEOUT`` seconds. The result starts with the final URL, so a later
step can cite it as the source.
"""

from __future__ import annotations

import asyncio
import codecs
import re
from typing import Annotated

import aiohttp
from pydantic import Field
from yarl import URL

from agents.domains import registrable_domain
from agents.toolbox.html_text import html_to_text
from agents.toolbox.settings import FetchSettings
from agents.toolbox.web_guard import FetchError, GuardedResolver, check_url
from agents.tools import Risk, Tool, make_tool

MAX_REDIRECTS = 5
#: Characters of page text returned (the runtime keeps 20,000 of a result; links follow).
TEXT_LIMIT = 15_000
REDIRECTS = frozenset({301, 302, 303, 307, 308})
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
HEADERS = {
    "User-Agent": "Baton/0.1 (http_fetch; +https://github.com/baton)",
    "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.5",
}
#: The ``Tool.extra`` key naming the argument a tool sends to the network as a URL: the egress
#: guard (``agents.egress``) checks its host and what it carries before the call.
URL_ARGUMENT = "egress_url"
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.I)


def make_http_fetch(settings: FetchSettings) -> Tool:
    """The ``http_fetch`` tool, bound to ``settings``."""

    async def http_fetch(
        url: Annotated[str, Field(description="The page's full http:// or https:// URL.")],
    ) -> str:
        """Fetch a web page and return its title and readable text (scripts, styles and
        navigation removed), starting with the final URL after redirects: cite that URL as
        the source. Only public http(s) addresses; long pages are cut."""
        return await fetch_text(url, settings)

    tool = make_tool(http_fetch, risk=Risk.READ_ONLY, idempotent=True)
    # Its URL goes out to the network: the egress guard checks it first (agents.egress).
    tool.extra[URL_ARGUMENT] = "url"
    return tool


async def fetch_text(raw_url: str, settings: FetchSettings) -> str:
    """Fetch ``raw_url`` under ``settings``; the page as text, or a :class:`FetchError`."""
    try:
        url = URL(raw_url.strip())
    except (ValueError, TypeError):
        raise FetchError(f"{raw_url[:200]!r} is not a valid URL.") from None
    if not url.scheme:
        raise FetchError(
            f"{raw_url[:200]!r} is not a full URL: give one starting with https:// or http://."
        )
    resolver = GuardedResolver(settings)
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, limit=2)
    try:
        async with asyncio.timeout(settings.timeout_s):
            async with aiohttp.ClientSession(
                connector=connector,
                headers=HEADERS,
                timeout=aiohttp.ClientTimeout(total=settings.timeout_s),
                cookie_jar=aiohttp.DummyCookieJar(),
            ) as session:
                return await _follow(session, url, settings)
    except TimeoutError:
        raise FetchError(
            f"{url.host} did not answer within {settings.timeout_s:g} seconds "
            "(BATON_FETCH_TIMEOUT)."
        ) from None
    except aiohttp.InvalidURL as exc:
        raise FetchError(f"{str(exc.url)[:200]!r} is not a valid URL.") from None
    except aiohttp.ClientConnectorError as exc:
        raise FetchError(
            f"Could not connect to {exc.host}:{exc.port}: {exc.strerror or exc.os_error}."
        ) from None
    except aiohttp.ClientError as exc:
        raise FetchError(f"Fetching {url.human_repr()[:200]} failed: {exc}.") from None
    finally:
        await resolver.close()


async def _follow(session: aiohttp.ClientSession, url: URL, settings: FetchSettings) -> str:
    site = registrable_domain(url.host or "")
    for _hop in range(MAX_REDIRECTS + 1):
        check_url(url, settings)
        if registrable_domain(url.host or "") != site:
            # The run's egress policy (agents.egress) checked the first URL only; a redirect
            # to another site (an open redirect carrying data out, say) is not followed.
            # The model may fetch the target itself, and that fetch is checked like any other.
            raise FetchError(
                f"The page redirects to another site, {url.human_repr()[:200]}; it was not "
                "followed. Fetch that URL with http_fetch if you need it."
            )
        async with session.get(url, allow_redirects=False) as resp:
            if resp.status in REDIRECTS:
                location = resp.headers.get("Location", "").strip()
                if not location:
                    raise FetchError(
                        f"{url.human_repr()[:200]} redirected ({resp.status}) without saying "
                        "where to."
                    )
                try:
                    url = url.join(URL(location))
                except ValueError:
                    raise FetchError(
                        f"{url.human_repr()[:200]} redirected to an invalid URL {location[:200]!r}."
                    ) from None
                continue
            if resp.status >= 400:
                raise FetchError(
                    f"{url.human_repr()[:200]} answered {resp.status} {resp.reason or ''}".strip()
                    + "."
                )
            return await _read(resp, url, settings)
    raise FetchError(
        f"Too many redirects: more than {MAX_REDIRECTS}, the last to {url.human_repr()[:200]}."
    )


async def _read(resp: aiohttp.ClientResponse, url: URL, settings: FetchSettings) -> str:
    ctype = (resp.content_type or "").lower()
    kind = _kind(ctype)
    if kind is None:
        raise FetchError(
            f"{url.human_repr()[:200]} is a {ctype} file, not a page that can be read as text."
        )
    body, cut = await _read_capped(resp, settings.max_bytes)
    if kind == "unknown":  # no useful Content-Type: look at the bytes
        head = body[:512].lstrip().lower()
        if head.startswith((b"<!doctype html", b"<html")):
            kind = "html"
        elif b"\x00" in body[:4096] or body.startswith(b"%PDF"):
            raise FetchError(f"{url.human_repr()[:200]} is binary, not a page.")
        else:
            kind = "text"
    text = body.decode(_charset(resp, body, kind == "html"), errors="replace")
    lines = [f"URL: {url.human_repr()}"]
    links: list[tuple[str, str]] = []
    if kind == "html":
        page = html_to_text(text, url)
        if page.title:
            lines.append(f"Title: {page.title}")
        text, links = page.text, page.links
    else:
        lines.append(f"Content-Type: {ctype or 'unknown'}")
    lines.append("")
    if not text.strip():
        text = "(The page has no readable text; it may need JavaScript.)"
    if len(text) > TEXT_LIMIT:
        text = text[:TEXT_LIMIT] + f"\n[Cut: the text goes on past {TEXT_LIMIT} characters.]"
    elif cut:
        text += (
            f"\n[Cut: only the first {settings.max_bytes} bytes were read (BATON_FETCH_MAX_BYTES).]"
        )
    lines.append(text)
    if links:
        lines += ["", "Links:", *(f"- {words or '(link)'}: {href}" for href, words in links)]
    return "\n".join(lines)


def _kind(ctype: str) -> str | None:
    """html, text, unknown (no type given) or None (not text)."""
    if ctype in ("", "application/octet-stream"):  # servers label plain text so too
        return "unknown"
    if ctype in HTML_TYPES:
        return "html"
    if ctype.startswith("text/") or ctype.endswith(("+json", "+xml", "/json", "/xml")):
        return "text"
    if ctype in ("application/javascript", "application/x-ndjson", "application/csv"):
        return "text"
    return None


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the (decompressed) body, and whether more was left."""
    chunks: list[bytes] = []
    total = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        room = limit - total
        if len(chunk) > room:
            chunks.append(chunk[:room])
            return b"".join(chunks), True
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks), False


def _charset(resp: aiohttp.ClientResponse, body: bytes, html: bool) -> str:
    candidates = [resp.charset or ""]
    if html:
        m = _META_CHARSET.search(body[:4096])
        if m:
            candidates.append(m.group(1).decode("ascii", "replace"))
    for name in candidates:
        if not name:
            continue
        try:
            codecs.lookup(name)
        except LookupError:
            continue
        return name
    return "utf-8"
