"""tiktoken encodings that load without network access.

tiktoken downloads an encoding's BPE ranks (``cl100k_base.tiktoken``, ...) from
openaipublic.blob.core.windows.net the first time it is used and caches the file under
``$TIKTOKEN_CACHE_DIR`` as ``sha1(url)``. LISA hosts and CI cannot reach that host, so this module never
downloads anything. It looks for the file, by the same ``sha1(url)`` name, in:

1. ``$TIKTOKEN_CACHE_DIR``, when set: an operator-provided cache, as tiktoken would use it;
2. the files litellm ships as package data in ``litellm/litellm_core_utils/tokenizers/``. litellm is a LISA
   dependency and bundles ``cl100k_base``, ``o200k_base`` and ``p50k_base`` there, under tiktoken's cache names,
   precisely so tiktoken works offline (litellm issue #1071). The package is located with
   ``importlib.util.find_spec`` and not imported: importing litellm is slow and rewrites
   ``os.environ["TIKTOKEN_CACHE_DIR"]``.

A file is only used when its sha256 equals the hash tiktoken pins for that URL, so a bundled file is
byte-for-byte the official one; a mismatching file is skipped.

The encoding itself (its split regex, special tokens, vocabulary size) is not restated here. It comes from
tiktoken's own constructor in ``tiktoken_ext.openai_public.ENCODING_CONSTRUCTORS``; the constructor is called
with that module's ``load_tiktoken_bpe`` temporarily replaced by an offline loader, and the parameters it returns
go to ``tiktoken.Encoding``. The replacement only serves the thread that installed it; any other thread calling
tiktoken meanwhile gets the original loader.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tiktoken
from tiktoken_ext import openai_public

from ingestion.document import IngestionError

_LITELLM_TOKENIZERS = ("litellm_core_utils", "tokenizers")
_lock = threading.Lock()


def search_dirs() -> list[Path]:
    """Where encoding files are looked for, in order."""
    dirs: list[Path] = []
    cache = os.environ.get("TIKTOKEN_CACHE_DIR")
    if cache:
        dirs.append(Path(cache))
    bundled = litellm_tokenizers_dir()
    if bundled is not None:
        dirs.append(bundled)
    return dirs


def litellm_tokenizers_dir() -> Path | None:
    """litellm's bundled tokenizer directory, without importing litellm."""
    try:
        spec = importlib.util.find_spec("litellm")
    except (ImportError, ValueError):
        return None
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root).joinpath(*_LITELLM_TOKENIZERS)
        if path.is_dir():
            return path
    return None


def _offline_bytes(url: str, expected_hash: str | None, dirs: list[Path]) -> bytes:
    key = hashlib.sha1(url.encode()).hexdigest()  # tiktoken's cache file name for this URL
    for directory in dirs:
        path = directory / key
        if not path.is_file():
            continue
        data = path.read_bytes()
        if expected_hash is None or hashlib.sha256(data).hexdigest() == expected_hash:
            return data
    looked = ", ".join(str(d) for d in dirs) or "nowhere (TIKTOKEN_CACHE_DIR unset and litellm not installed)"
    raise IngestionError(
        f"no offline copy of {url} in {looked}; "
        f"set TIKTOKEN_CACHE_DIR to a directory holding that file under the name {key}"
    )


def _parse_ranks(data: bytes, source: str) -> dict[bytes, int]:
    """The ``.tiktoken`` format: one ``base64(token) rank`` pair per line."""
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if not line:
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
        except ValueError as e:
            raise IngestionError(f"malformed line {line[:40]!r} in the encoding file for {source}") from e
    return ranks


def _build(name: str) -> tiktoken.Encoding:
    constructors: dict[str, Callable[[], dict[str, Any]]] = openai_public.ENCODING_CONSTRUCTORS
    constructor = constructors.get(name)
    if constructor is None:
        raise IngestionError(f"unknown tiktoken encoding {name!r}; known: {', '.join(sorted(constructors))}")
    dirs = search_dirs()
    owner = threading.get_ident()
    original_bpe = openai_public.load_tiktoken_bpe
    original_gym = openai_public.data_gym_to_mergeable_bpe_ranks

    def load_bpe(tiktoken_bpe_file: str, expected_hash: str | None = None) -> dict[bytes, int]:
        if threading.get_ident() != owner:
            return original_bpe(tiktoken_bpe_file, expected_hash)
        return _parse_ranks(_offline_bytes(tiktoken_bpe_file, expected_hash, dirs), tiktoken_bpe_file)

    def load_gym(*args: Any, **kwargs: Any) -> dict[bytes, int]:
        if threading.get_ident() != owner:
            return original_gym(*args, **kwargs)
        raise IngestionError(f"tiktoken encoding {name!r} is not available offline; use cl100k_base or o200k_base")

    with _lock:
        openai_public.load_tiktoken_bpe = load_bpe
        openai_public.data_gym_to_mergeable_bpe_ranks = load_gym
        try:
            params = constructor()
        finally:
            openai_public.load_tiktoken_bpe = original_bpe
            openai_public.data_gym_to_mergeable_bpe_ranks = original_gym
    return tiktoken.Encoding(**params)


_encodings = functools.cache(_build)


def encoding(name: str = "cl100k_base") -> tiktoken.Encoding:
    """The tiktoken encoding ``name``, built from local files once per process; IngestionError if none is available."""
    return _encodings(name)


def clear_cache() -> None:
    """Forget the encodings built so far, e.g. after TIKTOKEN_CACHE_DIR changed."""
    _encodings.cache_clear()
