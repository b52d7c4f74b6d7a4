"""Loads the embedding model on one CPU backend: PyTorch, ONNX Runtime or OpenVINO, fp32/bf16 or int8.

ONNX and OpenVINO need the model exported. The export runs offline from the local model folder at the first start
and is kept under ``cache_dir`` in a folder named by the model files, the backend, the quantisation and the library
versions, so a changed model or library gets a fresh export and an unchanged one is loaded without exporting:

- an exclusive ``flock`` on ``<folder>.lock`` lets one process export while another waits, then loads its result;
- the export is written into a temporary folder and renamed into place only when complete, so a crash leaves no
  half-written export that a later start would trust;
- int8: ONNX Runtime's dynamic quantisation (weights int8, activations quantised at run time), or NNCF static
  quantisation of the OpenVINO model calibrated on local text (:func:`calibration_texts`, never a download).

When the export or the load fails (no space, unwritable cache, a library missing), the server falls back to
PyTorch with a logged warning and reports it on ``/health``: the torch model gives the reference vectors, so an
index built with either stays searchable, and an embedding server that refuses to start would stop ingestion and
search altogether. A cached export that fails to load is removed and exported once more before falling back.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import importlib.metadata
import inspect
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger("lisa.embeddings")

Backend = Literal["torch", "onnx", "openvino"]
Quantization = Literal["none", "int8"]
BACKENDS: tuple[Backend, ...] = ("torch", "onnx", "openvino")
QUANTIZATIONS: tuple[Quantization, ...] = ("none", "int8")
COMPLETE = "lisa-export-complete"
ONNX_INT8 = "onnx/model_qint8.onnx"
OPENVINO_INT8 = "openvino/openvino_model_qint8.xml"
CALIBRATION_SIZE = 300
_LIBRARIES = ("sentence-transformers", "transformers", "optimum", "optimum-onnx", "onnxruntime", "openvino", "nncf")


class ExportError(RuntimeError):
    """The export could not be made or loaded; the message says which step failed and why."""


@dataclass
class Loaded:
    model: Any
    backend: Backend
    quantization: Quantization
    fallback_reason: str | None = None


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def export_key(model_dir: Path, backend: Backend, quantization: Quantization) -> str:
    """Names the export by what it was made from: the model files (names, sizes, times) and the library versions."""
    digest = hashlib.sha256(f"{backend}/{quantization}/{CALIBRATION_SIZE}".encode())
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(model_dir)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    for name in _LIBRARIES:
        digest.update(f"{name}={_version(name)}\n".encode())
    return f"{model_dir.name}-{backend}-{quantization}-{digest.hexdigest()[:16]}"


def calibration_texts(count: int = CALIBRATION_SIZE, words: int = 120) -> list[str]:
    """Technical English prose from the standard library's own docstrings, cut into passages of about ``words``
    words: local, deterministic, and close to documentation chunks, to calibrate static int8 activations."""
    modules = ["argparse", "asyncio", "collections", "csv", "datetime", "decimal", "email.message", "functools",
               "http.client", "inspect", "json", "logging", "os", "pathlib", "re", "shutil", "socket", "sqlite3",
               "ssl", "subprocess", "tarfile", "tempfile", "threading", "typing", "unittest", "urllib.request",
               "zipfile"]  # fmt: skip
    passages: list[str] = []
    for module_name in modules:
        module = importlib.import_module(module_name)
        docs = [inspect.getdoc(module) or ""]
        for name in sorted(vars(module)):
            member = getattr(module, name)
            if not name.startswith("_") and (inspect.isclass(member) or inspect.isfunction(member)):
                docs.append(inspect.getdoc(member) or "")
        tokens = " ".join(" ".join(docs).split()).split(" ")
        passages += [" ".join(tokens[i : i + words]) for i in range(0, len(tokens) - words // 2, words)]
    # take passages spread over all modules rather than the first modules only
    step = max(1, len(passages) // count)
    return passages[::step][:count]


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _sentence_transformer(path: Path, backend: Backend, threads: int | None, file_name: str | None = None) -> Any:
    from sentence_transformers import SentenceTransformer

    kwargs: dict[str, Any] = {}
    if file_name:
        kwargs["file_name"] = file_name
    if backend == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        kwargs["session_options"] = options
        kwargs["provider"] = "CPUExecutionProvider"
    elif backend == "openvino" and threads:
        kwargs["ov_config"] = {"INFERENCE_NUM_THREADS": str(threads)}
    return SentenceTransformer(str(path), device="cpu", backend=backend, model_kwargs=kwargs or None)


def _quantize_openvino(folder: Path) -> None:
    import nncf
    import numpy as np
    import openvino as ov
    from transformers import AutoTokenizer

    core = ov.Core()
    model = core.read_model(str(folder / "openvino" / "openvino_model.xml"))
    names = [port.get_any_name() for port in model.inputs]
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    items = []
    for text in calibration_texts():
        encoded = tokenizer(text, truncation=True, max_length=256, return_tensors="np")
        items.append({name: np.asarray(encoded[name], dtype=np.int64) for name in names if name in encoded})
    quantized = nncf.quantize(model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(items))
    ov.save_model(quantized, str(folder / OPENVINO_INT8))


def _quantize_onnx(folder: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(folder / "onnx" / "model.onnx", folder / ONNX_INT8, weight_type=QuantType.QInt8)


def _export(source: Path, target: Path, backend: Backend, quantization: Quantization) -> None:
    """Writes the exported model folder to ``target`` (which must not exist) through a temporary sibling."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model = _sentence_transformer(source, backend, threads=None)  # exports in memory, offline
        model.save_pretrained(str(tmp))
        if quantization == "int8":
            (_quantize_onnx if backend == "onnx" else _quantize_openvino)(tmp)
        (tmp / COMPLETE).write_text(export_key(source, backend, quantization))
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _file_name(backend: Backend, quantization: Quantization) -> str | None:
    if quantization == "none":
        return None
    return ONNX_INT8 if backend == "onnx" else OPENVINO_INT8


