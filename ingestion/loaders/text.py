"""Plain text, markdown, logs and HTML."""

from __future__ import annotations

from bs4 import BeautifulSoup

from ingestion.document import IngestionError, Section


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
    return [Section(decode(data, name))]


def load_html(data: bytes, name: str) -> list[Section]:
    soup = BeautifulSoup(data, "lxml")
    for tag in soup(["script", "style", "noscript", "template", "nav", "footer"]):
        tag.decompose()
    title = soup.title.get_text(strip=True) if soup.title else None
    body = soup.body or soup
    lines = (line.strip() for line in body.get_text("\n").splitlines())
    text = "\n".join(line for line in lines if line)
    return [Section(text, metadata={"title": title} if title else {})]
