"""core.yaml on moto_server: create into an existing VPC, check what exists, delete; and once with a new VPC.

Resources moto cannot create (platform.MOTO_SKIPS_CORE) are checked on the parsed template at the end."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backend.config import Settings
from tests.deploy.cfn import (
    Client,
    Template,
    active_resources,
    delete_stack,
    evaluate_conditions,
    inline_policies,
    load,
)
from tests.deploy.platform import MOTO_SKIPS_CORE, Core, deploy_core

ACCOUNT = "123456789012"
# LISA_* variables the task gets that are not (yet) backend settings: the entrypoint turns LISA_DB_* into
# LISA_DATABASE_URL; the others are wired for the ingestion and RAG issues that consume them.
NOT_SETTINGS = {
    "LISA_DB_HOST",
    "LISA_DB_PORT",
    "LISA_DB_NAME",
    "LISA_DB_USER",
    "LISA_DB_PASSWORD",
    "LISA_DOCUMENTS_BUCKET",
    "LISA_INGESTION_QUEUE_URL",
    "LISA_OPENSEARCH_URL",
}


@pytest.fixture(scope="module")
def core(aws: Client) -> Core:
    return deploy_core(aws, "lisa", create_vpc=False)


def container(aws: Client, core: Core) -> dict[str, Any]:
    arn = core.stack.created["BackendTaskDefinition"]
    task = aws("ecs").describe_task_definition(taskDefinition=arn)["taskDefinition"]
    (backend,) = task["containerDefinitions"]
    return {"task": task, **backend}


def test_outputs_are_resolved(aws: Client, core: Core) -> None:
    conditions = evaluate_conditions(core.template, core.params)
    expected = {k for k, o in core.template["Outputs"].items() if conditions.get(o.get("Condition", ""), True)}
    assert set(core.stack.outputs) == expected
    for key, value in core.stack.outputs.items():
        assert value and "${" not in value and "Fn::" not in value, (key, value)
    (lb,) = aws("elbv2").describe_load_balancers(LoadBalancerArns=[core.stack.created["PublicLoadBalancer"]])[
        "LoadBalancers"
    ]
    assert core.stack.outputs["AppUrl"] == f"https://{lb['DNSName']}"
    (db,) = aws("rds").describe_db_instances(DBInstanceIdentifier=core.stack.created["Database"])["DBInstances"]
    assert core.stack.outputs["DatabaseEndpoint"] == db["Endpoint"]["Address"]
    assert core.stack.outputs["DocumentsBucketName"] == f"lisa-documents-{ACCOUNT}-us-east-1"
    assert core.stack.outputs["IngestionQueueUrl"].endswith("/lisa-ingestion")
    assert core.stack.outputs["PrivateSubnetIds"] == ",".join(core.private_subnets)
    assert core.stack.outputs["ModelRolePath"] == "/lisa-model/"


def test_moto_skipped_only_the_documented_types(core: Core) -> None:
    assert set(core.stack.skipped.values()) == MOTO_SKIPS_CORE, core.stack.skipped


def test_public_entry_point(aws: Client, core: Core) -> None:
    elb, ec2 = aws("elbv2"), aws("ec2")
    (lb,) = elb.describe_load_balancers(LoadBalancerArns=[core.stack.created["PublicLoadBalancer"]])["LoadBalancers"]
    assert lb["Scheme"] == "internet-facing"
    assert {az["SubnetId"] for az in lb["AvailabilityZones"]} == set(core.public_subnets)
    listeners = {x["Port"]: x for x in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]}
    assert listeners[443]["Protocol"] == "HTTPS"
    assert listeners[443]["Certificates"][0]["CertificateArn"] == core.params["CertificateArn"]
    assert listeners[443]["DefaultActions"][0]["TargetGroupArn"] == core.stack.created["BackendTargetGroup"]
    assert listeners[80]["DefaultActions"][0]["RedirectConfig"]["Protocol"] == "HTTPS"
    (tg,) = elb.describe_target_groups(TargetGroupArns=[core.stack.created["BackendTargetGroup"]])["TargetGroups"]
    assert (tg["TargetType"], tg["Port"], tg["HealthCheckPath"]) == ("ip", 8080, "/health")

    groups = {g["GroupId"]: g for g in ec2.describe_security_groups()["SecurityGroups"]}
    alb_sg = groups[lb["SecurityGroups"][0]]
    world = sorted((p["FromPort"], r["CidrIp"]) for p in alb_sg["IpPermissions"] for r in p["IpRanges"])
    assert world == [(80, "0.0.0.0/0"), (443, "0.0.0.0/0")]
    gateway = groups[core.stack.outputs["GatewaySecurityGroupId"]]
    sources = [(p["FromPort"], [u["GroupId"] for u in p["UserIdGroupPairs"]]) for p in gateway["IpPermissions"]]
    assert sources == [(8080, [alb_sg["GroupId"]])]
    assert all(not p["IpRanges"] for p in gateway["IpPermissions"])


def test_database(aws: Client, core: Core) -> None:
    (db,) = aws("rds").describe_db_instances(DBInstanceIdentifier=core.stack.created["Database"])["DBInstances"]
    assert (db["Engine"], db["EngineVersion"], db["DBName"]) == ("postgres", "17.5", "lisa")
    assert db["StorageEncrypted"] is True
    assert db["PubliclyAccessible"] is False
    assert db["MultiAZ"] is True
    assert db["BackupRetentionPeriod"] == 7
    subnets = {s["SubnetIdentifier"] for s in db["DBSubnetGroup"]["Subnets"]}
    assert subnets == set(core.private_subnets)
    database_sg = core.stack.created["DatabaseSecurityGroup"]
    (rule,) = aws("ec2").describe_security_groups(GroupIds=[database_sg])["SecurityGroups"][0]["IpPermissions"]
    assert rule["FromPort"] == 5432 and not rule["IpRanges"]
    assert [u["GroupId"] for u in rule["UserIdGroupPairs"]] == [core.stack.outputs["GatewaySecurityGroupId"]]
    # moto reads an RDS instance's groups from "VpcSecurityGroupIds", a name CloudFormation does not have, so in
    # moto the instance sits in the VPC's default group: the attachment is checked on the template.
    attached = core.template["Resources"]["Database"]["Properties"]["VPCSecurityGroups"]
    assert attached == [{"Fn::GetAtt": ["DatabaseSecurityGroup", "GroupId"]}]


def test_buckets_and_ingestion_queue(aws: Client, core: Core) -> None:
    s3, sqs = aws("s3"), aws("sqs")
    for key in ("DocumentsBucketName", "ModelWeightsBucketName"):
        encryption = s3.get_bucket_encryption(Bucket=core.stack.outputs[key])["ServerSideEncryptionConfiguration"]
        assert encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    attributes = sqs.get_queue_attributes(QueueUrl=core.stack.outputs["IngestionQueueUrl"], AttributeNames=["All"])
    redrive = json.loads(attributes["Attributes"]["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(":lisa-ingestion-dlq")
    assert int(redrive["maxReceiveCount"]) == 5
    assert attributes["Attributes"]["QueueArn"] == core.stack.outputs["IngestionQueueArn"]


def test_backend_roles(aws: Client, core: Core) -> None:
    iam = aws("iam")
    deploy_role_arn = core.stack.outputs["ModelStackDeployRoleArn"]
    (document,) = inline_policies(iam, core.stack.created["BackendTaskRole"]).values()
    # moto keeps an Fn::If's AWS::NoValue as a null list item where CloudFormation drops it.
    by_sid = {s["Sid"]: s for s in document["Statement"] if s is not None}
    manage = by_sid["ManageOwnModelStacks"]
    assert manage["Resource"] == f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/lisa-model-*/*"
    assert manage["Condition"]["StringEquals"]["cloudformation:RoleArn"] == deploy_role_arn
    assert by_sid["PassOnlyTheModelDeployRole"]["Resource"] == deploy_role_arn
    assert "Bedrock" in by_sid and "OpenSearch" not in by_sid  # AllowBedrock=true, EnableOpenSearch=false
    logs = by_sid["ReadModelLogs"]  # the model stacks' log groups only (GET /api/models/{id}/logs)
    assert sorted(logs["Action"]) == ["logs:DescribeLogStreams", "logs:GetLogEvents"]
    assert logs["Resource"] == [
        f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/ecs/lisa-model-*",
        f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/ecs/lisa-model-*:log-stream:*",
    ]
    (execution,) = inline_policies(iam, core.stack.created["BackendExecutionRole"]).values()
    readable = [s["Resource"] for s in execution["Statement"] if s["Action"] == "secretsmanager:GetSecretValue"]
    # None: the Refs to AppSecretKey and AppEncryptionKey, which moto skipped (the template test checks them).
    assert readable == [[core.db_secret_arn, None, None, core.oidc_secret_arn]]
    trust = iam.get_role(RoleName=core.stack.created["ModelStackDeployRole"])["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "cloudformation.amazonaws.com"}
    (deploy,) = inline_policies(iam, core.stack.created["ModelStackDeployRole"]).values()
    create_roles = next(s for s in deploy["Statement"] if s["Sid"] == "CreateBoundedModelRoles")
    assert create_roles["Resource"] == f"arn:aws:iam::{ACCOUNT}:role/lisa-model/*"
    boundary_arn = core.stack.outputs["ModelRoleBoundaryArn"]
    assert create_roles["Condition"]["StringEquals"]["iam:PermissionsBoundary"] == boundary_arn
    assert iam.get_policy(PolicyArn=boundary_arn)["Policy"]["Arn"] == core.stack.created["ModelRoleBoundary"]


def test_backend_service(aws: Client, core: Core) -> None:
    """What moto records of the service and task definition; the rest is checked on the template below."""
    ecs = aws("ecs")
    (cluster,) = ecs.describe_clusters(clusters=["lisa"])["clusters"]
    assert cluster["status"] == "ACTIVE"
    (service,) = ecs.describe_services(cluster="lisa", services=["backend"])["services"]
    assert service["desiredCount"] == 2
    assert service["taskDefinition"] == core.stack.created["BackendTaskDefinition"]

    backend = container(aws, core)
    assert backend["image"] == core.params["BackendImage"]
    assert backend["portMappings"] == [{"containerPort": 8080, "protocol": "tcp"}]
    env = {e["name"]: e["value"] for e in backend["environment"]}
    assert env["LISA_DB_HOST"] == core.stack.outputs["DatabaseEndpoint"]
    assert env["LISA_ENVIRONMENT"] == "production" and env["LISA_LOCAL_MODELS"] == "false"
    assert env["LISA_BOOTSTRAP_ADMIN"] == "false"
    assert env["LISA_PUBLIC_URL"] == core.stack.outputs["AppUrl"]
    assert env["LISA_OIDC_ISSUER"] == core.params["OidcIssuerUrl"]
    assert env["LISA_OIDC_GROUPS_CLAIM"] == "cognito:groups"
    assert env["LISA_AWS_MODEL_STACK_ROLE_ARN"] == core.stack.outputs["ModelStackDeployRoleArn"]
    assert env["LISA_AWS_MODEL_ROLE_BOUNDARY_ARN"] == core.stack.outputs["ModelRoleBoundaryArn"]
    assert env["LISA_AWS_PRIVATE_SUBNET_IDS"] == core.stack.outputs["PrivateSubnetIds"]
    assert env["LISA_AWS_GATEWAY_SECURITY_GROUP_ID"] == core.stack.outputs["GatewaySecurityGroupId"]
    assert env["LISA_INGESTION_QUEUE_URL"] == core.stack.outputs["IngestionQueueUrl"]
    assert env["LISA_OPENSEARCH_URL"] == ""
    # The egress guard: the VPC besides public addresses (no loopback, no metadata), the documents bucket for S3.
    egress = Settings(egress_allow=env["LISA_EGRESS_ALLOW"], egress_s3_buckets=env["LISA_EGRESS_S3_BUCKETS"])
    assert egress.egress_allow == [core.params["ExistingVpcCidrs"]] == ["10.8.0.0/16"]
    assert egress.egress_s3_buckets == [core.stack.outputs["DocumentsBucketName"]]
    secrets = {s["name"]: s.get("valueFrom") for s in backend["secrets"]}
    assert secrets["LISA_SECRET_KEY"] is None  # AppSecretKey: skipped by moto, checked on the template
    assert secrets["LISA_ENCRYPTION_KEY"] is None  # AppEncryptionKey: likewise
    assert secrets["LISA_DB_USER"] == f"{core.db_secret_arn}:username::"
    assert secrets["LISA_DB_PASSWORD"] == f"{core.db_secret_arn}:password::"
    assert secrets["LISA_OIDC_CLIENT_SECRET"] == core.oidc_secret_arn
    assert "/health" in " ".join(backend["healthCheck"]["command"])
    log_options = backend["logConfiguration"]["options"]
    (group,) = aws("logs").describe_log_groups(logGroupNamePrefix=log_options["awslogs-group"])["logGroups"]
    assert group["retentionInDays"] == 30


def test_task_variables_are_backend_settings(core: Core) -> None:
    """Every LISA_* the task gets is a setting the backend reads, or one listed in NOT_SETTINGS."""
    (definition,) = core.template["Resources"]["BackendTaskDefinition"]["Properties"]["ContainerDefinitions"]
    entries = definition["Environment"] + [s for s in definition["Secrets"] if "Fn::If" not in s]
    entries += [s["Fn::If"][1] for s in definition["Secrets"] if "Fn::If" in s]
    names = {e["Name"] for e in entries if e["Name"].startswith("LISA_")}
    settings = {f"LISA_{f.upper()}" for f in Settings.model_fields}
    assert names - settings == NOT_SETTINGS


def test_the_task_configures_the_ecs_deployer(aws: Client, core: Core) -> None:
    """The LISA_AWS_* values the backend task gets build an ECS deployer on the core stack's outputs."""
    from backend.lifecycle.deployers import ecs_deployer

    env = {e["name"]: e["value"] for e in container(aws, core)["environment"] if e["name"].startswith("LISA_AWS_")}
    keys = {name.removeprefix("LISA_").lower(): value for name, value in env.items()}
    platform = ecs_deployer(Settings(**keys)).platform
    out = core.stack.outputs
    assert platform.stack_prefix == out["ModelStackPrefix"]
    assert platform.deploy_role_arn == out["ModelStackDeployRoleArn"]
    assert (platform.role_path, platform.role_boundary_arn) == (out["ModelRolePath"], out["ModelRoleBoundaryArn"])
    assert platform.weights_bucket == out["ModelWeightsBucketName"]
    assert platform.vpc_id == out["VpcId"] and ",".join(platform.subnet_ids) == out["PrivateSubnetIds"]
    assert platform.gateway_security_group_id == out["GatewaySecurityGroupId"]
    assert str(platform.template_path) == "/app/deploy/cloudformation/model.yaml"


