"""Deploying core.yaml to moto_server (into a VPC made here, or a new one), as the stack tests need it."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.deploy.cfn import Client, Stack, Template, create_stack, load, replace_attribute

# Resource types that moto 5.2.5's CloudFormation cannot create: it logs "No Moto CloudFormation support for
# TYPE", skips the resource and still completes the stack. The tests assert exactly this set was skipped, and
# assert these resources' properties on the parsed template instead. README "Deploy to AWS" lists them.
MOTO_SKIPS_CORE = {
    "AWS::S3::BucketPolicy",
    "AWS::SQS::QueuePolicy",
    "AWS::SecretsManager::Secret",
    "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy",
}
MOTO_SKIPS_MODEL = {
    "AWS::ECS::CapacityProvider",
    "AWS::ECS::ClusterCapacityProviderAssociations",
    "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy",
}
# moto creates the RDS instance but not the Secrets Manager secret that ManageMasterUserPassword makes RDS create,
# and cannot resolve `!GetAtt Database.MasterUserSecret.SecretArn`. Those references (the execution role's
# policy, the task's DB user/password secrets, an output) are pointed at a stand-in secret made in moto.
MASTER_SECRET_REFERENCES = 4


@dataclass
class Core:
    stack: Stack
    template: Template
    params: dict[str, str]
    db_secret_arn: str
    oidc_secret_arn: str
    public_subnets: list[str] = field(default_factory=list)
    private_subnets: list[str] = field(default_factory=list)
    vpc_id: str = ""


def make_network(aws: Client, cidr_prefix: str) -> tuple[str, list[str], list[str]]:
    """An existing VPC as a platform team would bring it: two public and two private subnets in two zones."""
    ec2 = aws("ec2")
    vpc = ec2.create_vpc(CidrBlock=f"{cidr_prefix}.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"{cidr_prefix}.{i}.0/24", AvailabilityZone=f"us-east-1{zone}")[
            "Subnet"
        ]["SubnetId"]
        for i, zone in enumerate("abab")
    ]
    return vpc, subnets[:2], subnets[2:]


def deploy_core(aws: Client, env: str, *, create_vpc: bool, cidr_prefix: str = "10.8") -> Core:
    certificate = aws("acm").request_certificate(DomainName=f"{env}.example.com")["CertificateArn"]
    secrets = aws("secretsmanager")
    db_secret = secrets.create_secret(
        Name=f"rds!db-{env}-stand-in", SecretString='{"username": "lisa", "password": "stand-in"}'
    )["ARN"]
    oidc_secret = secrets.create_secret(Name=f"{env}/oidc-client-secret", SecretString="s3cr3t")["ARN"]
    params = {
        "EnvironmentName": env,
        "ModelStackPrefix": f"{env}-model",
        "CertificateArn": certificate,
        "BackendImage": f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{env}-backend:0.1.0",
        "DbDeletionProtection": "false",
        "DbMultiAz": "true",
        "OidcIssuerUrl": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_example",
        "OidcClientId": "lisa-client",
        "OidcClientSecretArn": oidc_secret,
        "OidcGroupsClaim": "cognito:groups",
        "AllowBedrock": "true",
    }
    vpc: str = ""
    public: list[str] = []
    private: list[str] = []
    if create_vpc:
        # moto splits CommaDelimitedList values that are passed, not the defaults: pass the defaults explicitly.
        params |= {
            "CreateVpc": "true",
            "PublicSubnetCidrs": "10.40.0.0/22,10.40.4.0/22",
            "PrivateSubnetCidrs": "10.40.64.0/18,10.40.128.0/18",
        }
    else:
        vpc, public, private = make_network(aws, cidr_prefix)
        params |= {
            "CreateVpc": "false",
            "ExistingVpcId": vpc,
            "ExistingVpcCidrs": f"{cidr_prefix}.0.0/16",
            "ExistingPublicSubnetIds": ",".join(public),
            "ExistingPrivateSubnetIds": ",".join(private),
        }
    template = load("core.yaml")
    deployable, replaced = replace_attribute(template, "Database", "MasterUserSecret.SecretArn", db_secret)
    assert replaced == MASTER_SECRET_REFERENCES, replaced
    stack = create_stack(aws, f"{env}-core", deployable, params)
    return Core(stack, template, params, db_secret, oidc_secret, public, private, vpc)
