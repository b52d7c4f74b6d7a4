"""What one model on ECS is: :class:`EcsModelSpec`, validated here (bounds, and the relations between fields) so
that a spec that passes is one deploy/cloudformation/model.yaml accepts. Defaults are the template's own."""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from backend.lifecycle.deployers.base import ModelSpec
from backend.text import refuse_unstorable

Engine = Literal["vllm", "tgi", "tei"]
ScalingMetric = Literal["RequestCountPerTarget", "TargetResponseTime"]

# The template's own patterns (model.yaml Parameters).
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
PREFIX_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/-]*[A-Za-z0-9._-]$"
HEALTH_PATH_PATTERN = r"^/[A-Za-z0-9/._-]*$"
INSTANCE_TYPE_PATTERN = r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
NO_SPACE_PATTERN = r"^[^\s\x00-\x1f\x7f]+$"  # one word: no whitespace, no control characters
# Names the template sets itself (LISA_*, PORT) or the platform owns (AWS_*, ECS_*: the task's credentials, agent).
RESERVED_ENV_PREFIXES = ("LISA_", "AWS_", "ECS_")
RESERVED_ENV_NAMES = frozenset({"PORT"})
MAX_ENV_BYTES = 16 * 1024  # the environment is written into the template body, which has to fit in 51,200 bytes

Token = Annotated[str, Field(min_length=1, max_length=512, pattern=NO_SPACE_PATTERN), AfterValidator(refuse_unstorable)]
ServedName = Annotated[
    str, Field(min_length=1, max_length=256, pattern=NO_SPACE_PATTERN), AfterValidator(refuse_unstorable)
]
EnvName = Annotated[str, Field(min_length=1, max_length=255, pattern=ENV_NAME_PATTERN)]
EnvValue = Annotated[str, Field(max_length=4096), AfterValidator(refuse_unstorable)]


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HealthCheck(_Part):
    """The load balancer's probe of each task, and how long ECS ignores it after a start."""

    path: str = Field(default="/health", max_length=1024, pattern=HEALTH_PATH_PATTERN)
    interval_seconds: int = Field(default=30, ge=5, le=300)
    timeout_seconds: int = Field(default=10, ge=2, le=120)
    healthy_threshold: int = Field(default=2, ge=2, le=10)
    unhealthy_threshold: int = Field(default=3, ge=2, le=10)
    # Weights sync and load; ECS ignores the load balancer's verdict this long after a task starts.
    grace_period_seconds: int = Field(default=900, ge=0, le=2_147_483_647)
    # The container's own health check (curl on path): failures during this start period do not count.
    start_period_seconds: int = Field(default=300, ge=0, le=300)

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> HealthCheck:
        if self.timeout_seconds >= self.interval_seconds:
            raise ValueError(
                f"health_check.timeout_seconds ({self.timeout_seconds}) must be less than interval_seconds "
                f"({self.interval_seconds}): the load balancer waits for one check before starting the next"
            )
        return self


class Autoscaling(_Part):
    """Tasks (one per instance) and the target-tracking policy that moves between min and max."""

    min_capacity: int = Field(default=1, ge=0, le=1000)
    max_capacity: int = Field(default=2, ge=1, le=1000)
    desired_capacity: int = Field(default=1, ge=0, le=1000)
    metric: ScalingMetric = "RequestCountPerTarget"
    # Requests per task per minute (RequestCountPerTarget), or average seconds per response (TargetResponseTime).
    target_value: float = Field(default=60, gt=0)
    scale_in_cooldown_seconds: int = Field(default=900, ge=0, le=86_400)
    scale_out_cooldown_seconds: int = Field(default=120, ge=0, le=86_400)
    warmup_seconds: int = Field(default=600, ge=0, le=10_000)

    @model_validator(mode="after")
    def _relations(self) -> Autoscaling:
        if not self.min_capacity <= self.desired_capacity <= self.max_capacity:
            raise ValueError(
                f"autoscaling needs min_capacity <= desired_capacity <= max_capacity; got {self.min_capacity} <= "
                f"{self.desired_capacity} <= {self.max_capacity}"
            )
        if self.metric == "RequestCountPerTarget" and not 1 <= self.target_value <= 1_000_000:
            raise ValueError(
                f"autoscaling.target_value for RequestCountPerTarget is requests per task per minute, from 1 to "
                f"1000000; got {self.target_value:g}"
            )
        if self.metric == "TargetResponseTime" and not 0.01 <= self.target_value <= 3600:
            raise ValueError(
                f"autoscaling.target_value for TargetResponseTime is average seconds per response, from 0.01 to "
                f"3600; got {self.target_value:g}"
            )
        return self


