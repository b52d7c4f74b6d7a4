"""What one locally run model is: :class:`LocalModelSpec`, and the command line that runs it.

A spec comes from a request, so nothing in it reaches a command line unchecked: the model file must lie under one of
the configured model folders (``LISA_LOCAL_MODEL_DIRS``; checked after following links, :func:`resolve_model_path`),
and llama.cpp options beyond the named fields come only from :data:`LLAMA_EXTRA_ARGS`, each with its type and bounds.
Every value is its own argv element; no shell ever sees one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictFloat, StrictInt, field_validator, model_validator

from backend.errors import BadRequest
from backend.lifecycle.deployers.base import ModelSpec
from backend.text import Text

ModelKind = Literal["gguf", "sentence_transformers"]
GGUF_MAGIC = b"GGUF"
HOST = "127.0.0.1"  # model servers listen on the loopback address only; the gateway is their one client

# llama.cpp server options an admin may set (llama_cpp.server's ModelSettings): type and bounds. Everything else,
# paths above all (lora_path, clip_model_path, draft models, a disk cache), stays out of reach.
LLAMA_EXTRA_ARGS: dict[str, tuple[type, float, float]] = {
    "n_batch": (int, 1, 65_536),
    "n_ubatch": (int, 1, 65_536),
    "n_threads_batch": (int, 1, 256),
    "n_gpu_layers": (int, -1, 10_000),
    "main_gpu": (int, 0, 64),
    "seed": (int, 0, 2**32 - 1),
    "rope_freq_base": (float, 0, 1e9),
    "rope_freq_scale": (float, 0, 1000),
    "last_n_tokens_size": (int, 0, 65_536),
    "type_k": (int, 0, 64),
    "type_v": (int, 0, 64),
    "flash_attn": (bool, 0, 1),
    "use_mmap": (bool, 0, 1),
    "use_mlock": (bool, 0, 1),
    "offload_kqv": (bool, 0, 1),
    "cache": (bool, 0, 1),  # the prompt cache, in memory
    "cache_size": (int, 0, 2**40),
}

ChatFormat = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")]


class LocalModelSpec(ModelSpec):
    """One model served on this machine: a GGUF text model by llama.cpp's server, or a sentence-transformers model by
    LISA's embedding server (backend/localmodels/embedding_server.py)."""

    kind: ModelKind
    model_path: Text = Field(
        min_length=1,
        max_length=4096,
        description="The GGUF file, or the sentence-transformers folder: absolute, or relative to the first "
        "model folder; it must lie under one of LISA_LOCAL_MODEL_DIRS (default DATA_DIR/models).",
    )
    threads: int = Field(default=2, ge=1, le=256, description="CPU threads for generation or encoding.")
    context_size: int | None = Field(
        default=None, ge=256, le=1_048_576, description="gguf: tokens of context (n_ctx); None: 2048."
    )
    chat_format: ChatFormat | None = Field(
        default=None, description="gguf: llama-cpp-python's chat format (gemma3 needs 'gemma'); None: the model's."
    )
    extra_args: dict[str, StrictBool | StrictInt | StrictFloat] = Field(
        default_factory=dict,
        max_length=len(LLAMA_EXTRA_ARGS),
        description=f"gguf: further llama.cpp options, only these: {', '.join(sorted(LLAMA_EXTRA_ARGS))}.",
    )

    @field_validator("extra_args", mode="before")
    @classmethod
    def _allowlisted_names(cls, value: object) -> object:
        for name in value if isinstance(value, dict) else ():
            if name not in LLAMA_EXTRA_ARGS:
                allowed = ", ".join(sorted(LLAMA_EXTRA_ARGS))
                raise ValueError(f"extra_args: '{name}' is not allowed (allowed: {allowed})")
        return value

    @field_validator("extra_args")
    @classmethod
    def _typed_and_bounded(cls, value: dict[str, bool | int | float]) -> dict[str, bool | int | float]:
        for name, given in value.items():
            kind, low, high = LLAMA_EXTRA_ARGS[name]
            if kind is bool:
                if not isinstance(given, bool):
                    raise ValueError(f"extra_args: '{name}' must be true or false")
                continue
            if isinstance(given, bool) or (kind is int and not isinstance(given, int)):
                raise ValueError(f"extra_args: '{name}' must be {'an integer' if kind is int else 'a number'}")
            if not low <= given <= high:
                raise ValueError(f"extra_args: '{name}' must be from {low:g} to {high:g}, got {given:g}")
        return value

    @model_validator(mode="after")
    def _options_of_the_kind(self) -> LocalModelSpec:
        if self.kind == "sentence_transformers":
            given = [n for n in ("context_size", "chat_format") if getattr(self, n) is not None]
            given += ["extra_args"] if self.extra_args else []
            if given:
                raise ValueError(f"{', '.join(given)}: only for gguf models (llama.cpp), not sentence_transformers")
        return self


