"""PDF (pypdf) and Word (python-docx), with the checks hostile files need: encryption, corruption, zip bombs."""

from __future__ import annotations

import io
import zipfile

import docx
from pypdf import PdfReader
from pypdf.errors import LimitReachedError, PdfReadError

from ingestion.document import IngestionError, Section

# A .docx is a zip of XML parts that python-docx inflates and parses whole, so its sizes are checked first, from the
# archive's directory (Python's zipfile never inflates a member past the size the directory declares).
MAX_MEMBER = 64 * 1024 * 1024  # one part (word/document.xml is usually the largest), inflated
MAX_UNZIPPED = 200 * 1024 * 1024  # all parts together, inflated
MAX_RATIO = 100  # inflated/compressed, for the archive and for each part over RATIO_FLOOR
RATIO_FLOOR = 1024 * 1024  # small parts may compress better than that harmlessly
MAX_MEMBERS = 10_000


def load_pdf(data: bytes, name: str) -> list[Section]:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise IngestionError(f"{name}: the PDF is encrypted; upload an unprotected copy")
        return [Section(page.extract_text() or "", page=i + 1) for i, page in enumerate(reader.pages)]
    except IngestionError:
        raise
    except LimitReachedError as exc:  # a stream that would decompress past pypdf's limits: a decompression bomb
        raise IngestionError(f"{name}: refused: the PDF exceeds a decompression limit ({exc})") from exc
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise IngestionError(f"{name}: corrupt or unreadable PDF ({exc})") from exc


def check_zip(data: bytes, name: str) -> None:
    """Refuse archives (zip bombs) with too many parts, a part inflating past MAX_MEMBER or by more than MAX_RATIO,
    or parts inflating past MAX_UNZIPPED or MAX_RATIO together."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError) as exc:
        raise IngestionError(f"{name}: not a valid .docx (zip) file") from exc
    if len(members) > MAX_MEMBERS:
        raise IngestionError(f"{name}: refused: {len(members)} parts in the archive (limit {MAX_MEMBERS})")
    for info in members:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > MAX_MEMBER:
            raise IngestionError(
                f"{name}: refused: {info.filename} would unpack to {info.file_size} bytes "
                f"(limit {MAX_MEMBER} bytes per part; a zip bomb?)"
            )
        if info.file_size > RATIO_FLOOR and ratio > MAX_RATIO:
            raise IngestionError(
                f"{name}: refused: {info.filename} would unpack {ratio:.0f} times its compressed size "
                f"(limit {MAX_RATIO}; a zip bomb?)"
            )
    total = sum(info.file_size for info in members)
    if total > MAX_UNZIPPED or total > MAX_RATIO * max(len(data), 1):
        raise IngestionError(
            f"{name}: refused: it would unpack to {total} bytes (limit {MAX_UNZIPPED} bytes and {MAX_RATIO} times "
            "its size; a zip bomb?)"
        )


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
