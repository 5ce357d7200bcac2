"""The templates and their parameter files, read the way CloudFormation and build.py do.

cfn-lint runs on every template in CI (.ci/run) and here on every template as deployed
(with its runners' parts); these checks hold the project's own rules: least privilege,
encrypted private storage, parameter files that match, and runner permissions that come
from the runners' declarations and nowhere else."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy import templates
from deploy.project import RUNNERS, SAMPLES, STACKS, TEMPLATES

TEMPLATE_PATHS = sorted(TEMPLATES.glob("*.yaml"))
RENDERED = {name: spec.rendered() for name, spec in STACKS.items()}
# Actions that accept no resource ARN, so "*" is the only resource they can have
# (Service Authorization Reference; the Data API limits statement calls to the
# statements of the caller's role).
RESOURCELESS_ACTIONS = {
    "states:SendTaskSuccess",
    "states:SendTaskFailure",
    "states:SendTaskHeartbeat",
    "glue:GetCrawlerMetrics",
    "redshift-data:DescribeStatement",
    "redshift-data:ListStatements",
    "redshift-data:CancelStatement",
    # The Service Authorization Reference lists no resource type for it (account-level).
    "dms:DescribeReplicationTasks",
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


@pytest.mark.parametrize("name", list(RENDERED))
def test_allow_statements_name_resources_unless_the_action_takes_none(name: str) -> None:
    for statement in statements(RENDERED[name]):
        if statement["Effect"] != "Allow" or "Principal" in statement:
            continue
        if "*" in listed(statement["Resource"]):
            assert set(listed(statement["Action"])) <= RESOURCELESS_ACTIONS, statement
        assert not any("*" in action for action in listed(statement["Action"])), statement


@pytest.mark.parametrize("path", TEMPLATE_PATHS, ids=[p.name for p in TEMPLATE_PATHS])
def test_no_full_access_managed_policies_and_no_hard_coded_partition_or_region(
    path: Path,
) -> None:
    text = path.read_text() + "".join(templates.body(t) for t in RENDERED.values())
    assert "FullAccess" not in text
    assert "arn:aws:" not in text
    assert not re.search(r"\b(us|eu|ap|sa|ca|me|af)-[a-z]+-\d\b", text)
    assert "amazonaws.com/" not in text


def test_buckets_are_encrypted_and_private_and_tables_keep_history() -> None:
    for template in RENDERED.values():
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
    declared = RENDERED[name]["Parameters"]
    entries = json.loads((TEMPLATES / spec.params_file).read_text())
    keys = [entry["ParameterKey"] for entry in entries]
    assert set(keys) <= set(declared)
    assert {key for key, p in declared.items() if "Default" not in p} <= set(keys)


def test_the_state_machines_get_every_placeholder_their_definitions_use() -> None:
    """One source of Amazon States Language: the template substitutes each placeholder."""
    machines = dict(
        resources(RENDERED["step-functions-resources"], "AWS::StepFunctions::StateMachine")
    )
    for properties in machines.values():
        # Key: !Sub "${StateMachinesS3Prefix}<file>"
        file_name = properties["DefinitionS3Location"]["Key"]["Fn::Sub"].rsplit("}", 1)[-1]
        definition = SAMPLES / "statemachines" / file_name
        placeholders = set(re.findall(r"\$\{(\w+)\}", definition.read_text()))
        assert placeholders == set(properties["DefinitionSubstitutions"]), definition.name


def test_the_worker_service_drains_before_it_is_killed() -> None:
    [(_, task)] = resources(RENDERED["runner-service"], "AWS::ECS::TaskDefinition")
    [container] = task["ContainerDefinitions"]
    assert container["StopTimeout"] > 60  # a long poll lasts up to 60 s
    assert container["ReadonlyRootFilesystem"] is True


def test_every_template_as_deployed_passes_cfn_lint(tmp_path: Path) -> None:
    paths = []
    for name, template in RENDERED.items():
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(templates.body(template))
    linter = shutil.which("cfn-lint", path=str(Path(sys.executable).parent)) or "cfn-lint"
    result = subprocess.run([linter, *map(str, paths)], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# Statements every runner's role has, whatever the runner.
COMMON_ACTIONS = {
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "dynamodb:DescribeTable",
    "dynamodb:DescribeTimeToLive",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:Query",
    "states:GetActivityTask",
    "states:SendTaskSuccess",
    "states:SendTaskFailure",
    "states:SendTaskHeartbeat",
}


@pytest.mark.parametrize("runner", RUNNERS, ids=[r.name for r in RUNNERS])
def test_a_runner_lambda_is_granted_what_its_declaration_lists_and_nothing_else(
    runner: Any,
) -> None:
    template = RENDERED[f"{runner.function}-lambda"]
    [policy] = template["Resources"]["Role"]["Properties"]["Policies"]
    # (The completion queue's statement, on only with completion events, is held by
    # tests/deploy/test_completion_events.py.)
    granted = [
        s
        for s in policy["PolicyDocument"]["Statement"]
        if "Fn::If" not in s and set(listed(s["Action"])) - COMMON_ACTIONS
    ]
    declared = [templates.policy_statement(p) for p in runner.permissions]
    assert granted == declared
    variables = template["Resources"]["Function"]["Properties"]["Environment"]["Variables"]
    assert variables["RUNNERS_RUNNER"] == {"Ref": "Runner"}
    assert template["Parameters"]["Runner"]["AllowedValues"] == [runner.name]
    for parameter in runner.parameters:
        assert parameter.name in template["Parameters"]


def test_the_service_serves_a_runner_only_when_its_activities_are_given() -> None:
    template = RENDERED["runner-service"]
    [(_, task)] = resources(template, "AWS::ECS::TaskDefinition")
    [container] = task["ContainerDefinitions"]
    [policy] = template["Resources"]["TaskRole"]["Properties"]["Policies"]
    conditional = [s for s in policy["PolicyDocument"]["Statement"] if "Fn::If" in s]
    for runner in RUNNERS:
        serves = f"Serves{runner.title}"
        assert template["Parameters"][f"{runner.title}ActivityArns"]["Default"] == ""
        assert serves in template["Conditions"]
        mine = [s["Fn::If"][1] for s in conditional if s["Fn::If"][0] == serves]
        assert mine[1:] == [templates.policy_statement(p) for p in runner.permissions]
        variable = f"RUNNERS_{runner.name.upper()}_ACTIVITY_ARN"
        assert any(
            "Fn::If" in item
            and item["Fn::If"][0] == serves
            and item["Fn::If"][1]["Name"] == variable
            for item in container["Environment"]
        )
