"""The embedding server's OpenVINO backend against its PyTorch one, its cache of converted models, and its fallback,
each on real server processes."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support import ROOT, Proc, start_module

MODULE = "backend.localmodels.embedding_server"


def start(tmp: Path, backend: str, cache: Path) -> Proc:
    return start_module(MODULE, tmp, "--threads", "2", "--backend", backend, "--cache-dir", str(cache))


def embed(url: str, texts: list[str]) -> np.ndarray:
    response = httpx.post(f"{url}/v1/embeddings", json={"model": "m", "input": texts}, timeout=300)
    assert response.status_code == 200, response.text
    return np.array([d["embedding"] for d in response.json()["data"]], dtype=np.float32)


def backend_of(proc: Proc) -> str:
    return str(httpx.get(f"{proc.url}/health").json()["backend"])


def documents() -> list[str]:
    """Passages of this project's own documentation, from a heading to ~1,500 characters, short and long."""
    passages: list[str] = []
    for page in sorted((ROOT / "docs").glob("*.md"))[:12]:
        text = page.read_text()
        for start in range(0, min(len(text), 12_000), 1_500):
            passages.append(text[start : start + 1_500].strip())
    questions = [
        "How do I ingest a folder of PDFs?",
        "Which port does the gateway listen on?",
        "rotate the admin token",
    ]
    return [p for p in passages if p] + questions


def entries(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ov") / "cache"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> Iterator[tuple[Proc, Proc]]:
    """An OpenVINO server and a PyTorch one, started together on an empty cache."""
    tmp = tmp_path_factory.mktemp("servers")
    procs: dict[str, Proc] = {}
    threads = [
        threading.Thread(target=lambda b=b: procs.__setitem__(b, start(tmp, b, cache))) for b in ("openvino", "torch")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        yield procs["openvino"], procs["torch"]
    finally:
        for proc in procs.values():
            proc.stop(signal.SIGTERM)


def test_openvino_vectors_match_torch_on_real_documents(servers: tuple[Proc, Proc]) -> None:
    openvino, torch = servers
    assert (backend_of(openvino), backend_of(torch)) == ("openvino", "torch")
    texts = documents()
    assert len(texts) > 60
    a, b = embed(openvino.url, texts), embed(torch.url, texts)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-4)
    cosine = np.sum(a * b, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() >= 0.999, f"worst cosine {cosine.min():.5f} at {texts[int(cosine.argmin())][:80]!r}"
    # the same ranking of passages for each question
    for q in range(len(texts) - 3, len(texts)):
        assert np.argsort(-(a[:-3] @ a[q]))[:5].tolist() == np.argsort(-(b[:-3] @ b[q]))[:5].tolist()


def test_two_servers_starting_together_convert_once_and_a_restart_reuses_it(
    servers: tuple[Proc, Proc], cache: Path, tmp_path: Path
) -> None:
    openvino, _ = servers
    (entry,) = entries(cache)  # no temporary export folder left behind either
    manifest = json.loads((entry / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.xml", "model.bin"}
    stat = (entry / "model.bin").stat()
    texts = documents()[:8]
    before = embed(openvino.url, texts)
    again = start(tmp_path, "openvino", cache)
    try:
        assert backend_of(again) == "openvino"
        np.testing.assert_allclose(embed(again.url, texts), before, atol=1e-6)
    finally:
        again.stop(signal.SIGTERM)
    assert "from the cache" in again.log_tail(20_000) and "converting" not in again.log_tail(20_000)
    assert entries(cache) == [entry]
    after = (entry / "model.bin").stat()
    assert (after.st_ino, after.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)


@pytest.mark.parametrize("damage", ["truncated weights", "no manifest"])
def test_a_damaged_or_partial_cache_entry_is_converted_again(
    servers: tuple[Proc, Proc], cache: Path, tmp_path: Path, damage: str
) -> None:
    openvino, _ = servers
    (entry,) = entries(cache)
    own = tmp_path / "cache"
    own.mkdir()
    copy = own / entry.name
    copy.mkdir()
    for f in entry.iterdir():
        copy.joinpath(f.name).write_bytes(f.read_bytes())
    if damage == "truncated weights":
        weights = copy / "model.bin"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    else:
        (copy / "manifest.json").unlink()
    texts = documents()[:8]
    proc = start(tmp_path, "openvino", own)
    try:
        assert backend_of(proc) == "openvino"
        np.testing.assert_allclose(embed(proc.url, texts), embed(openvino.url, texts), atol=1e-5)
    finally:
        proc.stop(signal.SIGTERM)
    log = proc.log_tail(20_000)
    assert "discarding an incomplete or damaged OpenVINO cache entry" in log and "converting" in log
    assert entries(own) == [copy]
    assert (copy / "model.bin").stat().st_size == (entry / "model.bin").stat().st_size
    assert (
        json.loads((copy / "manifest.json").read_text())["files"]
        == json.loads((entry / "manifest.json").read_text())["files"]
    )


def test_the_server_falls_back_to_torch_when_openvino_cannot_convert(
    servers: tuple[Proc, Proc], tmp_path: Path
) -> None:
    _, torch = servers
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    proc = start(tmp_path, "openvino", blocker / "cache")
    try:
        assert backend_of(proc) == "torch"
        texts = documents()[:4]
        np.testing.assert_allclose(embed(proc.url, texts), embed(torch.url, texts), atol=1e-5)
    finally:
        proc.stop(signal.SIGTERM)
    assert "openvino unavailable" in proc.log_tail(20_000)