def test_delete(aws: Client, core: Core) -> None:
    """DELETE_COMPLETE, the retained buckets stay, the rest is gone. moto leaves ECS clusters and services behind
    (no delete through CloudFormation), so those are not checked here."""
    assert delete_stack(aws, core.stack) == "DELETE_COMPLETE"
    buckets = {b["Name"] for b in aws("s3").list_buckets()["Buckets"]}
    assert core.stack.outputs["DocumentsBucketName"] in buckets  # DeletionPolicy: Retain
    assert core.stack.outputs["ModelWeightsBucketName"] in buckets
    created = core.stack.created
    balancers = {lb["LoadBalancerArn"] for lb in aws("elbv2").describe_load_balancers()["LoadBalancers"]}
    assert created["PublicLoadBalancer"] not in balancers
    roles = {r["RoleName"] for r in aws("iam").list_roles()["Roles"]}
    assert not {created["BackendTaskRole"], created["BackendExecutionRole"], created["ModelStackDeployRole"]} & roles
    instances = {d["DBInstanceIdentifier"] for d in aws("rds").describe_db_instances()["DBInstances"]}
    assert created["Database"] not in instances
    queues = aws("sqs").list_queues().get("QueueUrls", [])
    assert core.stack.outputs["IngestionQueueUrl"] not in queues
    groups = {g["GroupId"] for g in aws("ec2").describe_security_groups()["SecurityGroups"]}
    assert created["GatewaySecurityGroup"] not in groups and created["AlbSecurityGroup"] not in groups
    assert not aws("logs").describe_log_groups(logGroupNamePrefix="/ecs/lisa-backend")["logGroups"]


