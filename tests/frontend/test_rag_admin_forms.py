"""The RAG admin forms' checks (no server): a valid form becomes the backend's body, a bad one names every problem.
The bodies must also pass the backend's own schemas, so what the app accepts the backend accepts."""

from __future__ import annotations

import pytest

from backend.rag.pipeline_schemas import PipelineCreate
from backend.rag.schemas import CollectionCreate, CollectionUpdate, RepositoryCreate
from frontend.rag_admin_forms import FormError, collection_body, pipeline_body, repository_body


def test_a_repository_form_becomes_the_backends_body() -> None:
    body = repository_body(" handbook ", "Staff handbook", "", "staff, hr", new=True)
    assert body == {"id": "handbook", "name": "Staff handbook", "allowed_groups": ["staff", "hr"]}
    RepositoryCreate.model_validate(body)
    assert "id" not in repository_body("ignored", "New name", "", "", new=False)


@pytest.mark.parametrize("bad_id", ["", "Handbook", "-x", "a b", "x" * 65, "../etc"])
def test_a_bad_repository_id_is_refused_before_sending(bad_id: str) -> None:
    with pytest.raises(FormError, match="repository id"):
        repository_body(bad_id, "", "", "", new=True)


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(FormError) as caught:
        repository_body("Bad", "x" * 300, "", "a b", new=True)
    assert len(caught.value.problems) == 3


def test_a_collection_form_with_its_chunking() -> None:
    body = collection_body("policies", "Policies", "HR", "", "fixed", 600.0, 60.0, True, "", new=True)
    assert body["chunking"] == {"strategy": "fixed", "size": 600, "overlap": 60}
    assert body["allow_chunking_override"] is True and "embedding_model" not in body
    CollectionCreate.model_validate(body)
    update = collection_body("", "Policies", "", "", "none", 600.0, 60.0, False, "", new=False)
    assert update["chunking"] == {"strategy": "none"}
    CollectionUpdate.model_validate(update)


@pytest.mark.parametrize(
    ("strategy", "size", "overlap", "problem"),
    [
        ("fixed", 50, None, "chunk size"),
        ("tokens", 20_000, None, "chunk size"),
        ("tokens", 100, 60, "overlap"),
        ("tokens", 100, -1, "overlap"),
        ("sentences", None, None, "chunking must be one of"),
    ],
)
def test_bad_chunking_is_refused_before_sending(
    strategy: str, size: float | None, overlap: float | None, problem: str
) -> None:
    with pytest.raises(FormError, match=problem):
        collection_body("c", "", "", "", strategy, size, overlap, False, "", new=True)


def test_pipeline_forms_for_a_folder_and_for_s3() -> None:
    folder = pipeline_body(
        "Tides", "", "folder", "/srv/tides", "", "", "schedule", " */5  * * * * ", "a, b", True, True
    )
    assert folder["source"] == {"type": "folder", "path": "/srv/tides"} and folder["collection_id"] == "default"
    assert folder["trigger"] == {"type": "schedule", "cron": "*/5 * * * *"} and folder["tags"] == ["a", "b"]
    PipelineCreate.model_validate(folder)
    s3 = pipeline_body("Docs", "manuals", "s3", "", "corp-docs", "manuals/", "event", "", "", False, False)
    assert s3["source"] == {"type": "s3", "bucket": "corp-docs", "prefix": "manuals/"}
    assert s3["trigger"] == {"type": "event"} and s3["enabled"] is False
    PipelineCreate.model_validate(s3)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        (("", "c", "folder", "/srv", "", "", "event", "", "", True, True), "a name is required"),
        (("p", "c", "folder", "relative/path", "", "", "event", "", "", True, True), "absolute server path"),
        (("p", "c", "s3", "", "Bad_Bucket", "", "event", "", "", True, True), "bucket"),
        (("p", "c", "folder", "/srv", "", "", "schedule", "hourly", "", True, True), "five-field cron"),
        (("p", "c", "folder", "/srv", "", "", "schedule", "* * * *", "", True, True), "five-field cron"),
        (("p", "c", "ftp", "", "", "", "event", "", "", True, True), "choose a source"),
        (("p", "Bad C", "folder", "/srv", "", "", "event", "", "", True, True), "collection"),
    ],
)
def test_bad_pipeline_forms_are_refused_before_sending(fields: tuple[object, ...], problem: str) -> None:
    with pytest.raises(FormError, match=problem):
        pipeline_body(*fields)  # type: ignore[arg-type]
