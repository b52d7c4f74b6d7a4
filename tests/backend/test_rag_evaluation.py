"""backend.rag.evaluation: question loading, page names, page-level ranks and the hit@k / MRR summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.rag.evaluation import Question, load_questions, page_of, rank_of, summarise

REPO = Path(__file__).resolve().parents[2]


def write_lines(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "questions.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- load_questions -------------------------------------------------------------------------------------------------


def test_load_questions_reads_each_line_and_skips_blank_ones(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path,
        [
            json.dumps({"question": "How do I add an index without locking writes?", "source": "sql-createindex.html"}),
            "",
            json.dumps({"question": "  What does VACUUM reclaim?  ", "source": " routine-vacuuming.html ", "x": 1}),
        ],
    )
    assert load_questions(path) == [
        Question("How do I add an index without locking writes?", "sql-createindex.html", line=1),
        Question("What does VACUUM reclaim?", "routine-vacuuming.html", line=3),
    ]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("{not json", "not valid JSON"),
        ('["a list", "not an object"]', "expected a JSON object"),
        (json.dumps({"source": "a.html"}), "'question'"),
        (json.dumps({"question": "", "source": "a.html"}), "'question'"),
        (json.dumps({"question": "   ", "source": "a.html"}), "'question'"),
        (json.dumps({"question": 7, "source": "a.html"}), "'question'"),
        (json.dumps({"question": "q?"}), "'source'"),
        (json.dumps({"question": "q?", "source": ""}), "'source'"),
        (json.dumps({"question": "q?", "source": ["a.html"]}), "'source'"),
    ],
)
def test_load_questions_rejects_a_bad_line_naming_its_number(tmp_path: Path, bad: str, reason: str) -> None:
    good = json.dumps({"question": "q?", "source": "a.html"})
    path = write_lines(tmp_path, [good, "", good, bad, good])
    with pytest.raises(ValueError, match="line 4") as info:
        load_questions(path)
    assert reason in str(info.value)


# --- page_of --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reference",
    [
        "sql-createindex.html",
        "s3://bucket/x/sql-createindex.html",
        "/tmp/a/sql-createindex.html#frag",
        "https://example.org/docs/15/sql-createindex.html?v=1#SQL-CREATEINDEX-CONCURRENTLY",
        "docs\\html\\sql-createindex.html",
        "  relative/dir/sql-createindex.html  ",
    ],
)
def test_page_of_keeps_only_the_file_name(reference: str) -> None:
    assert page_of(reference) == "sql-createindex.html"


# --- rank_of --------------------------------------------------------------------------------------------------------


def test_rank_of_counts_distinct_pages_not_chunks() -> None:
    hits = [
        "s3://docs/html/sql-select.html",
        "/data/html/sql-select.html#SQL-WITH",  # a second chunk of the same page does not take a rank
        "/data/html/queries-with.html",
        "sql-select.html",
        "/data/html/sql-createindex.html#frag",
    ]
    assert rank_of("sql-select.html", hits) == 1
    assert rank_of("queries-with.html", hits) == 2
    assert rank_of("sql-createindex.html", hits) == 3  # 5th chunk, 3rd distinct page
    assert rank_of("/elsewhere/sql-createindex.html", hits) == 3  # the expected side is normalised too


def test_rank_of_is_none_for_a_miss_or_no_hits() -> None:
    assert rank_of("sql-vacuum.html", ["sql-select.html", "sql-analyze.html"]) is None
    assert rank_of("sql-vacuum.html", []) is None
    # a page whose name merely contains the expected one is not a match
    assert rank_of("vacuum.html", ["sql-vacuum.html"]) is None


# --- summarise ------------------------------------------------------------------------------------------------------


def test_summarise_hand_computed_example() -> None:
    ranks = [1, 2, None, 4, 11]
    summary = summarise(ranks)
    # hit@1: {1}; hit@3: {1, 2}; hit@5: {1, 2, 4}; hit@10: same; 11 and the miss never count.
    assert summary["questions"] == 5
    assert summary["hit@1"] == pytest.approx(1 / 5)
    assert summary["hit@3"] == pytest.approx(2 / 5)
    assert summary["hit@5"] == pytest.approx(3 / 5)
    assert summary["hit@10"] == pytest.approx(3 / 5)
    # MRR = (1 + 1/2 + 0 + 1/4 + 1/11) / 5 = (44 + 22 + 11 + 4) / 44 / 5 = 81 / 220
    assert summary["mrr"] == pytest.approx(81 / 220)
    assert list(summary) == ["questions", "hit@1", "hit@3", "hit@5", "hit@10", "mrr"]


def test_summarise_custom_ks_all_misses_and_empty() -> None:
    assert summarise([2, None], ks=(2,)) == {"questions": 2, "hit@2": 0.5, "mrr": 0.25}
    assert summarise([None, None, None]) == {
        "questions": 3,
        "hit@1": 0.0,
        "hit@3": 0.0,
        "hit@5": 0.0,
        "hit@10": 0.0,
        "mrr": 0.0,
    }
    assert summarise([])["mrr"] == 0.0
    assert summarise(iter([1, 1]))["hit@1"] == 1.0  # any iterable, consumed once


def test_summarise_rejects_ranks_and_ks_below_one() -> None:
    with pytest.raises(ValueError, match="1-based"):
        summarise([0])
    with pytest.raises(ValueError, match="k must be"):
        summarise([1], ks=(0,))


def test_rank_and_summarise_together() -> None:
    runs = {
        "sql-createindex.html": ["sql-createindex.html#a", "sql-createindex.html#b", "indexes.html"],
        "indexes-partial.html": ["indexes.html", "indexes.html#x", "sql-createindex.html", "indexes-partial.html"],
        "sql-vacuum.html": ["routine-vacuuming.html"],
    }
    ranks = [rank_of(expected, hits) for expected, hits in runs.items()]
    assert ranks == [1, 3, None]
    assert summarise(ranks, ks=(1, 3))["mrr"] == pytest.approx((1 + 1 / 3) / 3)


# --- the shipped question sets ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "minimum"), [("postgresql15.jsonl", 120), ("postgresql15-dev.jsonl", 30)], ids=["test", "dev"]
)
def test_shipped_question_sets_load(name: str, minimum: int) -> None:
    questions = load_questions(REPO / "bench" / "rag_eval" / name)
    assert len(questions) >= minimum
    assert all(q.source.endswith(".html") and page_of(q.source) == q.source for q in questions)
    assert len({q.question for q in questions}) == len(questions)


def test_dev_and_test_sets_use_different_pages() -> None:
    test = {q.source for q in load_questions(REPO / "bench" / "rag_eval" / "postgresql15.jsonl")}
    dev = {q.source for q in load_questions(REPO / "bench" / "rag_eval" / "postgresql15-dev.jsonl")}
    assert len(test) >= 100
    assert not test & dev
