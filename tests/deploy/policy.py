"""Security checks over parsed CloudFormation templates. Each returns a list of violations (empty: passes).

They read the template as written (intrinsics unresolved), follow both branches of every Fn::If, and treat a
value they cannot judge as a violation rather than a pass."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.deploy.cfn import Template, as_list, branches, resources_of

WORLD = {"0.0.0.0/0", "::/0"}
PUBLIC_PORTS = {80, 443}


@dataclass
class Statement:
    where: str  # "Resource.Property[...]"
    body: dict[str, Any]

    @property
    def allows(self) -> bool:
        return self.body.get("Effect") == "Allow"

    @property
    def actions(self) -> list[Any]:
        return as_list(self.body.get("Action", []))

    @property
    def resources(self) -> list[Any]:
        return as_list(self.body.get("Resource", []))


def _documents(template: Template) -> Iterator[tuple[str, Any]]:
    """Every IAM policy document in the template: identity, trust and resource policies."""
    properties_holding_documents = {
        "AWS::IAM::ManagedPolicy": ["PolicyDocument"],
        "AWS::IAM::Policy": ["PolicyDocument"],
        "AWS::S3::BucketPolicy": ["PolicyDocument"],
        "AWS::SQS::QueuePolicy": ["PolicyDocument"],
        "AWS::SNS::TopicPolicy": ["PolicyDocument"],
        "AWS::KMS::Key": ["KeyPolicy"],
        "AWS::OpenSearchService::Domain": ["AccessPolicies"],
        "AWS::IAM::Role": ["AssumeRolePolicyDocument"],
    }
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        for prop in properties_holding_documents.get(resource["Type"], []):
            if prop in props:
                yield f"{name}.{prop}", props[prop]
        if resource["Type"] in {"AWS::IAM::Role", "AWS::IAM::User", "AWS::IAM::Group"}:
            for i, policy in enumerate(as_list(props.get("Policies", []))):
                yield f"{name}.Policies[{i}]", policy["PolicyDocument"]


def statements(template: Template) -> Iterator[Statement]:
    for where, document in _documents(template):
        for doc in branches(document):
            for i, body in enumerate(as_list(doc.get("Statement", []))):
                yield Statement(f"{where}.Statement[{i}]", body)


def _is_wildcard_action(action: Any) -> bool:
    return action == "*" or (isinstance(action, str) and action.endswith(":*"))


def check_no_star_on_star(template: Template) -> list[str]:
    """No Allow of every action (or every action of a service) on every resource; no NotAction/NotResource."""
    problems = []
    for s in statements(template):
        if not s.allows:
            continue
        for key in ("NotAction", "NotResource"):
            if key in s.body:
                problems.append(f"{s.where}: Allow with {key} grants everything else")
        if "*" in s.actions:
            problems.append(f"{s.where}: Action '*'")
        elif any(_is_wildcard_action(a) for a in s.actions) and "*" in s.resources:
            problems.append(f"{s.where}: a whole service ({s.actions}) on Resource '*'")
    return problems


def check_no_public_principal(template: Template) -> list[str]:
    """No resource policy allows anyone (Principal '*')."""
    problems = []
    for s in statements(template):
        principal = s.body.get("Principal")
        if s.allows and (principal == "*" or (isinstance(principal, dict) and "*" in as_list(principal.get("AWS")))):
            problems.append(f"{s.where}: Allow to Principal '*'")
    return problems


def check_pass_role_scoped(template: Template) -> list[str]:
    """iam:PassRole only on named roles or a role path/prefix, and only to named services."""
    problems = []
    for s in statements(template):
        if not s.allows or not any(a in {"iam:PassRole", "iam:*", "*"} for a in s.actions):
            continue
        for resource in s.resources:
            text = resource.get("Fn::Sub", "") if isinstance(resource, dict) else resource
            if resource == "*" or (isinstance(text, str) and text.endswith(":role/*")):
                problems.append(f"{s.where}: iam:PassRole on every role ({resource})")
        if "iam:PassedToService" not in str(s.body.get("Condition", {})):
            problems.append(f"{s.where}: iam:PassRole without an iam:PassedToService condition")
    return problems


def check_stack_management_scoped(template: Template, prefix_parameter: str, role_resource: str) -> list[str]:
    """Creating, updating and deleting stacks: only stacks named PREFIX-*, and only through the deploy role."""
    problems = []
    writes = {"cloudformation:CreateStack", "cloudformation:UpdateStack", "cloudformation:DeleteStack"}
    wanted_arn = f":stack/${{{prefix_parameter}}}-*/*"
    for s in statements(template):
        if not s.allows:
            continue
        hit = [
            a for a in s.actions if a in writes or (_is_wildcard_action(a) and a.startswith(("cloudformation", "*")))
        ]
        if not hit:
            continue
        for resource in s.resources:
            if not (isinstance(resource, dict) and resource.get("Fn::Sub", "").endswith(wanted_arn)):
                problems.append(f"{s.where}: {hit} on {resource}, not on stacks named ${{{prefix_parameter}}}-*")
        role = s.body.get("Condition", {}).get("StringEquals", {}).get("cloudformation:RoleArn")
        if role != {"Fn::GetAtt": [role_resource, "Arn"]}:
            problems.append(f"{s.where}: {hit} without requiring cloudformation:RoleArn = {role_resource}")
    return problems


@dataclass
class Ingress:
    where: str
    group: str  # logical id of the security group the rule opens
    rule: dict[str, Any]


def _logical_id(ref: Any) -> str | None:
    if isinstance(ref, dict):
        if "Ref" in ref:
            return str(ref["Ref"])
        if "Fn::GetAtt" in ref:
            return str(ref["Fn::GetAtt"][0])
    return None


def ingress_rules(template: Template) -> Iterator[Ingress]:
    for name, sg in resources_of(template, "AWS::EC2::SecurityGroup").items():
        for i, rule in enumerate(as_list(sg.get("Properties", {}).get("SecurityGroupIngress", []))):
            yield Ingress(f"{name}.SecurityGroupIngress[{i}]", name, rule)
    for name, rule in resources_of(template, "AWS::EC2::SecurityGroupIngress").items():
        props = rule["Properties"]
        yield Ingress(name, _logical_id(props.get("GroupId")) or str(props.get("GroupId")), props)


def _public_alb_groups(template: Template) -> set[str]:
    groups = set()
    for lb in resources_of(template, "AWS::ElasticLoadBalancingV2::LoadBalancer").values():
        props = lb.get("Properties", {})
        if props.get("Scheme") == "internet-facing":
            groups |= {g for g in map(_logical_id, as_list(props.get("SecurityGroups", []))) if g}
    return groups


def check_security_groups(template: Template) -> list[str]:
    """Only the internet-facing ALB's group is open to the world, and only on TCP 443 and 80."""
    problems = []
    public = _public_alb_groups(template)
    for ing in ingress_rules(template):
        rule = ing.rule
        cidrs = [rule[k] for k in ("CidrIp", "CidrIpv6") if k in rule]
        if any(not isinstance(c, str) for c in cidrs):
            problems.append(f"{ing.where}: CIDR {cidrs} is not a literal; cannot prove it is not open")
            continue
        if not WORLD & set(cidrs):
            continue
        ports = (rule.get("FromPort"), rule.get("ToPort"))
        if ing.group not in public:
            problems.append(f"{ing.where}: {ing.group} is open to the world but is not the public ALB's group")
        elif str(rule.get("IpProtocol")) != "tcp" or ports[0] != ports[1] or ports[0] not in PUBLIC_PORTS:
            problems.append(f"{ing.where}: world-open rule {rule.get('IpProtocol')} {ports} is not TCP 443 or 80")
    return problems


