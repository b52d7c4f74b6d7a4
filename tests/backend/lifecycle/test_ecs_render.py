"""EcsModelSpec -> model.yaml's parameters and template, as pure functions: every spec field reaches its parameter,
the spec's defaults are the template's, the relations between fields are refused with clear messages, and what moto
skips (Application Auto Scaling) is checked on the rendered template."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic import ValidationError

from backend.config import Settings
from backend.errors import BadRequest
from backend.lifecycle.deployers import ecs_deployer, open_deployer
from backend.lifecycle.deployers.ecs_render import (
    CPU_AMI_PARAMETER,
    DEFAULT_TEMPLATE,
    TEMPLATE_BODY_LIMIT,
    EcsPlatform,
    load_template,
    render,
)
from backend.lifecycle.deployers.ecs_spec import MAX_ENV_BYTES, EcsModelSpec, stack_name
from tests.deploy.cfn import evaluate_conditions, load

PLATFORM = EcsPlatform(
    vpc_id="vpc-0abc",
    subnet_ids=("subnet-1", "subnet-2"),
    gateway_security_group_id="sg-0gate",
    stack_prefix="lisa-model",
    role_path="/lisa-model/",
    role_boundary_arn="arn:aws:iam::123456789012:policy/lisa-model-boundary",
    deploy_role_arn="arn:aws:iam::123456789012:role/lisa-model-deploy",
    weights_bucket="lisa-weights",
    images={"vllm": "ecr/lisa-vllm:1", "tgi": "ecr/lisa-tgi:1", "tei": "ecr/lisa-tei:1"},
)
# Parameters only the template sets (the spec has no field for them; their defaults stand).
TEMPLATE_ONLY = {"ContainerPort", "AmiId", "DeregistrationDelaySeconds", "SlowStartSeconds", "LogRetentionDays",
                 "IdleTimeoutSeconds"}  # fmt: skip
PLATFORM_PARAMETERS = {"VpcId", "SubnetIds", "GatewaySecurityGroupId", "RolePath", "RoleBoundaryArn"}


def spec(**fields: Any) -> EcsModelSpec:
    return EcsModelSpec.model_validate(
        {"model_id": "llama", "engine": "vllm", "weights": {"prefix": "m/llama"}} | fields
    )


FULL: dict[str, Any] = {
    "model_id": "llama-3.1-70b",
    "engine": "tgi",
    "image": "ecr/custom-tgi:3.0",
    "served_model_name": "llama-70b",
    "server_args": ["--max-input-tokens", "8192", "--quantize", "awq"],
    "instance_type": "g6e.12xlarge",
    "gpu_count": 4,
    "container_cpu": 4096,
    "memory_reservation_mib": 180_000,
    "shared_memory_mib": 16_384,
    "root_volume_gib": 400,
    "environment": {"HF_HUB_OFFLINE": "1", "NCCL_DEBUG": "WARN"},
    "health_check": {
        "path": "/ready",
        "interval_seconds": 20,
        "timeout_seconds": 8,
        "healthy_threshold": 3,
        "unhealthy_threshold": 4,
        "grace_period_seconds": 1800,
        "start_period_seconds": 240,
    },
    "autoscaling": {
        "min_capacity": 2,
        "max_capacity": 6,
        "desired_capacity": 3,
        "metric": "TargetResponseTime",
        "target_value": 2.5,
        "scale_in_cooldown_seconds": 1200,
        "scale_out_cooldown_seconds": 60,
        "warmup_seconds": 900,
    },
    "weights": {"bucket": "lisa-weights", "prefix": "models/llama-3.1-70b"},
}


def test_every_spec_field_reaches_its_parameter() -> None:
    rendered = render(EcsModelSpec.model_validate(FULL), PLATFORM, load_template())
    assert rendered.parameters == {
        "ModelId": "llama-3.1-70b",
        "ServedModelName": "llama-70b",
        "Engine": "tgi",
        "ContainerImage": "ecr/custom-tgi:3.0",
        "ServerArgs": "--max-input-tokens 8192 --quantize awq",
        "WeightsBucket": "lisa-weights",
        "WeightsPrefix": "models/llama-3.1-70b",
        "InstanceType": "g6e.12xlarge",
        "GpuCount": "4",
        "ContainerCpu": "4096",
        "MemoryReservation": "180000",
        "SharedMemorySize": "16384",
        "RootVolumeSize": "400",
        "HealthCheckPath": "/ready",
        "HealthCheckIntervalSeconds": "20",
        "HealthCheckTimeoutSeconds": "8",
        "HealthyThresholdCount": "3",
        "UnhealthyThresholdCount": "4",
        "HealthCheckGracePeriodSeconds": "1800",
        "ContainerStartPeriodSeconds": "240",
        "MinCapacity": "2",
        "MaxCapacity": "6",
        "DesiredCapacity": "3",
        "ScalingMetric": "TargetResponseTime",
        "ScalingTargetValue": "2.5",
        "ScaleInCooldownSeconds": "1200",
        "ScaleOutCooldownSeconds": "60",
        "InstanceWarmupSeconds": "900",
        "VpcId": "vpc-0abc",
        "SubnetIds": "subnet-1,subnet-2",
        "GatewaySecurityGroupId": "sg-0gate",
        "RolePath": "/lisa-model/",
        "RoleBoundaryArn": "arn:aws:iam::123456789012:policy/lisa-model-boundary",
    }
    assert rendered.name == stack_name("lisa-model", "llama-3.1-70b")
    assert rendered.tags == {"lisa:model-id": "llama-3.1-70b", "lisa:engine": "tgi"}
    # Every parameter of the template is either rendered or one the template alone sets.
    template_parameters = set(load_template()["Parameters"])
    assert template_parameters - set(rendered.parameters) == TEMPLATE_ONLY


def test_the_spec_defaults_are_the_template_defaults() -> None:
    template = load_template()
    rendered = render(spec(), PLATFORM, template)
    defaults = {name: str(p["Default"]) for name, p in template["Parameters"].items() if "Default" in p}
    for name in set(rendered.parameters) - PLATFORM_PARAMETERS - {"ServedModelName", "ServerArgs"}:
        if name in defaults:
            assert rendered.parameters[name] == defaults[name], name
    assert (rendered.parameters["ServedModelName"], rendered.parameters["ServerArgs"]) == ("", "")
    assert rendered.parameters["ContainerImage"] == "ecr/lisa-vllm:1"  # the platform's image for the engine
    assert rendered.parameters["WeightsBucket"] == "lisa-weights"  # the platform's bucket
    assert "AmiId" not in rendered.parameters  # the template's GPU AMI


def test_a_cpu_model_runs_on_the_plain_ami() -> None:
    rendered = render(spec(engine="tei", gpu_count=0, instance_type="c7i.xlarge"), PLATFORM, load_template())
    assert rendered.parameters["AmiId"] == CPU_AMI_PARAMETER
    assert rendered.parameters["GpuCount"] == "0"
    assert rendered.parameters["ContainerImage"] == "ecr/lisa-tei:1"
    assert evaluate_conditions(rendered.template, rendered.parameters)["HasGpu"] is False


@pytest.mark.parametrize(("metric", "on_requests"), [("RequestCountPerTarget", True), ("TargetResponseTime", False)])
def test_autoscaling_on_the_rendered_template(metric: str, on_requests: bool) -> None:
    """moto skips ScalableTarget and ScalingPolicy: their properties and the metric's branch are read here."""
    scaling = FULL["autoscaling"] | {"metric": metric, "target_value": 30 if on_requests else 2.5}
    rendered = render(EcsModelSpec.model_validate(FULL | {"autoscaling": scaling}), PLATFORM, load_template())
    params, resources = rendered.parameters, rendered.template["Resources"]

    def value(node: Any) -> str:
        assert set(node) == {"Ref"}, node
        return params[node["Ref"]]

    target = resources["ScalableTarget"]["Properties"]
    assert (value(target["MinCapacity"]), value(target["MaxCapacity"])) == ("2", "6")
    assert target["ScalableDimension"] == "ecs:service:DesiredCount"
    policy = resources["ScalingPolicy"]["Properties"]
    assert policy["PolicyType"] == "TargetTrackingScaling"
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert value(tracking["TargetValue"]) == ("30" if on_requests else "2.5")
    assert (value(tracking["ScaleInCooldown"]), value(tracking["ScaleOutCooldown"])) == ("1200", "60")
    assert evaluate_conditions(rendered.template, params)["ScaleOnRequests"] is on_requests
    chosen = tracking["PredefinedMetricSpecification" if on_requests else "CustomizedMetricSpecification"]
    condition, when_requests, when_latency = chosen["Fn::If"]
    assert condition == "ScaleOnRequests"
    metric_spec = when_requests if on_requests else when_latency
    if on_requests:
        assert metric_spec["PredefinedMetricType"] == "ALBRequestCountPerTarget"
    else:
        assert metric_spec["MetricName"] == "TargetResponseTime" and metric_spec["Statistic"] == "Average"
    group = resources["AutoScalingGroup"]["Properties"]
    assert (value(group["MinSize"]), value(group["MaxSize"]), value(group["DesiredCapacity"])) == ("2", "6", "3")
    assert value(group["DefaultInstanceWarmup"]) == "900"


