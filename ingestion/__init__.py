"""LISA document ingestion library: loaders, chunkers, and ``ingest``/``aingest`` for notebooks and scripts."""

from ingestion.client import aingest, ingest
from ingestion.results import FileIssue, IngestError, IngestResult

__all__ = ["FileIssue", "IngestError", "IngestResult", "aingest", "ingest"]
