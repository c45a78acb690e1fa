"""HTML to readable text with the standard library's parser.

The model needs the words of a page, not its markup: scripts, styles, navigation, forms and
hidden parts are dropped, headings and list items keep a light Markdown shape, and links are
listed once at the end (a few, so the model can follow one) instead of inline.
``html.parser`` is forgiving enough for real pages and adds no dependency.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from yarl import URL

#: Content in these is never text for a reader.
SKIP = frozenset(
    {
        "script",
        "style",
        "noscript",
        "template",
        "svg",
        "math",
        "canvas",
        "iframe",
        "object",
        "nav",
        "footer",
        "form",
        "select",
        "button",
    }
)
VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)
BLOCK = frozenset(
    {
        "p",
        "div",
        "section",
        "article",
        "main",
        "header",
        "aside",
        "blockquote",
        "ul",
        "ol",
        "dl",
        "dt",
        "dd",
        "table",
        "tr",
        "figure",
        "figcaption",
        "address",
        "details",
        "summary",
        "br",
        "hr",
    }
)
HEADINGS = {"h1": "# ", "h2": "## ", "h3": "### ", "h4": "#### ", "h5": "##### ", "h6": "###### "}
MAX_LINKS = 20


@dataclass
class Page:
    """What a reader gets from a page."""

    title: str
    text: str
    links: list[tuple[str, str]] = field(default_factory=list)


class _Extractor(HTMLParser):
    def __init__(self, base: URL) -> None:
        super().__init__(convert_charrefs=True)
        self.base = base
        self.parts: list[str] = []
        self.title: list[str] = []
        self.links: dict[str, str] = {}
        self.skip: list[str] = []  # open skipped elements, innermost last
        self.in_title = False
        self.pre = 0
        self.link: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "title" and not self.skip:
            # <head> itself is not skipped: its end tag is optional, and its other content
            # (scripts, styles) is skipped on its own.
            self.in_title = True
            return
        hidden = "hidden" in a or (a.get("aria-hidden") or "").lower() == "true"
        if (tag in SKIP or hidden) and tag not in VOID:
            self.skip.append(tag)
            return
        if self.skip:
            return
        if tag in HEADINGS:
            self.parts.append("\n\n" + HEADINGS[tag])
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in ("td", "th"):
            self.parts.append(" | ")
        elif tag == "pre":
            self.pre += 1
            self.parts.append("\n")
        elif tag in BLOCK:
            self.parts.append("\n")
        elif tag == "img" and a.get("alt"):
            self.parts.append(f" [{a['alt']}] ")
        elif tag == "a" and a.get("href"):
            self.link = (a["href"] or "", [])

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:  # <div/>: opened and closed at once
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
            return
        if self.skip:
            if tag in self.skip:
                # Close up to the matching element (browsers forgive unclosed children).
                while self.skip and self.skip.pop() != tag:
                    pass
            return
        if tag in HEADINGS or tag in BLOCK or tag == "li":
            self.parts.append("\n")
        elif tag == "pre" and self.pre:
            self.pre -= 1
            self.parts.append("\n")
        elif tag == "a" and self.link is not None:
            href, words = self.link
            self.link = None
            self._add_link(href, " ".join("".join(words).split()))

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
            return
        if self.skip:
            return
        if self.link is not None:
            self.link[1].append(data)
        self.parts.append(data if self.pre else re.sub(r"\s+", " ", data))

    def _add_link(self, href: str, words: str) -> None:
        if len(self.links) >= MAX_LINKS or href.startswith("#"):
            return
        try:
            target = self.base.join(URL(href.strip()))
        except ValueError:
            return
        if target.scheme in ("http", "https"):
            self.links.setdefault(str(target.with_fragment(None)), words[:80])


def html_to_text(html: str, base: URL) -> Page:
    """The title, readable text and first links of an HTML document."""
    parser = _Extractor(base)
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):  # html.parser gives up on some broken markup
        pass
    text = "".join(parser.parts)
    lines = [line.strip() for line in text.splitlines()]
    # At most one blank line in a row.
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    title = " ".join("".join(parser.title).split())
    return Page(title=title, text=text, links=[(u, w) for u, w in parser.links.items()])
