"""Scoring for ``lisa rag eval``: load a question set, rank the expected page among search hits, summarise.

A question set is a JSON Lines file, one ``{"question": ..., "source": ...}`` object a line, where ``source``
names the page that answers the question. Scoring is page-level: a retriever returns chunks, several of which
may come from the same page, so the ranked hits are first reduced to their distinct pages (first occurrence
wins) and the expected page's 1-based position in that list is its rank.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_KS: tuple[int, ...] = (1, 3, 5, 10)


@dataclass(frozen=True, slots=True)
class Question:
    """One evaluation question and the page (file name) that answers it."""

    question: str
    source: str
    line: int = 0


def load_questions(path: Path | str) -> list[Question]:
    """Read a JSON Lines question set; blank lines are skipped, any other bad line raises ValueError with its number."""
    questions: list[Question] = []
    with Path(path).open(encoding="utf-8") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise ValueError(f"{path}: line {number}: expected a JSON object, got {type(record).__name__}")
            for field in ("question", "source"):
                value = record.get(field)
                if not isinstance(value, str) or not value.strip():
                    raise ValueError(f"{path}: line {number}: {field!r} must be a non-empty string")
            questions.append(
                Question(question=record["question"].strip(), source=record["source"].strip(), line=number)
            )
    return questions


def page_of(source_or_name: str) -> str:
    """The file-name part of a page reference: a URL, an ``s3://`` key, a path or a bare name, minus any query or fragment.

    ``"s3://b/x/sql-createindex.html"`` and ``"/tmp/a/sql-createindex.html#frag"`` both give
    ``"sql-createindex.html"``.
    """
    text = source_or_name.strip().split("#", 1)[0].split("?", 1)[0]
    text = text.replace("\\", "/").rstrip("/")
    return text.rsplit("/", 1)[-1]


def rank_of(expected: str, hits_sources: Sequence[str]) -> int | None:
    """1-based rank of the expected page among the hits' distinct pages, or None when it is not among them."""
    want = page_of(expected)
    seen: set[str] = set()
    for source in hits_sources:
        page = page_of(source)
        if page in seen:
            continue
        seen.add(page)
        if page == want:
            return len(seen)
    return None


def summarise(ranks: Iterable[int | None], ks: Sequence[int] = DEFAULT_KS) -> dict[str, float | int]:
    """hit@k (share of questions whose page ranked within k) for each k, and MRR (a miss counts 0).

    Returns ``{"questions": n, "hit@1": ..., ..., "mrr": ...}``; with no questions every rate is 0.0.
    """
    ranks = list(ranks)
    for rank in ranks:
        if rank is not None and rank < 1:
            raise ValueError(f"ranks are 1-based, got {rank}")
    for k in ks:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
    n = len(ranks)
    summary: dict[str, float | int] = {"questions": n}
    for k in ks:
        hits = sum(1 for rank in ranks if rank is not None and rank <= k)
        summary[f"hit@{k}"] = hits / n if n else 0.0
    summary["mrr"] = sum(1.0 / rank for rank in ranks if rank is not None) / n if n else 0.0
    return summary
