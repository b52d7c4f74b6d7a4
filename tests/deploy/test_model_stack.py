"""model.yaml on moto_server, created as the backend will create it: named PREFIX-<model>, with the core stack's
outputs as parameters and its deploy role as the stack's RoleARN. Create, check what exists, delete.

Resources moto cannot create (platform.MOTO_SKIPS_MODEL), and properties it drops, are checked on the template."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from tests.deploy.cfn import Client, Stack, Template, create_stack, delete_stack, inline_policies, load
from tests.deploy.platform import MOTO_SKIPS_MODEL, Core, deploy_core

GPU_AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"
CPU_AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"


@pytest.fixture(scope="module")
def platform(aws: Client) -> Iterator[Core]:
    core = deploy_core(aws, "lisam", create_vpc=False, cidr_prefix="10.7")
    yield core
    delete_stack(aws, core.stack)


def model_params(core: Core, **overrides: str) -> dict[str, str]:
    out = core.stack.outputs
    return {
        "ModelId": "llama-3.1-8b-instruct",
        "Engine": "vllm",
        "ContainerImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/lisa-vllm:0.11.0",
        "WeightsBucket": out["ModelWeightsBucketName"],
        "WeightsPrefix": "models/llama-3.1-8b-instruct",
        "VpcId": out["VpcId"],
        "SubnetIds": out["PrivateSubnetIds"],
        "GatewaySecurityGroupId": out["GatewaySecurityGroupId"],
        "RolePath": out["ModelRolePath"],
        "RoleBoundaryArn": out["ModelRoleBoundaryArn"],
        **overrides,
    }


@pytest.fixture(scope="module")
def model(aws: Client, platform: Core) -> tuple[Stack, dict[str, str]]:
    params = model_params(
        platform,
        ServedModelName="llama-3.1-8b",
        InstanceType="g5.12xlarge",
        GpuCount="4",
        MemoryReservation="180000",
        SharedMemorySize="16384",
        RootVolumeSize="300",
        ServerArgs="--max-model-len 8192",
        HealthCheckIntervalSeconds="20",
        HealthCheckTimeoutSeconds="8",
        HealthyThresholdCount="3",
        UnhealthyThresholdCount="4",
        MinCapacity="1",
        MaxCapacity="3",
        DesiredCapacity="2",
        ScalingMetric="TargetResponseTime",
        ScalingTargetValue="2.5",
        LogRetentionDays="14",
    )
    name = f"{platform.stack.outputs['ModelStackPrefix']}-llama"
    role = platform.stack.outputs["ModelStackDeployRoleArn"]
    return create_stack(aws, name, load("model.yaml"), params, role_arn=role), params


def model_container(aws: Client, stack: Stack) -> dict[str, Any]:
    task = aws("ecs").describe_task_definition(taskDefinition=stack.created["TaskDefinition"])["taskDefinition"]
    (container,) = task["containerDefinitions"]
    return {"volumes": task["volumes"], **container}


def test_outputs_are_resolved(aws: Client, model: tuple[Stack, dict[str, str]]) -> None:
    stack, params = model
    (lb,) = aws("elbv2").describe_load_balancers(LoadBalancerArns=[stack.created["LoadBalancer"]])["LoadBalancers"]
    assert stack.outputs == {
        "EndpointUrl": f"http://{lb['DNSName']}/v1",
        "LoadBalancerDnsName": lb["DNSName"],
        "AutoScalingGroupName": stack.name,
        "ClusterName": stack.name,
        "ServiceName": "model",
        "ModelId": params["ModelId"],
        "LogGroupName": f"/ecs/{stack.name}",
    }


def test_moto_skipped_only_the_documented_types(model: tuple[Stack, dict[str, str]]) -> None:
    assert set(model[0].skipped.values()) == MOTO_SKIPS_MODEL, model[0].skipped


def test_gpu_capacity(aws: Client, model: tuple[Stack, dict[str, str]], platform: Core) -> None:
    stack, _ = model
    (version,) = aws("ec2").describe_launch_template_versions(LaunchTemplateId=stack.created["LaunchTemplate"])[
        "LaunchTemplateVersions"
    ]
    data = version["LaunchTemplateData"]
    gpu_ami = aws("ssm").get_parameter(Name=GPU_AMI_PARAMETER)["Parameter"]["Value"]
    assert data["ImageId"] == gpu_ami  # resolved from SSM by the stack
    assert data["InstanceType"] == "g5.12xlarge"
    (root,) = data["BlockDeviceMappings"]
    assert root["Ebs"]["Encrypted"] is True and root["Ebs"]["VolumeSize"] == 300 and root["Ebs"]["VolumeType"] == "gp3"
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert ":instance-profile/lisam-model/" in data["IamInstanceProfile"]["Arn"]
    user_data = base64.b64decode(data["UserData"]).decode()
    assert f"ECS_CLUSTER={stack.name}\n" in user_data and "ECS_ENABLE_GPU_SUPPORT=true" in user_data

    (group,) = aws("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[stack.name])["AutoScalingGroups"]
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (1, 3, 2)
    assert set(group["VPCZoneIdentifier"].split(",")) == set(platform.private_subnets)
    assert group["LaunchTemplate"]["LaunchTemplateId"] == stack.created["LaunchTemplate"]
    assert {"AmazonECSManaged", "lisa:model-id"} <= {t["Key"] for t in group["Tags"]}
    (cluster,) = aws("ecs").describe_clusters(clusters=[stack.name])["clusters"]
    assert cluster["status"] == "ACTIVE"


def test_model_task(aws: Client, model: tuple[Stack, dict[str, str]]) -> None:
    stack, params = model
    container = model_container(aws, stack)
    assert container["image"] == params["ContainerImage"]
    assert container["resourceRequirements"] == [{"type": "GPU", "value": "4"}]
    assert container["memoryReservation"] == 180000
    assert container["linuxParameters"]["sharedMemorySize"] == 16384
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env == {
        "LISA_MODEL_ID": "llama-3.1-8b-instruct",
        "LISA_SERVED_MODEL_NAME": "llama-3.1-8b",
        "LISA_ENGINE": "vllm",
        "LISA_WEIGHTS_S3_URI": f"s3://{params['WeightsBucket']}/models/llama-3.1-8b-instruct/",
        "LISA_MODEL_DIR": f"/models/{stack.name}",
        "LISA_SERVER_ARGS": "--max-model-len 8192",
        "LISA_GPU_COUNT": "4",
        "PORT": "8080",
    }
    assert "http://127.0.0.1:8080/health" in container["healthCheck"]["command"][1]
    assert container["healthCheck"]["startPeriod"] == 300
    assert container["logConfiguration"]["options"]["awslogs-group"] == f"/ecs/{stack.name}"
    assert container["mountPoints"] == [{"sourceVolume": "model-cache", "containerPath": "/models"}]
    assert container["volumes"] == [{"name": "model-cache", "host": {"sourcePath": "/var/lib/lisa/models"}}]
    (service,) = aws("ecs").describe_services(cluster=stack.name, services=["model"])["services"]
    assert service["desiredCount"] == 2
    (group,) = aws("logs").describe_log_groups(logGroupNamePrefix=f"/ecs/{stack.name}")["logGroups"]
    assert group["retentionInDays"] == 14


def test_only_the_gateway_reaches_the_model(aws: Client, model: tuple[Stack, dict[str, str]], platform: Core) -> None:
    stack, _ = model
    elb, ec2 = aws("elbv2"), aws("ec2")
    (lb,) = elb.describe_load_balancers(LoadBalancerArns=[stack.created["LoadBalancer"]])["LoadBalancers"]
    assert lb["Scheme"] == "internal"
    assert lb["SecurityGroups"] == [stack.created["LoadBalancerSecurityGroup"]]
    groups = {g["GroupId"]: g["IpPermissions"] for g in ec2.describe_security_groups()["SecurityGroups"]}

    def sources(group: str) -> list[tuple[int, list[str], list[Any]]]:
        return [(p["FromPort"], [u["GroupId"] for u in p["UserIdGroupPairs"]], p["IpRanges"]) for p in groups[group]]

    gateway = platform.stack.outputs["GatewaySecurityGroupId"]
    assert sources(stack.created["LoadBalancerSecurityGroup"]) == [(80, [gateway], [])]
    assert sources(stack.created["TaskSecurityGroup"]) == [(8080, [stack.created["LoadBalancerSecurityGroup"]], [])]
    assert sources(stack.created["InstanceSecurityGroup"]) == []
    (tg,) = elb.describe_target_groups(TargetGroupArns=[stack.created["TargetGroup"]])["TargetGroups"]
    assert (tg["TargetType"], tg["Port"], tg["HealthCheckPath"]) == ("ip", 8080, "/health")
    checks = (
        "HealthCheckIntervalSeconds",
        "HealthCheckTimeoutSeconds",
        "HealthyThresholdCount",
        "UnhealthyThresholdCount",
    )
    assert [tg[k] for k in checks] == [20, 8, 3, 4]
    (listener,) = elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    assert listener["Port"] == 80 and listener["DefaultActions"][0]["TargetGroupArn"] == tg["TargetGroupArn"]


def test_roles_read_only_the_weights_prefix(aws: Client, model: tuple[Stack, dict[str, str]]) -> None:
    stack, params = model
    iam = aws("iam")
    for logical in ("TaskRole", "ExecutionRole", "InstanceRole"):
        role = iam.get_role(RoleName=stack.created[logical])["Role"]
        assert role["Path"] == params["RolePath"], logical
        assert role["PermissionsBoundary"]["PermissionsBoundaryArn"] == params["RoleBoundaryArn"], logical
    (task_policy,) = inline_policies(iam, stack.created["TaskRole"]).values()
    bucket, prefix = params["WeightsBucket"], params["WeightsPrefix"]
    assert [(s["Action"], s["Resource"]) for s in task_policy["Statement"]] == [
        ("s3:GetObject", f"arn:aws:s3:::{bucket}/{prefix}/*"),
        ("s3:ListBucket", f"arn:aws:s3:::{bucket}"),
    ]
    assert task_policy["Statement"][1]["Condition"] == {"StringLike": {"s3:prefix": [f"{prefix}/*", prefix]}}
    (execution_policy,) = inline_policies(iam, stack.created["ExecutionRole"]).values()
    actions = {
        a
        for s in execution_policy["Statement"]
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert not any(a.startswith("s3:") for a in actions)
    assert inline_policies(iam, stack.created["InstanceRole"]) == {}


def test_delete(aws: Client, model: tuple[Stack, dict[str, str]]) -> None:
    stack, _ = model
    assert delete_stack(aws, stack) == "DELETE_COMPLETE"
    roles = {r["RoleName"] for r in aws("iam").list_roles()["Roles"]}
    assert not {stack.created[r] for r in ("TaskRole", "ExecutionRole", "InstanceRole")} & roles
    balancers = {lb["LoadBalancerArn"] for lb in aws("elbv2").describe_load_balancers()["LoadBalancers"]}
    assert stack.created["LoadBalancer"] not in balancers
    groups = aws("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[stack.name])
    assert groups["AutoScalingGroups"] == []
    assert not aws("logs").describe_log_groups(logGroupNamePrefix=f"/ecs/{stack.name}")["logGroups"]


def test_cpu_embedding_model(aws: Client, platform: Core) -> None:
    """A TEI model on CPU instances (the plain ECS AMI), defaults otherwise: no GPU reservation."""
    params = model_params(
        platform,
        ModelId="bge-small",
        Engine="tei",
        ContainerImage="123456789012.dkr.ecr.us-east-1.amazonaws.com/lisa-tei:cpu-1.8",
        GpuCount="0",
        InstanceType="c7i.xlarge",
        AmiId=CPU_AMI_PARAMETER,
    )
    stack = create_stack(aws, "lisam-model-bge", load("model.yaml"), params)
    container = model_container(aws, stack)
    assert "resourceRequirements" not in container
    (version,) = aws("ec2").describe_launch_template_versions(LaunchTemplateId=stack.created["LaunchTemplate"])[
        "LaunchTemplateVersions"
    ]
    cpu_ami = aws("ssm").get_parameter(Name=CPU_AMI_PARAMETER)["Parameter"]["Value"]
    assert version["LaunchTemplateData"]["ImageId"] == cpu_ami
    assert {"name": "LISA_ENGINE", "value": "tei"} in container["environment"]
    assert delete_stack(aws, stack) == "DELETE_COMPLETE"


# ---------------------------------------------------------------- what moto skipped or dropped, on the template


@pytest.fixture(scope="module")
def template() -> Template:
    return load("model.yaml")


def test_target_tracking_on_either_metric(template: Template) -> None:
    resources = template["Resources"]
    target = resources["ScalableTarget"]["Properties"]
    assert target["ResourceId"] == {"Fn::Sub": "service/${Cluster}/${Service.Name}"}
    assert (target["MinCapacity"], target["MaxCapacity"]) == ({"Ref": "MinCapacity"}, {"Ref": "MaxCapacity"})
    tracking = resources["ScalingPolicy"]["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == {"Ref": "ScalingTargetValue"}
    assert tracking["ScaleInCooldown"] == {"Ref": "ScaleInCooldownSeconds"}
    assert tracking["ScaleOutCooldown"] == {"Ref": "ScaleOutCooldownSeconds"}
    condition, requests, no_value = tracking["PredefinedMetricSpecification"]["Fn::If"]
    assert condition == "ScaleOnRequests" and no_value == {"Ref": "AWS::NoValue"}
    assert requests["PredefinedMetricType"] == "ALBRequestCountPerTarget"
    assert requests["ResourceLabel"] == {
        "Fn::Sub": "${LoadBalancer.LoadBalancerFullName}/${TargetGroup.TargetGroupFullName}"
    }
    condition, no_value, latency = tracking["CustomizedMetricSpecification"]["Fn::If"]
    assert condition == "ScaleOnRequests" and no_value == {"Ref": "AWS::NoValue"}
    assert (latency["Namespace"], latency["MetricName"], latency["Statistic"]) == (
        "AWS/ApplicationELB",
        "TargetResponseTime",
        "Average",
    )
    assert {d["Name"] for d in latency["Dimensions"]} == {"LoadBalancer", "TargetGroup"}
    assert template["Conditions"]["ScaleOnRequests"] == {
        "Fn::Equals": [{"Ref": "ScalingMetric"}, "RequestCountPerTarget"]
    }
    assert template["Parameters"]["ScalingMetric"]["AllowedValues"] == ["RequestCountPerTarget", "TargetResponseTime"]


def test_capacity_provider(template: Template) -> None:
    resources = template["Resources"]
    provider = resources["CapacityProvider"]["Properties"]["AutoScalingGroupProvider"]
    assert provider["AutoScalingGroupArn"] == {"Ref": "AutoScalingGroup"}
    assert provider["ManagedScaling"]["Status"] == "ENABLED"
    assert provider["ManagedScaling"]["InstanceWarmupPeriod"] == {"Ref": "InstanceWarmupSeconds"}
    assert (provider["ManagedTerminationProtection"], provider["ManagedDraining"]) == ("DISABLED", "ENABLED")
    assert resources["AutoScalingGroup"]["Properties"]["NewInstancesProtectedFromScaleIn"] is False
    assert resources["AutoScalingGroup"]["Properties"]["DefaultInstanceWarmup"] == {"Ref": "InstanceWarmupSeconds"}
    association = resources["ClusterCapacityProviders"]["Properties"]
    assert association["CapacityProviders"] == [{"Ref": "CapacityProvider"}]
    service = resources["Service"]
    assert set(service["DependsOn"]) == {"Listener", "ClusterCapacityProviders"}
    (strategy,) = service["Properties"]["CapacityProviderStrategy"]
    assert strategy["CapacityProvider"] == {"Ref": "CapacityProvider"}


def test_settings_moto_drops(template: Template) -> None:
    resources = template["Resources"]
    assert resources["Cluster"]["Properties"]["ClusterSettings"] == [{"Name": "containerInsights", "Value": "enabled"}]
    service = resources["Service"]["Properties"]
    assert service["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert service["HealthCheckGracePeriodSeconds"] == {"Ref": "HealthCheckGracePeriodSeconds"}
    network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network == {
        "AssignPublicIp": "DISABLED",
        "Subnets": {"Ref": "SubnetIds"},
        "SecurityGroups": [{"Fn::GetAtt": ["TaskSecurityGroup", "GroupId"]}],
    }
    (balancer,) = service["LoadBalancers"]
    assert balancer["TargetGroupArn"] == {"Ref": "TargetGroup"}
    task = resources["TaskDefinition"]["Properties"]
    assert (task["NetworkMode"], task["RequiresCompatibilities"]) == ("awsvpc", ["EC2"])
    assert task["TaskRoleArn"] == {"Fn::GetAtt": ["TaskRole", "Arn"]}
    target_attributes = {a["Key"]: a["Value"] for a in resources["TargetGroup"]["Properties"]["TargetGroupAttributes"]}
    assert target_attributes == {
        "deregistration_delay.timeout_seconds": {"Ref": "DeregistrationDelaySeconds"},
        "slow_start.duration_seconds": {"Ref": "SlowStartSeconds"},
    }
    lb_attributes = resources["LoadBalancer"]["Properties"]["LoadBalancerAttributes"]
    assert {"Key": "idle_timeout.timeout_seconds", "Value": {"Ref": "IdleTimeoutSeconds"}} in lb_attributes
    instance_role = resources["InstanceRole"]["Properties"]
    assert instance_role["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"}
    ]
    assert "Policies" not in instance_role  # the instance role has no access to weights
