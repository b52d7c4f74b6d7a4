"""Token chunking (tiktoken), its offline encodings and the chunking spec factory."""

from __future__ import annotations

import hashlib
import itertools
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tiktoken.load
from tiktoken_ext import openai_public

from ingestion import tokens
from ingestion.chunkers import (
    FixedChunking,
    MarkdownChunking,
    NoChunking,
    TokenChunking,
    chunk_sections,
    chunking_from_spec,
)
from ingestion.document import IngestionError, Section

CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
PROSE = " ".join(
    f"Paragraph {i}: the backup job copies the database to object storage, verifies checksums and rotates old copies."
    for i in range(60)
)
UNICODE = " ".join(
    f"Grüße aus Köln ({i})! 東京は日本の首都です。Ελληνικά κείμενα. 😀🎉👍🏽 naïve café — “quotes”." for i in range(40)
)


def cl100k() -> Any:
    return tokens.encoding("cl100k_base")


def two_token_characters() -> str:
    """Distinct CJK characters that cl100k encodes as exactly two tokens each, the second starting mid-character."""
    enc = cl100k()
    chars = [chr(cp) for cp in range(0x4E00, 0x4F00) if len(enc.encode_ordinary(chr(cp))) == 2][:120]
    text = "".join(chars)
    pieces = enc.decode_tokens_bytes(enc.encode_ordinary(text))
    assert len(chars) == 120
    assert [piece[0] & 0xC0 != 0x80 for piece in pieces] == [True, False] * 120  # precondition of the test below
    return text


def assert_tiles(ids: list[int], windows: list[list[int]], overlaps: list[int]) -> None:
    """Each window is the slice of ``ids`` starting ``overlaps[i]`` tokens before the previous one ended; the last
    one ends with the stream."""
    assert len(overlaps) == len(windows) - 1
    pos = 0
    for window, overlap in zip(windows, [0, *overlaps], strict=True):
        pos -= overlap
        assert ids[pos : pos + len(window)] == window
        pos += len(window)
    assert pos == len(ids)


def shared(a: list[int], b: list[int]) -> int:
    """How many tokens ``b`` repeats from the end of ``a`` (unique for texts without repeats)."""
    matches = [k for k in range(1, min(len(a), len(b)) + 1) if a[-k:] == b[:k]]
    assert len(matches) <= 1
    return matches[0] if matches else 0


@pytest.fixture
def fresh_encodings() -> Iterator[None]:
    tokens.clear_cache()
    yield
    tokens.clear_cache()


@pytest.mark.parametrize(("size", "overlap"), [(16, 0), (16, 8), (64, 13), (256, 25), (100, 50)])
def test_windows_fit_share_exact_overlap_and_tile_the_token_stream(size: int, overlap: int) -> None:
    chunking = TokenChunking(size=size, overlap=overlap)
    ids = cl100k().encode_ordinary(PROSE)
    windows = chunking.split_tokens(PROSE)
    assert len(windows) > 2
    assert all(0 < len(w) <= size for w in windows)
    assert all(len(w) == size for w in windows[:-1])  # plain ASCII: every token edge is a character edge
    assert_tiles(ids, windows, [overlap] * (len(windows) - 1))


@pytest.mark.parametrize(("size", "overlap"), [(16, 5), (40, 20), (256, 25)])
def test_chunk_texts_fit_when_counted_with_the_encoding_and_round_trip(size: int, overlap: int) -> None:
    enc = cl100k()
    chunking = TokenChunking(size=size, overlap=overlap)
    windows = chunking.split_tokens(PROSE)
    pieces = chunking.split(PROSE)
    assert pieces == [enc.decode(w) for w in windows]
    assert all(len(enc.encode_ordinary(p)) <= size for p in pieces)
    for a, b, window in zip(pieces, pieces[1:], windows, strict=False):
        common = enc.decode(window[len(window) - overlap :]) if overlap else ""
        assert a.endswith(common) and b.startswith(common)
    assert pieces[0] + "".join(enc.decode(w[overlap:]) for w in windows[1:]) == PROSE


