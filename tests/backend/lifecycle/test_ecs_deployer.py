"""The ECS deployer end to end against moto_server (a process): the real model.yaml, rendered from an EcsModelSpec,
created, updated, stopped, started and deleted through boto3, with what moto made read back through its APIs.

moto creates stacks synchronously and never fails a resource in an event: a resource that fails makes CreateStack
itself answer the error (the reason surfaces the same way). Event-by-event failures, rollbacks and deadlines, as AWS
runs them, are in test_ecs_following.py. moto skips the Application Auto Scaling resources (their properties are
checked on the rendered template in test_ecs_render.py), and its stack update re-registers the task definition
without its container settings and cannot update a target group (it drops it from the stack): after an update these
tests read the stack's parameters, the service and the Auto Scaling group.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from backend.config import Settings
from backend.lifecycle.deployers import Deployment, DeploymentEvent, DeploymentFailed, DeploymentState, ecs_deployer
from backend.lifecycle.deployers.ecs import EcsDeployer
from backend.lifecycle.deployers.ecs_spec import EcsModelSpec, stack_name
from tests.support import Proc

REGION = "us-east-1"
PREFIX = "lisat-model"
SECRET_VALUE = "hf_" + "s3cr3t-value-never-logged"


@dataclass
class Moto:
    url: str
    vpc: str
    subnets: list[str]
    gateway_sg: str

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "aws_endpoint_url": self.url,
            "aws_region": REGION,
            "aws_vpc_id": self.vpc,
            "aws_private_subnet_ids": self.subnets,
            "aws_gateway_security_group_id": self.gateway_sg,
            "aws_model_stack_prefix": PREFIX,
            "aws_model_role_path": f"/{PREFIX}/",
            "aws_model_weights_bucket": "lisat-weights",
            "aws_model_image_vllm": "123456789012.dkr.ecr.us-east-1.amazonaws.com/lisa-vllm:0.11.0",
            "aws_model_image_tei": "123456789012.dkr.ecr.us-east-1.amazonaws.com/lisa-tei:cpu-1.8",
            "aws_model_stack_poll_seconds": 0.05,
            "aws_model_stack_timeout_seconds": 120,
        }
        return Settings(**(values | overrides))


@pytest.fixture(scope="module")
def moto(moto_server: Proc) -> Iterator[Moto]:
    """The platform's network in moto (as the core stack makes it), and dummy credentials for the deployer's boto3."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.delenv("AWS_PROFILE", raising=False)
        ec2 = boto3.client(
            "ec2", endpoint_url=moto_server.url, region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t"
        )
        vpc = ec2.create_vpc(CidrBlock="10.31.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.31.{i}.0/24", AvailabilityZone=f"{REGION}{zone}")["Subnet"][
                "SubnetId"
            ]
            for i, zone in enumerate("ab")
        ]
        gateway = ec2.create_security_group(GroupName="lisat-gateway", Description="gateway", VpcId=vpc)["GroupId"]
        yield Moto(moto_server.url, vpc, subnets, gateway)


@pytest.fixture(scope="module")
async def deployer(moto: Moto) -> AsyncIterator[EcsDeployer]:
    deployer = ecs_deployer(moto.settings())
    yield deployer
    await deployer.aclose()


SPEC = EcsModelSpec.model_validate(
    {
        "model_id": "llama-3.1-8b-instruct",
        "engine": "vllm",
        "served_model_name": "llama-3.1-8b",
        "server_args": ["--max-model-len", "8192"],
        "instance_type": "g5.12xlarge",
        "gpu_count": 4,
        "memory_reservation_mib": 180_000,
        "shared_memory_mib": 16_384,
        "root_volume_gib": 300,
        "environment": {"HF_TOKEN": SECRET_VALUE, "NCCL_DEBUG": "WARN"},
        "health_check": {"interval_seconds": 20, "timeout_seconds": 8, "healthy_threshold": 3},
        "autoscaling": {"min_capacity": 1, "max_capacity": 3, "desired_capacity": 2, "metric": "TargetResponseTime",
                        "target_value": 2.5},
        "weights": {"prefix": "models/llama-3.1-8b-instruct"},
    }
)  # fmt: skip
NAME = stack_name(PREFIX, SPEC.model_id)