def _true(value: Any) -> bool:
    return value is True or value == "true"


def check_buckets(template: Template) -> list[str]:
    """Every bucket encrypted, versioned, with all public access blocked and TLS-only by its bucket policy."""
    problems = []
    tls_only = set()
    for policy in resources_of(template, "AWS::S3::BucketPolicy").values():
        props = policy["Properties"]
        for doc in branches(props["PolicyDocument"]):
            for s in as_list(doc.get("Statement", [])):
                if s.get("Effect") == "Deny" and "aws:SecureTransport" in str(s.get("Condition", {})):
                    tls_only.add(_logical_id(props["Bucket"]))
    for name, bucket in resources_of(template, "AWS::S3::Bucket").items():
        props = bucket.get("Properties", {})
        rules = props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
        algorithms = {r.get("ServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules}
        if not rules or not algorithms <= {"AES256", "aws:kms", "aws:kms:dsse"}:
            problems.append(f"{name}: not encrypted by default ({algorithms or 'no BucketEncryption'})")
        block = props.get("PublicAccessBlockConfiguration", {})
        flags = ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
        if not all(_true(block.get(flag)) for flag in flags):
            problems.append(f"{name}: public access not fully blocked ({block})")
        if props.get("AccessControl") not in (None, "Private", "BucketOwnerFullControl"):
            problems.append(f"{name}: AccessControl {props['AccessControl']}")
        if props.get("VersioningConfiguration", {}).get("Status") != "Enabled":
            problems.append(f"{name}: versioning not enabled")
        if name not in tls_only:
            problems.append(f"{name}: no bucket policy denying requests without TLS")
    return problems


def check_databases(template: Template) -> list[str]:
    """RDS: private, encrypted, Multi-AZ as a parameter, credentials managed (and rotated) in Secrets Manager."""
    problems = []
    parameters = template.get("Parameters", {})
    for name, db in resources_of(template, "AWS::RDS::DBInstance", "AWS::RDS::DBCluster").items():
        props = db.get("Properties", {})
        if props.get("PubliclyAccessible") is not False and props.get("PubliclyAccessible") != "false":
            problems.append(f"{name}: PubliclyAccessible must be false (it is {props.get('PubliclyAccessible')})")
        if not _true(props.get("StorageEncrypted")):
            problems.append(f"{name}: storage not encrypted")
        multi_az = props.get("MultiAZ")
        if not (isinstance(multi_az, dict) and multi_az.get("Ref") in parameters):
            problems.append(f"{name}: MultiAZ is not a parameter ({multi_az})")
        if not _true(props.get("ManageMasterUserPassword")) or "MasterUserPassword" in props:
            problems.append(f"{name}: credentials not managed (and rotated) by RDS in Secrets Manager")
        if db.get("DeletionPolicy") not in ("Snapshot", "Retain"):
            problems.append(f"{name}: DeletionPolicy {db.get('DeletionPolicy')} loses the data with the stack")
    return problems


def check_log_retention(template: Template) -> list[str]:
    return [
        f"{name}: no RetentionInDays (logs kept forever)"
        for name, group in resources_of(template, "AWS::Logs::LogGroup").items()
        if "RetentionInDays" not in group.get("Properties", {})
    ]


ALL_CHECKS = (
    check_no_star_on_star,
    check_no_public_principal,
    check_pass_role_scoped,
    check_security_groups,
    check_buckets,
    check_databases,
    check_log_retention,
)
