"""Which local files an ingestion sends, which it refuses up front (and why), and how it splits them into batches."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ingestion.loaders import LOADERS
from ingestion.results import FileIssue, IngestError

PathLike = str | os.PathLike[str]
RESOURCE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")  # as the platform's repository and collection ids
MAX_BATCH_FILES = 1000  # the server's multipart parser takes at most 1000 files, a job lists at most 1000 items


@dataclass
class FilePlan:
    files: list[Path] = field(default_factory=list)  # to send, in a stable order
    skipped: list[FileIssue] = field(default_factory=list)  # refused up front, with the reason
    roots: list[Path] = field(default_factory=list)  # the folders the given paths name (a file: its folder)

    @property
    def total(self) -> int:
        return len(self.files) + len(self.skipped)


def check_target(repository: str, collection: str) -> None:
    for kind, value in (("repository", repository), ("collection", collection)):
        if not RESOURCE_ID.match(value):
            raise IngestError(f"{kind} id {value!r} is not valid: lower-case letters, digits, '-' and '_'")


def _hidden(path: Path, under: Path) -> bool:
    """Dot files and anything inside dot folders (.git, .ipynb_checkpoints) are not documents."""
    return any(part.startswith(".") for part in path.relative_to(under).parts)


def plan_files(paths: PathLike | Sequence[PathLike], *, max_bytes: int, unique_names: bool) -> FilePlan:
    """Files and folders (searched recursively) -> the files to send and the ones refused up front.

    Refused: unsupported types, unreadable files or names, files over ``max_bytes``, and with ``unique_names`` (uploads, which the server names
    by file name alone) a second file of a name already planned. A path that does not exist raises ``IngestError``.
    """
    given = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not given:
        raise IngestError("no paths given: pass a folder, a file, or a list of them")
    plan = FilePlan()
    found: list[Path] = []
    for raw in given:
        path = Path(raw).expanduser()
        if not path.exists():
            raise IngestError(f"{raw}: no such file or folder")
        path = path.resolve()
        if path.is_dir():
            plan.roots.append(path)
            found += sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p, path))
        else:
            plan.roots.append(path.parent)
            found.append(path)
    supported = ", ".join(sorted(LOADERS))
    names: dict[str, Path] = {}
    for path in dict.fromkeys(found):  # the same file named twice is sent once
        suffix = path.suffix.lower()
        size = path.stat().st_size
        if suffix not in LOADERS:
            reason = f"unsupported file type '{suffix or '(none)'}' (supported: {supported})"
        elif len(path.name) > 255 or any(ord(c) < 32 for c in path.name):
            reason = "the file name is too long or holds control characters"
        elif not os.access(path, os.R_OK):
            reason = "cannot be read (permission denied)"
        elif size > max_bytes:
            reason = f"{size} bytes is over the limit of {max_bytes} bytes"
        elif unique_names and path.name in names:
            reason = (
                f"another file of this name is in this ingestion ({names[path.name]}); uploads are named by file name"
            )
        else:
            names[path.name] = path
            plan.files.append(path)
            continue
        plan.skipped.append(FileIssue(path.name, reason, str(path)))
    plan.roots = list(dict.fromkeys(plan.roots))
    return plan


def batches(files: Sequence[Path], max_files: int, max_bytes: int) -> Iterator[list[Path]]:
    """Consecutive runs of at most ``max_files`` files and ``max_bytes`` bytes (a larger file goes alone)."""
    if not 1 <= max_files <= MAX_BATCH_FILES:
        raise IngestError(f"batch_files must be between 1 and {MAX_BATCH_FILES}, got {max_files}")
    batch: list[Path] = []
    size = 0
    for path in files:
        length = path.stat().st_size
        if batch and (len(batch) >= max_files or size + length > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(path)
        size += length
    if batch:
        yield batch