def test_zero_overlap_partitions_the_text() -> None:
    pieces = TokenChunking(size=32, overlap=0).split(PROSE)
    assert "".join(pieces) == PROSE
    assert len(pieces) == -(-len(cl100k().encode_ordinary(PROSE)) // 32)


def test_unicode_edges_fall_on_characters_and_overlap_stays_exact() -> None:
    enc = cl100k()
    chunking = TokenChunking(size=16, overlap=5)
    ids = enc.encode_ordinary(UNICODE)
    assert any(piece[0] & 0xC0 == 0x80 for piece in enc.decode_tokens_bytes(ids))  # tokens do split characters
    windows = chunking.split_tokens(UNICODE)
    pieces = chunking.split(UNICODE)
    assert all("\ufffd" not in p for p in pieces)
    assert all(len(w) <= 16 and len(enc.encode_ordinary(p)) <= 16 for w, p in zip(windows, pieces, strict=True))
    assert_tiles(ids, windows, [5] * (len(windows) - 1))
    # every window edge is a character edge, so the decoded parts concatenate to the text itself
    assert pieces[0] + "".join(enc.decode(w[5:]) for w in windows[1:]) == UNICODE
    assert {"😀", "東", "ü", "“"} <= set("".join(pieces))


def test_overlap_grows_to_a_character_start_when_exact_is_impossible() -> None:
    enc = cl100k()
    text = two_token_characters()  # character starts at even tokens only: an odd overlap cannot be exact
    windows = TokenChunking(size=16, overlap=5).split_tokens(text)
    pieces = [enc.decode(w) for w in windows]
    assert all(len(w) <= 16 for w in windows) and all("\ufffd" not in p for p in pieces)
    overlaps = [shared(a, b) for a, b in itertools.pairwise(windows)]
    assert overlaps and set(overlaps) == {6}
    assert_tiles(enc.encode_ordinary(text), windows, overlaps)
    even = TokenChunking(size=16, overlap=4).split_tokens(text)
    assert {shared(a, b) for a, b in itertools.pairwise(even)} == {4}


def test_special_token_text_is_ordinary_text_and_blank_text_gives_nothing() -> None:
    text = "before <|endoftext|> after " * 30
    pieces = TokenChunking(size=20, overlap=0).split(text)
    assert "".join(pieces) == text.strip() and "<|endoftext|>" in pieces[0]
    assert TokenChunking().split(" \n\t ") == []
    assert TokenChunking().split("short text") == ["short text"]


def test_defaults_and_other_encodings() -> None:
    chunking = TokenChunking()
    assert (chunking.size, chunking.overlap, chunking.encoding, chunking.kind) == (256, 25, "cl100k_base", "tokens")
    o200k = tokens.encoding("o200k_base")
    windows = TokenChunking(size=24, overlap=6, encoding="o200k_base").split_tokens(UNICODE)
    assert all(len(w) <= 24 for w in windows)
    assert_tiles(o200k.encode_ordinary(UNICODE), windows, [6] * (len(windows) - 1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 15}, "between 16 and 8192"),
        ({"size": 8193}, "between 16 and 8192"),
        ({"size": 256, "overlap": 129}, "size/2 (128)"),
        ({"overlap": -1}, "overlap"),
        ({"encoding": "nope"}, "unknown tiktoken encoding 'nope'"),
        ({"encoding": "gpt2"}, "not available offline"),
    ],
)
def test_token_chunking_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(IngestionError, match=re.escape(message)):
        TokenChunking(**kwargs)


def test_bounds_are_inclusive() -> None:
    assert TokenChunking(size=16, overlap=8).size == 16
    assert TokenChunking(size=8192, overlap=4096).overlap == 4096


def test_encodings_load_offline_from_the_bundled_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_encodings: None
) -> None:
    def no_fetch(*args: Any, **kwargs: Any) -> bytes:
        raise AssertionError(f"tiktoken tried to read {args}")

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # an empty cache: tiktoken alone would download
    monkeypatch.setattr(tiktoken.load, "read_file", no_fetch)
    monkeypatch.setattr(tiktoken.load, "read_file_cached", no_fetch)
    bundled = tokens.litellm_tokenizers_dir()
    assert bundled is not None and (bundled / hashlib.sha1(CL100K_URL.encode()).hexdigest()).is_file()
    # token ids fixed by the real encodings
    assert tokens.encoding("cl100k_base").encode("hello world") == [15339, 1917]
    assert tokens.encoding().encode("<|endoftext|>", allowed_special="all") == [100257]
    assert tokens.encoding("o200k_base").encode("hello world") == [24912, 2375]
    assert tokens.encoding() is tokens.encoding("cl100k_base")  # cached
    assert TokenChunking(size=16, overlap=4).split(PROSE)[0] == cl100k().decode(cl100k().encode(PROSE)[:16])
    assert list(tmp_path.iterdir()) == []  # nothing downloaded or written
    assert openai_public.load_tiktoken_bpe is tiktoken.load.load_tiktoken_bpe  # loader put back


