"""Page-level ranking through the running server: several strong chunks raise their page, a page's chunks are
capped so the top k shows more pages, and ``pages=false`` gives the chunk ranking alone (docs/rag-quality.md)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.backend.rag.helpers import fresh_repository, ingest, search

REPO = "rag-ranking"
CHUNKING = '{"strategy": "fixed", "size": 220, "overlap": 0}'
DECAY, PER_PAGE, SUPPORT = 0.1, 3, 1  # the server's defaults (backend/config.py, backend/rag/ranking.py)
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


def test_a_page_ranks_by_its_best_chunk_plus_a_decayed_share_of_its_next_ones(admin: httpx.Client, repo: str) -> None:
    alone = chunks(admin, repo, pages="false")
    manual = [h for h in alone if h["name"] == "manual.txt"]
    assert len(manual) >= 4  # the page really has several matching chunks, scored alone by cosine similarity
    by_page = chunks(admin, repo)
    head = next(h for h in by_page if h["name"] == "manual.txt")
    scores = sorted((h["score"] for h in manual), reverse=True)
    assert head["score"] == pytest.approx(scores[0] + DECAY * sum(scores[1 : 1 + SUPPORT]), abs=1e-6)
    note = [h for h in by_page if h["name"] == "note.txt"]
    assert note[0]["score"] == pytest.approx(next(h["score"] for h in alone if h["name"] == "note.txt"), abs=1e-6)
    # Ranked alone, the single close chunk comes first; ranked by page, the page with several strong chunks does.
    assert alone[0]["name"] == "note.txt", [(h["name"], h["score"]) for h in alone]
    assert by_page[0]["name"] == "manual.txt", [(h["name"], h["score"]) for h in by_page]


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