class Recorder:
    def __init__(self) -> None:
        self.events: list[DeploymentEvent] = []

    async def __call__(self, event: DeploymentEvent) -> None:
        self.events.append(event)


def stack_of(moto: Moto, name: str) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """The stack, its parameters, and logical id -> physical id of what moto made."""
    cf = moto.client("cloudformation")
    stack = cf.describe_stacks(StackName=name)["Stacks"][0]
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    listed = cf.list_stack_resources(StackName=name)["StackResourceSummaries"]
    return stack, parameters, {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in listed}


def capacity(moto: Moto, name: str) -> tuple[int, int, int, int]:
    """(ASG min, max, desired, the service's desired count)."""
    (group,) = moto.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
        "AutoScalingGroups"
    ]
    (service,) = moto.client("ecs").describe_services(cluster=name, services=["model"])["services"]
    return group["MinSize"], group["MaxSize"], group["DesiredCapacity"], service["desiredCount"]


@pytest.fixture(scope="module")
async def deployed(deployer: EcsDeployer) -> tuple[Deployment, Recorder]:
    progress = Recorder()
    return await deployer.deploy(SPEC, progress), progress


async def test_deploy_creates_the_stack_and_reads_the_endpoint(
    deployed: tuple[Deployment, Recorder], deployer: EcsDeployer, moto: Moto
) -> None:
    deployment, progress = deployed
    stack, parameters, made = stack_of(moto, NAME)
    (balancer,) = moto.client("elbv2").describe_load_balancers(LoadBalancerArns=[made["LoadBalancer"]])["LoadBalancers"]
    assert deployment == Deployment(
        model_id=SPEC.model_id,
        state=DeploymentState.ready,
        endpoint_url=f"http://{balancer['DNSName']}/v1",
        reference=stack["StackId"],
        detail="CREATE_COMPLETE",
    )
    assert balancer["Scheme"] == "internal"
    assert [(e.resource, e.status) for e in progress.events] == [
        (NAME, "CREATE_IN_PROGRESS"),
        (NAME, "CREATE_COMPLETE"),
    ]
    assert {t["Key"]: t["Value"] for t in stack["Tags"]} == {"lisa:model-id": SPEC.model_id, "lisa:engine": "vllm"}

    # Every rendered parameter reached the stack (moto shows list and SSM parameters resolved).
    rendered = deployer.render(SPEC).parameters
    assert {k: v for k, v in parameters.items() if k in rendered and k != "SubnetIds"} == {
        k: v for k, v in rendered.items() if k != "SubnetIds"
    }
    assert parameters["ServedModelName"] == "llama-3.1-8b" and parameters["MaxCapacity"] == "3"

    # ... and the resources moto made from them.
    task = moto.client("ecs").describe_task_definition(taskDefinition=made["TaskDefinition"])["taskDefinition"]
    (container,) = task["containerDefinitions"]
    assert container["image"] == "123456789012.dkr.ecr.us-east-1.amazonaws.com/lisa-vllm:0.11.0"
    assert container["resourceRequirements"] == [{"value": "4", "type": "GPU"}]
    assert (container["memoryReservation"], container["linuxParameters"]["sharedMemorySize"]) == (180_000, 16_384)
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env["HF_TOKEN"] == SECRET_VALUE and env["NCCL_DEBUG"] == "WARN"
    assert env["LISA_SERVER_ARGS"] == "--max-model-len 8192" and env["LISA_GPU_COUNT"] == "4"
    assert env["LISA_WEIGHTS_S3_URI"] == "s3://lisat-weights/models/llama-3.1-8b-instruct/"
    (group,) = moto.client("elbv2").describe_target_groups(TargetGroupArns=[made["TargetGroup"]])["TargetGroups"]
    assert (group["HealthCheckPath"], group["HealthCheckIntervalSeconds"], group["HealthCheckTimeoutSeconds"]) == (
        "/health",
        20,
        8,
    )
    assert group["HealthyThresholdCount"] == 3
    assert capacity(moto, NAME) == (1, 3, 2, 2)
    (version,) = moto.client("ec2").describe_launch_template_versions(LaunchTemplateId=made["LaunchTemplate"])[
        "LaunchTemplateVersions"
    ]
    assert version["LaunchTemplateData"]["InstanceType"] == "g5.12xlarge"
    assert version["LaunchTemplateData"]["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == 300


async def test_deploying_again_returns_the_stack_as_it_is(
    deployed: tuple[Deployment, Recorder], deployer: EcsDeployer, moto: Moto
) -> None:
    before = moto.client("cloudformation").describe_stack_events(StackName=NAME)["StackEvents"]
    assert await deployer.deploy(SPEC) == deployed[0]
    after = moto.client("cloudformation").describe_stack_events(StackName=NAME)["StackEvents"]
    assert after == before  # no operation was started
    status = await deployer.status(SPEC.model_id)
    assert status is not None and (status.state, status.endpoint_url) == (
        DeploymentState.ready,
        deployed[0].endpoint_url,
    )


async def test_update_reaches_the_stack(
    deployed: tuple[Deployment, Recorder], deployer: EcsDeployer, moto: Moto, caplog: pytest.LogCaptureFixture
) -> None:
    changed = SPEC.model_copy(
        update={
            "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/lisa-vllm:0.12.0",
            "environment": {"HF_TOKEN": SECRET_VALUE + "-2"},
            "health_check": SPEC.health_check.model_copy(update={"path": "/ready", "interval_seconds": 30}),
            "autoscaling": SPEC.autoscaling.model_copy(
                update={"min_capacity": 2, "desired_capacity": 3, "max_capacity": 5, "metric": "RequestCountPerTarget",
                        "target_value": 120}
            ),
        }
    )  # fmt: skip
    _, _, made_before = stack_of(moto, NAME)
    caplog.set_level(logging.INFO, logger="backend.lifecycle")
    progress = Recorder()
    updated = await deployer.update(changed, progress)
    assert (updated.state, updated.detail) == (DeploymentState.ready, "UPDATE_COMPLETE")
    assert updated.endpoint_url == deployed[0].endpoint_url and updated.reference == deployed[0].reference
    assert [(e.resource, e.status) for e in progress.events] == [
        (NAME, "UPDATE_IN_PROGRESS"),
        (NAME, "UPDATE_COMPLETE"),
    ]
    _, parameters, made = stack_of(moto, NAME)
    assert parameters["ContainerImage"].endswith("lisa-vllm:0.12.0")
    assert (parameters["HealthCheckPath"], parameters["HealthCheckIntervalSeconds"]) == ("/ready", "30")
    assert (parameters["ScalingMetric"], parameters["ScalingTargetValue"]) == ("RequestCountPerTarget", "120")
    assert capacity(moto, NAME) == (2, 5, 3, 3)
    assert made["TaskDefinition"] != made_before["TaskDefinition"]  # a new revision, for the new image and env
    # The environment's names are logged; its values never are.
    assert "HF_TOKEN" in caplog.text and SECRET_VALUE not in caplog.text


async def test_stop_scales_to_zero_and_start_brings_it_back(deployed: tuple[Deployment, Recorder], deployer: EcsDeployer, moto: Moto) -> None:  # fmt: skip
    stopped = await deployer.stop(SPEC)
    assert (stopped.state, stopped.endpoint_url) == (DeploymentState.stopped, deployed[0].endpoint_url)
    assert capacity(moto, NAME) == (0, 3, 0, 0)
    status = await deployer.status(SPEC.model_id)
    assert status is not None and status.state == DeploymentState.stopped
    started = await deployer.start(SPEC)
    assert (started.state, started.endpoint_url) == (DeploymentState.ready, deployed[0].endpoint_url)
    assert capacity(moto, NAME) == (1, 3, 2, 2)


async def test_events_of_the_stack(deployed: tuple[Deployment, Recorder], deployer: EcsDeployer) -> None:
    events = await deployer.events(SPEC.model_id)
    assert [e.status for e in events][:2] == ["CREATE_IN_PROGRESS", "CREATE_COMPLETE"]
    assert events[-1].status in ("UPDATE_COMPLETE", "CREATE_COMPLETE")
    assert [e.time for e in events] == sorted(e.time for e in events)
    assert [e.status for e in await deployer.events(SPEC.model_id, limit=1)] == [events[-1].status]


async def test_delete_removes_everything_and_is_idempotent(
    deployed: tuple[Deployment, Recorder], deployer: EcsDeployer, moto: Moto
) -> None:
    _, _, made = stack_of(moto, NAME)
    progress = Recorder()
    await deployer.delete(SPEC.model_id, progress)
    assert [(e.resource, e.status) for e in progress.events] == [
        (NAME, "DELETE_IN_PROGRESS"),
        (NAME, "DELETE_COMPLETE"),
    ]
    assert await deployer.status(SPEC.model_id) is None
    assert await deployer.events(SPEC.model_id) == []
    balancers = moto.client("elbv2").describe_load_balancers()["LoadBalancers"]
    assert made["LoadBalancer"] not in {b["LoadBalancerArn"] for b in balancers}
    assert not moto.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[NAME])[
        "AutoScalingGroups"
    ]
    await deployer.delete(SPEC.model_id)  # nothing left: success
    with pytest.raises(DeploymentFailed, match=f"update failed: model {SPEC.model_id} has no stack {NAME}: deploy"):
        await deployer.update(SPEC)


