"""The page-level ranking functions on their own (the server-level behaviour is in test_ranking.py)."""

from __future__ import annotations

import math

import pytest

from backend.rag.ranking import PageFusion, diversify, fuse_pages, rrf, with_length_penalty, with_page_prior


def test_a_second_strong_chunk_lifts_its_page_past_a_single_better_chunk() -> None:
    hits = [("a1", "single", 0.80), ("b1", "pair", 0.78), ("b2", "pair", 0.70), ("c1", "other", 0.5)]
    ranked = fuse_pages(hits, PageFusion(decay=0.1, per_page=3, support=1))
    assert [key for key, _, _ in ranked] == ["b1", "a1", "b2", "c1"]
    assert ranked[0][2] == pytest.approx(0.78 + 0.1 * 0.70)  # the head carries its page's score
    assert ranked[2][2] == pytest.approx(0.70)  # a further chunk keeps its own
    # decay 0: the chunk order, unchanged
    assert [k for k, _, _ in fuse_pages(hits, PageFusion(decay=0.0))] == ["a1", "b1", "b2", "c1"]


def test_support_counts_that_many_further_chunks_and_the_cap_keeps_that_many() -> None:
    hits = [(f"p{i}", "long", 0.5 - i * 0.01) for i in range(6)] + [("q", "short", 0.6)]
    three = fuse_pages(hits, PageFusion(decay=0.1, per_page=2, support=3))
    assert three[0] == ("p0", "long", pytest.approx(0.5 + 0.1 * (0.49 + 0.48 + 0.47)))
    assert [k for k, _, _ in three] == ["p0", "q", "p1"]  # two of the long page, no more
    assert [k for k, _, _ in fuse_pages(hits, PageFusion(decay=0.1, per_page=0))][-1] == "p5"  # 0: no cap


def test_negative_scores_count_as_zero_and_ties_keep_the_input_order() -> None:
    ranked = fuse_pages([("x", "a", -1.0), ("y", "b", 0.0), ("z", "c", 0.0)], PageFusion())
    assert [k for k, _, _ in ranked] == ["x", "y", "z"]


def test_the_page_prior_lifts_the_page_nearest_the_question_as_a_whole() -> None:
    hits = [("a1", "lucky", 0.80), ("b1", "about", 0.75), ("c1", "other", 0.5), ("d1", "unscored", 0.4)]
    pages = {"lucky": 0.30, "about": 0.60, "other": 0.45}
    primed = with_page_prior(hits, pages, 0.3)
    # min-max over the pages: about gains the whole weight, lucky nothing, other half; unscored nothing
    assert [s for _, _, s in primed] == pytest.approx([0.80, 1.05, 0.65, 0.40])
    assert [k for k, _, _ in fuse_pages(primed, PageFusion())] == ["b1", "a1", "c1", "d1"]
    assert with_page_prior(hits, pages, 0.0) == hits and with_page_prior(hits, {}, 0.3) == hits
    assert with_page_prior(hits, {"lucky": 0.5}, 0.3)[0][2] == pytest.approx(1.10)  # one page scored: it gains all


def test_the_length_penalty_takes_from_long_pages_on_a_log_scale() -> None:
    hits = [("a1", "manual", 0.80), ("b1", "command", 0.75), ("c1", "guide", 0.55), ("d1", "uncounted", 0.4)]
    chunks = {"manual": 400, "command": 4, "guide": 40}
    penalised = with_length_penalty(hits, chunks, 0.2)
    # log 400 is the longest (loses 0.2), log 4 the shortest (nothing), log 40 halfway between; uncounted: nothing
    assert [s for _, _, s in penalised] == pytest.approx([0.60, 0.75, 0.45, 0.40])
    assert math.log(40) - math.log(4) == pytest.approx(math.log(400) - math.log(40))
    assert [k for k, _, _ in fuse_pages(penalised, PageFusion())] == ["b1", "a1", "c1", "d1"]
    assert with_length_penalty(hits, chunks, 0.0) == hits and with_length_penalty(hits, {}, 0.2) == hits
    # every page as long: nobody loses anything; a count of 0 (no chunks) is not a length
    assert with_length_penalty(hits, {"manual": 7, "command": 7, "guide": 0}, 0.2) == hits


def test_rrf_and_diversify() -> None:
    scores = rrf([["a", "b"], ["b", "c"]], [0.7, 0.3], k=10)
    assert scores["a"] == pytest.approx(0.7 / 11) and scores["b"] == pytest.approx(0.7 / 12 + 0.3 / 11)
    hits = [("1", "p", 3.0), ("2", "p", 2.0), ("3", "q", 1.0), ("4", "p", 0.5)]
    assert [k for k, _, _ in diversify(hits, 2)] == ["1", "2", "3"]
    assert diversify(hits, 0) == hits


@pytest.mark.parametrize(
    "bad",
    [{"decay": 1.5}, {"decay": -0.1}, {"per_page": -1}, {"support": -1}, {"page_vector": -0.1}, {"page_length": 11}],
)
def test_bad_settings_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PageFusion(**bad)  # type: ignore[arg-type]