@pytest.fixture(scope="module")
def core_new_vpc(aws: Client) -> Core:
    return deploy_core(aws, "lisanet", create_vpc=True)


def test_new_vpc(aws: Client, core_new_vpc: Core) -> None:
    """CreateVpc=true. Not deleted: moto does not delete the NAT gateway, routes or endpoint it made, so the VPC
    stays in use and its stack cannot reach DELETE_COMPLETE on moto (see README)."""
    ec2, created = aws("ec2"), core_new_vpc.stack.created
    (vpc,) = ec2.describe_vpcs(VpcIds=[created["Vpc"]])["Vpcs"]
    assert vpc["CidrBlock"] == "10.40.0.0/16"
    env = {e["name"]: e["value"] for e in container(aws, core_new_vpc)["environment"]}
    assert env["LISA_EGRESS_ALLOW"] == vpc["CidrBlock"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]
    assert len({s["AvailabilityZone"] for s in subnets}) == 2 and len(subnets) == 4
    routes = {
        t["RouteTableId"]: t["Routes"]
        for t in ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["RouteTables"]
    }
    private = routes[created["PrivateRouteTable"]]
    assert any(r.get("NatGatewayId") == created["NatGateway"] for r in private)
    assert any(r.get("GatewayId") == created["InternetGateway"] for r in routes[created["PublicRouteTable"]])
    (endpoint,) = ec2.describe_vpc_endpoints(VpcEndpointIds=[created["S3Endpoint"]])["VpcEndpoints"]
    assert endpoint["ServiceName"] == "com.amazonaws.us-east-1.s3"
    assert endpoint["RouteTableIds"] == [created["PrivateRouteTable"]]
    (lb,) = aws("elbv2").describe_load_balancers(LoadBalancerArns=[created["PublicLoadBalancer"]])["LoadBalancers"]
    assert {az["SubnetId"] for az in lb["AvailabilityZones"]} == {created["PublicSubnet1"], created["PublicSubnet2"]}
    subnet_group = aws("rds").describe_db_instances(DBInstanceIdentifier=created["Database"])["DBInstances"][0]
    private = {s["SubnetIdentifier"] for s in subnet_group["DBSubnetGroup"]["Subnets"]}
    assert private == {created["PrivateSubnet1"], created["PrivateSubnet2"]}
    assert set(core_new_vpc.stack.skipped.values()) == MOTO_SKIPS_CORE


