"""CSV, JSON, YAML and XML, each turned into readable text; XML parsed without entity expansion."""

from __future__ import annotations

import csv
import io
import json

import yaml
from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from ingestion.document import IngestionError, Section
from ingestion.loaders.text import decode


def load_csv(data: bytes, name: str) -> list[Section]:
    rows = list(csv.reader(io.StringIO(decode(data, name))))
    if not rows:
        return []
    header, body = rows[0], rows[1:]
    lines = [", ".join(f"{h}: {v}" for h, v in zip(header, row, strict=False) if v) for row in body] or [
        ", ".join(header)
    ]
    return [Section("\n".join(lines))]


def load_json(data: bytes, name: str) -> list[Section]:
    try:
        value = json.loads(decode(data, name))
    except json.JSONDecodeError as exc:
        raise IngestionError(f"{name}: invalid JSON: {exc}") from exc
    return [Section(json.dumps(value, indent=1, ensure_ascii=False))]


def load_yaml(data: bytes, name: str) -> list[Section]:
    try:
        docs = list(yaml.safe_load_all(decode(data, name)))
    except yaml.YAMLError as exc:
        raise IngestionError(f"{name}: invalid YAML: {exc}") from exc
    return [Section(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)) for doc in docs if doc is not None]


def load_xml(data: bytes, name: str) -> list[Section]:
    try:
        root = ElementTree.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise IngestionError(f"{name}: XML with a DTD or entities is refused ({exc.__class__.__name__})") from exc
    except ElementTree.ParseError as exc:
        raise IngestionError(f"{name}: invalid XML: {exc}") from exc
    text = "\n".join(t.strip() for t in root.itertext() if t.strip())
    return [Section(text)]