def test_cache_dir_is_used_first_and_corrupt_files_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_encodings: None
) -> None:
    bundled = tokens.litellm_tokenizers_dir()
    assert bundled is not None
    key = hashlib.sha1(CL100K_URL.encode()).hexdigest()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    (tmp_path / key).write_bytes(b"Zm9v 0\n")  # parses, but is not the file tiktoken pins by sha256
    assert tokens.encoding().encode("hello world") == [15339, 1917]  # fell through to the bundled copy

    tokens.clear_cache()
    shutil.copyfile(bundled / key, tmp_path / key)
    monkeypatch.setattr(tokens, "litellm_tokenizers_dir", lambda: None)
    assert tokens.search_dirs() == [tmp_path]
    assert tokens.encoding().encode("hello world") == [15339, 1917]  # from the cache dir alone


def test_missing_offline_encoding_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_encodings: None
) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tokens, "litellm_tokenizers_dir", lambda: None)
    with pytest.raises(IngestionError, match=r"no offline copy of .*cl100k_base\.tiktoken.*TIKTOKEN_CACHE_DIR"):
        tokens.encoding()
    with pytest.raises(IngestionError, match="no offline copy"):
        TokenChunking()
    assert openai_public.load_tiktoken_bpe is tiktoken.load.load_tiktoken_bpe


def test_token_chunks_get_the_usual_metadata() -> None:
    sections = [Section(PROSE[:400], page=1), Section(PROSE[400:800], page=2, metadata={"title": "T"})]
    chunks = chunk_sections(sections, TokenChunking(size=32, overlap=4), {"source": "s3://b/d.pdf", "name": "d.pdf"})
    assert [c.metadata["part"] for c in chunks] == list(range(1, len(chunks) + 1))
    assert len({c.metadata["page"] for c in chunks}) == 2
    assert chunks[0].metadata == {"source": "s3://b/d.pdf", "name": "d.pdf", "part": 1, "page": 1}
    assert chunks[-1].metadata["title"] == "T" and chunks[-1].metadata["page"] == 2
    assert all(len(cl100k().encode_ordinary(c.text)) <= 32 for c in chunks)


def test_spec_factory_builds_each_strategy_with_defaults() -> None:
    assert chunking_from_spec({"strategy": "fixed"}) == FixedChunking(512, 51)
    assert chunking_from_spec({"strategy": "tokens"}) == TokenChunking(256, 25, "cl100k_base")
    assert chunking_from_spec({"strategy": "markdown"}) == MarkdownChunking(2000)
    assert chunking_from_spec({"strategy": "none"}) == NoChunking()
    assert chunking_from_spec({"strategy": "fixed", "size": 1000, "overlap": 0}) == FixedChunking(1000, 0)
    assert chunking_from_spec({"strategy": "tokens", "size": 128, "overlap": 16, "encoding": "o200k_base"}) == (
        TokenChunking(128, 16, "o200k_base")
    )
    assert chunking_from_spec({"strategy": "tokens", "size": None, "overlap": None}) == TokenChunking()
    assert chunking_from_spec({"strategy": "markdown", "size": 800}) == MarkdownChunking(800)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"strategy": "sentences"}, "unknown chunking strategy 'sentences'"),
        ({"size": 512}, "unknown chunking strategy None"),
        ({"strategy": "tokens", "size": "256"}, "whole number"),
        ({"strategy": "tokens", "overlap": 2.5}, "whole number"),
        ({"strategy": "fixed", "size": True}, "whole number"),
        ({"strategy": "tokens", "size": 8}, "between 16 and 8192 tokens"),
        ({"strategy": "tokens", "size": 64, "overlap": 33}, "size/2"),
        ({"strategy": "fixed", "size": 50}, "between 100 and 10000 characters"),
        ({"strategy": "markdown", "size": 20}, "between 100 and 10000"),
        ({"strategy": "markdown", "overlap": 10}, "does not take overlap"),
        ({"strategy": "none", "size": 512}, "'none' does not take size"),
        ({"strategy": "fixed", "encoding": "cl100k_base"}, "does not take encoding"),
        ({"strategy": "tokens", "encoding": 5}, "encoding must be a name"),
        ({"strategy": "tokens", "encoding": "nope"}, "unknown tiktoken encoding"),
    ],
)
def test_spec_factory_rejects_bad_specs(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(IngestionError, match=message):
        chunking_from_spec(spec)


def test_spec_factory_rejects_non_objects() -> None:
    with pytest.raises(IngestionError, match="must be an object"):
        chunking_from_spec(["tokens"])  # type: ignore[arg-type]
