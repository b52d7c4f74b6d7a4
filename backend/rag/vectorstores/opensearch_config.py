"""How an OpenSearch repository is reached: its options validated (endpoint, index prefix, engine, auth), and the
HTTP connection class that puts every new socket through the egress guard (backend/rag/vectorstores/opensearch.py is
the store itself)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opensearchpy import AsyncHttpConnection

if TYPE_CHECKING:
    from backend.net.egress import EgressGuard
    from backend.rag.vectorstores import StoreConfig

AUTH_MODES = ("none", "basic", "aws_sigv4")
ENGINES = ("lucene", "faiss")
_PREFIX = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")


def _text_option(options: dict[str, Any], key: str, default: str | None = None) -> str | None:
    value = options.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"opensearch: option '{key}' must be a string")
    return value.strip() or default


def _sigv4_auth(options: dict[str, Any]) -> Any:
    service = _text_option(options, "service", "es")
    if service != "es":
        raise ValueError(
            f"opensearch: service '{service}' is not supported; use 'es' (an OpenSearch Service domain). "
            "OpenSearch Serverless ('aoss') vector collections reject the custom document ids this store needs"
        )
    try:
        import boto3
        from opensearchpy import AWSV4SignerAsyncAuth
    except ImportError as exc:  # pragma: no cover - boto3 is a dependency of the aws extras
        raise ValueError("opensearch: auth 'aws_sigv4' needs boto3 installed") from exc
    session = boto3.Session()
    region = _text_option(options, "region") or os.environ.get("AWS_REGION") or session.region_name
    if not region:
        raise ValueError("opensearch: auth 'aws_sigv4' needs option 'region' (or AWS_REGION/AWS_DEFAULT_REGION)")
    credentials = session.get_credentials()
    if credentials is None:
        raise ValueError("opensearch: auth 'aws_sigv4' found no AWS credentials (environment, profile or role)")
    return AWSV4SignerAsyncAuth(credentials, region, service)


@dataclass(frozen=True)
class OpenSearchOptions:
    """Validated connection options; ``http_auth`` is a (user, password) pair, a SigV4 signer, or None."""

    endpoint: str
    index_prefix: str
    engine: str
    http_auth: Any = field(default=None, repr=False)  # never shown: it holds the password or credentials


def parse_config(config: StoreConfig) -> OpenSearchOptions:
    """Validate a store's options; a bad one raises ValueError naming the option."""
    options = dict(config.options)
    endpoint = _text_option(options, "endpoint")
    if not endpoint:
        raise ValueError("opensearch: option 'endpoint' (an http(s) URL) is required")
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"opensearch: endpoint '{endpoint}' is not an http(s) URL")
    prefix = (_text_option(options, "index_prefix", "lisa") or "lisa").lower()
    if not _PREFIX.match(prefix):
        raise ValueError(
            f"opensearch: index_prefix '{prefix}' must be 1-100 of a-z, 0-9, '-', '_', starting with a letter or digit"
        )
    engine = _text_option(options, "engine", "lucene") or "lucene"
    if engine not in ENGINES:
        raise ValueError(f"opensearch: engine '{engine}' is not one of {', '.join(ENGINES)}")
    auth = _text_option(options, "auth", "none")
    http_auth: Any = None
    if auth == "basic":
        username = _text_option(options, "username")
        if not username or not config.secret:
            raise ValueError("opensearch: auth 'basic' needs option 'username' and the password as the secret")
        http_auth = (username, config.secret)
    elif auth == "aws_sigv4":
        http_auth = _sigv4_auth(options)
    elif auth != "none":
        raise ValueError(f"opensearch: auth '{auth}' is not one of {', '.join(AUTH_MODES)}")
    return OpenSearchOptions(endpoint, prefix, engine, http_auth)


def guarded_connection(egress: EgressGuard) -> type[AsyncHttpConnection]:
    """opensearch-py's aiohttp connection with every new socket passing the egress guard (at connect time, so a
    domain name that starts resolving elsewhere after the repository was registered is refused too)."""

    class GuardedConnection(AsyncHttpConnection):
        async def _create_aiohttp_session(self) -> Any:
            await super()._create_aiohttp_session()
            assert self.session is not None
            connector = self.session.connector
            if not hasattr(connector, "_socket_factory"):  # fail closed if aiohttp changes shape
                raise RuntimeError("aiohttp's connector changed: cannot put the egress guard into OpenSearch")
            connector._socket_factory = egress.socket_factory

    return GuardedConnection