def _under(path: Path, folders: list[Path]) -> bool:
    return any(path.is_relative_to(folder) for folder in folders)


def resolve_model_path(spec: LocalModelSpec, folders: list[Path]) -> Path:
    """The model's file or folder, resolved (links followed), or :class:`BadRequest`: outside the model folders
    (before or after following links), missing, or not what its kind needs. The folders must be resolved."""
    allowed = ", ".join(str(f) for f in folders)
    given = Path(spec.model_path)
    path = Path(os.path.normpath(given if given.is_absolute() else folders[0] / given))
    if not _under(path, folders):
        raise BadRequest(f"model_path must lie under a model folder ({allowed}); got {spec.model_path}", "model_path")
    resolved = path.resolve()
    if not _under(resolved, folders):
        raise BadRequest(
            f"model_path {spec.model_path} leads outside the model folders ({allowed}) through a link", "model_path"
        )
    if spec.kind == "gguf":
        if not resolved.is_file():
            raise BadRequest(f"model_path {spec.model_path}: no such GGUF file", "model_path")
        with resolved.open("rb") as fh:
            if fh.read(len(GGUF_MAGIC)) != GGUF_MAGIC:
                raise BadRequest(f"model_path {spec.model_path} is not a GGUF file", "model_path")
        return resolved
    if not resolved.is_dir():
        raise BadRequest(f"model_path {spec.model_path}: no such sentence-transformers folder", "model_path")
    if not (resolved / "modules.json").is_file() and not (resolved / "config.json").is_file():
        raise BadRequest(
            f"model_path {spec.model_path} is not a sentence-transformers model (no modules.json or config.json)",
            "model_path",
        )
    return resolved


def _option(value: bool | int | float) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def command(spec: LocalModelSpec, model: Path, port: int, embedding_args: Sequence[str] = ()) -> list[str]:
    """The server's command line; ``model`` is :func:`resolve_model_path`'s answer. The model id is the name the
    server answers to (its /v1/models), which is also how a health check knows it reached the right server.
    ``embedding_args`` are added to the embedding server's (its backend and cache folder)."""
    if spec.kind == "sentence_transformers":
        return [
            sys.executable, "-m", "backend.localmodels.embedding_server",
            "--model-path", str(model),
            "--model-id", spec.model_id,
            "--threads", str(spec.threads),
            "--host", HOST,
            "--port", str(port),
            *embedding_args,
        ]  # fmt: skip
    argv = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model),
        "--model_alias", spec.model_id,
        "--n_threads", str(spec.threads),
        "--n_ctx", str(spec.context_size or 2048),
        "--host", HOST,
        "--port", str(port),
    ]  # fmt: skip
    if spec.chat_format:
        argv += ["--chat_format", spec.chat_format]
    for name, value in sorted(spec.extra_args.items()):
        argv += [f"--{name}", _option(value)]
    return argv
