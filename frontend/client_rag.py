"""The backend's RAG API for the app: repositories, collections, uploads, the document library, ingestion jobs and
pipelines, called as the signed-in user through an existing ``BackendClient`` (its credential, its pool)."""

from __future__ import annotations

import mimetypes
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio

from frontend.client import BackendClient
from frontend.schemas_rag import (
    Collection,
    CollectionList,
    Document,
    DocumentPage,
    Job,
    JobPage,
    Pipeline,
    PipelinePage,
    Repository,
    RepositoryPage,
)


def seg(value: str) -> str:
    """One path segment: ids come from users, so nothing in them may change the path."""
    return quote(value, safe="")


class RagClient:
    def __init__(self, client: BackendClient) -> None:
        self.client = client

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self.client._request(method, path, **kwargs)).json()

    # --- repositories and collections -------------------------------------------------------------------------
    async def repositories(self) -> list[Repository]:
        found: list[Repository] = []
        cursor: str | None = None
        while True:
            params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = RepositoryPage.model_validate(await self._json("GET", "/api/repositories", params=params))
            found += page.data
            if not (cursor := page.next_cursor):
                return found

    async def create_repository(self, body: dict[str, Any]) -> Repository:
        return Repository.model_validate(await self._json("POST", "/api/repositories", json=body))

    async def update_repository(self, repository_id: str, body: dict[str, Any]) -> Repository:
        path = f"/api/repositories/{seg(repository_id)}"
        return Repository.model_validate(await self._json("PATCH", path, json=body))

    async def delete_repository(self, repository_id: str) -> None:
        await self.client._request("DELETE", f"/api/repositories/{seg(repository_id)}")

    async def collections(self, repository_id: str) -> list[Collection]:
        path = f"/api/repositories/{seg(repository_id)}/collections"
        return CollectionList.model_validate(await self._json("GET", path)).data

    async def create_collection(self, repository_id: str, body: dict[str, Any]) -> Collection:
        path = f"/api/repositories/{seg(repository_id)}/collections"
        return Collection.model_validate(await self._json("POST", path, json=body))

    async def update_collection(self, repository_id: str, collection_id: str, body: dict[str, Any]) -> Collection:
        path = f"/api/repositories/{seg(repository_id)}/collections/{seg(collection_id)}"
        return Collection.model_validate(await self._json("PATCH", path, json=body))

    async def delete_collection(self, repository_id: str, collection_id: str) -> None:
        await self.client._request("DELETE", f"/api/repositories/{seg(repository_id)}/collections/{seg(collection_id)}")

    # --- uploads and jobs -------------------------------------------------------------------------------------
    async def upload(
        self, repository_id: str, collection_id: str, paths: list[str], tags: str = "", chunking: str = ""
    ) -> Job:
        """One job for all the files (multipart, streamed from the app's temporary copies)."""
        path = f"/api/repositories/{seg(repository_id)}/collections/{seg(collection_id)}/documents"
        data = {k: v for k, v in {"tags": tags.strip(), "chunking": chunking.strip()}.items() if v}
        with ExitStack() as stack:
            files = []
            for p in paths:
                handle = await anyio.to_thread.run_sync(open, p, "rb")
                stack.callback(handle.close)
                content_type = mimetypes.guess_type(p)[0] or "application/octet-stream"
                files.append(("files", (Path(p).name, handle, content_type)))
            return Job.model_validate(await self._json("POST", path, files=files, data=data))

    async def jobs(self, repository_id: str, collection_id: str | None = None, limit: int = 20) -> list[Job]:
        params: dict[str, Any] = {"limit": limit, **({"collection": collection_id} if collection_id else {})}
        path = f"/api/repositories/{seg(repository_id)}/jobs"
        return JobPage.model_validate(await self._json("GET", path, params=params)).data

    async def cancel_job(self, repository_id: str, job_id: str) -> Job:
        path = f"/api/repositories/{seg(repository_id)}/jobs/{seg(job_id)}/cancel"
        return Job.model_validate(await self._json("POST", path))

    # --- the document library ---------------------------------------------------------------------------------
    async def documents(self, repository_id: str, collection_id: str | None = None) -> list[Document]:
        found: list[Document] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 100}
            if collection_id:
                params["collection"] = collection_id
            if cursor:
                params["cursor"] = cursor
            path = f"/api/repositories/{seg(repository_id)}/documents"
            page = DocumentPage.model_validate(await self._json("GET", path, params=params))
            found += page.data
            if not (cursor := page.next_cursor) or len(found) >= 1000:
                return found

    async def download(self, repository_id: str, document_id: str) -> bytes:
        path = f"/api/repositories/{seg(repository_id)}/documents/{seg(document_id)}/content"
        return (await self.client._request("GET", path)).content

    async def delete_document(self, repository_id: str, document_id: str) -> None:
        await self.client._request("DELETE", f"/api/repositories/{seg(repository_id)}/documents/{seg(document_id)}")

    # --- pipelines --------------------------------------------------------------------------------------------
    async def pipelines(self, repository_id: str) -> list[Pipeline]:
        path = f"/api/repositories/{seg(repository_id)}/pipelines"
        return PipelinePage.model_validate(await self._json("GET", path, params={"limit": 100})).data

    async def create_pipeline(self, repository_id: str, body: dict[str, Any]) -> Pipeline:
        path = f"/api/repositories/{seg(repository_id)}/pipelines"
        return Pipeline.model_validate(await self._json("POST", path, json=body))

    async def run_pipeline(self, repository_id: str, pipeline_id: str) -> Job | None:
        path = f"/api/repositories/{seg(repository_id)}/pipelines/{seg(pipeline_id)}/run"
        payload = await self._json("POST", path)
        return Job.model_validate(payload) if payload else None

    async def delete_pipeline(self, repository_id: str, pipeline_id: str) -> None:
        await self.client._request("DELETE", f"/api/repositories/{seg(repository_id)}/pipelines/{seg(pipeline_id)}")
