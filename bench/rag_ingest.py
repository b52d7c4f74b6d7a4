"""RAG ingestion benchmark: end-to-end chunks/s against the embedding model alone, and the backend's memory.

One invocation starts LISA (``lisa serve`` with its local MiniLM embedding server and embedded PostgreSQL) with
``LISA_RAG_INGEST_ROOTS`` naming a work folder, and creates a pgvector repository through the API. Then:

* throughput, ``--runs`` times: ``--docs`` pages of the ``postgresql-doc-15`` HTML manual (an even spread over the
  sorted names) are bulk-ingested into a fresh collection (``POST .../ingest {"sources": [folder]}``); elapsed is
  from sending the request to seeing the job finished (polling every ``--poll`` s), end to end = ``chunks_done`` /
  elapsed. The baseline, in the same run: the chunk texts the job stored (read back from the collection's table)
  POSTed to the embedding server's ``/v1/embeddings``, ``rag_embed_batch`` texts a request with
  ``rag_embed_parallel`` requests in flight (LISA's settings), chunks / elapsed. The ratio is per run;
  the table gives the medians;
* memory: ``--memory-docs`` documents (every page of the manual, then copies of pages spread evenly over it, each
  with a line of its own so that none is skipped as already ingested) in one job, while the LISA backend process's
  RSS (``psutil``; the model servers are separate processes and not counted) is sampled every ``--sample`` s:
  start, peak, end, and the slope over the documents after the first quarter.

Results go to stdout and to the "RAG ingestion" section of ``docs/benchmarks.md``.

    .venv/bin/python -m bench.rag_ingest --runs 3
    .venv/bin/python -m bench.rag_ingest --runs 1 --docs 10 --memory-docs 0 --no-write     # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import re
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
import httpx
import numpy as np
import psutil

from backend.db.engine import asyncpg_dsn
from backend.rag.vectorstores import CollectionRef
from backend.rag.vectorstores import pgvector as pgv
from bench import rag_data, rag_lisa
from bench.gateway_doc import DOC, code_version, write_doc
from bench.rag_cpu import Cpu, CpuMeter
from bench.rag_data import log
from bench.rag_eval.corpus import select_pages
from bench.rag_ingest_doc import MIB, render
from bench.rag_lisa import REPOSITORY, Quiet
from tests.support import LisaServer


@dataclass
class Throughput:
    docs: int
    chunks: int  # stored (distinct per document) = the texts the baseline embeds
    chunks_done: int  # the job's count (a chunk repeated verbatim in one document counts each time)
    ingest_s: float  # client: request sent -> job seen finished
    server_s: float  # the job's created_at -> finished_at
    raw_s: float  # embedding server alone, same texts
    ingest_cpu: Cpu = field(default_factory=Cpu)  # CPU seconds by process group while the job ran
    raw_cpu: Cpu = field(default_factory=Cpu)  # ... while the same texts went to the embedding server alone

    @property
    def ingest_rate(self) -> float:
        return self.chunks_done / self.ingest_s

    @property
    def raw_rate(self) -> float:
        return self.chunks / self.raw_s

    @property
    def ratio(self) -> float:
        return self.ingest_rate / self.raw_rate


@dataclass
class Memory:
    docs: int = 0
    chunks: int = 0
    elapsed_s: float = 0.0
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (s since start, RSS bytes, docs done)
    end_rss: int = 0
    settled_rss: int = 0  # 10 s after the job finished
    status: str = ""

    def slope_mib_per_1000(self, after_fraction: float) -> float:
        """Least-squares slope of RSS against documents done, over the samples past ``after_fraction`` of them."""
        pts = [(d, r) for _, r, d in self.samples if d >= after_fraction * self.docs]
        if len(pts) < 3 or len({d for d, _ in pts}) < 2:
            return float("nan")
        x = np.array([d for d, _ in pts], dtype=float)
        y = np.array([r for _, r in pts], dtype=float) / MIB
        return float(np.polyfit(x, y, 1)[0] * 1000)

    def rss_at(self, fraction: float) -> float:
        for _, rss, done in self.samples:
            if done >= fraction * self.docs:
                return rss / MIB
        return float("nan")


@dataclass
class Results:
    runs: list[Throughput] = field(default_factory=list)
    memory: Memory | None = None
    quiet: Quiet | None = None
    batch: int = 0
    parallel: int = 0
    documents_parallel: int = 0
    chunking: str = "?"  # the collections' chunking, as the API reports it


# --- documents ---------------------------------------------------------------------------------------------------


def copy_pages(pages: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for page in pages:
        shutil.copyfile(page, folder / page.name)


def changed(html: bytes, k: int) -> bytes:
    """The page with one line of its own after ``<body>``: different bytes, nearly the same chunks."""
    line = f'<p class="bench-copy">Copy {k} of this page, for the ingestion benchmark.</p>'.encode()
    match = re.search(rb"<body[^>]*>", html, re.I)
    at = match.end() if match else 0
    return html[:at] + line + html[at:]


def memory_documents(pages: list[Path], count: int, folder: Path) -> None:
    """Every (ingestible) page, then changed copies of pages spread evenly over the manual, ``count`` in all."""
    folder.mkdir(parents=True, exist_ok=True)
    base = pages[:count]
    copy_pages(base, folder)
    extra = count - len(base)
    for k in range(extra):
        page = pages[k * len(pages) // extra]
        (folder / f"copy{k:04d}-{page.name}").write_bytes(changed(page.read_bytes(), k))


def ingestible(pages: list[Path]) -> list[Path]:
    """Pages the loaders accept and that give at least one chunk (the rest would fail or ingest nothing)."""
    names = {c.page for c in rag_data.chunk_pages(pages)}
    return [p for p in pages if p.name in names]


# --- measuring ---------------------------------------------------------------------------------------------------


def ingest(client: httpx.Client, collection_id: str, folder: Path, poll: float) -> tuple[dict[str, Any], float]:
    path = f"/api/repositories/{REPOSITORY}/collections/{collection_id}/ingest"
    started = time.perf_counter()
    job = rag_lisa.api(client, "POST", path, (202,), json={"sources": [str(folder)]})
    done = rag_lisa.wait_job(client, job["id"], poll)
    elapsed = time.perf_counter() - started
    if done["status"] != "completed" or done["documents_failed"]:
        raise RuntimeError(f"ingestion job ended {done['status']}: {done.get('error')} ({done})")
    return done, elapsed


def server_seconds(job: dict[str, Any]) -> float:
    created, finished = (dt.datetime.fromisoformat(job[k]) for k in ("created_at", "finished_at"))
    return (finished - created).total_seconds()


async def raw_embed(url: str, model: str, texts: list[str], batch: int, parallel: int) -> float:
    """Seconds to embed ``texts`` straight at the embedding server, ``batch`` a request, ``parallel`` in flight."""
    batches = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    gate = asyncio.Semaphore(parallel)
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=parallel)) as client:

        async def one(inputs: list[str]) -> None:
            async with gate:
                response = await client.post(f"{url}/embeddings", json={"model": model, "input": inputs})
                response.raise_for_status()
                if len(response.json()["data"]) != len(inputs):
                    raise RuntimeError("the embedding server returned the wrong number of vectors")

        await one(texts[:1])  # a connection and a warm model
        started = time.perf_counter()
        await asyncio.gather(*(one(b) for b in batches))
        return time.perf_counter() - started


async def stored_texts(database_url: str, collection: dict[str, Any]) -> list[str]:
    """The chunk texts the job embedded and stored, in the order it took the documents (sorted paths)."""
    ref = CollectionRef(REPOSITORY, collection["id"], int(collection["dimensions"]))
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch(f'SELECT content FROM "{pgv.table_name(ref)}" ORDER BY source, part')
    finally:
        await conn.close()
    return [str(r["content"]) for r in rows]


def throughput_run(
    server: LisaServer, client: httpx.Client, run: int, folder: Path, res: Results, args: argparse.Namespace
) -> Throughput:
    cpu = CpuMeter(server)
    collection_id = f"t{run}-{int(time.time())}"  # fresh: nothing is skipped as already ingested
    collection = rag_lisa.ensure_collection(client, collection_id)
    spec = collection["chunking"]
    res.chunking = f"{spec['strategy']} {spec.get('size') or 'default'}/{spec.get('overlap') or 'default'}"
    model = str(collection["embedding_model"])
    url = rag_lisa.embedding_url(client, model)
    before = cpu.snapshot()
    job, elapsed = ingest(client, collection_id, folder, args.poll)
    ingest_cpu = cpu.snapshot() - before
    texts = asyncio.run(stored_texts(server.database_url, collection))
    if job["chunks_done"] != len(texts):  # a chunk repeated verbatim in one document is stored once
        log(f"note: the job embedded {job['chunks_done']} chunks and stored {len(texts)} distinct ones")
    before = cpu.snapshot()
    raw_s = asyncio.run(raw_embed(url, model, texts, res.batch, res.parallel))
    raw_cpu = cpu.snapshot() - before
    result = Throughput(
        job["documents_done"],
        len(texts),
        int(job["chunks_done"]),
        elapsed,
        server_seconds(job),
        raw_s,
        ingest_cpu,
        raw_cpu,
    )
    log(
        f"run {run}: {result.docs} documents, {result.chunks} chunks: ingestion {result.ingest_rate:.1f} chunks/s "
        f"({elapsed:.1f} s), embedding alone {result.raw_rate:.1f} chunks/s ({raw_s:.1f} s): {result.ratio:.2f}x"
    )
    return result


class Sampler(threading.Thread):
    """RSS of one process every ``interval`` s, with the latest documents-done count the poller saw."""

    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.interval = interval
        self.docs_done = 0
        self.samples: list[tuple[float, int, int]] = []
        self._halt = threading.Event()
        self._t0 = time.monotonic()

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append((time.monotonic() - self._t0, self.rss(), self.docs_done))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def memory_run(server: LisaServer, client: httpx.Client, folder: Path, args: argparse.Namespace) -> Memory:
    backend = psutil.Process(server.proc.popen.pid)
    others = [c for c in backend.children(recursive=True) if c.pid not in set(server.children)]
    models = ", ".join(str(p) for p in server.children)
    log(f"memory run: backend pid {backend.pid} (model servers {models} not counted); other children: {others}")
    collection_id = f"m-{int(time.time())}"
    rag_lisa.ensure_collection(client, collection_id)
    sampler = Sampler(backend.pid, args.sample)
    sampler.start()
    path = f"/api/repositories/{REPOSITORY}/collections/{collection_id}/ingest"
    started = time.perf_counter()
    job = rag_lisa.api(client, "POST", path, (202,), json={"sources": [str(folder)]})
    last_log = 0.0
    while True:
        job = rag_lisa.api(client, "GET", f"/api/repositories/{REPOSITORY}/jobs/{job['id']}")
        sampler.docs_done = job["documents_done"] + job["documents_failed"] + job["documents_skipped"]
        if job["status"] in rag_lisa.FINAL:
            break
        if time.perf_counter() - last_log > 60:
            last_log = time.perf_counter()
            log(
                f"memory run: {sampler.docs_done}/{job['documents_total']} documents, RSS {sampler.rss() / MIB:.0f} MiB"
            )
        time.sleep(args.poll)
    elapsed = time.perf_counter() - started
    end_rss = sampler.rss()
    time.sleep(10)
    sampler.stop()
    mem = Memory(
        docs=int(job["documents_total"]),
        chunks=int(job["chunks_done"]),
        elapsed_s=elapsed,
        samples=sampler.samples,
        end_rss=end_rss,
        settled_rss=sampler.rss(),
        status=f"{job['status']}: {job['documents_done']} done, {job['documents_skipped']} skipped, "
        f"{job['documents_failed']} failed",
    )
    log(
        f"memory run: {mem.status}, {mem.chunks} chunks in {elapsed:.0f} s; RSS start {mem.samples[0][1] / MIB:.0f}"
        f" MiB, peak {max(r for _, r, _ in mem.samples) / MIB:.0f} MiB, end {end_rss / MIB:.0f} MiB, slope "
        f"{mem.slope_mib_per_1000(0.25):.1f} MiB per 1,000 documents after the first quarter"
    )
    return mem


def settings_values(res: Results) -> None:
    """The batch size and parallelism LISA runs with: its settings, read from the same environment."""
    from backend.config import Settings

    settings = Settings()
    res.batch, res.parallel = settings.rag_embed_batch, settings.rag_embed_parallel
    res.documents_parallel = settings.rag_documents_parallel


def run(args: argparse.Namespace, work: Path) -> Results:
    res = Results(quiet=Quiet(str(work), args.quiet_pct, args.wait_quiet, args.retries))
    settings_values(res)
    root = work / "ingest"
    pages = ingestible(rag_data.corpus_pages())
    small = select_pages(pages[0].parent, args.docs)
    small = [p for p in small if p in set(pages)]
    copy_pages(small, root / "throughput")
    if args.memory_docs:
        memory_documents(pages, args.memory_docs, root / "memory")
    log(f"{len(small)} documents per throughput run; memory run: {args.memory_docs} documents")
    server = rag_lisa.start(work, env={"LISA_RAG_INGEST_ROOTS": f'["{root}"]'})
    assert res.quiet is not None
    try:
        with server.client(timeout=120) as client:
            for i in range(1, args.runs + 1):
                measure = functools.partial(throughput_run, server, client, i, root / "throughput", res, args)
                res.runs.append(res.quiet.run(f"run {i}", measure))
            if args.memory_docs:
                res.quiet.wait()
                res.memory = memory_run(server, client, root / "memory", args)
    finally:
        rag_lisa.stop(server)
    return res


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="throughput runs; the median is reported")
    parser.add_argument("--docs", type=int, default=200, help="manual pages per throughput run")
    parser.add_argument("--memory-docs", type=int, default=2000, help="documents in the memory run; 0: skip it")
    parser.add_argument("--poll", type=float, default=0.25, help="seconds between looks at the job")
    parser.add_argument("--sample", type=float, default=0.5, help="seconds between RSS samples")
    parser.add_argument("--work", default="", help="work dir (default: a temporary one)")
    parser.add_argument("--wait-quiet", type=float, default=300, help="max seconds to wait for idle CPUs")
    parser.add_argument("--quiet-pct", type=float, default=10, help="others' CPU share (%%) that voids a run")
    parser.add_argument("--retries", type=int, default=1, help="reruns of a run disturbed by other processes")
    parser.add_argument("--no-write", action="store_true", help=f"print only; leave {DOC.name} alone")
    return parser.parse_args(argv)


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # run the same clean-up as Ctrl-C: LISA and its children are stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where started with SIGINT ignored
    raw = sys.argv[1:] if argv is None else argv
    command = " ".join([".venv/bin/python -m bench.rag_ingest", *(shlex.quote(a) for a in raw)])
    started = time.monotonic()
    args.code = code_version()
    if args.work:
        work = Path(args.work).resolve()
        work.mkdir(parents=True, exist_ok=True)
        res = run(args, work)
    else:
        with tempfile.TemporaryDirectory(prefix="lisa-bench-ingest-") as tmp:
            res = run(args, Path(tmp))
    waited = res.quiet.waited if res.quiet else 0.0
    section = render(res, args, command, time.monotonic() - started - waited)
    print("\n" + section)
    if not args.no_write:
        write_doc(section)
        log(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
