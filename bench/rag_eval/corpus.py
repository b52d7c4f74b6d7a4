"""The evaluation corpora: real HTML manuals that Debian packages, fetched into a cache outside the repository.

Each corpus is one Debian package: ``apt-get download`` fetches it (no installation, no root needed beyond what
apt itself asks for) and ``dpkg-deb -x`` unpacks it. A marker file records a finished extraction, so later calls
do nothing. Which of the package's HTML files count as the corpus's pages is the registry's business
(:class:`Corpus`): a file-name pattern, names to leave out, and a floor on a page's text so that redirect stubs
and one-line alias pages do not enter it. The page names a corpus had when its questions were written are kept
next to them (``<name>-pages.txt``), so the question sets can be checked without the network.

    python -m bench.rag_eval.corpus --corpus git            # fetch (once) and print the page names
    python -m bench.rag_eval.corpus --corpus git --write    # rewrite bench/rag_eval/git-pages.txt
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
MARKER = ".extracted"
CACHE_ROOT = Path.home() / ".cache" / "lisa-bench"

_DROPPED = re.compile(r"(?is)<(script|style|head)\b.*?</\1\s*>")
_TAG = re.compile(r"(?s)<[^>]*>")


# The question sets whose pages a sample (--pages) always keeps. The second dev set was written later, on pages the
# 600-page PostgreSQL sample of these two already held, so the sample, and every figure measured on it, stays the same.
SAMPLE_SETS = ("dev", "test")


@dataclass(frozen=True)
class Corpus:
    """One manual: the Debian package it comes in, where its pages lie in the package, and which files are pages."""

    name: str  # short name: the question files are <name>.jsonl, <name>-dev.jsonl and <name>-dev2.jsonl
    package: str
    html_subdir: Path  # inside the unpacked package
    title: str
    repository: str  # the LISA repository id the bench ingests it into
    pattern: str = "*.html"
    exclude: frozenset[str] = field(default_factory=frozenset)  # page file names that are not part of the corpus
    min_text_chars: int = 0  # pages whose visible text is shorter are left out (stubs, redirects)
    skip_links: bool = False  # leave out symbolic links (another name for a page already in the corpus)

    @property
    def default_cache(self) -> Path:
        return CACHE_ROOT / self.package

    @property
    def question_sets(self) -> dict[str, Path]:
        return {
            "dev": HERE / f"{self.name}-dev.jsonl",
            "dev2": HERE / f"{self.name}-dev2.jsonl",
            "test": HERE / f"{self.name}.jsonl",
        }

    @property
    def page_list(self) -> Path:
        return HERE / f"{self.name}-pages.txt"

    def pages(self, html_dir: Path) -> list[Path]:
        """The corpus's pages in ``html_dir``, sorted by file name."""
        found = []
        for path in Path(html_dir).glob(self.pattern):
            if not path.is_file() or path.name in self.exclude:
                continue
            if self.skip_links and path.is_symlink():
                continue
            if self.min_text_chars and len(visible_text(path.read_text(errors="replace"))) < self.min_text_chars:
                continue
            found.append(path)
        return sorted(found, key=lambda p: p.name)

    def recorded_pages(self) -> list[str]:
        """The page names committed with the questions (blank lines and ``#`` comments skipped)."""
        lines = (line.strip() for line in self.page_list.read_text(encoding="utf-8").splitlines())
        return [line for line in lines if line and not line.startswith("#")]


POSTGRESQL = Corpus(
    name="postgresql15",
    package="postgresql-doc-15",
    html_subdir=Path("usr/share/doc/postgresql-doc-15/html"),
    title="PostgreSQL 15 manual",
    repository="pgdocs",
)
GIT = Corpus(
    name="git",
    package="git-doc",
    # The manual pages of the commands (git-*.html), the concept guides (gitattributes, gitrevisions, the tutorials,
    # the user manual ...) and the file-format and protocol pages; howto/ and technical/ are other folders.
    html_subdir=Path("usr/share/doc/git-doc"),
    title="Git manual",
    repository="gitdocs",
    exclude=frozenset(
        {
            # Git's own contributor documents, not user documentation.
            "MyFirstContribution.html",
            "MyFirstObjectWalk.html",
            "ReviewingGuidelines.html",
            "SubmittingPatches.html",
            "ToolsForGit.html",
            # A list of links to the howto/ folder.
            "howto-index.html",
        }
    ),
    # Under 500 characters of text: everyday, git-tools and git-remote-helpers only point elsewhere; git-stage,
    # git-fsck-objects, git-init-db are "a synonym for ..." stubs; git-merge-one-file, git-unpack-file and
    # git-version are one paragraph.
    min_text_chars=500,
    skip_links=True,  # index.html is a link to git.html
)
CORPORA: dict[str, Corpus] = {c.name: c for c in (POSTGRESQL, GIT)}

