"""Security properties of the parsed templates, and proof that each check catches what it is for."""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Any

import pytest

from tests.deploy import policy
from tests.deploy.cfn import Template, load
from tests.deploy.policy import statements

Check = Callable[[Template], list[str]]


@pytest.fixture(scope="module", params=["core.yaml", "model.yaml"])
def template(request: pytest.FixtureRequest) -> Template:
    return load(request.param)


@pytest.mark.parametrize("check", policy.ALL_CHECKS, ids=lambda c: c.__name__)
def test_template_passes(template: Template, check: Check) -> None:
    assert check(template) == []


def test_the_checks_see_every_policy_and_rule() -> None:
    """Guard against checks passing because they walk nothing."""
    core, model = load("core.yaml"), load("model.yaml")
    # Statements in identity, trust, boundary, bucket, queue and domain policies, Fn::If branches included.
    assert (len(list(statements(core))), len(list(statements(model)))) == (38, 8)
    # core: ALB 443 and 80, gateway from ALB, database, OpenSearch; model: ALB from gateway, tasks from ALB.
    assert (len(list(policy.ingress_rules(core))), len(list(policy.ingress_rules(model)))) == (5, 2)


def test_backend_manages_only_its_own_model_stacks() -> None:
    assert policy.check_stack_management_scoped(load("core.yaml"), "ModelStackPrefix", "ModelStackDeployRole") == []


def test_model_load_balancer_admits_only_the_gateway() -> None:
    model = load("model.yaml")
    by_group: dict[str, list[dict[str, Any]]] = {}
    for ingress in policy.ingress_rules(model):
        by_group.setdefault(ingress.group, []).append(ingress.rule)
    assert [r["SourceSecurityGroupId"] for r in by_group["LoadBalancerSecurityGroup"]] == [
        {"Ref": "GatewaySecurityGroupId"}
    ]
    assert [r["SourceSecurityGroupId"] for r in by_group["TaskSecurityGroup"]] == [
        {"Fn::GetAtt": ["LoadBalancerSecurityGroup", "GroupId"]}
    ]
    assert "InstanceSecurityGroup" not in by_group


def test_model_task_role_reads_only_its_weights_prefix() -> None:
    role = load("model.yaml")["Resources"]["TaskRole"]["Properties"]
    (document,) = [p["PolicyDocument"] for p in role["Policies"]]
    granted = [(s["Action"], s["Resource"]) for s in document["Statement"]]
    assert granted == [
        ("s3:GetObject", {"Fn::Sub": "arn:${AWS::Partition}:s3:::${WeightsBucket}/${WeightsPrefix}/*"}),
        ("s3:ListBucket", {"Fn::Sub": "arn:${AWS::Partition}:s3:::${WeightsBucket}"}),
    ]
    listing = document["Statement"][1]["Condition"]["StringLike"]["s3:prefix"]
    assert listing == [{"Fn::Sub": "${WeightsPrefix}/*"}, {"Ref": "WeightsPrefix"}]