# ---------------------------------------------------------------- what moto skipped, on the template


@pytest.fixture(scope="module")
def template() -> Template:
    return load("core.yaml")


def test_cpu_autoscaling(template: Template) -> None:
    resources = template["Resources"]
    target = resources["BackendScalableTarget"]["Properties"]
    assert target["ResourceId"] == {"Fn::Sub": "service/${Cluster}/${BackendService.Name}"}
    assert (target["MinCapacity"], target["MaxCapacity"]) == ({"Ref": "MinCount"}, {"Ref": "MaxCount"})
    assert (target["ServiceNamespace"], target["ScalableDimension"]) == ("ecs", "ecs:service:DesiredCount")
    policy = resources["BackendCpuScaling"]["Properties"]
    assert policy["ScalingTargetId"] == {"Ref": "BackendScalableTarget"}
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == "ECSServiceAverageCPUUtilization"
    assert tracking["TargetValue"] == {"Ref": "CpuTargetPercent"}


def test_secrets(template: Template) -> None:
    resources = template["Resources"]
    assert resources["Database"]["Properties"]["ManageMasterUserPassword"] is True  # RDS creates and rotates it
    (definition,) = resources["BackendTaskDefinition"]["Properties"]["ContainerDefinitions"]
    execution = resources["BackendExecutionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    (readable,) = [s["Resource"] for s in execution if s["Action"] == "secretsmanager:GetSecretValue"]
    # Two separate generated secrets: the session-state key, and the key that encrypts stored secrets.
    for variable, secret in (("LISA_SECRET_KEY", "AppSecretKey"), ("LISA_ENCRYPTION_KEY", "AppEncryptionKey")):
        generated = resources[secret]["Properties"]["GenerateSecretString"]
        assert generated["PasswordLength"] >= 32  # what the backend's settings require in production
        assert {"Name": variable, "ValueFrom": {"Ref": secret}} in definition["Secrets"]
        assert {"Ref": secret} in readable
    environment = {e["Name"]: e["Value"] for e in definition["Environment"]}
    assert environment["LISA_ENVIRONMENT"] == "production"


def test_document_events_reach_the_queue(template: Template) -> None:
    resources = template["Resources"]
    bucket = resources["DocumentsBucket"]
    assert bucket["DependsOn"] == "IngestionQueuePolicy"
    notifications = bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert {n["Event"] for n in notifications} == {"s3:ObjectCreated:*", "s3:ObjectRemoved:*"}
    assert all(n["Queue"] == {"Fn::GetAtt": ["IngestionQueue", "Arn"]} for n in notifications)
    (statement,) = resources["IngestionQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"} and statement["Action"] == "sqs:SendMessage"
    source = statement["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::Sub"]
    assert source.endswith(":s3:::" + bucket["Properties"]["BucketName"]["Fn::Sub"])


def test_opensearch_is_optional_private_and_encrypted(template: Template) -> None:
    """moto's CloudFormation has no OpenSearch domain; the deployments run with EnableOpenSearch=false."""
    on = {"CertificateArn": "x", "BackendImage": "x", "OidcIssuerUrl": "x", "OidcClientId": "x"}
    with_domain = active_resources(template, {**on, "EnableOpenSearch": "true"})
    without = active_resources(template, on)
    assert set(with_domain) - set(without) == {"OpenSearchDomain", "OpenSearchSecurityGroup"}
    domain = template["Resources"]["OpenSearchDomain"]["Properties"]
    assert domain["EncryptionAtRestOptions"] == {"Enabled": True}
    assert domain["NodeToNodeEncryptionOptions"] == {"Enabled": True}
    assert domain["DomainEndpointOptions"]["EnforceHTTPS"] is True
    assert domain["VPCOptions"]["SecurityGroupIds"] == [{"Fn::GetAtt": ["OpenSearchSecurityGroup", "GroupId"]}]
    (statement,) = domain["AccessPolicies"]["Statement"]
    assert statement["Principal"] == {"AWS": {"Fn::GetAtt": ["BackendTaskRole", "Arn"]}}
    (rule,) = template["Resources"]["OpenSearchSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert rule["SourceSecurityGroupId"] == {"Fn::GetAtt": ["GatewaySecurityGroup", "GroupId"]}


def test_service_settings_moto_drops(template: Template) -> None:
    """moto's CloudFormation keeps only an ECS service's name, cluster, task definition and count, a task
    definition's family, containers, volumes and memory, no cluster settings and no ALB/target group attributes."""
    resources = template["Resources"]
    assert resources["Cluster"]["Properties"]["ClusterSettings"] == [{"Name": "containerInsights", "Value": "enabled"}]
    service = resources["BackendService"]
    assert service["DependsOn"] == ["HttpsListener"]
    props = service["Properties"]
    assert props["LaunchType"] == "FARGATE"
    assert props["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    network = props["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    assert network["SecurityGroups"] == [{"Fn::GetAtt": ["GatewaySecurityGroup", "GroupId"]}]
    assert network["Subnets"]["Fn::If"][1] == [{"Ref": "PrivateSubnet1"}, {"Ref": "PrivateSubnet2"}]
    (balancer,) = props["LoadBalancers"]
    assert balancer == {
        "ContainerName": "backend",
        "ContainerPort": 8080,
        "TargetGroupArn": {"Ref": "BackendTargetGroup"},
    }
    task = resources["BackendTaskDefinition"]["Properties"]
    assert (task["NetworkMode"], task["RequiresCompatibilities"]) == ("awsvpc", ["FARGATE"])
    assert task["TaskRoleArn"] == {"Fn::GetAtt": ["BackendTaskRole", "Arn"]}
    assert task["ExecutionRoleArn"] == {"Fn::GetAtt": ["BackendExecutionRole", "Arn"]}
    lb_attributes = {
        a["Key"]: a["Value"] for a in resources["PublicLoadBalancer"]["Properties"]["LoadBalancerAttributes"]
    }
    assert lb_attributes["idle_timeout.timeout_seconds"] == "300"  # = the backend's upstream read timeout
    listener = resources["HttpsListener"]["Properties"]
    assert listener["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