# The PostgreSQL corpus's names as they were before the registry (bench/rag_data.py and older callers use them).
PACKAGE = POSTGRESQL.package
HTML_SUBDIR = POSTGRESQL.html_subdir
DEFAULT_CACHE = POSTGRESQL.default_cache


def get_corpus(name: str | Corpus) -> Corpus:
    if isinstance(name, Corpus):
        return name
    try:
        return CORPORA[name]
    except KeyError:
        raise ValueError(f"unknown corpus {name!r}; known: {', '.join(sorted(CORPORA))}") from None


def visible_text(page: str) -> str:
    """The text a reader sees in an HTML page, whitespace collapsed (good enough to tell a stub from a page)."""
    return " ".join(html.unescape(_TAG.sub(" ", _DROPPED.sub(" ", page))).split())


def corpus_dir(cache: Path | None = None, corpus: str | Corpus = POSTGRESQL) -> Path:
    """Return the directory of the manual's HTML pages, downloading and extracting the package on first use."""
    spec = get_corpus(corpus)
    root = (cache if cache is not None else spec.default_cache).expanduser()
    html_dir = root / spec.html_subdir
    marker = root / MARKER
    if marker.is_file() and html_dir.is_dir():
        return html_dir

    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lisa-corpus-") as tmp:
        work = Path(tmp)
        _run(["apt-get", "download", spec.package], cwd=work)
        debs = sorted(work.glob(f"{spec.package}_*.deb"))
        if not debs:
            raise RuntimeError(f"apt-get download {spec.package} produced no .deb file in {work}")
        staging = work / "extract"
        _run(["dpkg-deb", "-x", str(debs[-1]), str(staging)], cwd=work)
        extracted = staging / spec.html_subdir
        if not extracted.is_dir():
            raise RuntimeError(f"{debs[-1].name} has no {spec.html_subdir}")
        # Replace any half-finished earlier extraction, then record success last.
        target_top = root / "usr"
        if target_top.exists():
            shutil.rmtree(target_top)
        shutil.move(str(staging / "usr"), str(target_top))
    marker.write_text(f"{debs[-1].name}\n")
    return html_dir


def select_pages(
    html_dir: Path, limit: int | None = None, *, include: Collection[str] = (), corpus: str | Corpus = POSTGRESQL
) -> list[Path]:
    """A deterministic, name-sorted subset of the corpus's pages; all of them when ``limit`` is None.

    The subset is spread evenly over the sorted list (not its first ``limit`` names, which would all be
    ``app-*`` and appendix pages). Pages named in ``include`` (file names, e.g. the evaluation questions'
    sources) are always kept, and the rest of the ``limit`` is filled from the even spread.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    pages = get_corpus(corpus).pages(html_dir)
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fetch an evaluation corpus and list its pages.")
    parser.add_argument("--corpus", choices=sorted(CORPORA), default=POSTGRESQL.name)
    parser.add_argument("--write", action="store_true", help="Rewrite the corpus's committed page list.")
    args = parser.parse_args(argv)
    spec = CORPORA[args.corpus]
    html_dir = corpus_dir(corpus=spec)
    names = [p.name for p in spec.pages(html_dir)]
    package = (html_dir.parents[len(spec.html_subdir.parts) - 1] / MARKER).read_text().strip()
    if args.write:
        header = (
            f"# {spec.title}: the pages of {package} that form the corpus (python -m bench.rag_eval.corpus --write)"
        )
        spec.page_list.write_text("\n".join([header, *names]) + "\n", encoding="utf-8")
        print(f"{len(names)} pages written to {spec.page_list}")
    else:
        print("\n".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
