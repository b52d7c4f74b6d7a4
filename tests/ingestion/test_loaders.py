"""Loaders on real files made here, including the hostile ones."""

from __future__ import annotations

import io
import zipfile

import docx
import pytest
from pypdf import PdfReader, PdfWriter

from ingestion.document import IngestionError
from ingestion.loaders import load


def pdf_with_pages(*texts: str) -> bytes:
    """A minimal, valid PDF with one text line per page (Helvetica), written by hand."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", ""]
    kids = []
    for text in texts:
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        page_no = len(objects) + 1
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {page_no + 1} 0 R "
                       f"/Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >> >>")  # fmt: skip
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream.decode()}\nendstream")
        kids.append(f"{page_no} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{i} 0 obj\n{body}\nendobj\n".encode())
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for off in offsets:
        out.write(f"{off:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def docx_bytes(*paragraphs: str) -> bytes:
    document = docx.Document()
    for p in paragraphs:
        document.add_paragraph(p)
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "port", "5432"
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def test_pdf_pages_keep_their_numbers() -> None:
    sections = load("guide.pdf", pdf_with_pages("Vacuum reclaims storage", "Indexes speed up reads"))
    assert [(s.page, s.text.strip()) for s in sections] == [
        (1, "Vacuum reclaims storage"),
        (2, "Indexes speed up reads"),
    ]


def test_encrypted_and_corrupt_pdfs_are_refused_with_a_reason() -> None:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_with_pages("secret"))))
    writer.encrypt("pw")
    locked = io.BytesIO()
    writer.write(locked)
    with pytest.raises(IngestionError, match="encrypted"):
        load("locked.pdf", locked.getvalue())
    with pytest.raises(IngestionError, match=r"corrupt|no text"):
        load("broken.pdf", b"%PDF-1.4\n this is not a pdf at all \n%%EOF")


def test_docx_paragraphs_and_tables() -> None:
    (section,) = load("notes.docx", docx_bytes("First paragraph.", "Second paragraph."))
    assert "First paragraph." in section.text and "port | 5432" in section.text


def test_zip_bomb_disguised_as_docx_is_refused() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"\0" * (300 * 1024 * 1024))
    assert len(buf.getvalue()) < 1024 * 1024
    with pytest.raises(IngestionError, match="zip bomb"):
        load("bomb.docx", buf.getvalue())
    with pytest.raises(IngestionError, match="not a valid"):
        load("fake.docx", b"plain text pretending")


def test_xml_entity_expansion_is_refused() -> None:
    laughs = b"""<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
    <lolz>&lol2;</lolz>"""
    with pytest.raises(IngestionError, match="DTD or entities"):
        load("bomb.xml", laughs)
    (section,) = load("ok.xml", b"<doc><title>Backups</title><p>Use pg_dump.</p></doc>")
    assert section.text == "Backups\nUse pg_dump."


def test_text_formats() -> None:
    html = b"<html><head><title>T</title><script>var x=1</script></head><body><h1>Hello</h1><p>World</p></body></html>"
    (page,) = load("page.html", html)
    assert page.text == "Hello\nWorld" and page.metadata == {"title": "T", "headings": [[0, 1, "Hello"]]}
    assert load("a.csv", b"name,port\npg,5432\n")[0].text == "name: pg, port: 5432"
    assert '"port": 5432' in load("a.json", b'{"port": 5432}')[0].text
    assert "port: 5432" in load("a.yaml", b"port: 5432\n")[0].text
    assert load("a.md", "# Título\nü".encode())[0].text == "# Título\nü"
    assert load("a.log", b"\xff\xfeh\x00i\x00")[0].text == "hi"


XHTML_PAGE = b"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>9.4.&#160;String
 Functions</title></head><body>
<div class="navheader"><table><tr><th colspan="3">9.4. String Functions</th></tr>
<tr><td><a href="prev.html">Prev</a></td><td><a href="up.html">Up</a></td><td><a href="next.html">Next</a></td></tr>
</table></div>
<div id="breadcrumbs"><a href="/">Home</a> / Functions</div>
<div role="navigation"><a href="/">Docs home</a></div>
<h1>9.4. String Functions</h1>
<p>The function <code class="function">upper</code> converts a
   string to upper case; see
   <a href="x.html">Table 9.9</a>.</p>
<table class="table"><tr><th>Function</th><th>Returns</th></tr>
<tr><td><code>upper(text)</code></td><td>text</td></tr></table>
<pre>SELECT upper('tom');
  TOM</pre>
<ul><li>one<br/>two</li><li>three</li></ul>
<div class="navfooter"><a href="prev.html">Prev</a> <a href="index.html">Home</a></div>
</body></html>"""


def test_html_text_keeps_paragraphs_whole_and_drops_navigation_chrome(recwarn: pytest.WarningsRecorder) -> None:
    (page,) = load("functions-string.html", XHTML_PAGE)
    assert page.metadata == {"title": "9.4. String Functions", "headings": [[0, 1, "9.4. String Functions"]]}
    assert page.text.splitlines() == [
        "9.4. String Functions",
        "The function upper converts a string to upper case; see Table 9.9.",
        "Function | Returns",
        "upper(text) | text",
        "SELECT upper('tom');",
        "TOM",
        "one",
        "two",
        "three",
    ]
    assert not [w for w in recwarn if "XML" in str(w.message)]  # XHTML parses as HTML without a warning


def test_a_markdown_files_first_heading_is_its_title() -> None:
    (doc,) = load("guide.md", b"Some preamble.\n\n# Install guide #\n\n## Steps\n")
    assert doc.metadata == {"title": "Install guide"}
    assert load("notes.txt", b"# not a title in plain text\n")[0].metadata == {}
    assert load("empty-title.md", b"no heading here\n")[0].metadata == {}


def test_bad_input_gets_clear_errors() -> None:
    with pytest.raises(IngestionError, match=r"unsupported file type '\.exe'"):
        load("tool.exe", b"MZ")
    with pytest.raises(IngestionError, match="over the limit"):
        load("big.txt", b"a" * 101, max_bytes=100)
    with pytest.raises(IngestionError, match="no text"):
        load("empty.txt", b"  \n ")
    with pytest.raises(IngestionError, match="invalid JSON"):
        load("bad.json", b"{nope")
    with pytest.raises(IngestionError, match="binary"):
        load("bin.txt", b"\x00\x01\x02" + bytes(range(256)) * 4)
