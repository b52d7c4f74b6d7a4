"""Page-level ranking over chunk hits, the same for every vector store (docs/rag-quality.md measured each part).

A search ranks chunks, but a question is answered by a page: a page with several strong chunks is more likely the
answer than one with a single lucky chunk, and a top k that is one long page repeated shows the reader one page.
:func:`fuse_pages` does both: each page's best chunk is ranked by the page's score (its best chunk's score plus a
decayed share of its next best chunks', one by default), further chunks of a page keep their own score, and at most
``per_page`` chunks of a page are kept. :func:`with_page_prior` first adds a page-level prior: how near the question
is to the page as a whole (the mean of its chunk embeddings), and :func:`with_length_penalty` takes a little from long
pages, whose many chunks give them more chances of one near miss for any question. :func:`rrf` is reciprocal-rank fusion, kept for the
measurements that compare it with the min-max blend the stores use.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class PageFusion:
    decay: float = 0.2  # share of each further chunk's score a page's best chunk gains
    per_page: int = 3  # chunks of one page kept in the results (0: no cap)
    support: int = 1  # further chunks of a page that count towards its score
    page_vector: float = 0.0  # weight of the page-vector prior (:func:`with_page_prior`; 0: not used)
    page_length: float = 0.0  # weight of the page-length penalty (:func:`with_length_penalty`; 0: not used)

    def __post_init__(self) -> None:
        if not 0.0 <= self.decay <= 1.0:
            raise ValueError("decay must be within [0, 1]")
        if not 0.0 <= self.page_vector <= 10.0:
            raise ValueError("page_vector must be within [0, 10]")
        if not 0.0 <= self.page_length <= 10.0:
            raise ValueError("page_length must be within [0, 10]")
        if self.per_page < 0 or self.support < 0:
            raise ValueError("per_page and support must not be negative")


def fuse_pages(hits: Sequence[tuple[K, str, float]], fusion: PageFusion) -> list[tuple[K, str, float]]:
    """``hits`` are (id, page, score), any order, scores not negative (higher is better). Returns them re-ranked as
    (id, page, ranking score), at most ``fusion.per_page`` a page, best first; ties keep the input order."""
    by_page: dict[str, list[tuple[int, K, float]]] = {}
    for position, (key, page, score) in enumerate(hits):
        by_page.setdefault(page, []).append((position, key, max(score, 0.0)))
    ranked: list[tuple[float, int, K, str]] = []
    for page, chunks in by_page.items():
        chunks.sort(key=lambda c: (-c[2], c[0]))
        best = chunks[0][2]
        support = sum(score for _, _, score in chunks[1 : 1 + fusion.support])
        kept = chunks[: fusion.per_page] if fusion.per_page else chunks
        for index, (position, key, score) in enumerate(kept):
            ranked.append((best + fusion.decay * support if index == 0 else score, position, key, page))
    ranked.sort(key=lambda r: (-r[0], r[1]))
    return [(key, page, score) for score, _, key, page in ranked]


def with_page_prior(
    hits: Sequence[tuple[K, str, float]], page_scores: Mapping[str, float], weight: float
) -> list[tuple[K, str, float]]:
    """Each hit's score plus ``weight`` times its page's score min-max normalised over the pages listed (the best
    page gains ``weight``, the worst nothing; a page without a score gains nothing). The page score the search uses
    is the query's cosine similarity to the page vector, the mean of the page's chunk embeddings: a page about the
    question as a whole beats one with a single chunk that happens to share its words."""
    if not page_scores or weight <= 0.0:
        return list(hits)
    lo, hi = min(page_scores.values()), max(page_scores.values())
    span = hi - lo
    prior = {page: weight * ((score - lo) / span if span > 1e-12 else 1.0) for page, score in page_scores.items()}
    return [(key, page, score + prior.get(page, 0.0)) for key, page, score in hits]


def with_length_penalty(
    hits: Sequence[tuple[K, str, float]], chunks: Mapping[str, int], weight: float
) -> list[tuple[K, str, float]]:
    """Each hit's score less ``weight`` times its page's log chunk count min-max normalised over the pages listed (the
    longest page loses ``weight``, the shortest nothing; a page without a count loses nothing). Document-length
    normalisation, as BM25's ``b`` does for terms: a page of hundreds of chunks has one that is near any question."""
    counts = {page: n for page, n in chunks.items() if n > 0}
    if not counts or weight <= 0.0:
        return list(hits)
    logs = {page: math.log(n) for page, n in counts.items()}
    lo, hi = min(logs.values()), max(logs.values())
    span = hi - lo
    penalty = {page: weight * ((value - lo) / span if span > 1e-12 else 0.0) for page, value in logs.items()}
    return [(key, page, score - penalty.get(page, 0.0)) for key, page, score in hits]


def rrf(rankings: Sequence[Sequence[K]], weights: Sequence[float], k: int = 60) -> dict[K, float]:
    """Weighted reciprocal-rank fusion: each ranking gives an item ``weight / (k + rank)`` (rank from 1)."""
    total: dict[K, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, key in enumerate(ranking, start=1):
            total[key] = total.get(key, 0.0) + weight / (k + rank)
    return total


def diversify(hits: Sequence[tuple[K, str, float]], per_page: int) -> list[tuple[K, str, float]]:
    """At most ``per_page`` hits of each page, order kept (0: all)."""
    if per_page <= 0:
        return list(hits)
    seen: dict[str, int] = {}
    out = []
    for hit in hits:
        seen[hit[1]] = seen.get(hit[1], 0) + 1
        if seen[hit[1]] <= per_page:
            out.append(hit)
    return out
