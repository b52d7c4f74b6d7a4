"""`lisa rag eval`, run as a user runs it (a subprocess) against the session's real `lisa serve`: a repository of a
few small documents, searched with real MiniLM embeddings and PostgreSQL full-text search."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import LISA, LisaServer

DOCUMENTS = {
    "beekeeping.md": (
        "# Beekeeping\n\nWorker bees collect nectar from flowers and store it in wax comb. They fan the comb with "
        "their wings until the water evaporates and the nectar thickens into honey. A beekeeper harvests the "
        "capped frames in late summer and leaves enough honey for the colony to survive the winter."
    ),
    "volcanoes.md": (
        "# Volcanoes\n\nA volcano erupts when magma rises through cracks in the crust. Shield volcanoes such as "
        "Mauna Loa pour out runny basalt lava in gentle flows, while stratovolcanoes build steep cones from "
        "layers of ash and sticky lava and tend to explode violently."
    ),
    "sourdough.txt": (
        "Sourdough bread rises without commercial yeast. The baker keeps a starter of flour and water in which "
        "wild yeast and lactic acid bacteria live; feeding it every day keeps it active. The bacteria give the "
        "loaf its sour taste, and a long cold proof in the fridge deepens the flavour."
    ),
    "chess.md": (
        "# Chess openings\n\nThe Sicilian Defence answers 1.e4 with 1...c5 and leads to sharp, unbalanced "
        "positions. The Queen's Gambit offers a pawn on c4 to gain control of the centre. Castling early keeps "
        "the king safe behind a wall of pawns."
    ),
    "lighthouses.txt": (
        "Lighthouses warn ships away from rocks and reefs at night. Each light flashes in its own pattern, its "
        "character, so that sailors can tell one lighthouse from another. A Fresnel lens of stepped glass prisms "
        "bends the lamp's light into a narrow beam visible for many miles."
    ),
    "tides.md": (
        "# Tides\n\nThe gravity of the Moon and, to a lesser degree, the Sun pulls the oceans into two bulges, so "
        "most coasts see two high tides and two low tides a day. Spring tides, with the largest range, come at "
        "new and full moon, when Sun and Moon line up."
    ),
}

# Each answered by exactly one document; the last names a page the repository does not hold (a certain miss).
QUESTIONS = [
    {"question": "How do bees turn flower nectar into honey?", "source": "beekeeping.md"},
    {"question": "Why do some volcanoes explode while others have gentle lava flows?", "source": "volcanoes.md"},
    {"question": "How can bread rise without any commercial yeast?", "source": "sourdough.txt"},
    {"question": "How do sailors tell one lighthouse from another at night?", "source": "lighthouses.txt"},
    {"question": "When do spring tides with the largest range happen?", "source": "tides.md"},
    {"question": "What is the boiling point of liquid nitrogen?", "source": "cryogenics.md"},
]


def run_eval(*args: str, lisa: LisaServer | None, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"LISA_URL", "LISA_API_KEY", "LISA_DATA_DIR"}}
    env["COLUMNS"] = "300"  # wide enough that rich neither wraps nor truncates table cells
    auth = ["--url", lisa.url, "--token", lisa.token] if lisa is not None else []
    return subprocess.run(
        [LISA, "rag", "eval", *args, *auth], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def write_questions(path: Path, records: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def repository(admin: httpx.Client) -> Iterator[str]:
    """A pgvector repository with one collection holding the six documents, fully ingested."""
    repo_id = f"eval-cli-{secrets.token_hex(3)}"
    created = admin.post("/api/repositories", json={"id": repo_id})
    assert created.status_code == 201, created.text
    try:
        collection = admin.post(f"/api/repositories/{repo_id}/collections", json={"id": "docs"})
        assert collection.status_code == 201, collection.text
        files = [("files", (name, text.encode(), "text/plain")) for name, text in DOCUMENTS.items()]
        job = admin.post(f"/api/repositories/{repo_id}/collections/docs/documents", files=files)
        assert job.status_code == 202, job.text
        deadline = time.monotonic() + 180
        while True:
            state = admin.get(f"/api/repositories/{repo_id}/jobs/{job.json()['id']}").json()
            if state["status"] in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert state["status"] == "completed", state
        assert state["documents_done"] == len(DOCUMENTS), state
        yield repo_id
    finally:
        admin.delete(f"/api/repositories/{repo_id}")


def test_json_summary_scores_each_question_against_its_page(lisa: LisaServer, repository: str, tmp_path: Path) -> None:
    questions = write_questions(tmp_path / "q.jsonl", list(QUESTIONS))
    result = run_eval(str(questions), "--repository", repository, "--json", "--verbose", lisa=lisa, cwd=tmp_path)
    assert result.returncode == 0, output(result)
    summary = json.loads(result.stdout)
    assert summary["repository"] == repository
    assert summary["questions"] == 6
    assert summary["top_k"] == 10
    # Five questions find their one answering document first; the sixth names a page that is not there.
    for k in (1, 3, 5, 10):
        assert summary[f"hit@{k}"] == pytest.approx(5 / 6), summary
    assert summary["mrr"] == pytest.approx(5 / 6), summary
    assert summary["latency_ms"]["p50"] > 0
    [miss] = summary["misses"]
    assert miss["line"] == 6
    assert miss["expected"] == "cryogenics.md"
    assert miss["question"] == QUESTIONS[5]["question"]
    # The repository holds six pages, and a miss lists every one of them it was shown (top 10 chunks).
    assert set(miss["got"]) <= set(DOCUMENTS)
    assert miss["got"]


def test_full_text_only_and_a_small_top_k(lisa: LisaServer, repository: str, tmp_path: Path) -> None:
    questions = write_questions(tmp_path / "q.jsonl", list(QUESTIONS[:5]))
    args = [str(questions), "-r", repository, "-c", "docs", "--top-k", "3", "--hybrid-weight", "1", "--json"]
    result = run_eval(*args, lisa=lisa, cwd=tmp_path)
    assert result.returncode == 0, output(result)
    summary = json.loads(result.stdout)
    assert summary["collections"] == ["docs"]
    assert summary["hybrid_weight"] == 1.0
    # Every question shares words with its document only, so keyword search alone ranks it first.
    assert summary["hit@1"] == 1.0, summary
    assert summary["mrr"] == 1.0, summary
    # No cut-off beyond top_k: hit@5 and hit@10 could only repeat hit@3.
    assert "hit@3" in summary
    assert "hit@5" not in summary
    assert "hit@10" not in summary


def test_table_output_and_the_misses(lisa: LisaServer, repository: str, tmp_path: Path) -> None:
    questions = write_questions(tmp_path / "q.jsonl", list(QUESTIONS))
    result = run_eval(str(questions), "-r", repository, "--verbose", lisa=lisa, cwd=tmp_path)
    assert result.returncode == 0, output(result)
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "hit@1" in line)
    for cell in ("questions", "hit@1", "hit@3", "hit@5", "hit@10", "MRR"):
        assert cell in header
    row = next(line for line in lines if line.strip("│| ").startswith("6 "))
    assert row.count("0.833") == 5, row  # four hit rates and the MRR
    assert "misses (1)" in result.stdout
    miss = next(line for line in lines if "cryogenics.md" in line)
    assert "liquid nitrogen" in miss


def test_a_malformed_question_set_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(QUESTIONS[0]) + "\n{not json\n", encoding="utf-8")
    result = run_eval(str(path), "-r", "anything", lisa=None, cwd=tmp_path)
    assert result.returncode == 2, output(result)
    assert "malformed question set" in output(result)
    assert "line 2" in output(result)
    assert "not valid JSON" in output(result)
    assert "Traceback" not in output(result)


@pytest.mark.parametrize(
    ("records", "reason"),
    [
        ([{"question": "Where?"}], "'source' must be a non-empty string"),
        ([["a", "list"]], "expected a JSON object"),
        ([], "holds no questions"),
    ],
)
def test_question_sets_missing_what_scoring_needs_are_refused(
    tmp_path: Path, records: list[object], reason: str
) -> None:
    result = run_eval(str(write_questions(tmp_path / "q.jsonl", records)), "-r", "x", lisa=None, cwd=tmp_path)
    assert result.returncode == 2, output(result)
    assert reason in output(result)


def test_a_missing_question_file_is_a_clear_error(tmp_path: Path) -> None:
    result = run_eval(str(tmp_path / "nowhere.jsonl"), "-r", "x", lisa=None, cwd=tmp_path)
    assert result.returncode == 2, output(result)
    assert "cannot read" in output(result)
    assert "nowhere.jsonl" in output(result)


def test_an_unknown_repository_or_collection_fails_with_the_servers_reason(
    lisa: LisaServer, repository: str, tmp_path: Path
) -> None:
    questions = write_questions(tmp_path / "q.jsonl", list(QUESTIONS))
    unknown = run_eval(str(questions), "-r", f"no-such-repo-{secrets.token_hex(3)}", lisa=lisa, cwd=tmp_path)
    assert unknown.returncode == 1, output(unknown)
    assert "404" in output(unknown)
    bad_collection = run_eval(str(questions), "-r", repository, "-c", "nope", lisa=lisa, cwd=tmp_path)
    assert bad_collection.returncode == 1, output(bad_collection)
    assert "unknown collection" in output(bad_collection)
    assert "nope" in output(bad_collection)
