"""PDF (pypdf) and Word (python-docx), with the checks hostile files need: encryption, corruption, zip bombs."""

from __future__ import annotations

import io
import zipfile

import docx
from pypdf import PdfReader
from pypdf.errors import PdfReadError

from ingestion.document import IngestionError, Section

MAX_UNZIPPED = 200 * 1024 * 1024
MAX_RATIO = 100


def load_pdf(data: bytes, name: str) -> list[Section]:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise IngestionError(f"{name}: the PDF is encrypted; upload an unprotected copy")
        return [Section(page.extract_text() or "", page=i + 1) for i, page in enumerate(reader.pages)]
    except IngestionError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise IngestionError(f"{name}: corrupt or unreadable PDF ({exc})") from exc


def check_zip(data: bytes, name: str) -> None:
    """Refuse archives that would inflate past MAX_UNZIPPED or by more than MAX_RATIO (zip bombs)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            total = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise IngestionError(f"{name}: not a valid .docx (zip) file") from exc
    if total > MAX_UNZIPPED or total > MAX_RATIO * max(len(data), 1):
        raise IngestionError(f"{name}: refused: it would unpack to {total} bytes (a zip bomb?)")


def load_docx(data: bytes, name: str) -> list[Section]:
    check_zip(data, name)
    try:
        document = docx.Document(io.BytesIO(data))
    except (KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise IngestionError(f"{name}: corrupt or unreadable .docx ({exc})") from exc
    parts = [p.text for p in document.paragraphs if p.text.strip()]
    for table in document.tables:
        for row in table.rows:
            parts.append(" | ".join(cell.text.strip() for cell in row.cells))
    return [Section("\n".join(parts))]
