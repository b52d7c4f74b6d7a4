"""bench/rag_eval: the corpus registry, page selection, and the shipped question sets, all without the network.

The question sets are checked against the page lists committed next to them (``<corpus>-pages.txt``); where the
package is already in the local cache, the committed list is also checked against what the registry selects
from it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.rag.evaluation import load_questions, page_of
from bench.rag_eval import corpus as corpus_module
from bench.rag_eval.corpus import CORPORA, GIT, MARKER, POSTGRESQL, Corpus, corpus_dir, get_corpus, select_pages

LONG_BODY = "<p>" + "Record changes to the repository with a message. " * 30 + "</p>"


def page(path: Path, body: str = LONG_BODY, head: str = "") -> Path:
    path.write_text(f"<html><head><title>{path.stem}</title>{head}</head><body>{body}</body></html>", encoding="utf-8")
    return path


# --- the registry -----------------------------------------------------------------------------------------------------


def test_registry_names_both_corpora_and_their_files() -> None:
    assert set(CORPORA) == {"postgresql15", "git"}
    assert CORPORA["postgresql15"] is POSTGRESQL and CORPORA["git"] is GIT
    assert GIT.package == "git-doc" and GIT.html_subdir == Path("usr/share/doc/git-doc")
    assert GIT.question_sets == {
        "dev": corpus_module.HERE / "git-dev.jsonl",
        "dev2": corpus_module.HERE / "git-dev2.jsonl",
        "test": corpus_module.HERE / "git.jsonl",
    }
    assert GIT.page_list == corpus_module.HERE / "git-pages.txt"
    assert len({c.repository for c in CORPORA.values()}) == len(CORPORA)  # one LISA repository each


def test_postgresql_keeps_its_old_names_and_defaults() -> None:
    assert corpus_module.PACKAGE == "postgresql-doc-15"
    assert Path("usr/share/doc/postgresql-doc-15/html") == corpus_module.HTML_SUBDIR
    assert Path.home() / ".cache" / "lisa-bench" / "postgresql-doc-15" == corpus_module.DEFAULT_CACHE
    assert POSTGRESQL.question_sets["test"].name == "postgresql15.jsonl"
    assert POSTGRESQL.repository == "pgdocs"


def test_get_corpus_accepts_a_name_or_a_corpus_and_rejects_unknown_names() -> None:
    assert get_corpus("git") is GIT
    assert get_corpus(GIT) is GIT
    with pytest.raises(ValueError, match=r"unknown corpus .sqlite.*git, postgresql15"):
        get_corpus("sqlite")


def test_corpus_dir_uses_a_finished_extraction_without_downloading(tmp_path: Path) -> None:
    html_dir = tmp_path / GIT.html_subdir
    html_dir.mkdir(parents=True)
    (tmp_path / MARKER).write_text("git-doc_2.39_all.deb\n")
    assert corpus_dir(tmp_path, "git") == html_dir


# --- page selection ---------------------------------------------------------------------------------------------------


@pytest.fixture
def git_tree(tmp_path: Path) -> Path:
    """A folder shaped like git-doc's: manual pages, stubs, a link, contributor docs, assets and subfolders."""
    page(tmp_path / "git-commit.html")
    page(tmp_path / "gitattributes.html")
    (tmp_path / "index.html").symlink_to("git-commit.html")
    page(tmp_path / "git-stage.html", "<p>This is a synonym for git-add.</p>")
    # Plenty of markup and style, little text a reader sees: still a stub.
    page(
        tmp_path / "everyday.html",
        "<p>Moved to giteveryday.</p>",
        head="<style>" + "p { margin: 0 } " * 100 + "</style>",
    )
    page(tmp_path / "SubmittingPatches.html")
    page(tmp_path / "howto-index.html")
    (tmp_path / "asciidoc.css").write_text("body { color: black }\n" * 50)
    (tmp_path / "git-commit.txt").write_text("plain text source\n" * 50)
    (tmp_path / "howto").mkdir()
    page(tmp_path / "howto" / "maintain-git.html")
    (tmp_path / "folder.html").mkdir()
    return tmp_path


def test_git_pages_are_the_manual_pages_with_real_text(git_tree: Path) -> None:
    assert [p.name for p in GIT.pages(git_tree)] == ["git-commit.html", "gitattributes.html"]


def test_postgresql_pages_are_every_html_file_as_before(git_tree: Path) -> None:
    # No exclusions, no text floor, links kept: the selection PostgreSQL had before the registry.
    names = [p.name for p in POSTGRESQL.pages(git_tree)]
    assert names == sorted(
        [
            "SubmittingPatches.html",
            "everyday.html",
            "git-commit.html",
            "git-stage.html",
            "gitattributes.html",
            "howto-index.html",
            "index.html",
        ]
    )


def test_select_pages_applies_the_corpus_and_defaults_to_postgresql(git_tree: Path) -> None:
    assert [p.name for p in select_pages(git_tree, corpus=GIT)] == ["git-commit.html", "gitattributes.html"]
    assert len(select_pages(git_tree)) == 7
    # A page the corpus leaves out stays out even when a question names it.
    assert [p.name for p in select_pages(git_tree, 1, include={"git-stage.html"}, corpus="git")] == ["git-commit.html"]


