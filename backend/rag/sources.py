"""Where ingested files come from: server folders under an allowed root, and S3 (``s3://bucket/key``)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

from backend.errors import BadRequest, Forbidden, PayloadTooLarge
from backend.net.egress import EgressGuard
from ingestion.loaders import LOADERS


def check_name(name: str) -> str:
    """A file name as a client sent it: no directories, no traversal, no control characters."""
    if not name or len(name) > 255:
        raise BadRequest("a file name must be 1 to 255 characters")
    if "/" in name or "\\" in name or name in (".", "..") or any(ord(c) < 32 for c in name):
        raise BadRequest(f"file name {name!r} is not allowed: it must be a plain name without directories")
    return name


def check_supported(name: str) -> None:
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in LOADERS:
        supported = ", ".join(sorted(LOADERS))
        raise BadRequest(f"{name}: unsupported file type '{suffix or '(none)'}' (supported: {supported})")


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        if not uri.startswith("s3://"):
            raise BadRequest(f"not an s3:// URI: {uri}")
        bucket, _, key = uri[5:].partition("/")
        if not bucket:
            raise BadRequest(f"{uri}: no bucket")
        return cls(bucket, key)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class Sources:
    def __init__(
        self,
        roots: list[Path],
        max_bytes: int,
        aws_endpoint_url: str,
        aws_region: str,
        *,
        egress: EgressGuard | None = None,
    ) -> None:
        self.roots = [r.resolve() for r in roots]
        self.max_bytes = max_bytes
        self.aws_endpoint_url = aws_endpoint_url
        self.aws_region = aws_region
        self.egress = egress or EgressGuard.default()  # its S3 bucket allowlist (the default allows none)

    def _client(self, service: str) -> Any:
        import boto3

        kwargs: dict[str, Any] = {"region_name": self.aws_region} if self.aws_region else {}
        if self.aws_endpoint_url:
            kwargs["endpoint_url"] = self.aws_endpoint_url
        return boto3.client(service, **kwargs)

    @cached_property
    def s3(self) -> Any:
        return self._client("s3")

    def sqs(self) -> Any:
        return self._client("sqs")

    # --- local folders ---------------------------------------------------------------------------------------
    def local_path(self, raw: str) -> Path:
        """An absolute path inside one of the allowed roots (after resolving links and '..')."""
        if not self.roots:
            raise Forbidden("ingesting server paths is disabled: no LISA_RAG_INGEST_ROOTS are configured")
        path = Path(raw)
        if not path.is_absolute():
            raise BadRequest(f"{raw}: a server path must be absolute")
        resolved = path.resolve()
        if not any(resolved == root or resolved.is_relative_to(root) for root in self.roots):
            raise Forbidden(f"{raw}: outside the folders ingestion may read")
        if not resolved.exists():
            raise BadRequest(f"{raw}: no such file or folder")
        return resolved

    def expand_local(self, raw: str) -> list[Path]:
        """The supported files a path names: itself, or every supported file below a folder (sorted)."""
        path = self.local_path(raw)
        if path.is_file():
            check_supported(path.name)
            return [path]
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in LOADERS)

    async def read_local(self, path: str) -> bytes:
        resolved = self.local_path(path)
        size = resolved.stat().st_size
        if size > self.max_bytes:
            raise PayloadTooLarge(f"{resolved.name}: {size} bytes is over the limit of {self.max_bytes} bytes")
        return await asyncio.to_thread(resolved.read_bytes)

    # --- S3 --------------------------------------------------------------------------------------------------
    def s3_location(self, uri: str) -> S3Location:
        """A parsed s3:// URI whose bucket is on the egress guard's allowlist (400 otherwise), checked on every use."""
        loc = S3Location.parse(uri)
        self.egress.check_bucket(loc.bucket, uri)
        return loc

    def list_s3(self, uri: str) -> list[tuple[str, str]]:
        """(s3 URI, ETag) of every supported object under a prefix (or the one object a full key names)."""
        loc = self.s3_location(uri)
        found: list[tuple[str, str]] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=loc.bucket, Prefix=loc.key):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith("/") or os.path.splitext(key)[1].lower() not in LOADERS:
                    continue
                found.append((f"s3://{loc.bucket}/{key}", str(obj.get("ETag", "")).strip('"')))
        return found

    async def expand_s3(self, uri: str) -> list[str]:
        loc = self.s3_location(uri)
        if loc.key and not loc.key.endswith("/"):
            check_supported(loc.key)
            return [loc.uri]
        return [u for u, _ in await asyncio.to_thread(self.list_s3, uri)]

    async def read_s3(self, uri: str) -> bytes:
        loc = self.s3_location(uri)

        def get() -> bytes:
            head = self.s3.head_object(Bucket=loc.bucket, Key=loc.key)
            if int(head["ContentLength"]) > self.max_bytes:
                raise PayloadTooLarge(f"{uri}: {head['ContentLength']} bytes is over the limit of {self.max_bytes}")
            body: bytes = self.s3.get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read()
            return body

        return await asyncio.to_thread(get)

    async def read(self, source: str) -> bytes:
        if source.startswith("s3://"):
            return await self.read_s3(source)
        return await self.read_local(source)


def name_of(source: str) -> str:
    return PurePosixPath(source.split("://", 1)[-1]).name or source
