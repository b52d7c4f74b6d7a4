"""A sentence-transformers embedding model served through OpenVINO on the CPU.

The Hugging Face transformer inside the sentence-transformers folder is converted once with
``openvino.convert_model`` (batch and sequence dimensions dynamic) and kept in a cache folder keyed by the model
files and the OpenVINO version; later starts read the converted model and never import torch. Tokenising uses the
model's own tokenizer; pooling and normalisation follow the folder's ``modules.json`` and pooling config, in numpy,
as sentence-transformers' Pooling and Normalize modules compute them.

The cache entry is written into a temporary folder and renamed into place while holding an exclusive ``flock`` on
the cache's lock file, so two servers starting together convert once. Its manifest records the SHA-256 of the
converted files; an entry without a manifest, or whose files do not match it, is removed and converted again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("lisa.embeddings")

MANIFEST = "manifest.json"
XML, BIN = "model.xml", "model.bin"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class ExportError(RuntimeError):
    """The model cannot be served through OpenVINO (unsupported layout, failed conversion)."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key(model_dir: Path, openvino_version: str) -> str:
    """A digest of every file of the model folder (names and contents) and the OpenVINO version."""
    digest = hashlib.sha256(f"openvino {openvino_version}\n".encode())
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(model_dir).as_posix()}\n{_sha256(path)}\n".encode())
    return digest.hexdigest()[:32]


def read_layout(model_dir: Path) -> tuple[str, bool, int]:
    """(pooling mode, normalise, max sequence length) from the sentence-transformers folder; only the layouts this
    module computes exactly are accepted."""
    modules = json.loads((model_dir / "modules.json").read_text())
    kinds = [str(m["type"]).rsplit(".", 1)[-1] for m in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]) or modules[0]["path"]:
        raise ExportError(f"unsupported sentence-transformers modules: {kinds}")
    pooling = json.loads((model_dir / modules[1]["path"] / "config.json").read_text())
    modes = [k.removeprefix("pooling_mode_") for k, v in pooling.items() if k.startswith("pooling_mode_") and v]
    if modes not in (["mean_tokens"], ["cls_token"]):
        raise ExportError(f"unsupported pooling: {modes}")
    config = json.loads((model_dir / "sentence_bert_config.json").read_text())
    return modes[0], kinds[-1] == "Normalize", int(config["max_seq_length"])


@contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _valid(entry: Path, key: str) -> bool:
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        return bool(
            manifest.get("key") == key
            and manifest.get("files", {}).keys() == {XML, BIN}
            and all(_sha256(entry / name) == digest for name, digest in manifest["files"].items())
        )
    except (OSError, ValueError, AttributeError):
        return False


def _convert(model_dir: Path, out: Path, max_length: int) -> None:
    """The transformer of ``model_dir`` as OpenVINO IR in ``out`` (full precision weights)."""
    import openvino as ov
    import torch
    from transformers import AutoModel, AutoTokenizer

    class LastHiddenState(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    model = AutoModel.from_pretrained(str(model_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    example = tokenizer(
        ["an example sentence to trace the model with", "and a second, shorter one"],
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    with torch.no_grad():
        converted = ov.convert_model(
            LastHiddenState(model),
            example_input={name: example[name] for name in INPUTS},
            input=[(name, ov.PartialShape([-1, -1]), ov.Type.i64) for name in INPUTS],
        )
    ov.save_model(converted, str(out / XML), compress_to_fp16=False)


def exported_model(model_dir: Path, cache_dir: Path) -> Path:
    """The cache entry (a folder holding model.xml/model.bin) for ``model_dir``, converted first if needed."""
    import openvino as ov

    _, _, max_length = read_layout(model_dir)
    key = cache_key(model_dir, ov.get_version())
    entry = cache_dir / f"{model_dir.name}-{key}"
    with _locked(cache_dir):
        if _valid(entry, key):
            log.info("OpenVINO model from the cache: %s", entry)
            return entry
        if entry.exists():
            log.warning("discarding an incomplete or damaged OpenVINO cache entry: %s", entry)
            shutil.rmtree(entry)
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=cache_dir))
        try:
            log.info("converting %s to OpenVINO into %s", model_dir, entry)
            _convert(model_dir, tmp, max_length)
            manifest = {
                "key": key,
                "model_dir": str(model_dir),
                "openvino": ov.get_version(),
                "files": {name: _sha256(tmp / name) for name in (XML, BIN)},
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
            os.replace(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return entry


class OpenVINOEmbedder:
    """What the embedding server uses of a ``SentenceTransformer`` (``encode``, ``tokenizer``, dimension, maximum
    length), computed by OpenVINO."""

    backend = "openvino"

    def __init__(self, model_dir: Path, cache_dir: Path, threads: int | None) -> None:
        import openvino as ov
        from transformers import AutoTokenizer

        self.pooling, self.normalize, self.max_seq_length = read_layout(model_dir)
        self.entry = exported_model(model_dir, cache_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(self.entry / XML)), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.dimensions = int(self.compiled.output(0).get_partial_shape()[2].get_length())

    def get_embedding_dimension(self) -> int:
        return self.dimensions

    def _forward(self, texts: Sequence[str]) -> np.ndarray:
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="np"
        )
        inputs = {name: np.asarray(batch[name], dtype=np.int64) for name in INPUTS}
        self.request.infer(inputs)
        hidden = np.asarray(self.request.get_output_tensor(0).data, dtype=np.float32)
        if self.pooling == "cls_token":
            pooled = hidden[:, 0]
        else:
            mask = inputs["attention_mask"][:, :, None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        if self.normalize:
            pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled.astype(np.float32)

    def encode(self, texts: Sequence[str], batch_size: int = 64, normalize_embeddings: bool = False,
               **_: Any) -> np.ndarray:  # fmt: skip
        """Vectors in the order of ``texts``; batches hold texts of similar length (longest first), as
        sentence-transformers forms them, so that little is padding."""
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            picked = order[start : start + batch_size]
            out[picked] = self._forward([texts[i] for i in picked])
        if normalize_embeddings and not self.normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out