def test_select_pages_keeps_included_pages_and_spreads_the_rest(tmp_path: Path) -> None:
    for i in range(20):
        page(tmp_path / f"p{i:02d}.html", "<p>x</p>")
    chosen = [p.name for p in select_pages(tmp_path, 5, include={"p19.html", "p18.html"})]
    assert len(chosen) == 5 and {"p18.html", "p19.html"} <= set(chosen)
    assert chosen == sorted(chosen)
    assert [p.name for p in select_pages(tmp_path, 4)] == ["p00.html", "p05.html", "p10.html", "p15.html"]
    assert len(select_pages(tmp_path, 100)) == 20
    with pytest.raises(ValueError, match="limit must be >= 0"):
        select_pages(tmp_path, -1)


def test_visible_text_ignores_markup_head_and_scripts() -> None:
    html = "<html><head><title>T</title><style>a{}</style></head><body><script>x()</script><p>A &amp; B</p></body>"
    assert corpus_module.visible_text(html) == "A & B"


# --- the shipped question sets ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", list(CORPORA.values()), ids=list(CORPORA))
def test_recorded_page_list_is_sorted_and_unique(spec: Corpus) -> None:
    names = spec.recorded_pages()
    assert names == sorted(set(names))
    assert all(name.endswith(".html") and "/" not in name for name in names)


@pytest.mark.parametrize("spec", list(CORPORA.values()), ids=list(CORPORA))
def test_recorded_page_list_matches_the_cached_package(spec: Corpus) -> None:
    html_dir = spec.default_cache / spec.html_subdir
    if not (spec.default_cache / MARKER).is_file():
        pytest.skip(f"{spec.package} is not in the local cache (python -m bench.rag_eval.corpus --corpus {spec.name})")
    assert [p.name for p in spec.pages(html_dir)] == spec.recorded_pages()


@pytest.mark.parametrize("spec", list(CORPORA.values()), ids=list(CORPORA))
def test_question_sets_parse_and_name_pages_of_their_corpus(spec: Corpus) -> None:
    pages = set(spec.recorded_pages())
    seen: set[str] = set()
    for set_name, path in spec.question_sets.items():
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        records = [json.loads(line) for line in lines]
        assert all(set(record) == {"question", "source"} for record in records), path.name
        questions = load_questions(path)
        assert len(questions) == len(lines)
        unknown = sorted({q.source for q in questions if q.source not in pages})
        assert not unknown, f"{path.name}: sources not in {spec.page_list.name}: {unknown}"
        assert all(page_of(q.source) == q.source for q in questions)
        texts = [q.question.casefold() for q in questions]
        assert len(set(texts)) == len(texts), f"{path.name} repeats a question"
        assert not seen & set(texts), f"{set_name} repeats a question of another set"
        seen |= set(texts)


@pytest.mark.parametrize("spec", list(CORPORA.values()), ids=list(CORPORA))
def test_dev_and_held_out_pages_do_not_overlap(spec: Corpus) -> None:
    dev = {q.source for q in load_questions(spec.question_sets["dev"])}
    test = {q.source for q in load_questions(spec.question_sets["test"])}
    assert not dev & test


def test_the_second_dev_sets_ask_about_pages_the_postgresql_sample_already_holds(tmp_path: Path) -> None:
    # The 600-page sample keeps the pages of the dev and held-out sets; the second dev set must fall inside it, so
    # that adding it changes no ingested page and no figure measured before it.
    html = tmp_path / "html"
    html.mkdir()
    for name in POSTGRESQL.recorded_pages():
        page(html / name)
    keep = {q.source for name in ("dev", "test") for q in load_questions(POSTGRESQL.question_sets[name])}
    sample = {p.name for p in select_pages(html, 600, include=keep, corpus=POSTGRESQL)}
    assert len(sample) == 600
    dev2 = load_questions(POSTGRESQL.question_sets["dev2"])
    assert len(dev2) == 60 and {q.source for q in dev2} <= sample
    assert not {q.source for q in dev2} & keep  # answering pages that were distractors, not the other sets' pages
    git_dev2 = load_questions(GIT.question_sets["dev2"])
    assert len(git_dev2) == 60 and len({q.source for q in git_dev2}) == 60


def test_git_sets_are_large_enough_and_spread_over_the_manual() -> None:
    dev = load_questions(GIT.question_sets["dev"])
    test = load_questions(GIT.question_sets["test"])
    assert len(dev) == 30 and len({q.source for q in dev}) == 30
    assert len(test) >= 150 and len({q.source for q in test}) >= 100
    # Not only the porcelain: plumbing, guides (git*.html without a dash) and formats answer questions too.
    guides = {q.source for q in test if not q.source.startswith("git-")}
    assert len(guides) >= 20


# --- run.py: each corpus writes its own results block -----------------------------------------------------------------


def test_each_corpus_rewrites_only_its_own_results_block(tmp_path: Path) -> None:
    from bench.rag_eval.run import default_data_dir, results_markers, write_doc

    doc = tmp_path / "rag-quality.md"
    doc.write_text("# Title\n")
    write_doc(doc, "pg one", *results_markers(POSTGRESQL))
    write_doc(doc, "git one", *results_markers(GIT))
    write_doc(doc, "git two", *results_markers(GIT))
    text = doc.read_text()
    assert "pg one" in text and "git two" in text and "git one" not in text
    assert text.index("pg one") < text.index("git two")
    # PostgreSQL keeps the markers (and the data directory) it had before there was a second corpus.
    assert results_markers(POSTGRESQL)[0].startswith("<!-- results:begin")
    assert default_data_dir(POSTGRESQL).name == "rag-eval-data"
    assert default_data_dir(GIT).name == "rag-eval-data-git"
