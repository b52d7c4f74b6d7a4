"""Page-level ranking through the running server: a page near the question as a whole (its page vector) and a page
with several strong chunks rise, a long page pays its length penalty, a page's chunks are capped so the top k shows more pages, and ``pages=false`` gives
the chunk ranking alone (docs/rag-quality.md)."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from backend.config import Settings
from tests.backend.rag.helpers import fresh_repository, ingest, search

REPO = "rag-ranking"
CHUNKING = '{"strategy": "fixed", "size": 220, "overlap": 0}'
# The server's defaults (backend/config.py, backend/rag/ranking.py).
DECAY, PER_PAGE, SUPPORT, PAGE_VECTOR = 0.1, 3, 1, 0.3
PAGE_LENGTH = Settings.model_fields["rag_page_length"].default
QUERY = "How do I rotate the TLS certificate of the load balancer?"
# One page whose many chunks are all about the question, one with a single close chunk, and unrelated pages.
MANUAL = " ".join(
    f"Step {n}: to rotate the load balancer TLS certificate, {step}, then check the listener serves it."
    + " " * (220 - 100)
    for n, step in enumerate(
        [
            "upload the new certificate to the load balancer",
            "attach the renewed TLS certificate to the HTTPS listener",
            "replace the expiring certificate on the balancer",
            "rotate the certificate before the old one expires",
            "swap the TLS certificate used by the load balancer",
            "renew and install the balancer's certificate",
        ],
        start=1,
    )
).encode()
NOTE = b"Rotating the TLS certificate of the load balancer: how we rotate it."
OTHERS = {
    f"other-{i}.txt": text.encode()
    for i, text in enumerate(
        [
            "Load balancer health checks probe each backend every ten seconds.",
            "Certificates for internal services are issued by the company CA.",
            "The TLS handshake negotiates a cipher suite and a session key.",
            "Rotate database passwords every ninety days.",
        ]
    )
}


@pytest.fixture(scope="module")
def repo(admin: httpx.Client) -> str:
    fresh_repository(admin, REPO)
    job = ingest(admin, REPO, {"manual.txt": MANUAL, "note.txt": NOTE, **OTHERS}, chunking=CHUNKING)
    assert job["status"] == "completed", job
    return REPO


def chunks(admin: httpx.Client, repo: str, **params: Any) -> list[dict[str, Any]]:
    return search(admin, repo, QUERY, **{"hybrid_weight": 0, "top_k": 20, **params})


def embed(admin: httpx.Client, texts: list[str]) -> list[list[float]]:
    resp = admin.post("/v1/embeddings", json={"model": "minilm-l6-v2", "input": texts})
    assert resp.status_code == 200, resp.text
    return [item["embedding"] for item in sorted(resp.json()["data"], key=lambda d: d["index"])]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def page_gains(admin: httpx.Client, every_chunk: list[dict[str, Any]]) -> dict[str, float]:
    """What the page priors should add to each page's chunks, computed here from the same model: the query's cosine
    to the mean of the page's chunk embeddings, min-max normalised over the pages, times the page-vector weight, less
    the page's log chunk count, min-max normalised, times the length weight."""
    [query] = embed(admin, [QUERY])
    vectors = embed(admin, [h["text"] for h in every_chunk])
    pages: dict[str, list[list[float]]] = {}
    for hit, vector in zip(every_chunk, vectors, strict=True):
        pages.setdefault(hit["name"], []).append(vector)
    sims = {name: cosine(query, [sum(col) / len(vs) for col in zip(*vs, strict=True)]) for name, vs in pages.items()}
    lo, hi = min(sims.values()), max(sims.values())
    logs = {name: math.log(len(vs)) for name, vs in pages.items()}
    short, long = min(logs.values()), max(logs.values())
    return {
        name: PAGE_VECTOR * (sim - lo) / (hi - lo) - PAGE_LENGTH * (logs[name] - short) / (long - short)
        for name, sim in sims.items()
    }