def test_the_environment_reaches_the_model_container() -> None:
    template = load_template()
    rendered = render(spec(environment={"NCCL_DEBUG": "WARN", "HF_HUB_OFFLINE": "1"}), PLATFORM, template)
    (container,) = rendered.template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    names = [v["Name"] for v in container["Environment"]]
    assert names[:8] == ["LISA_MODEL_ID", "LISA_SERVED_MODEL_NAME", "LISA_ENGINE", "LISA_WEIGHTS_S3_URI",
                         "LISA_MODEL_DIR", "LISA_SERVER_ARGS", "LISA_GPU_COUNT", "PORT"]  # fmt: skip
    assert container["Environment"][8:] == [
        {"Name": "HF_HUB_OFFLINE", "Value": "1"},
        {"Name": "NCCL_DEBUG", "Value": "WARN"},
    ]
    # Nothing else changed, and the loaded template was not modified in place.
    (original,) = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert len(original["Environment"]) == 8
    container["Environment"] = original["Environment"]
    assert rendered.template == template
    assert json.loads(rendered.body) == rendered.template


def test_the_template_reads_as_cfn_lint_reads_it() -> None:
    """The backend's YAML reader (short-form intrinsics) gives the same data as cfn-lint's."""
    assert load_template(DEFAULT_TEMPLATE) == load("model.yaml")


