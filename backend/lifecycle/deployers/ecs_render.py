"""An :class:`EcsModelSpec` as a CloudFormation stack: deploy/cloudformation/model.yaml with its parameters filled
from the spec and the platform (the core stack's outputs), and the spec's container environment written into the
task definition. Pure: nothing here calls AWS."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from backend.errors import BadRequest
from backend.lifecycle.deployers.ecs_spec import EcsModelSpec, stack_name

DEFAULT_TEMPLATE = Path(__file__).resolve().parents[3] / "deploy" / "cloudformation" / "model.yaml"
TEMPLATE_BODY_LIMIT = 51_200  # bytes CloudFormation takes as an inline TemplateBody
# CPU-only models (gpu_count 0) run on the plain ECS-optimized AMI; the template's default is the GPU one.
CPU_AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
MODEL_ID_TAG = "lisa:model-id"
MODEL_CONTAINER = "model"

Template = dict[str, Any]


@dataclass(frozen=True)
class EcsPlatform:
    """The platform's side of every model stack: the core stack's outputs (deploy/cloudformation/README.md), as the
    backend receives them (``LISA_AWS_*``)."""

    vpc_id: str
    subnet_ids: tuple[str, ...]
    gateway_security_group_id: str
    stack_prefix: str = "lisa-model"
    role_path: str = "/lisa-model/"
    role_boundary_arn: str = ""
    deploy_role_arn: str = ""  # the role CloudFormation assumes for model stacks (RoleARN); empty: the caller's
    weights_bucket: str = ""  # empty: each spec names its bucket
    images: Mapping[str, str] = field(default_factory=dict)  # engine -> image URI
    template_path: Path = DEFAULT_TEMPLATE


@dataclass(frozen=True)
class RenderedStack:
    name: str
    template: Template
    parameters: dict[str, str]
    tags: dict[str, str]

    @property
    def body(self) -> str:
        return json.dumps(self.template, separators=(",", ":"))

    def parameter_list(self) -> list[dict[str, str]]:
        return [{"ParameterKey": k, "ParameterValue": v} for k, v in self.parameters.items()]

    def tag_list(self) -> list[dict[str, str]]:
        return [{"Key": k, "Value": v} for k, v in self.tags.items()]


def render(spec: EcsModelSpec, platform: EcsPlatform, template: Template) -> RenderedStack:
    """The stack for ``spec``: every spec field reaches its parameter (or, for the environment, the container)."""
    image = spec.image or platform.images.get(spec.engine, "")
    if not image:
        raise BadRequest(
            f"no image for engine {spec.engine}: give the spec an image or set LISA_AWS_MODEL_IMAGE_{spec.engine.upper()}",
            param="image",
        )
    bucket = spec.weights.bucket or platform.weights_bucket
    if not bucket:
        raise BadRequest("weights.bucket is required: the platform has no weights bucket", param="weights.bucket")
    if platform.weights_bucket and bucket != platform.weights_bucket:
        raise BadRequest(
            f"weights.bucket {bucket!r}: model tasks may read only the platform's weights bucket "
            f"{platform.weights_bucket!r} (their permissions boundary); copy the weights there",
            param="weights.bucket",
        )
    health, scaling = spec.health_check, spec.autoscaling
    parameters = {
        "ModelId": spec.model_id,
        "ServedModelName": spec.served_model_name or "",
        "Engine": spec.engine,
        "ContainerImage": image,
        "ServerArgs": " ".join(spec.server_args),
        "WeightsBucket": bucket,
        "WeightsPrefix": spec.weights.prefix,
        "InstanceType": spec.instance_type,
        "GpuCount": str(spec.gpu_count),
        "ContainerCpu": str(spec.container_cpu),
        "MemoryReservation": str(spec.memory_reservation_mib),
        "SharedMemorySize": str(spec.shared_memory_mib),
        "RootVolumeSize": str(spec.root_volume_gib),
        "HealthCheckPath": health.path,
        "HealthCheckIntervalSeconds": str(health.interval_seconds),
        "HealthCheckTimeoutSeconds": str(health.timeout_seconds),
        "HealthyThresholdCount": str(health.healthy_threshold),
        "UnhealthyThresholdCount": str(health.unhealthy_threshold),
        "HealthCheckGracePeriodSeconds": str(health.grace_period_seconds),
        "ContainerStartPeriodSeconds": str(health.start_period_seconds),
        "MinCapacity": str(scaling.min_capacity),
        "MaxCapacity": str(scaling.max_capacity),
        "DesiredCapacity": str(scaling.desired_capacity),
        "ScalingMetric": scaling.metric,
        "ScalingTargetValue": _number(scaling.target_value),
        "ScaleInCooldownSeconds": str(scaling.scale_in_cooldown_seconds),
        "ScaleOutCooldownSeconds": str(scaling.scale_out_cooldown_seconds),
        "InstanceWarmupSeconds": str(scaling.warmup_seconds),
        "VpcId": platform.vpc_id,
        "SubnetIds": ",".join(platform.subnet_ids),
        "GatewaySecurityGroupId": platform.gateway_security_group_id,
        "RolePath": platform.role_path,
        "RoleBoundaryArn": platform.role_boundary_arn,
    }
    if spec.gpu_count == 0:
        parameters["AmiId"] = CPU_AMI_PARAMETER
    unknown = sorted(set(parameters) - set(template.get("Parameters", {})))
    if unknown:
        raise ValueError(f"{platform.template_path} is not the model stack template: it lacks parameters {unknown}")
    rendered = RenderedStack(
        name=stack_name(platform.stack_prefix, spec.model_id),
        template=_with_environment(template, spec.environment),
        parameters=parameters,
        tags={MODEL_ID_TAG: spec.model_id, "lisa:engine": spec.engine},
    )
    size = len(rendered.body.encode())
    if size > TEMPLATE_BODY_LIMIT:
        raise BadRequest(f"the model stack would be {size} bytes, over CloudFormation's {TEMPLATE_BODY_LIMIT}")
    return rendered


def _number(value: float) -> str:
    """A CloudFormation Number: ``60``, ``2.5`` (never an exponent)."""
    return str(int(value)) if value == int(value) else repr(value)


def _with_environment(template: Template, environment: Mapping[str, str]) -> Template:
    """The template with ``environment`` added to the model container's variables (the template's own first)."""
    if not environment:
        return template
    out = copy.deepcopy(template)
    (container,) = (
        c
        for c in out["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
        if c.get("Name") == MODEL_CONTAINER
    )
    variables: list[dict[str, Any]] = container.setdefault("Environment", [])
    taken = sorted({v["Name"] for v in variables} & set(environment))
    if taken:
        raise BadRequest(f"environment names {', '.join(taken)} are set by the model stack", param="environment")
    variables.extend({"Name": name, "Value": value} for name, value in sorted(environment.items()))
    return out


# ---------------------------------------------------------------- reading the template


class _TemplateLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form intrinsics (``!Ref X`` -> ``{"Ref": "X"}``, ``!GetAtt A.B`` ->
    ``{"Fn::GetAtt": ["A", "B"]}``), so the template can be sent as JSON."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)  # the resource, then its attribute (which may hold dots)
    return {suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}": value}


_TemplateLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = DEFAULT_TEMPLATE) -> Template:
    """The template as plain data (read again when the file changes)."""
    return copy.deepcopy(_load(path.resolve(), path.stat().st_mtime_ns))


@lru_cache(maxsize=4)
def _load(path: Path, _mtime_ns: int) -> Template:
    template = yaml.load(path.read_text(), Loader=_TemplateLoader)  # a SafeLoader subclass
    if not isinstance(template, dict) or "Resources" not in template:
        raise ValueError(f"{path}: not a CloudFormation template")
    return template