# CloudFormation calls the deploy role makes for each resource type of model.yaml (create, update, delete).
MODEL_STACK_ACTIONS = {
    "AWS::ECS::Cluster": ["ecs:CreateCluster", "ecs:DeleteCluster", "ecs:DescribeClusters"],
    "AWS::Logs::LogGroup": ["logs:CreateLogGroup", "logs:DeleteLogGroup", "logs:PutRetentionPolicy"],
    "AWS::IAM::Role": ["iam:CreateRole", "iam:DeleteRole", "iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:GetRole"],
    "AWS::IAM::InstanceProfile": ["iam:CreateInstanceProfile", "iam:AddRoleToInstanceProfile", "iam:PassRole"],
    "AWS::EC2::SecurityGroup": ["ec2:CreateSecurityGroup", "ec2:DeleteSecurityGroup", "ec2:RevokeSecurityGroupEgress"],
    "AWS::EC2::SecurityGroupIngress": ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"],
    "AWS::EC2::LaunchTemplate": ["ec2:CreateLaunchTemplate", "ec2:DeleteLaunchTemplate", "ec2:DescribeImages"],
    "AWS::AutoScaling::AutoScalingGroup": [
        "autoscaling:CreateAutoScalingGroup",
        "autoscaling:DeleteAutoScalingGroup",
        "autoscaling:DescribeAutoScalingGroups",
        "ec2:RunInstances",
    ],
    "AWS::ECS::CapacityProvider": ["ecs:CreateCapacityProvider", "ecs:DeleteCapacityProvider"],
    "AWS::ECS::ClusterCapacityProviderAssociations": ["ecs:PutClusterCapacityProviders"],
    "AWS::ECS::TaskDefinition": ["ecs:RegisterTaskDefinition", "ecs:DeregisterTaskDefinition"],
    "AWS::ElasticLoadBalancingV2::LoadBalancer": [
        "elasticloadbalancing:CreateLoadBalancer",
        "elasticloadbalancing:DeleteLoadBalancer",
        "elasticloadbalancing:ModifyLoadBalancerAttributes",
    ],
    "AWS::ElasticLoadBalancingV2::TargetGroup": [
        "elasticloadbalancing:CreateTargetGroup",
        "elasticloadbalancing:DeleteTargetGroup",
        "elasticloadbalancing:ModifyTargetGroupAttributes",
    ],
    "AWS::ElasticLoadBalancingV2::Listener": [
        "elasticloadbalancing:CreateListener",
        "elasticloadbalancing:DeleteListener",
    ],
    "AWS::ECS::Service": ["ecs:CreateService", "ecs:UpdateService", "ecs:DeleteService", "ecs:DescribeServices"],
    "AWS::ApplicationAutoScaling::ScalableTarget": [
        "application-autoscaling:RegisterScalableTarget",
        "application-autoscaling:DeregisterScalableTarget",
    ],
    "AWS::ApplicationAutoScaling::ScalingPolicy": [
        "application-autoscaling:PutScalingPolicy",
        "application-autoscaling:DeleteScalingPolicy",
        "cloudwatch:PutMetricAlarm",
        "cloudwatch:DeleteAlarms",
    ],
}


def test_deploy_role_can_build_every_model_resource() -> None:
    """Every resource type in model.yaml is listed above, and the deploy role allows each of its actions."""
    core, model = load("core.yaml"), load("model.yaml")
    assert {r["Type"] for r in model["Resources"].values()} == set(MODEL_STACK_ACTIONS)
    deploy_role = [s for s in statements(core) if s.where.startswith("ModelStackDeployRole.Policies")]
    allowed = [a for s in deploy_role if s.allows for a in s.actions]
    assert "*" not in allowed
    needed = {a for actions in MODEL_STACK_ACTIONS.values() for a in actions} | {"ssm:GetParameters"}
    missing = [a for a in sorted(needed) if not any(fnmatchcase(a, pattern) for pattern in allowed)]
    assert missing == []


def test_model_names_match_the_deploy_role_scopes() -> None:
    """The deploy role scopes clusters, ASGs, capacity providers and log groups to PREFIX-*: model.yaml names them
    after the stack (named PREFIX-<model>), and puts its roles under RolePath (= /PREFIX/)."""
    resources = load("model.yaml")["Resources"]
    stack_name = {"Ref": "AWS::StackName"}
    assert resources["Cluster"]["Properties"]["ClusterName"] == stack_name
    assert resources["AutoScalingGroup"]["Properties"]["AutoScalingGroupName"] == stack_name
    assert resources["CapacityProvider"]["Properties"]["Name"] == stack_name
    assert resources["LogGroup"]["Properties"]["LogGroupName"] == {"Fn::Sub": "/ecs/${AWS::StackName}"}
    for name in ("TaskRole", "ExecutionRole", "InstanceRole", "InstanceProfile"):
        assert resources[name]["Properties"]["Path"] == {"Ref": "RolePath"}, name
    for name in ("TaskRole", "ExecutionRole", "InstanceRole"):
        boundary = resources[name]["Properties"]["PermissionsBoundary"]
        assert boundary == {"Fn::If": ["HasBoundary", {"Ref": "RoleBoundaryArn"}, {"Ref": "AWS::NoValue"}]}, name


# ---------------------------------------------------------------- each check fails on what it guards against


def snippet(resources: dict[str, Any], parameters: dict[str, Any] | None = None) -> Template:
    return {"Parameters": parameters or {}, "Resources": resources}


def role(*statement: dict[str, Any]) -> dict[str, Any]:
    document = {"Version": "2012-10-17", "Statement": list(statement)}
    return {"Type": "AWS::IAM::Role", "Properties": {"Policies": [{"PolicyName": "p", "PolicyDocument": document}]}}


