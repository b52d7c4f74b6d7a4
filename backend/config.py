"""One settings object for the whole backend: environment variables (prefix ``LISA_``) over an optional YAML file."""

from __future__ import annotations

import errno
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "dev-secret", "password"}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
MIN_SECRET_CHARS = 32
GENERATE_HINT = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class YamlFileSource(YamlConfigSettingsSource):
    """pydantic-settings' YAML source on the file ``LISA_CONFIG_FILE`` names (below the environment, above the
    defaults). Unlike the library's default, a named file that is missing, or that holds anything but a mapping,
    is an error naming the file, never silently ignored."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        path = os.environ.get("LISA_CONFIG_FILE") or None
        if path is not None and not Path(path).expanduser().is_file():
            raise FileNotFoundError(errno.ENOENT, "LISA_CONFIG_FILE names no such file", path)
        super().__init__(settings_cls, yaml_file=path)

    def _read_file(self, file_path: Path | Traversable) -> dict[str, Any]:
        data = super()._read_file(file_path)  # an empty file: {}
        if not isinstance(data, dict):
            raise ValueError(f"{file_path}: the settings file must hold a mapping, not {type(data).__name__}")
        return data


class Settings(BaseSettings):
    # "__" reaches into a mapping: LISA_FEATURES__UPLOAD_RAG_DOCS=false sets features["upload_rag_docs"].
    model_config = SettingsConfigDict(env_prefix="LISA_", env_nested_delimiter="__", extra="ignore")

    environment: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    allow_remote: bool = False
    workers: int = Field(default=1, ge=1, le=64)
    data_dir: Path = Path(".lisa")

    # Metadata database. Empty: the embedded PostgreSQL under data_dir/pgdata.
    database_url: str = ""
    db_pool_size: int = Field(default=10, ge=1, le=200)
    # While the database is unreachable, requests that need it answer 503 within these (docs/database.md).
    db_connect_timeout: float = Field(default=5.0, gt=0)  # to open a connection
    db_pool_timeout: float = Field(default=5.0, gt=0)  # to get one from the pool
    db_restart_seconds: float = Field(default=0.5, gt=0)  # the embedded server's first restart delay (then doubled)

    # Local model servers started by `lisa serve`.
    local_models: bool = True
    llama_threads: int = Field(default=2, ge=1, le=256)
    llama_context: int = Field(default=4096, ge=256)
    textgen_model_id: str = "gemma3-270m"
    embedding_model_id: str = "minilm-l6-v2"
    # What runs the local embedding model (backend/localmodels/embedding_server.py): OpenVINO, about twice PyTorch's
    # speed here (docs/benchmarks.md), falling back to torch where it fails; its converted model is cached in
    # embedding_cache_dir (default: DATA_DIR/embedding-cache).
    embedding_backend: Literal["openvino", "torch"] = "openvino"
    embedding_cache_dir: Path | None = None
    # Models the local deployer runs (backend/lifecycle/deployers/local.py, docs/lifecycle-local.md): their files
    # must lie under one of these folders (empty: DATA_DIR/models, where the bundled gemma is unpacked).
    local_model_dirs: Annotated[list[Path], NoDecode] = []
    local_model_ready_seconds: float = Field(default=300.0, gt=0)  # a start until the server answers
    local_model_stop_seconds: float = Field(default=20.0, gt=0)  # SIGTERM, then SIGKILL
    local_model_max_restarts: int = Field(default=5, ge=0, le=1000)  # crashes in a row before it is left Failed

    # Identity: roles from groups.
    admin_group: str = "admin"
    rag_admin_group: str = "rag-admin"
    user_group: str = ""  # when set, required to use the platform at all
    api_group: str = ""  # when set, required to create one's own API tokens (admins always may)
    # OIDC (any provider with discovery: Cognito, Keycloak, Okta, Entra). Empty issuer: local mode only.
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr = SecretStr("")
    oidc_audience: str = ""  # the "aud" API tokens from the provider must carry; default: the client id
    oidc_scopes: str = "openid profile email"
    oidc_groups_claim: str = "groups"  # dot-separated path, e.g. "cognito:groups" or "realm_access.roles"
    # Claims tried, in order, for the display name only: users are keyed on the issuer and "sub", never on these.
    oidc_username_claims: list[str] = ["username", "preferred_username", "sub"]
    oidc_leeway_seconds: int = Field(default=30, ge=0, le=600)  # clock skew allowed on exp/nbf
    public_url: str = ""  # the address browsers use, for the OIDC callback; default http://host:port
    # The Gradio app (frontend/, docs/frontend.md), mounted at ui_path in the same process. ui_backend_url: where the
    # mounted app calls the API as its users (default: this server on the loopback address).
    ui: bool = True
    ui_path: str = Field(default="/ui", pattern=r"^/[a-z][a-z0-9_-]*$")
    ui_backend_url: str = ""
    ui_concurrency: int = Field(default=64, ge=1, le=10_000)  # UI events (chat streams) running at once
    # Local mode: each start issues a fresh admin token and prints it as a login link (revoking the last one).
    bootstrap_admin: bool = True
    sign_in_code_seconds: int = Field(default=600, ge=1, le=86_400)  # the one-time code in the printed link
    # Signs the short-lived OIDC sign-in state cookie. Empty on a loopback development install: a random one is
    # generated once and kept in data_dir; required (never a placeholder) anywhere else.
    secret_key: SecretStr = SecretStr("")
    # Encrypts stored upstream API keys and repository secrets. Same rule as secret_key; never derived from it.
    encryption_key: SecretStr = SecretStr("")
    token_default_days: int = Field(default=90, ge=1, le=3650)
    token_max_days: int = Field(default=365, ge=1, le=3650)
    session_hours: int = Field(default=12, ge=1, le=24 * 30)
    auth_cache_seconds: float = Field(default=30.0, ge=0)
    # OIDC users' groups are confirmed at each browser sign-in and each verified provider JWT; groups not
    # re-confirmed within this many hours stop counting for the user's API tokens (fractions allowed).
    group_refresh_hours: float = Field(default=24.0, gt=0, le=24 * 365)

    # Feature toggles pinned by the deployment (docs/configuration.md): a pinned toggle wins over the value admins
    # store through /api/configuration, which refuses to change it (409). Unnamed toggles are managed there.
    features: dict[str, bool] = {}

    # Request bodies, capped before they are parsed (413 above the cap).
    max_json_bytes: int = Field(default=1024 * 1024, ge=1024)  # any /api body that is not a file upload
    rag_max_upload_bytes: int = Field(default=200 * 1024 * 1024, ge=1024)  # one multipart upload request, in all
    rag_max_upload_files: int = Field(default=100, ge=1, le=10_000)  # files in one upload request

    # Serve gateway.
    max_request_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)  # /v1 bodies (images may be inline)
    upstream_connect_timeout: float = Field(default=5.0, gt=0)
    upstream_read_timeout: float = Field(default=300.0, gt=0)
    # max_tokens given to a request of a caller with a tpm or budget limit that names none, on a model whose
    # context_window is unknown (nothing else would bound what it generates). Known context windows bound the rest.
    limit_default_max_tokens: int = Field(default=1024, ge=1)
    usage_flush_seconds: float = Field(default=0.5, gt=0)
    usage_batch_size: int = Field(default=500, ge=1)
    # Usage records kept in memory while the database is unreachable; beyond them, batches spill to
    # data_dir/usage-spill (at most usage_spill_bytes) and are written once the database is back.
    usage_buffer_records: int = Field(default=50_000, ge=1)
    usage_spill_bytes: int = Field(default=256 * 1024 * 1024, ge=0)

    # Chat (backend/chat): earlier messages sent with each turn when neither the turn nor the session says; how often
    # a streaming answer's text is written while it arrives (the first token and the end are written at once).
    chat_history_buffer: int = Field(default=20, ge=0, le=1000)
    chat_flush_seconds: float = Field(default=0.5, gt=0, le=60)

    # RAG.
    rag_max_file_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)  # per uploaded or ingested file
    rag_ingest_roots: list[Path] = []  # server folders bulk ingestion and folder pipelines may read
    rag_embed_batch: int = Field(default=32, ge=1, le=2048)  # texts per embeddings request
    rag_embed_parallel: int = Field(default=2, ge=1, le=64)  # embeddings requests in flight per job
    rag_documents_parallel: int = Field(default=4, ge=1, le=64)  # documents parsed at once per job
    rag_worker: bool = True  # run the worker of ingestion jobs and automatic pipelines in this process
    rag_worker_jobs: int = Field(default=2, ge=1, le=64)  # ingestion jobs at once per process
    rag_heartbeat_seconds: float = Field(default=2.0, gt=0)
    rag_stalled_seconds: float = Field(default=10.0, gt=0)  # a job whose worker was silent this long is resumed
    # Weight of full-text relevance in search; 0.3 scored best on the dev questions (docs/rag-quality.md).
    rag_hybrid_weight: float = Field(default=0.3, ge=0.0, le=1.0)
    rag_reranker_url: str = ""  # a TEI-compatible server with POST /rerank; empty: no reranking
    rag_rerank_candidates: int = Field(default=30, ge=1, le=500)
    # Page-level ranking (backend/rag/ranking.py, docs/rag-quality.md): a page's best chunk gains this share of its
    # next best chunks' scores, and at most rag_per_page chunks of one page are returned (0: no cap).
    rag_page_decay: float = Field(default=0.1, ge=0.0, le=1.0)
    rag_per_page: int = Field(default=3, ge=0, le=100)
    # Weight of the page-vector prior: each candidate page gains up to this much for the query's similarity to the
    # mean of its chunk embeddings (0: off).
    rag_page_vector: float = Field(default=0.3, ge=0.0, le=10.0)
    # Weight of the page-length penalty: the longest candidate page (by chunk count, log scale) loses this much, the
    # shortest nothing (0: off).
    rag_page_length: float = Field(default=0.1, ge=0.0, le=10.0)
    rag_max_context_chars: int = Field(default=12_000, ge=500)  # retrieved text put into a chat prompt
    rag_poll_seconds: float = Field(default=5.0, gt=0)  # folder/S3 event pipelines without notifications
    # Untrusted files: each user's stored originals (413 past it; 0: no quota), and parsing in separate processes.
    rag_user_quota_bytes: int = Field(default=2 * 1024**3, ge=0)
    rag_parse_timeout_seconds: float = Field(default=120.0, gt=0)  # per file; the document fails past it
    rag_parse_workers: int = Field(default=2, ge=1, le=64)  # parser processes per backend process
    rag_parse_memory_bytes: int = Field(default=2 * 1024**3, ge=0)  # address space of one parser; 0: no cap
    # AWS (S3 sources, SQS notifications). An endpoint URL points boto3 elsewhere (moto in tests).
    aws_endpoint_url: str = ""
    aws_region: str = ""  # empty: boto3's own resolution (AWS_REGION, the ECS task's region, ~/.aws)
    # Models on ECS (backend/lifecycle/deployers/ecs.py): the core stack's outputs, which it passes to the backend
    # task (deploy/cloudformation/README.md), and the model servers' images.
    aws_model_stack_prefix: str = Field(default="lisa-model", pattern=r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
    aws_model_stack_role_arn: str = ""  # the role CloudFormation assumes for model stacks; empty: the caller's own
    aws_model_role_path: str = Field(default="/lisa-model/", pattern=r"^/([A-Za-z0-9-]+/)+$")
    aws_model_role_boundary_arn: str = ""
    aws_model_weights_bucket: str = ""
    aws_vpc_id: str = ""
    aws_private_subnet_ids: Annotated[list[str], NoDecode] = []  # comma-separated
    aws_gateway_security_group_id: str = ""
    aws_model_template: Path | None = None  # None: deploy/cloudformation/model.yaml beside the backend
    aws_model_image_vllm: str = ""
    aws_model_image_tgi: str = ""
    aws_model_image_tei: str = ""
    aws_model_stack_timeout_seconds: float = Field(default=3600.0, gt=0)  # per create, update or delete
    aws_model_stack_poll_seconds: float = Field(default=10.0, gt=0)
    # Model lifecycle (backend/lifecycle): the workflows of deployed models, and the health checks of internal models.
    lifecycle_worker: bool = True  # run the worker of model workflows in this process
    lifecycle_workflows: int = Field(default=4, ge=1, le=64)  # workflows at once per process
    # Deadline of a deployment step (deploy, update, start, stop, delete); past it the workflow ends Failed.
    lifecycle_step_seconds: float = Field(default=5400.0, gt=0)
    # How long a deployment that serves may take to answer LISA; past it the model is registered, marked unreachable.
    lifecycle_probe_seconds: float = Field(default=120.0, ge=0)
    health_interval_seconds: float = Field(default=15.0, ge=0)  # between checks of each model; 0: no checks here
    health_timeout_seconds: float = Field(default=5.0, gt=0)  # per check (and per context-window question)
    health_failures: int = Field(default=2, ge=1, le=100)  # failed checks in a row before a model is unreachable

    @field_validator("local_model_dirs", mode="before")
    @classmethod
    def _path_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [v.strip() for v in text.split(",") if v.strip()]
        return value

    @field_validator("aws_private_subnet_ids", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [v.strip() for v in text.split(",") if v.strip()]
        return value

    # MCP tool servers (backend/mcp): connecting and listing tools, one tool call, how long a server's tool list is
    # reused, and the most characters of a tool's output kept (beyond it the output is cut and marked so).
    mcp_connect_timeout: float = Field(default=10.0, gt=0)
    mcp_call_timeout: float = Field(default=60.0, gt=0)
    mcp_tools_cache_seconds: float = Field(default=30.0, ge=0)
    mcp_max_output_chars: int = Field(default=100_000, ge=1000)
    chat_tool_approval_timeout: float = Field(default=300.0, gt=0)  # a chat tool call waits this long for approval

    # Chat context (docs/chat-context.md): compaction, documents in a session, summaries, generated images.
    chat_default_context_window: int = Field(default=8192, ge=256)  # tokens, for a model the registry has none for
    chat_compaction_threshold: float = Field(default=0.75, gt=0, le=1)  # compact past this share of the window
    chat_compaction_target: float = Field(default=0.5, gt=0, le=1)  # ... down to this share
    chat_summary_model: str = ""  # the model that writes compaction summaries; empty: the chat's own model
    chat_summary_max_tokens: int = Field(default=512, ge=16, le=32_768)  # one summary (map or reduce) at most
    chat_summary_max_requests: int = Field(default=64, ge=1, le=10_000)  # map requests of one summary at most
    context_max_file_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)  # one document put into a session
    context_max_upload_files: int = Field(default=10, ge=1, le=1000)  # files in one upload
    context_max_documents: int = Field(default=50, ge=1, le=10_000)  # documents one session holds
    context_max_chars: int = Field(default=2_000_000, ge=1000)  # extracted text of one document (413 past it)
    chat_image_max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)  # one generated image kept (502 past it)

    # Egress guard (backend/net/egress.py) for model URLs, OpenSearch, external PostgreSQL, the reranker, S3 and MCP:
    # public addresses are allowed; loopback, private, link-local and other special ranges only where these networks
    # (CIDRs; a JSON list or comma-separated) cover them, cloud metadata addresses only by an exact entry.
    # The default lets LISA reach its own local model servers; the AWS stack sets the VPC's CIDR.
    egress_allow: Annotated[list[str], NoDecode] = ["127.0.0.0/8", "::1/128"]
    egress_s3_buckets: Annotated[list[str], NoDecode] = []  # buckets S3 sources may read ("*" wildcards); none: no S3

    @field_validator("egress_allow", "egress_s3_buckets", mode="before")
    @classmethod
    def _egress_list(cls, value: Any, info: ValidationInfo) -> Any:
        from backend.net.egress import parse_bucket_patterns, parse_networks

        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else [v for v in text.split(",") if v.strip()]
        if isinstance(value, list):
            value = [str(v).strip() for v in value]
            (parse_networks if info.field_name == "egress_allow" else parse_bucket_patterns)(value)
        return value

    @field_validator("features")
    @classmethod
    def _known_features(cls, value: dict[str, bool]) -> dict[str, bool]:
        from backend.configuration.features import Feature

        known = {f.value for f in Feature}
        if unknown := sorted(set(value) - known):
            raise ValueError(
                f"no feature toggle named {', '.join(map(repr, unknown))} (LISA_FEATURES__<NAME>); "
                f"the toggles are: {', '.join(sorted(known))}"
            )
        return value

    @model_validator(mode="after")
    def _refuse_weak_secrets(self) -> Settings:
        for name, value in (("secret_key", self.secret_key), ("encryption_key", self.encryption_key)):
            secret, env = value.get_secret_value(), f"LISA_{name.upper()}"
            if secret.strip().lower() in PLACEHOLDER_SECRETS:
                raise ValueError(f"{env} is a placeholder ({secret!r}): set a real secret; {GENERATE_HINT}")
            if not secret and self.secrets_required:
                raise ValueError(
                    f"{env} must be set to a real secret (at least {MIN_SECRET_CHARS} random characters) when LISA "
                    f"{self._exposure}; {GENERATE_HINT}"
                )
            if secret and self.secrets_required and len(secret) < MIN_SECRET_CHARS:
                raise ValueError(f"{env} is too short: use at least {MIN_SECRET_CHARS} random characters")
        return self

    @model_validator(mode="after")
    def _ingest_roots_exclude_data_dir(self) -> Settings:
        """The data dir holds the database, the admin token and keys: no ingest root may reach into it."""
        data = self.data_dir.resolve()
        for root in self.rag_ingest_roots:
            resolved = root.resolve()
            if resolved == data or data.is_relative_to(resolved) or resolved.is_relative_to(data):
                raise ValueError(
                    f"LISA_RAG_INGEST_ROOTS: {root} overlaps the data directory {data}, which holds the database "
                    "and secrets; name folders that neither contain it nor lie inside it"
                )
        return self

    @model_validator(mode="after")
    def _model_dirs_exclude_data_dir(self) -> Settings:
        """A model folder may lie inside the data dir (DATA_DIR/models), never hold it (its database, its keys)."""
        data = self.data_dir.resolve()
        for folder in self.local_model_dirs:
            if data.is_relative_to(folder.resolve()):
                raise ValueError(
                    f"LISA_LOCAL_MODEL_DIRS: {folder} contains the data directory {data}, which holds the database "
                    "and secrets; name the folders that hold model files"
                )
        return self

    @property
    def listens_on_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS

    @property
    def secrets_required(self) -> bool:
        """Only a development install on the loopback address may run on secrets it generated for itself."""
        return self.environment == "production" or not self.listens_on_loopback

    @property
    def _exposure(self) -> str:
        if not self.listens_on_loopback:
            return f"listens on {self.host} (anything but the loopback address)"
        return "runs in production"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            YamlFileSource(settings_cls),
            file_secret_settings,
        )

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer)

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def model_dirs(self) -> list[Path]:
        """The folders local model files may come from, resolved."""
        return [d.resolve() for d in self.local_model_dirs] or [self.data_dir.resolve() / "models"]

    @property
    def embedding_cache_path(self) -> Path:
        return (self.embedding_cache_dir or self.data_dir / "embedding-cache").resolve()

    @property
    def pgdata_dir(self) -> Path:
        return self.data_dir.resolve() / "pgdata"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
