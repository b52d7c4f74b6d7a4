"""The evaluation corpus: Debian's ``postgresql-doc-15`` HTML manual, fetched into a cache outside the repository.

The package is fetched with ``apt-get download`` (no installation, no root needed beyond what apt itself asks for)
and unpacked with ``dpkg-deb -x``. A marker file records a finished extraction, so later calls do nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Collection
from pathlib import Path

PACKAGE = "postgresql-doc-15"
HTML_SUBDIR = Path("usr/share/doc") / PACKAGE / "html"
MARKER = ".extracted"
DEFAULT_CACHE = Path.home() / ".cache" / "lisa-bench" / PACKAGE


def corpus_dir(cache: Path | None = None) -> Path:
    """Return the directory of the manual's HTML pages, downloading and extracting the package on first use."""
    root = (cache if cache is not None else DEFAULT_CACHE).expanduser()
    html_dir = root / HTML_SUBDIR
    marker = root / MARKER
    if marker.is_file() and html_dir.is_dir():
        return html_dir

    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lisa-pgdoc-") as tmp:
        work = Path(tmp)
        _run(["apt-get", "download", PACKAGE], cwd=work)
        debs = sorted(work.glob(f"{PACKAGE}_*.deb"))
        if not debs:
            raise RuntimeError(f"apt-get download {PACKAGE} produced no .deb file in {work}")
        staging = work / "extract"
        _run(["dpkg-deb", "-x", str(debs[-1]), str(staging)], cwd=work)
        extracted = staging / HTML_SUBDIR
        if not extracted.is_dir():
            raise RuntimeError(f"{debs[-1].name} has no {HTML_SUBDIR}")
        # Replace any half-finished earlier extraction, then record success last.
        target_top = root / "usr"
        if target_top.exists():
            shutil.rmtree(target_top)
        shutil.move(str(staging / "usr"), str(target_top))
    marker.write_text(f"{debs[-1].name}\n")
    return html_dir


def select_pages(html_dir: Path, limit: int | None = None, *, include: Collection[str] = ()) -> list[Path]:
    """A deterministic, name-sorted subset of the manual's ``.html`` pages; all of them when ``limit`` is None.

    The subset is spread evenly over the sorted list (not its first ``limit`` names, which would all be
    ``app-*`` and appendix pages). Pages named in ``include`` (file names, e.g. the evaluation questions'
    sources) are always kept, and the rest of the ``limit`` is filled from the even spread.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    pages = sorted((p for p in Path(html_dir).glob("*.html") if p.is_file()), key=lambda p: p.name)
    if limit is None or limit >= len(pages):
        return pages
    wanted = set(include)
    chosen = [p for p in pages if p.name in wanted]
    rest = [p for p in pages if p.name not in wanted]
    room = max(limit - len(chosen), 0)
    if room and rest:
        step = len(rest) / room
        chosen.extend(rest[int(i * step)] for i in range(min(room, len(rest))))
    return sorted(chosen, key=lambda p: p.name)


def _run(args: list[str], cwd: Path) -> None:
    try:
        subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise RuntimeError(f"{args[0]} is not available: the corpus needs a Debian-based system") from exc
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"{' '.join(args)} failed ({exc.returncode}): {exc.stderr.strip()}") from exc