def test_environment_values_are_not_in_the_specs_repr() -> None:
    value = "hf_" + "x" * 30
    model = spec(environment={"HF_TOKEN": value})
    assert value not in repr(model) and value not in str(model)
    assert model.model_dump()["environment"] == {"HF_TOKEN": value}  # kept for whoever persists the spec


def test_the_largest_environment_fits_in_the_template_body() -> None:
    big = {f"VAR_{i}": "v" * ((MAX_ENV_BYTES // 8) - 6) for i in range(8)}
    rendered = render(spec(environment=big), PLATFORM, load_template())
    assert len(rendered.body.encode()) <= TEMPLATE_BODY_LIMIT


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"autoscaling": {"min_capacity": 3, "desired_capacity": 2, "max_capacity": 4}}, "min_capacity <= desired"),
        ({"autoscaling": {"min_capacity": 1, "desired_capacity": 5, "max_capacity": 4}}, "<= 5 <= 4"),
        ({"autoscaling": {"max_capacity": 0, "min_capacity": 0, "desired_capacity": 0}}, "greater than or equal to 1"),
        ({"autoscaling": {"metric": "TargetResponseTime", "target_value": 60_000}}, "average seconds per response"),
        ({"autoscaling": {"metric": "RequestCountPerTarget", "target_value": 0.5}}, "requests per task per minute"),
        ({"autoscaling": {"warmup_seconds": 20_000}}, "less than or equal to 10000"),
        ({"health_check": {"interval_seconds": 10, "timeout_seconds": 10}}, "must be less than interval_seconds"),
        ({"health_check": {"path": "health"}}, "should match pattern"),
        ({"health_check": {"start_period_seconds": 301}}, "less than or equal to 300"),
        ({"shared_memory_mib": 20_000, "memory_reservation_mib": 16_384}, "must not exceed memory_reservation_mib"),
        ({"gpu_count": 3}, "gpu_count"),
        ({"engine": "llamacpp"}, "'vllm', 'tgi' or 'tei'"),
        ({"instance_type": "G5 xlarge"}, "instance_type"),
        ({"weights": {"prefix": "/models/x/"}}, "weights.prefix"),
        ({"weights": {"bucket": "Bad_Bucket", "prefix": "models/x"}}, "weights.bucket"),
        ({"environment": {"LISA_MODEL_ID": "x", "PORT": "1", "AWS_ACCESS_KEY_ID": "k"}}, "are reserved"),
        ({"environment": {"BAD-NAME": "x"}}, "environment.BAD-NAME"),
        ({"environment": {"BIG": "x" * 4097}}, "at most 4096"),
        ({"environment": {f"V{i}": "x" * 4000 for i in range(5)}}, f"at most {MAX_ENV_BYTES} fit"),
        ({"environment": {"NUL": "a\x00b"}}, "NUL"),
        ({"server_args": ["--max-model-len 8192"]}, "server_args.0"),
        ({"server_args": ["\ud800"]}, "server_args.0"),
        ({"image": "ecr/vllm:1 --privileged"}, "image"),
        ({"served_model_name": "x" * 257}, "at most 256 characters"),
        ({"model_id": "-bad"}, "model_id"),
        ({"replicas": 2}, "Extra inputs are not permitted"),
    ],
)
def test_bad_specs_are_refused_with_a_clear_message(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        spec(**fields)
    assert message in str(caught.value), str(caught.value)


def test_the_platform_decides_image_and_bucket() -> None:
    bare = EcsPlatform(vpc_id="vpc-1", subnet_ids=("subnet-1",), gateway_security_group_id="sg-1")
    with pytest.raises(BadRequest, match=r"no image for engine vllm: .* LISA_AWS_MODEL_IMAGE_VLLM"):
        render(spec(), bare, load_template())
    with pytest.raises(BadRequest, match=r"weights.bucket is required"):
        render(spec(image="img:1"), bare, load_template())
    assert (
        render(spec(image="img:1", weights={"bucket": "mine", "prefix": "models/x"}), bare, load_template()).parameters[
            "WeightsBucket"
        ]
        == "mine"
    )
    with pytest.raises(BadRequest, match="may read only the platform's weights bucket 'lisa-weights'"):
        render(spec(weights={"bucket": "elsewhere", "prefix": "models/x"}), PLATFORM, load_template())


def test_a_template_without_the_parameters_is_refused() -> None:
    with pytest.raises(ValueError, match="is not the model stack template: it lacks parameters"):
        render(spec(), PLATFORM, {"Parameters": {"ModelId": {}}, "Resources": {}})


@pytest.mark.parametrize(
    ("model_id", "expected"),
    [
        ("llama", "lisa-model-llama"),
        ("Mistral-7B", "lisa-model-Mistral-7B"),
        ("llama-3.1-8b", None),
        ("meta/llama@v2+q4", None),
        ("x" * 128, None),
    ],
)
def test_stack_names(model_id: str, expected: str | None) -> None:
    name = stack_name("lisa-model", model_id)
    assert re.fullmatch(r"[A-Za-z][-A-Za-z0-9]*", name) and len(name) <= 128, name
    assert name.startswith("lisa-model-")
    if expected:
        assert name == expected
    else:
        assert re.fullmatch(r"lisa-model-[A-Za-z0-9-]+-[0-9a-f]{8}", name), name
    assert stack_name("lisa-model", model_id) == name  # the same id always names the same stack


def test_ids_that_write_alike_get_different_stacks() -> None:
    ids = ["llama-3.1", "llama-3-1", "llama_3_1", "llama/3/1", "x" * 128, "x" * 127 + "y"]
    assert len({stack_name("lisa-model", i) for i in ids}) == len(ids)


def test_the_factory() -> None:
    settings = Settings(
        aws_vpc_id="vpc-1",
        aws_private_subnet_ids="subnet-a, subnet-b",  # as the environment gives it
        aws_gateway_security_group_id="sg-1",
        aws_model_stack_prefix="acme-model",
        aws_model_weights_bucket="acme-weights",
        aws_model_image_tei="ecr/tei:1",
        aws_model_stack_role_arn="arn:aws:iam::1:role/deploy",
    )
    deployer = ecs_deployer(settings)
    assert deployer.kind == "ecs"
    platform = deployer.platform
    assert platform.subnet_ids == ("subnet-a", "subnet-b")
    assert (platform.stack_prefix, platform.weights_bucket, dict(platform.images)) == (
        "acme-model",
        "acme-weights",
        {"tei": "ecr/tei:1"},
    )
    assert platform.template_path == DEFAULT_TEMPLATE
    assert type(open_deployer("ecs", settings)) is type(deployer)
    with pytest.raises(ValueError, match="LISA_AWS_VPC_ID, LISA_AWS_PRIVATE_SUBNET_IDS, LISA_AWS_GATEWAY_SECURITY"):
        open_deployer("ecs", Settings())
    with pytest.raises(ValueError, match="unknown deployer 'k8s'"):
        open_deployer("k8s", Settings())
