"""Hostile files made here: the markdown line that froze a server, a PDF and a .docx decompression bomb."""

from __future__ import annotations

import io
import os
import zipfile
import zlib

MIB = 1024 * 1024
HOSTILE_MD = b"# a" + b" " * 3200 + b"b"  # froze a server for 36 s with the old backtracking header pattern


def pdf_bomb(inflated: int = 100_000_000) -> bytes:
    """A one-page PDF whose content stream is FlateDecode'd text that inflates to ``inflated`` bytes."""
    stream = zlib.compress(b"BT /F1 12 Tf 72 720 Td (bomb) Tj ET\n" + b" " * inflated, 9)
    font = "<< /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >>"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources {font} >>".encode(),
        f"<< /Length {len(stream)} /Filter /FlateDecode >>\nstream\n".encode() + stream + b"\nendstream",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{i} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for off in offsets:
        out.write(f"{off:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def docx_bomb(xml_bytes: int = 80 * MIB, padding: int = MIB) -> bytes:
    """A .docx whose word/document.xml inflates past the per-part cap, padded with an incompressible part so the
    archive as a whole stays under the overall ratio and size limits (what the old check looked at)."""
    paragraph = b"<w:p><w:r><w:t>bomb</w:t></w:r></w:p>"
    head = b'<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>'
    xml = head + paragraph * ((xml_bytes - len(head)) // len(paragraph)) + b"</w:body></w:document>"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", b'<?xml version="1.0"?><Types/>')
        archive.writestr("word/document.xml", xml)
        archive.writestr("word/media/padding.bin", os.urandom(padding), compress_type=zipfile.ZIP_STORED)
    return buf.getvalue()
