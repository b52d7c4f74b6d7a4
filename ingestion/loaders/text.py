"""Plain text, markdown, logs and HTML."""

from __future__ import annotations

import re
import warnings
from typing import Any

from bs4 import BeautifulSoup, NavigableString, Tag, XMLParsedAsHTMLWarning

from ingestion.document import IngestionError, Section
from ingestion.headings import first_title

# Never content: scripts, styles, and the site's own chrome (menus, page footers).
DROPPED_TAGS = ["script", "style", "noscript", "template", "nav", "footer", "svg", "button", "form"]
# Landmark roles and class/id names of navigation chrome: DocBook/Sphinx/Javadoc "navheader"/"navfooter",
# navbars, breadcrumbs, sidebars, skip links. Matched against whole class names and ids, case-insensitively.
CHROME_ROLES = {"navigation", "banner", "contentinfo", "search"}
CHROME_NAME = re.compile(
    r"^(nav|navbar|navheader|navfooter|navigation|breadcrumbs?|sidebar|skip-?link|site-(header|footer|nav))$", re.I
)
# Elements that start a new line of text; everything else (code, em, a, span, ...) runs inline within its line.
BLOCK_TAGS = [
    "address", "article", "aside", "blockquote", "caption", "dd", "details", "div", "dl", "dt", "figcaption",
    "figure", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "ol", "p", "pre", "section",
    "summary", "table", "tbody", "tfoot", "thead", "tr", "ul",
]  # fmt: skip
CELL_TAGS = ["td", "th"]
SPACES = re.compile(r"[ \t\r\n\f\v\u00a0]+")
# Headings recorded for the chunks' heading trail (ingestion/chunkers.py): h1 to h4, each marked in the text by a
# private-use character (U+E001 to U+E004) while the text is assembled; the marks never reach the output.
HEADING_TAGS = ["h1", "h2", "h3", "h4"]
HEADING_MARKS = {chr(0xE000 + level): level for level in range(1, 5)}


def decode(data: bytes, name: str) -> str:
    for encoding in ("utf-8-sig", "utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ("utf-8-sig",):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    if b"\x00" in data[:8192]:
        raise IngestionError(f"{name}: looks like a binary file, not text")
    return data.decode("latin-1")


def load_text(data: bytes, name: str) -> list[Section]:
    """The file as one section; a markdown file's first level-1 ``# heading`` becomes its title."""
    text = decode(data, name)
    title = None
    if name.lower().endswith((".md", ".markdown")):
        title = first_title(text)
    return [Section(text, metadata={"title": title} if title else {})]


def load_html(data: bytes, name: str) -> list[Section]:
    """The page's readable text, one line per block element (a paragraph, list item, heading, table row with its
    cells joined by `` | ``), without scripts, styles or navigation chrome; ``<title>`` goes into the metadata, and
    so do the ``h1``-``h4`` headings (``headings``: [offset of the heading's line in the text, level, text]), from
    which the chunker gives each chunk its heading trail."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)  # XHTML pages parse fine as HTML
        soup = BeautifulSoup(data, "lxml")
    title = SPACES.sub(" ", soup.title.get_text()).strip() if soup.title else None
    body = soup.body or soup
    for tag in body.find_all(DROPPED_TAGS):
        tag.decompose()
    for tag in body.find_all(_is_chrome):
        tag.decompose()
    # Source line breaks inside a paragraph are just spaces (except in <pre>); then blocks get their own lines.
    for string in body.find_all(string=True):
        if type(string) is NavigableString and string.find_parent("pre") is None:
            string.replace_with(SPACES.sub(" ", string))
    for tag in body.find_all(BLOCK_TAGS):
        tag.insert_before("\n")
        tag.append("\n")
    for tag in body.find_all("br"):
        tag.replace_with("\n")
    for tag in body.find_all(CELL_TAGS):
        if tag.find_previous_sibling(CELL_TAGS) is not None:
            tag.insert_before(" | ")
    for string in body.find_all(string=_has_mark):  # a page's own U+E001-U+E004 are dropped: the marks are ours
        string.replace_with(string.translate(_NO_MARKS))
    for tag in body.find_all(HEADING_TAGS):
        tag.insert(0, chr(0xE000 + int(tag.name[1])))
    kept: list[str] = []
    headings: list[list[int | str]] = []  # [offset in the text, level, heading text]
    offset = 0
    for raw in body.get_text().splitlines():
        line = SPACES.sub(" ", raw).strip()
        level = HEADING_MARKS.get(line[:1])
        line = line.translate(_NO_MARKS).strip()
        if not line:
            continue
        if level is not None:
            headings.append([offset, level, line])
        kept.append(line)
        offset += len(line) + 1
    metadata: dict[str, Any] = {"title": title} if title else {}
    if headings:
        metadata["headings"] = headings
    return [Section("\n".join(kept), metadata=metadata)]


_NO_MARKS = dict.fromkeys(map(ord, HEADING_MARKS))


def _has_mark(string: str | None) -> bool:
    return bool(string) and any(mark in string for mark in HEADING_MARKS)  # type: ignore[operator]


def _is_chrome(tag: Tag) -> bool:
    if str(tag.get("role", "")).lower() in CHROME_ROLES:
        return True
    names = [*tag.get_attribute_list("class"), tag.get("id") or ""]
    return any(isinstance(n, str) and CHROME_NAME.match(n) for n in names)
