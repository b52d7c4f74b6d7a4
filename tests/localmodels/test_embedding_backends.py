"""The embedding server on each runtime (torch, onnx, openvino; int8), each a real process spoken to over HTTP.

Thresholds for the cosine to torch's vectors come from measurements on 320 real Git-manual chunks (docs/rag.md,
"Local embedding runtime"; bench/embed_backends.py): the fp32 ONNX export and OpenVINO (bf16 on this CPU) agree with
torch to 0.99997 and more, so 0.999 catches a wrong export (other pooling, no normalisation, another model).
OpenVINO static int8 measured mean 0.997, min 0.986: held to 0.98 / 0.95. ONNX Runtime's dynamic int8 loses more
(mean 0.945, min 0.846 on chunks; 0.97 on the short texts here): held to 0.93 / 0.85, a looser check, which is one
reason it is not the default.
"""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support import EXPORT_CACHE, Proc, free_port, start_process

TEXTS = [
    "To create a new branch and switch to it at the same time, pass -b to git checkout.",
    "The VACUUM command reclaims storage occupied by dead tuples and updates planner statistics.",
    "How do I reset my password?",
    "Rebasing rewrites the commits of a branch on top of another base commit, producing new commit ids.",
    "An index on an expression lets the planner use it for queries that filter on that expression.",
    "The tide comes in at noon.",
]


def start(tmp: Path, *args: str, deadline: float = 600) -> Proc:
    """The server with ``args``; exports can take minutes on a busy machine, hence the long deadline."""
    import sys

    port = free_port()
    argv = [sys.executable, "-m", "backend.localmodels.embedding_server", "--host", "127.0.0.1", "--port", str(port)]
    return start_process([*argv, "--threads", "2", *args], port=port, log=tmp / f"emb-{port}.log", deadline=deadline)


def vectors(url: str, texts: list[str]) -> np.ndarray:
    response = httpx.post(f"{url}/v1/embeddings", json={"input": texts}, timeout=120)
    assert response.status_code == 200, response.text
    return np.array([d["embedding"] for d in response.json()["data"]], dtype=np.float32)


def health(url: str) -> dict[str, object]:
    body: dict[str, object] = httpx.get(f"{url}/health", timeout=10).json()
    return body


@pytest.fixture(scope="module")
def torch_vectors(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    proc = start(tmp_path_factory.mktemp("torch"), "--backend", "torch")
    try:
        assert health(proc.url) == {"status": "ok", "backend": "torch", "quantization": "none", "fallback_reason": None}
        return vectors(proc.url, TEXTS)
    finally:
        proc.stop(signal.SIGTERM)


@pytest.mark.parametrize(
    ("backend", "quantization", "mean_min", "min_min"),
    [("onnx", "none", 0.999, 0.999), ("openvino", "none", 0.999, 0.999), ("openvino", "int8", 0.98, 0.95),
     ("onnx", "int8", 0.93, 0.85)],
)  # fmt: skip
def test_each_backend_gives_torchs_vectors(
    tmp_path: Path, torch_vectors: np.ndarray, backend: str, quantization: str, mean_min: float, min_min: float
) -> None:
    proc = start(tmp_path, "--backend", backend, "--quantization", quantization, "--cache-dir", str(EXPORT_CACHE))
    try:
        assert health(proc.url) == {"status": "ok", "backend": backend, "quantization": quantization,
                                    "fallback_reason": None}  # fmt: skip
        got = vectors(proc.url, TEXTS)
    finally:
        proc.stop(signal.SIGTERM)
    assert got.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-3)
    cosines = np.sum(got * torch_vectors, axis=1)
    assert cosines.mean() >= mean_min and cosines.min() >= min_min, cosines


def export_folders(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if p.is_dir() and not p.name.startswith("."))


def test_the_export_is_made_once_reused_and_made_again_when_damaged(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = start(tmp_path, "--backend", "onnx", "--cache-dir", str(cache))
    first_vectors = vectors(first.url, TEXTS)
    first.stop(signal.SIGTERM)
    assert "exporting the embedding model" in first.log.read_text()
    [folder] = export_folders(cache)
    made = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}

    second = start(tmp_path, "--backend", "onnx", "--cache-dir", str(cache))
    try:
        np.testing.assert_allclose(vectors(second.url, TEXTS), first_vectors, atol=1e-6)
    finally:
        second.stop(signal.SIGTERM)
    assert "exporting the embedding model" not in second.log.read_text()
    assert export_folders(cache) == [folder]
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == made  # nothing rewritten

    (folder / "onnx" / "model.onnx").write_bytes(b"not an onnx model")  # damaged after it was made
    third = start(tmp_path, "--backend", "onnx", "--cache-dir", str(cache))
    try:
        state = health(third.url)
        np.testing.assert_allclose(vectors(third.url, TEXTS), first_vectors, atol=1e-5)
    finally:
        third.stop(signal.SIGTERM)
    log = third.log.read_text()
    assert "does not load" in log and "exporting the embedding model" in log
    assert state["backend"] == "onnx" and state["fallback_reason"] is None


def test_two_servers_starting_together_export_once(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with ThreadPoolExecutor(2) as pool:
        procs = list(pool.map(lambda _: start(tmp_path, "--backend", "onnx", "--cache-dir", str(cache)), range(2)))
    try:
        got = [vectors(p.url, TEXTS[:2]) for p in procs]
    finally:
        for p in procs:
            p.stop(signal.SIGTERM)
    logs = [p.log.read_text() for p in procs]
    assert sum("exporting the embedding model" in log for log in logs) == 1, logs  # the other waited, then loaded
    assert len(export_folders(cache)) == 1
    np.testing.assert_allclose(got[0], got[1], atol=1e-6)


def test_an_unwritable_cache_falls_back_to_torch_with_a_warning(tmp_path: Path, torch_vectors: np.ndarray) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    proc = start(tmp_path, "--backend", "openvino", "--cache-dir", str(blocker / "exports"))
    try:
        state = health(proc.url)
        got = vectors(proc.url, TEXTS)
    finally:
        proc.stop(signal.SIGTERM)
    assert state["backend"] == "torch" and state["quantization"] == "none"
    assert "cannot create the export cache" in str(state["fallback_reason"])
    assert "falling back to the torch backend" in proc.log.read_text()
    np.testing.assert_allclose(got, torch_vectors, atol=1e-5)


def test_int8_on_torch_is_refused(tmp_path: Path) -> None:
    import subprocess
    import sys

    argv = [
        sys.executable,
        "-m",
        "backend.localmodels.embedding_server",
        "--backend",
        "torch",
        "--quantization",
        "int8",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "torch backend has no int8" in done.stderr
