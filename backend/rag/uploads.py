"""Receiving a multipart upload as it streams in: each file straight to a temporary file, the caps checked on the way.

python-multipart's streaming parser is fed the request body block by block. Nothing is buffered beyond one block
per file (at most ``FLUSH_BYTES`` waiting for a thread to write it), so memory stays flat whatever the upload's
size. Refused as soon as it is known, before the rest is stored: an unusable file name or type and a repeated name
(400, from the part's headers), more files than allowed (400), a file over the per-file cap, an upload over the
total cap, or more than the uploader's storage quota allows (413, naming the file and the limit). On refusal every
temporary file is removed; nothing else has been written.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from backend.errors import BadRequest, LisaError, PayloadTooLarge
from backend.rag.blobs import StagedFile
from backend.rag.sources import check_name, check_supported

FILES_FIELD = "files"
FLUSH_BYTES = 1024 * 1024  # a file's data waiting to be written, at most (plus one block of the body)
MAX_FIELD_BYTES = 64 * 1024  # a text field (tags, chunking)
MAX_FIELDS = 20


@dataclass(frozen=True)
class UploadLimits:
    max_file_bytes: int
    max_total_bytes: int
    max_files: int


@dataclass
class Allowance:
    """What an uploader's storage quota leaves room for. Re-uploading a file replaces their own earlier copy, so
    that copy's size (``credit``, by file name) does not count twice."""

    quota: int
    used: int
    credit: dict[str, int] = field(default_factory=dict)

    def check(self, sizes: dict[str, int]) -> None:
        charged = sum(max(size - self.credit.get(name, 0), 0) for name, size in sizes.items())
        if self.used + charged > self.quota:
            raise PayloadTooLarge(
                f"over your storage quota of {self.quota} bytes for originals: {self.used} bytes are used "
                f"and this upload would add {charged} more; delete documents you no longer need"
            )


@dataclass
class _Part:
    name: str = ""
    disposition: bytes = b""
    filename: str | None = None
    data: bytearray = field(default_factory=bytearray)  # a text field's value, or file data not yet written
    size: int = 0
    digest: Any = None
    file: BinaryIO | None = None
    path: Path | None = None
    ended: bool = False
    closed: bool = False


@dataclass
class ReceivedUpload:
    files: list[StagedFile]
    fields: dict[str, str]

    def discard(self) -> None:
        """Removes the temporary files (after their content is stored, or when the upload is refused)."""
        for staged in self.files:
            staged.path.unlink(missing_ok=True)