async def test_a_cpu_embedding_model(deployer: EcsDeployer, moto: Moto) -> None:
    spec = EcsModelSpec.model_validate(
        {"model_id": "bge-small@v1.5", "engine": "tei", "gpu_count": 0, "instance_type": "c7i.xlarge",
         "memory_reservation_mib": 4096, "weights": {"prefix": "models/bge-small"}}
    )  # fmt: skip
    deployment = await deployer.deploy(spec)
    name = stack_name(PREFIX, spec.model_id)
    assert deployment.state == DeploymentState.ready and name.startswith(f"{PREFIX}-bge-small-v1-5-")
    _, parameters, made = stack_of(moto, name)
    assert parameters["ModelId"] == "bge-small@v1.5"  # every registry id fits the template's ModelId
    task = moto.client("ecs").describe_task_definition(taskDefinition=made["TaskDefinition"])["taskDefinition"]
    assert "resourceRequirements" not in task["containerDefinitions"][0]
    cpu_ami = moto.client("ssm").get_parameter(
        Name="/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
    )["Parameter"]["Value"]
    assert parameters["AmiId"] == cpu_ami
    await deployer.delete(spec.model_id)
    assert await deployer.status(spec.model_id) is None


@pytest.mark.parametrize(
    ("setting", "value", "reason"),
    [
        # moto names one of the subnets given at random (its describe_subnets compares ids with objects): both are bad
        (
            "aws_private_subnet_ids",
            ["subnet-0dead0001", "subnet-0dead0002"],
            r"InvalidSubnetID\.NotFound: The subnet ID 'subnet-0dead000[12]' does not exist",
        ),
        ("aws_vpc_id", "vpc-0dead0001", r"ValidationError: The VPC ID 'vpc-0dead0001' is not found"),
        (
            "aws_gateway_security_group_id",
            "sg-0dead0001",
            r"InvalidGroup\.NotFound: The security group 'sg-0dead0001' does not exist",
        ),
    ],
)
async def test_a_stack_that_fails_surfaces_its_reason(moto: Moto, setting: str, value: Any, reason: str) -> None:
    """A platform whose network is gone: a resource of the stack cannot be made, and the error says which and why."""
    broken = ecs_deployer(moto.settings(**{setting: value}))
    spec = SPEC.model_copy(update={"model_id": f"broken-{setting.replace('_', '-')}"})
    try:
        with pytest.raises(DeploymentFailed) as caught:
            await broken.deploy(spec)
        assert caught.value.step == "create"
        assert re.fullmatch(reason, caught.value.reason), caught.value.reason
        assert str(caught.value) == f"create failed: {caught.value.reason}"
    finally:
        # moto keeps the half-made stack in CREATE_IN_PROGRESS and cannot describe it (a 500): remove it directly.
        moto.client("cloudformation").delete_stack(StackName=stack_name(PREFIX, spec.model_id))
        await broken.aclose()
