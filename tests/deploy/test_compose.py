"""docker/compose.yaml, parsed: the three services, pinned images, what is published, and how they connect."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from backend.config import Settings
from tests.deploy.dockerfiles import check_pinned_bases, parse
from tests.support import ROOT

COMPOSE = ROOT / "docker" / "compose.yaml"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text())["services"])


def test_the_three_services(services: dict[str, Any]) -> None:
    assert set(services) == {"backend", "postgres", "opensearch"}


def test_images_are_pinned(services: dict[str, Any]) -> None:
    for name, service in services.items():
        assert check_pinned_bases(parse(f"FROM {service['image']}\n")) == [], name
    postgres, opensearch = services["postgres"]["image"], services["opensearch"]["image"]
    assert re.fullmatch(r"pgvector/pgvector:\d+\.\d+\.\d+-pg17", postgres)  # PostgreSQL 17 with pgvector
    # The full OpenSearch distribution bundles the k-NN plugin (opensearch-minimal does not).
    repository, version = opensearch.split(":")
    assert repository == "opensearchproject/opensearch" and int(version.split(".")[0]) >= 2


def test_backend_builds_the_backend_image(services: dict[str, Any]) -> None:
    build = services["backend"]["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == ROOT / "docker" / "backend.Dockerfile"
    assert services["backend"]["image"] == "lisa-backend:0.1.0"


def test_only_the_backend_is_published_and_only_on_loopback(services: dict[str, Any]) -> None:
    assert services["backend"]["ports"] == ["127.0.0.1:8080:8080"]
    exposed = parse(ROOT / "docker" / "backend.Dockerfile")[-1].values("EXPOSE")
    assert exposed == [services["backend"]["ports"][0].rsplit(":", 1)[1]]
    assert "ports" not in services["postgres"] and "ports" not in services["opensearch"]


def test_backend_reaches_the_others_by_service_name(services: dict[str, Any]) -> None:
    env = services["backend"]["environment"]
    assert env["LISA_DB_HOST"] == "postgres" and env["LISA_DB_PORT"] == "5432"
    assert env["LISA_DB_USER"] == services["postgres"]["environment"]["POSTGRES_USER"]
    assert env["LISA_DB_NAME"] == services["postgres"]["environment"]["POSTGRES_DB"]
    assert env["LISA_DB_PASSWORD"] == services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert env["LISA_OPENSEARCH_URL"] == "http://opensearch:9200"
    (network,) = [c["subnet"] for c in yaml.safe_load(COMPOSE.read_text())["networks"]["default"]["ipam"]["config"]]
    assert Settings(egress_allow=env["LISA_EGRESS_ALLOW"]).egress_allow == ["127.0.0.0/8", "::1/128", network]
    assert services["opensearch"]["environment"]["discovery.type"] == "single-node"
    depends = services["backend"]["depends_on"]
    assert depends == {"postgres": {"condition": "service_healthy"}, "opensearch": {"condition": "service_healthy"}}
    assert all("healthcheck" in services[name] for name in depends)


def test_no_secret_has_a_default(services: dict[str, Any]) -> None:
    """Passwords and the secret and encryption keys must be given (${VAR:?message}); none is baked into the file."""
    secrets = [
        services["postgres"]["environment"]["POSTGRES_PASSWORD"],
        services["backend"]["environment"]["LISA_DB_PASSWORD"],
        services["backend"]["environment"]["LISA_SECRET_KEY"],
        services["backend"]["environment"]["LISA_ENCRYPTION_KEY"],
    ]
    assert all(re.fullmatch(r"\$\{\w+:\?[^}]+\}", s) for s in secrets), secrets
    assert services["backend"]["environment"]["LISA_ENVIRONMENT"] == "production"