def load_exported(
    source: Path, backend: Backend, quantization: Quantization, cache_dir: Path, threads: int | None
) -> Any:
    """The model on ``backend``, from the cached export (made now, under the lock, when missing)."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the export cache {cache_dir}: {exc}") from exc
    target = cache_dir / export_key(source, backend, quantization)
    file_name = _file_name(backend, quantization)
    try:
        with _locked(cache_dir / f"{target.name}.lock"):
            if (target / COMPLETE).is_file():
                try:
                    return _sentence_transformer(target, backend, threads, file_name)
                except Exception as exc:  # a damaged export: make it again, once
                    log.warning("the cached %s export %s does not load (%s); exporting again", backend, target, exc)
                    shutil.rmtree(target, ignore_errors=True)
            elif target.exists():
                shutil.rmtree(target, ignore_errors=True)
            log.warning("exporting the embedding model to %s (%s, %s); this runs once", backend, quantization, target)
            _export(source, target, backend, quantization)
            return _sentence_transformer(target, backend, threads, file_name)
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(
            f"{backend} ({quantization}) export into {target} failed: {type(exc).__name__}: {exc}"
        ) from exc


def load(
    source: Path, backend: Backend, quantization: Quantization, cache_dir: Path | None, threads: int | None
) -> Loaded:
    """The model on the backend asked for, or on PyTorch with ``fallback_reason`` set when that failed."""
    if backend == "torch":
        if quantization != "none":
            raise ValueError("the torch backend has no int8 quantisation here; use onnx or openvino for int8")
        return Loaded(_sentence_transformer(source, "torch", threads), "torch", "none")
    if cache_dir is None:
        raise ValueError(f"the {backend} backend needs an export cache folder (--cache-dir)")
    try:
        return Loaded(load_exported(source, backend, quantization, cache_dir, threads), backend, quantization)
    except ExportError as exc:
        log.warning("falling back to the torch backend: %s", exc)
        return Loaded(_sentence_transformer(source, "torch", threads), "torch", "none", str(exc))


def default_cache_dir() -> Path:
    """Where a server started by hand keeps its exports; LISA passes DATA_DIR/embedding-exports instead."""
    return Path.home() / ".cache" / "lisa" / "embedding-exports"
