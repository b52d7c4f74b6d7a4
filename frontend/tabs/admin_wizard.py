"""The model wizard's rules: turning the form into a ``POST /api/models`` body, refusing what the backend would refuse
before it is sent (the backend checks again, and its 4xx detail is shown when it still says no)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$")  # backend/registry/schemas.py MODEL_ID_PATTERN
RESERVED_ENDINGS = ("/events", "/enable", "/disable", "/logs", "/schedule")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*[A-Za-z0-9._-]$")
INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")

KINDS = [
    ("Third-party provider (LiteLLM)", "third_party"),
    ("Internal server (an OpenAI-compatible URL)", "internal"),
    ("Self-hosted on this machine (local)", "local"),
    ("Self-hosted on ECS (a CloudFormation stack)", "ecs"),
]
TYPES = ["textgen", "embedding", "imagegen"]
FEATURES = ["tool_calls", "image_input", "summarization", "reasoning"]
ENGINES = ["vllm", "tgi", "tei"]
METRICS = ["RequestCountPerTarget", "TargetResponseTime"]
LOCAL_KINDS = ["gguf", "sentence_transformers"]


class Invalid(ValueError):
    """The form is not a model the backend would take; the message says what to fix."""


@dataclass
class WizardForm:
    kind: str
    id: str
    name: str = ""
    type: str = "textgen"
    streaming: bool = True
    features: list[str] | None = None
    allowed_groups: str = ""
    context_window: float | None = None
    provider_model: str = ""
    base_url: str = ""
    upstream_model: str = ""
    api_key: str = ""
    local_kind: str = "gguf"
    model_path: str = ""
    threads: float | None = 2
    context_size: float | None = None
    chat_format: str = ""
    engine: str = "vllm"
    image: str = ""
    instance_type: str = "g5.xlarge"
    gpu_count: str = "1"
    container_cpu: float | None = 0
    memory_mib: float | None = 12288
    weights_bucket: str = ""
    weights_prefix: str = ""
    min_capacity: float | None = 1
    desired_capacity: float | None = 1
    max_capacity: float | None = 2
    metric: str = "RequestCountPerTarget"
    target_value: float | None = 60
    environment: str = ""


def _int(value: float | None, name: str, low: int, high: int) -> int:
    if value is None or value != int(value):
        raise Invalid(f"{name}: a whole number is needed")
    if not low <= int(value) <= high:
        raise Invalid(f"{name}: must be between {low} and {high}")
    return int(value)


def _environment(text: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not ENV_NAME.match(name):
            raise Invalid(f"environment line {number}: write NAME=value (NAME of letters, digits and _)")
        env[name] = value.strip()
    return env


def model_body(form: WizardForm) -> dict[str, Any]:
    """The request body; ``Invalid`` names the first thing to fix."""
    model_id = form.id.strip()
    if not MODEL_ID.match(model_id):
        raise Invalid(
            "Model id: 1 to 128 characters of letters, digits and . _ : / @ + -, starting with a letter or digit"
        )
    if model_id.endswith(RESERVED_ENDINGS):
        raise Invalid(f"Model id may not end with {', '.join(RESERVED_ENDINGS)}")
    if form.type not in TYPES:
        raise Invalid("Choose the model's type")
    if form.type == "embedding" and form.streaming:
        raise Invalid("Embedding models cannot stream: untick Streaming")
    body: dict[str, Any] = {"id": model_id, "type": form.type, "streaming": form.streaming}
    if form.name.strip():
        body["name"] = form.name.strip()
    if form.features:
        body["features"] = [f for f in form.features if f in FEATURES]
    if groups := [g.strip() for g in form.allowed_groups.split(",") if g.strip()]:
        body["allowed_groups"] = groups
    if form.context_window:
        body["context_window"] = _int(form.context_window, "Context window", 1, 100_000_000)
    if form.kind == "third_party":
        if not form.provider_model.strip():
            raise Invalid("A third-party model needs its LiteLLM model string, e.g. bedrock/anthropic.claude-3-haiku")
        body |= {"hosting": "third_party", "provider_model": form.provider_model.strip()}
    elif form.kind == "internal":
        url = form.base_url.strip()
        if not re.match(r"^https?://[^\s/]+", url):
            raise Invalid("An internal model needs the base URL of its server, e.g. http://host:8000/v1")
        body |= {"hosting": "internal", "base_url": url}
        if form.upstream_model.strip():
            body["upstream_model"] = form.upstream_model.strip()
    elif form.kind == "local":
        body |= {"hosting": "internal", "deployment": {"deployer": "local", "spec": local_spec(form)}}
    elif form.kind == "ecs":
        body |= {"hosting": "internal", "deployment": {"deployer": "ecs", "spec": ecs_spec(form)}}
    else:
        raise Invalid("Choose where the model runs")
    if form.api_key and form.kind in ("third_party", "internal"):
        body["api_key"] = form.api_key
    return body


def local_spec(form: WizardForm) -> dict[str, Any]:
    if form.local_kind not in LOCAL_KINDS:
        raise Invalid("Choose the local model's kind (gguf or sentence_transformers)")
    if not form.model_path.strip():
        raise Invalid("A local model needs its file (GGUF) or folder (sentence-transformers) under the model folders")
    spec: dict[str, Any] = {
        "kind": form.local_kind,
        "model_path": form.model_path.strip(),
        "threads": _int(form.threads, "Threads", 1, 256),
    }
    if form.context_size:
        spec["context_size"] = _int(form.context_size, "Context size", 256, 1_048_576)
    if form.chat_format.strip():
        spec["chat_format"] = form.chat_format.strip()
    return spec


def ecs_spec(form: WizardForm) -> dict[str, Any]:
    if form.engine not in ENGINES:
        raise Invalid("Choose the serving engine")
    if not INSTANCE_TYPE.match(form.instance_type.strip()):
        raise Invalid("Instance type: an EC2 type such as g5.xlarge")
    if not BUCKET.match(form.weights_bucket.strip()):
        raise Invalid("Weights bucket: an S3 bucket name (3 to 63 lower-case letters, digits, . and -)")
    if not PREFIX.match(form.weights_prefix.strip()):
        raise Invalid("Weights prefix: the key prefix of the weights, without a slash at either end")
    low = _int(form.min_capacity, "Minimum capacity", 0, 1000)
    desired = _int(form.desired_capacity, "Desired capacity", 0, 1000)
    high = _int(form.max_capacity, "Maximum capacity", 1, 1000)
    if not low <= desired <= high:
        raise Invalid("Autoscaling: minimum ≤ desired ≤ maximum capacity")
    if form.metric not in METRICS:
        raise Invalid("Choose the scaling metric")
    if not form.target_value or form.target_value <= 0:
        raise Invalid("Scaling target: a number above 0")
    spec: dict[str, Any] = {
        "engine": form.engine,
        "instance_type": form.instance_type.strip(),
        "gpu_count": int(form.gpu_count),
        "container_cpu": _int(form.container_cpu, "Container CPU units", 0, 196_608),
        "memory_reservation_mib": _int(form.memory_mib, "Memory reservation (MiB)", 512, 4_194_304),
        "weights": {"bucket": form.weights_bucket.strip(), "prefix": form.weights_prefix.strip()},
        "autoscaling": {
            "min_capacity": low,
            "desired_capacity": desired,
            "max_capacity": high,
            "metric": form.metric,
            "target_value": float(form.target_value),
        },
    }
    if form.image.strip():
        spec["image"] = form.image.strip()
    if env := _environment(form.environment):
        spec["environment"] = env
    return spec