class S3Weights(_Part):
    """Where the model's files are: ``s3://bucket/prefix/``."""

    bucket: str | None = Field(
        default=None,
        pattern=BUCKET_PATTERN,
        description="None: the platform's weights bucket (its model roles may read no other).",
    )
    prefix: str = Field(max_length=1024, pattern=PREFIX_PATTERN, description="Key prefix, no slash at either end.")


class EcsModelSpec(ModelSpec):
    """One self-hosted model as an ECS service on GPU instances (deploy/cloudformation/model.yaml)."""

    engine: Engine
    image: Token | None = Field(default=None, description="None: the platform's image for the engine.")
    served_model_name: ServedName | None = Field(default=None, description="The name clients send; None: model_id.")
    server_args: list[Token] = Field(default_factory=list, max_length=64)
    instance_type: str = Field(default="g5.xlarge", max_length=32, pattern=INSTANCE_TYPE_PATTERN)
    gpu_count: Literal[0, 1, 2, 4, 8] = 1
    container_cpu: int = Field(default=0, ge=0, le=196_608, description="CPU units (1024 per vCPU); 0: none held.")
    memory_reservation_mib: int = Field(default=12288, ge=512, le=4_194_304)
    shared_memory_mib: int = Field(default=2048, ge=64, le=1_048_576)
    root_volume_gib: int = Field(default=200, ge=50, le=16384)
    # The container's own variables. Never logged; repr leaves them out. They reach the task definition as plain
    # values: secrets belong in Secrets Manager, not here.
    environment: dict[EnvName, EnvValue] = Field(default_factory=dict, max_length=100, repr=False)
    health_check: HealthCheck = HealthCheck()
    autoscaling: Autoscaling = Autoscaling()
    weights: S3Weights

    @field_validator("environment")
    @classmethod
    def _environment_names_free(cls, environment: dict[str, str]) -> dict[str, str]:
        taken = sorted(
            name
            for name in environment
            if name.upper() in RESERVED_ENV_NAMES or name.upper().startswith(RESERVED_ENV_PREFIXES)
        )
        if taken:
            raise ValueError(
                f"environment names {', '.join(taken)} are reserved: PORT and LISA_* are set by the model stack, "
                "AWS_* and ECS_* belong to the platform"
            )
        size = sum(len(k.encode()) + len(v.encode()) for k, v in environment.items())
        if size > MAX_ENV_BYTES:
            raise ValueError(f"environment holds {size} bytes; at most {MAX_ENV_BYTES} fit in the model stack")
        return environment

    @model_validator(mode="after")
    def _relations(self) -> EcsModelSpec:
        if self.shared_memory_mib > self.memory_reservation_mib:
            raise ValueError(
                f"shared_memory_mib ({self.shared_memory_mib}) must not exceed memory_reservation_mib "
                f"({self.memory_reservation_mib}): /dev/shm is the container's memory"
            )
        if sum(len(arg) + 1 for arg in self.server_args) > 4096:
            raise ValueError("server_args are longer than 4096 characters in all")
        return self

    def scaled_to_zero(self) -> EcsModelSpec:
        """The same model running no task (what :meth:`EcsDeployer.stop` deploys)."""
        scaling = self.autoscaling.model_copy(update={"min_capacity": 0, "desired_capacity": 0})
        return self.model_copy(update={"autoscaling": scaling})


def stack_name(prefix: str, model_id: str) -> str:
    """``<prefix>-<model>``, a valid stack name (letters, digits, hyphens; 128 at most). An id that is not one as it
    is (``llama-3.1``, ``org/model``) is written with hyphens and gets 8 hex digits of its hash, so that two ids
    never share a stack."""
    if re.fullmatch(r"[A-Za-z0-9-]+", model_id) and len(prefix) + 1 + len(model_id) <= 128:
        return f"{prefix}-{model_id}"
    slug = re.sub(r"[^A-Za-z0-9]+", "-", model_id).strip("-")
    digest = hashlib.sha256(model_id.encode()).hexdigest()[:8]
    room = 128 - len(prefix) - 1 - len(digest) - 1
    slug = slug[:room].rstrip("-")
    return f"{prefix}-{slug}-{digest}" if slug else f"{prefix}-{digest}"