def test_a_page_ranks_by_its_best_chunk_plus_a_decayed_share_of_its_next_ones(admin: httpx.Client, repo: str) -> None:
    alone = chunks(admin, repo, pages="false")
    # every chunk came back (fewer than asked for): all are candidates, and page_gains sees each page whole
    assert len(alone) < 20 and {h["name"] for h in alone} == {"manual.txt", "note.txt", *OTHERS}
    gains = page_gains(admin, alone)
    manual = [h for h in alone if h["name"] == "manual.txt"]
    assert len(manual) >= 4  # the page really has several matching chunks, scored alone by cosine similarity
    by_page = chunks(admin, repo)
    head = next(h for h in by_page if h["name"] == "manual.txt")
    scores = sorted((h["score"] + gains["manual.txt"] for h in manual), reverse=True)
    assert head["score"] == pytest.approx(scores[0] + DECAY * sum(scores[1 : 1 + SUPPORT]), abs=1e-3)
    note = [h for h in by_page if h["name"] == "note.txt"]
    alone_note = next(h["score"] for h in alone if h["name"] == "note.txt")
    assert note[0]["score"] == pytest.approx(alone_note + gains["note.txt"], abs=1e-3)
    # Ranked alone, the single close chunk comes first; ranked by page, the page with several strong chunks would,
    # but for its length (the length penalty is measured on its own below).
    assert alone[0]["name"] == "note.txt", [(h["name"], h["score"]) for h in alone]
    assert head["score"] + PAGE_LENGTH * (1 + DECAY) > note[0]["score"], [(h["name"], h["score"]) for h in by_page]


def test_the_page_nearest_the_question_as_a_whole_gains_most(admin: httpx.Client, repo: str) -> None:
    alone = {h["name"]: h["score"] for h in chunks(admin, repo, pages="false") if h["name"] != "manual.txt"}
    gains = page_gains(admin, chunks(admin, repo, pages="false"))
    by_page = {h["name"]: h["score"] for h in chunks(admin, repo) if h["name"] != "manual.txt"}
    # single-chunk pages: each gains exactly its prior; the best page gains the whole weight, the worst nothing
    for name, score in by_page.items():
        assert score == pytest.approx(alone[name] + gains[name], abs=1e-3), name
    assert max(gains.values()) == pytest.approx(PAGE_VECTOR) and min(gains.values()) == 0.0  # one chunk: no penalty
    assert max(by_page[n] - alone[n] for n in by_page) > 0.05  # a prior that changed nothing would fail here
    timings = admin.get(f"/api/repositories/{repo}/search", params={"query": QUERY}).json()["timings_ms"]
    assert timings["pages"] > 0 and set(timings) == {"embed", "search", "rerank", "pages", "total"}


def test_the_longest_page_loses_the_whole_length_weight(admin: httpx.Client, repo: str) -> None:
    alone = chunks(admin, repo, pages="false")
    gains = page_gains(admin, alone)  # the manual's gain already has the penalty taken off
    manual = sorted((h["score"] for h in alone if h["name"] == "manual.txt"), reverse=True)
    head = next(h for h in chunks(admin, repo) if h["name"] == "manual.txt")
    assert PAGE_LENGTH > 0
    # the manual is the longest page (6 chunks, every other page 1): each of its chunks loses the whole weight
    unpenalised = gains["manual.txt"] + PAGE_LENGTH
    without = manual[0] + unpenalised + DECAY * (manual[1] + unpenalised)
    assert head["score"] == pytest.approx(without - PAGE_LENGTH * (1 + DECAY), abs=1e-3)


def test_results_hold_at_most_three_chunks_of_a_page(admin: httpx.Client, repo: str) -> None:
    alone = chunks(admin, repo, pages="false", top_k=6)
    assert sum(h["name"] == "manual.txt" for h in alone) > PER_PAGE  # without the cap the page fills the top 6
    capped = chunks(admin, repo, top_k=6)
    assert sum(h["name"] == "manual.txt" for h in capped) == PER_PAGE
    assert len(capped) == 6 and len({h["name"] for h in capped}) >= 4  # the room went to other pages
    # a page's chunks after its best keep their own scores and order
    kept = [h for h in capped if h["name"] == "manual.txt"]
    assert kept[1]["score"] >= kept[2]["score"]


def test_pages_must_be_a_boolean(admin: httpx.Client, repo: str) -> None:
    resp = admin.get(f"/api/repositories/{repo}/search", params={"query": QUERY, "pages": "sometimes"})
    assert resp.status_code in (400, 422) and "pages" in resp.text