class _Receiver:
    def __init__(
        self, limits: UploadLimits, allowance: Allowance | None, supported: Callable[[str], None] = check_supported
    ) -> None:
        self.limits = limits
        self.allowance = allowance
        self.supported = supported
        self.parts: list[_Part] = []
        self.current = _Part()
        self.header_name = bytearray()
        self.header_value = bytearray()
        self.total = 0
        self.sizes: dict[str, int] = {}

    # --- python-multipart callbacks (synchronous; file writes happen in ``flush``) ------------------------------
    def on_part_begin(self) -> None:
        self.current = _Part()
        self.parts.append(self.current)

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        if bytes(self.header_name).lower() == b"content-disposition":
            self.current.disposition = bytes(self.header_value)
        self.header_name.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        part = self.current
        _, options = parse_options_header(part.disposition)
        if b"name" not in options:
            raise BadRequest("every multipart part needs a Content-Disposition name")
        part.name = _decode(options[b"name"])
        if b"filename" not in options:
            if part.name == FILES_FIELD:
                raise BadRequest(f"'{FILES_FIELD}' parts must be files (with a file name)")
            if sum(p.filename is None for p in self.parts) > MAX_FIELDS:
                raise BadRequest(f"too many form fields: at most {MAX_FIELDS}")
            return
        if part.name != FILES_FIELD:
            raise BadRequest(f"files go in '{FILES_FIELD}' parts, not '{part.name}'")
        name = _decode(options[b"filename"])
        check_name(name)
        self.supported(name)
        if name in self.sizes:
            raise BadRequest(f"{name}: the same file name appears twice in one upload")
        if len(self.sizes) >= self.limits.max_files:
            raise BadRequest(f"too many files: at most {self.limits.max_files} in one upload")
        part.filename = name
        part.digest = hashlib.sha256()
        self.sizes[name] = 0

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.current
        block = data[start:end]
        part.size += len(block)
        part.data += block
        if part.filename is None:
            if part.size > MAX_FIELD_BYTES:
                raise PayloadTooLarge(f"form field '{part.name}': over the limit of {MAX_FIELD_BYTES} bytes")
            return
        self.total += len(block)
        self.sizes[part.filename] = part.size
        part.digest.update(block)
        if part.size > self.limits.max_file_bytes:
            raise PayloadTooLarge(f"{part.filename}: over the limit of {self.limits.max_file_bytes} bytes per file")
        if self.total > self.limits.max_total_bytes:
            raise PayloadTooLarge(f"the upload is over the limit of {self.limits.max_total_bytes} bytes in all")
        if self.allowance is not None:
            self.allowance.check(self.sizes)

    def on_part_end(self) -> None:
        self.current.ended = True

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }

    # --- writing ------------------------------------------------------------------------------------------------
    async def flush(self, final: bool = False) -> None:
        """Writes the file data waiting in memory: all of it once a part ended (or at the end), else in big blocks."""
        for part in self.parts:
            if part.filename is None or part.closed or not (part.ended or final or len(part.data) >= FLUSH_BYTES):
                continue
            file = part.file or await self._open(part, part.filename)
            if part.data:
                data, part.data = bytes(part.data), bytearray()
                await asyncio.to_thread(file.write, data)
            if part.ended or final:
                await asyncio.to_thread(file.close)
                part.closed = True

    async def _open(self, part: _Part, name: str) -> BinaryIO:
        file, part.path = await asyncio.to_thread(_temporary, name)
        part.file = file
        return file

    def result(self) -> ReceivedUpload:
        files = [
            StagedFile(p.filename, p.path, p.size, p.digest.hexdigest())
            for p in self.parts
            if p.filename is not None and p.path is not None
        ]
        fields = {p.name: _decode(bytes(p.data)) for p in self.parts if p.filename is None}
        return ReceivedUpload(files, fields)

    def discard(self) -> None:
        for part in self.parts:
            if part.file is not None:
                with contextlib.suppress(OSError):
                    part.file.close()
            if part.path is not None:
                part.path.unlink(missing_ok=True)


async def receive_upload(
    content_type: str | None,
    body: AsyncIterator[bytes],
    limits: UploadLimits,
    allowance: Allowance | None = None,
    supported: Callable[[str], None] = check_supported,
) -> ReceivedUpload:
    """Streams a multipart/form-data body into temporary files (the caller ``discard``s them when done).

    ``supported`` refuses a file name whose type the receiver does not take (BadRequest); RAG's loaders by default.

    When a cap refuses the upload part-way, the rest of the body is read and dropped (at most
    ``limits.max_total_bytes``) so that a client still sending gets the 413 rather than a reset connection.
    """
    ctype, params = parse_options_header(content_type or "")
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise BadRequest("send the files as multipart/form-data, one 'files' part per file")
    receiver = _Receiver(limits, allowance, supported)
    try:
        parser = MultipartParser(params[b"boundary"], receiver.callbacks())
        async for block in body:
            parser.write(block)
            await receiver.flush()
        parser.finalize()
        if receiver.parts and not receiver.current.ended:
            raise BadRequest("the multipart body ended before its last part")
        await receiver.flush(final=True)
    except FormParserError as exc:
        receiver.discard()
        raise BadRequest(f"invalid multipart body: {exc}") from exc
    except LisaError:
        receiver.discard()
        await _drain(body, limits.max_total_bytes)
        raise
    except BaseException:
        receiver.discard()
        raise
    return receiver.result()


async def _drain(body: AsyncIterator[bytes], limit: int) -> None:
    read = 0
    with contextlib.suppress(Exception):
        async for block in body:
            read += len(block)
            if read > limit:
                return


def _temporary(name: str) -> tuple[BinaryIO, Path]:
    fd, path = tempfile.mkstemp(prefix="lisa-upload-", suffix=Path(name).suffix[:16])
    return os.fdopen(fd, "wb"), Path(path)


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