def bucket(**overrides: Any) -> dict[str, Any]:
    props = {
        "BucketEncryption": {
            "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
        "PublicAccessBlockConfiguration": dict.fromkeys(
            ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
        ),
        "VersioningConfiguration": {"Status": "Enabled"},
    }
    return {"Type": "AWS::S3::Bucket", "Properties": {**props, **overrides}}


TLS_ONLY = {
    "Type": "AWS::S3::BucketPolicy",
    "Properties": {
        "Bucket": {"Ref": "B"},
        "PolicyDocument": {
            "Statement": [
                {
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ]
        },
    },
}


def sg(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"Type": "AWS::EC2::SecurityGroup", "Properties": {"SecurityGroupIngress": list(rules)}}


def public_alb(group: str) -> dict[str, Any]:
    return {
        "Type": "AWS::ElasticLoadBalancingV2::LoadBalancer",
        "Properties": {"Scheme": "internet-facing", "SecurityGroups": [{"Ref": group}]},
    }


def database(**overrides: Any) -> dict[str, Any]:
    props = {
        "PubliclyAccessible": False,
        "StorageEncrypted": True,
        "MultiAZ": {"Ref": "MultiAz"},
        "ManageMasterUserPassword": True,
    }
    return {"Type": "AWS::RDS::DBInstance", "DeletionPolicy": "Snapshot", "Properties": {**props, **overrides}}


ALLOW = {"Effect": "Allow"}
PASS_ROLE = {
    **ALLOW,
    "Action": "iam:PassRole",
    "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
}
WORLD_443 = {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "CidrIp": "0.0.0.0/0"}
MANAGE = {**ALLOW, "Action": ["cloudformation:CreateStack"]}
ROLE_ARN = {"StringEquals": {"cloudformation:RoleArn": {"Fn::GetAtt": ["Deploy", "Arn"]}}}
OWN_STACKS = {"Fn::Sub": "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:stack/${Prefix}-*/*"}
MULTI_AZ = {"MultiAz": {"Type": "String"}}

# (check, a template it must reject, a close variant it must accept)
CASES: list[tuple[Check, Template, Template]] = [
    (
        policy.check_no_star_on_star,
        snippet({"R": role({**ALLOW, "Action": "*", "Resource": "*"})}),
        snippet({"R": role({**ALLOW, "Action": "s3:GetObject", "Resource": "*"})}),
    ),
    (
        policy.check_no_star_on_star,
        snippet({"R": role({"Fn::If": ["C", {**ALLOW, "Action": "ec2:*", "Resource": "*"}, {"Ref": "AWS::NoValue"}]})}),
        snippet({"R": role({**ALLOW, "Action": "ec2:Describe*", "Resource": "*"})}),
    ),
    (
        policy.check_no_star_on_star,
        snippet({"R": role({**ALLOW, "NotAction": "iam:*", "Resource": "*"})}),
        snippet({"R": role({"Effect": "Deny", "NotAction": "iam:*", "Resource": "*"})}),
    ),
    (
        policy.check_no_public_principal,
        snippet(
            {
                "Q": {
                    "Type": "AWS::SQS::QueuePolicy",
                    "Properties": {
                        "PolicyDocument": {
                            "Statement": [{**ALLOW, "Principal": {"AWS": "*"}, "Action": "sqs:SendMessage"}]
                        }
                    },
                }
            }
        ),
        snippet(
            {
                "Q": {
                    "Type": "AWS::SQS::QueuePolicy",
                    "Properties": {
                        "PolicyDocument": {
                            "Statement": [
                                {**ALLOW, "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sqs:SendMessage"}
                            ]
                        }
                    },
                }
            }
        ),
    ),
    (
        policy.check_pass_role_scoped,
        snippet({"R": role({**PASS_ROLE, "Resource": {"Fn::Sub": "arn:aws:iam::${AWS::AccountId}:role/*"}})}),
        snippet({"R": role({**PASS_ROLE, "Resource": {"Fn::Sub": "arn:aws:iam::${AWS::AccountId}:role/models/*"}})}),
    ),
    (
        policy.check_pass_role_scoped,
        snippet({"R": role({**ALLOW, "Action": "iam:PassRole", "Resource": "arn:aws:iam::1:role/models/x"})}),
        snippet({"R": role({**PASS_ROLE, "Resource": "arn:aws:iam::1:role/models/x"})}),
    ),
    (
        policy.check_security_groups,
        snippet({"G": sg({**WORLD_443, "FromPort": 22, "ToPort": 22}), "L": public_alb("G")}),
        snippet({"G": sg(WORLD_443), "L": public_alb("G")}),
    ),
    (
        policy.check_security_groups,
        snippet({"G": sg(WORLD_443), "Other": sg(), "L": public_alb("Other")}),
        snippet({"G": sg({**WORLD_443, "CidrIp": "10.0.0.0/16"}), "Other": sg(), "L": public_alb("Other")}),
    ),
    (
        policy.check_security_groups,
        snippet(
            {
                "G": sg(),
                "I": {
                    "Type": "AWS::EC2::SecurityGroupIngress",
                    "Properties": {"GroupId": {"Ref": "G"}, "IpProtocol": "-1", "CidrIpv6": "::/0"},
                },
                "L": public_alb("G"),
            }
        ),
        snippet(
            {
                "G": sg(),
                "I": {
                    "Type": "AWS::EC2::SecurityGroupIngress",
                    "Properties": {
                        "GroupId": {"Ref": "G"},
                        "IpProtocol": "tcp",
                        "FromPort": 80,
                        "ToPort": 80,
                        "CidrIpv6": "::/0",
                    },
                },
                "L": public_alb("G"),
            }
        ),
    ),
    (
        policy.check_security_groups,
        snippet({"G": sg({**WORLD_443, "CidrIp": {"Ref": "Anywhere"}})}),
        snippet({"G": sg({**WORLD_443, "CidrIp": "10.1.0.0/16"})}),
    ),
    (
        policy.check_buckets,
        snippet({"B": bucket(BucketEncryption={}), "P": TLS_ONLY}),
        snippet({"B": bucket(), "P": TLS_ONLY}),
    ),
    (
        policy.check_buckets,
        snippet({"B": bucket(PublicAccessBlockConfiguration={"BlockPublicAcls": True}), "P": TLS_ONLY}),
        snippet({"B": bucket(), "P": TLS_ONLY}),
    ),
    (
        policy.check_buckets,
        snippet({"B": bucket(VersioningConfiguration={"Status": "Suspended"}), "P": TLS_ONLY}),
        snippet({"B": bucket(), "P": TLS_ONLY}),
    ),
    (policy.check_buckets, snippet({"B": bucket()}), snippet({"B": bucket(), "P": TLS_ONLY})),
    (
        policy.check_databases,
        snippet({"D": database(PubliclyAccessible=True)}, MULTI_AZ),
        snippet({"D": database()}, MULTI_AZ),
    ),
    (
        policy.check_databases,
        snippet({"D": database(StorageEncrypted=False)}, MULTI_AZ),
        snippet({"D": database()}, MULTI_AZ),
    ),
    (
        policy.check_databases,
        snippet({"D": database(MultiAZ=True)}, MULTI_AZ),
        snippet({"D": database()}, MULTI_AZ),
    ),
    (
        policy.check_databases,
        snippet({"D": database(ManageMasterUserPassword=False, MasterUserPassword="hunter2")}, MULTI_AZ),
        snippet({"D": database()}, MULTI_AZ),
    ),
    (
        policy.check_log_retention,
        snippet({"L": {"Type": "AWS::Logs::LogGroup", "Properties": {}}}),
        snippet({"L": {"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": 30}}}),
    ),
    (
        lambda t: policy.check_stack_management_scoped(t, "Prefix", "Deploy"),
        snippet({"R": role({**MANAGE, "Resource": "*", "Condition": ROLE_ARN})}),
        snippet({"R": role({**MANAGE, "Resource": OWN_STACKS, "Condition": ROLE_ARN})}),
    ),
    (
        lambda t: policy.check_stack_management_scoped(t, "Prefix", "Deploy"),
        snippet({"R": role({**MANAGE, "Resource": OWN_STACKS})}),
        snippet({"R": role({**MANAGE, "Resource": OWN_STACKS, "Condition": ROLE_ARN})}),
    ),
]


@pytest.mark.parametrize(("check", "bad", "good"), CASES, ids=[f"{i}-{c[0].__name__}" for i, c in enumerate(CASES)])
def test_each_check_catches_its_violation(check: Check, bad: Template, good: Template) -> None:
    assert check(bad), "the check let a violation through"
    assert check(good) == [], "the check rejects a compliant variant"
