"""The templates and their parameter files, read the way CloudFormation and build.py do.

cfn-lint runs on every template in CI (.ci/run); these checks hold the project's own
rules: least privilege, encrypted private storage, and parameter files that match."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.params import read_template
from deploy.project import SAMPLES, STACKS, TEMPLATES

TEMPLATE_PATHS = sorted(TEMPLATES.glob("*.yaml"))
# Actions that accept no resource ARN, so "*" is the only resource they can have.
RESOURCELESS_ACTIONS = {
    "states:SendTaskSuccess",
    "states:SendTaskFailure",
    "states:SendTaskHeartbeat",
    "glue:GetCrawlerMetrics",
}


def resources(template: dict[str, Any], kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, resource in template["Resources"].items():
        if resource["Type"] == kind:
            yield name, resource.get("Properties", {})


def statements(node: Any) -> Iterator[dict[str, Any]]:
    """Every policy statement anywhere in the template (roles, resource policies)."""
    if isinstance(node, dict):
        if "Effect" in node and "Action" in node:
            yield node
        for value in node.values():
            yield from statements(value)
    elif isinstance(node, list):
        for value in node:
            yield from statements(value)


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("path", TEMPLATE_PATHS, ids=[p.name for p in TEMPLATE_PATHS])
def test_allow_statements_name_resources_unless_the_action_takes_none(path: Path) -> None:
    template = read_template(path)
    for statement in statements(template):
        if statement["Effect"] != "Allow" or "Principal" in statement:
            continue
        if "*" in listed(statement["Resource"]):
            assert set(listed(statement["Action"])) <= RESOURCELESS_ACTIONS, statement
        assert not any("*" in action for action in listed(statement["Action"])), statement


@pytest.mark.parametrize("path", TEMPLATE_PATHS, ids=[p.name for p in TEMPLATE_PATHS])
def test_no_full_access_managed_policies_and_no_hard_coded_partition_or_region(
    path: Path,
) -> None:
    text = path.read_text()
    assert "FullAccess" not in text
    assert "arn:aws:" not in text
    assert not re.search(r"\b(us|eu|ap|sa|ca|me|af)-[a-z]+-\d\b", text)
    assert "amazonaws.com/" not in text


def test_buckets_are_encrypted_and_private_and_tables_keep_history() -> None:
    for path in TEMPLATE_PATHS:
        template = read_template(path)
        for _, bucket in resources(template, "AWS::S3::Bucket"):
            assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
            assert all(bucket["PublicAccessBlockConfiguration"].values())
        for _, table in resources(template, "AWS::DynamoDB::Table"):
            assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
            assert table["TimeToLiveSpecification"]["Enabled"] is True
            assert table["SSESpecification"] == {"SSEEnabled": True}
        for _, queue in resources(template, "AWS::SQS::Queue"):
            assert queue["SqsManagedSseEnabled"] is True


@pytest.mark.parametrize("name", list(STACKS))
def test_each_stack_has_a_params_file_matching_its_template(name: str) -> None:
    spec = STACKS[name]
    declared = read_template(spec.template_path)["Parameters"]
    entries = json.loads((TEMPLATES / spec.params_file).read_text())
    keys = [entry["ParameterKey"] for entry in entries]
    assert set(keys) <= set(declared)
    assert {key for key, p in declared.items() if "Default" not in p} <= set(keys)


def test_the_state_machines_get_every_placeholder_their_definitions_use() -> None:
    """One source of Amazon States Language: the template substitutes each placeholder."""
    template = read_template(STACKS["step-functions-resources"].template_path)
    machines = dict(resources(template, "AWS::StepFunctions::StateMachine"))
    for properties in machines.values():
        # Key: !Sub "${StateMachinesS3Prefix}<file>"
        file_name = str(properties["DefinitionS3Location"]["Key"]).rsplit("}", 1)[-1]
        definition = SAMPLES / "statemachines" / file_name
        placeholders = set(re.findall(r"\$\{(\w+)\}", definition.read_text()))
        assert placeholders == set(properties["DefinitionSubstitutions"]), definition.name


def test_the_worker_service_drains_before_it_is_killed() -> None:
    template = read_template(STACKS["runner-service"].template_path)
    [(_, task)] = resources(template, "AWS::ECS::TaskDefinition")
    [container] = task["ContainerDefinitions"]
    assert container["StopTimeout"] > 60  # a long poll lasts up to 60 s
    assert container["ReadonlyRootFilesystem"] is True
