"""CloudFormation templates as data: parsing (short-form intrinsics included), conditions, stacks on moto_server."""

from __future__ import annotations

import ast
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfnlint.decode import decode

from tests.support import ROOT

TEMPLATES = ROOT / "deploy" / "cloudformation"
TEMPLATE_BODY_LIMIT = 51_200  # bytes CloudFormation accepts inline (TemplateBody); more needs an S3 URL

Template = dict[str, Any]


def load(name: str) -> Template:
    """The template as plain data, intrinsics in their long form ({"Fn::GetAtt": ["Db", "Endpoint.Address"]})."""
    return parse_file(TEMPLATES / name)


def parse_file(path: Path) -> Template:
    template, errors = decode(str(path))
    assert not errors and template is not None, f"{path}: {errors}"
    return json.loads(json.dumps(template))  # cfn-lint's node classes -> dict/list/str


def walk(node: Any) -> Iterator[Any]:
    """Every node of a template fragment, depth first."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def branches(node: Any) -> list[Any]:
    """A value or both branches of an Fn::If (recursively); AWS::NoValue branches drop out."""
    if isinstance(node, dict) and "Fn::If" in node:
        _, when_true, when_false = node["Fn::If"]
        return branches(when_true) + branches(when_false)
    if node == {"Ref": "AWS::NoValue"}:
        return []
    return [node]


def as_list(node: Any) -> list[Any]:
    """A property that may be one item or a list of items, with Fn::If alternatives flattened."""
    items: list[Any] = []
    for value in branches(node):
        items.extend(value if isinstance(value, list) else [value])
    return [item for value in items for item in branches(value)]


def resources_of(template: Template, *types: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] in types}


def parameter_values(template: Template, given: dict[str, str]) -> dict[str, str]:
    values = {name: str(p["Default"]) for name, p in template["Parameters"].items() if "Default" in p}
    values.update(given)
    missing = set(template["Parameters"]) - set(values)
    assert not missing, f"parameters without a default need a value: {sorted(missing)}"
    return values


def evaluate_conditions(template: Template, params: dict[str, str]) -> dict[str, bool]:
    """Evaluate the Conditions section the way CloudFormation does, for the given parameter values."""
    values = parameter_values(template, params)
    definitions = template.get("Conditions", {})
    results: dict[str, bool] = {}

    def value(node: Any) -> Any:
        if isinstance(node, dict) and "Ref" in node:
            return values[node["Ref"]]
        if isinstance(node, dict) and "Fn::Join" in node:
            sep, parts = node["Fn::Join"]
            parts = value(parts)
            return sep.join(parts.split(",") if isinstance(parts, str) else [str(value(p)) for p in parts])
        return str(node).lower() if isinstance(node, bool) else str(node)

    def condition(node: Any) -> bool:
        (op, args), *_ = node.items()
        if op == "Condition":
            return named(args)
        if op == "Fn::Equals":
            return bool(value(args[0]) == value(args[1]))
        if op == "Fn::Not":
            return not condition(args[0])
        if op == "Fn::And":
            return all(condition(a) for a in args)
        if op == "Fn::Or":
            return any(condition(a) for a in args)
        raise AssertionError(f"unsupported condition {op}")

    def named(name: str) -> bool:
        if name not in results:
            results[name] = condition(definitions[name])
        return results[name]

    return {name: named(name) for name in definitions}


def active_resources(template: Template, params: dict[str, str]) -> dict[str, str]:
    """Logical id -> type of the resources CloudFormation would create with these parameters."""
    conditions = evaluate_conditions(template, params)
    return {
        name: r["Type"]
        for name, r in template["Resources"].items()
        if "Condition" not in r or conditions[r["Condition"]]
    }


def replace_attribute(template: Template, resource: str, attribute: str, value: str) -> tuple[Template, int]:
    """Replace every `!GetAtt resource.attribute` (and its ${resource.attribute} in !Sub) with a literal.

    Used only where moto cannot produce an attribute; the caller asserts how many references were replaced."""
    count = 0
    placeholder = "${" + f"{resource}.{attribute}" + "}"

    def rewrite(node: Any) -> Any:
        nonlocal count
        if isinstance(node, dict):
            if node.get("Fn::GetAtt") == [resource, attribute]:
                count += 1
                return value
            sub = node.get("Fn::Sub")
            if isinstance(sub, str) and placeholder in sub:
                count += 1
                return {"Fn::Sub": sub.replace(placeholder, value)}
            return {k: rewrite(v) for k, v in node.items()}
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    return rewrite(template), count


Client = Callable[[str], Any]


@dataclass
class Stack:
    name: str
    stack_id: str
    outputs: dict[str, str]
    created: dict[str, str]  # logical id -> physical id of what moto created
    skipped: dict[str, str]  # logical id -> type of active resources moto did not create


def create_stack(
    aws: Client, name: str, template: Template, params: dict[str, str], role_arn: str | None = None
) -> Stack:
    """Create a stack on moto_server from the template's JSON form; return it once it is CREATE_COMPLETE.

    JSON, not the YAML file: moto splits short-form `!GetAtt Db.Endpoint.Address` on every dot, which
    CloudFormation does not. The JSON is the same template (cfn-lint's parser turns `!Tag` into `Fn::Tag`)."""
    cf = aws("cloudformation")
    extra = {"RoleARN": role_arn} if role_arn else {}
    stack_id = cf.create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        **extra,
    )["StackId"]
    described = cf.describe_stacks(StackName=stack_id)["Stacks"][0]
    assert described["StackStatus"] == "CREATE_COMPLETE", described
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    listed = cf.list_stack_resources(StackName=stack_id)["StackResourceSummaries"]
    assert all(r["ResourceStatus"] == "CREATE_COMPLETE" for r in listed), listed
    created = {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in listed if r["LogicalResourceId"]}
    active = active_resources(template, params)
    assert set(created) <= set(active), set(created) - set(active)
    skipped = {name: kind for name, kind in active.items() if name not in created}
    return Stack(name, stack_id, outputs, created, skipped)


def delete_stack(aws: Client, stack: Stack) -> str:
    cf = aws("cloudformation")
    cf.delete_stack(StackName=stack.stack_id)
    return str(cf.describe_stacks(StackName=stack.stack_id)["Stacks"][0]["StackStatus"])


def inline_policies(iam: Any, role_name: str) -> dict[str, dict[str, Any]]:
    """A role's inline policies as documents. moto returns the documents of CloudFormation-made roles as the
    Python repr of a dict rather than JSON, hence literal_eval after json."""
    documents = {}
    for name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
        if isinstance(document, str):
            try:
                document = json.loads(document)
            except json.JSONDecodeError:
                document = ast.literal_eval(document)
        documents[name] = document
    return documents
