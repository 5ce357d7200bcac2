"""Templates as they are deployed.

The runner templates in ``cloudformation/`` hold what every runner shares. Before a
stack operation, each runner's declaration (``runners.engine.definition``) adds what is
its own: its role's permissions, its stack parameters, and the variables that pass
them to the runner. ``runner-lambda.yaml`` is rendered for one runner;
``runner-service.yaml`` for every runner, each served when its activity list is set.
``pynt rendertemplates`` writes the rendered templates out for review.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from runners.engine.definition import DeployParameter, Permission, RunnerDefinition

JsonDict = dict[str, Any]
NO_VALUE = {"Ref": "AWS::NoValue"}


class _LongFormLoader(yaml.SafeLoader):
    """CloudFormation YAML, with short-form intrinsics (``!Ref``...) read as the JSON
    form CloudFormation accepts everywhere (``{"Ref": ...}``)."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_LongFormLoader.add_multi_constructor("!", _intrinsic)


def load(path: Path) -> JsonDict:
    template: JsonDict = yaml.load(path.read_text(), Loader=_LongFormLoader)
    return template


def render(path: Path, runners: Sequence[RunnerDefinition[Any]]) -> JsonDict:
    """The template at ``path`` with what ``runners`` declare. A template for one runner
    (the Lambda) serves it; a template for several (the service) serves each runner
    whose activity list parameter is not empty."""
    template = load(path)
    if path.name == "runner-lambda.yaml":
        [runner] = runners
        _add_to_lambda(template, runner)
    elif path.name == "runner-service.yaml":
        for runner in runners:
            _add_to_service(template, runner)
    return template


def body(template: JsonDict) -> str:
    return json.dumps(template, indent=1, sort_keys=False)


# The Lambda: one runner ------------------------------------------------------------


def _add_to_lambda(template: JsonDict, runner: RunnerDefinition[Any]) -> None:
    template["Parameters"]["Runner"]["AllowedValues"] = [runner.name]
    _add_parameters(template, runner.parameters, required=True)
    statements = _role_statements(template, "Role")
    statements.extend(policy_statement(permission) for permission in runner.permissions)
    variables = template["Resources"]["Function"]["Properties"]["Environment"]["Variables"]
    for parameter in _options(runner):
        condition = f"Sets{parameter.name}"
        template.setdefault("Conditions", {})[condition] = _not_empty(parameter.name)
        variables[_variable(runner, parameter)] = {
            "Fn::If": [condition, {"Ref": parameter.name}, NO_VALUE]
        }


# The service: every runner, each served when its activities are given -------------


def _add_to_service(template: JsonDict, runner: RunnerDefinition[Any]) -> None:
    arns, serves = f"{runner.title}ActivityArns", f"Serves{runner.title}"
    template["Parameters"][arns] = {
        "Type": "CommaDelimitedList",
        "Default": "",
        "Description": f"Activities the {runner.name} runner serves; empty: not served.",
    }
    template.setdefault("Conditions", {})[serves] = {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": arns}]}, ""]}]
    }
    _add_parameters(template, runner.parameters, required=False)
    statements = _role_statements(template, "TaskRole")
    polls = {"Effect": "Allow", "Action": "states:GetActivityTask", "Resource": {"Ref": arns}}
    for statement in [polls, *(policy_statement(p) for p in runner.permissions)]:
        statements.append({"Fn::If": [serves, statement, NO_VALUE]})
    [container] = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    environment: list[Any] = container["Environment"]
    variable = f"RUNNERS_{runner.name.upper()}_ACTIVITY_ARN"
    served = {"Name": variable, "Value": {"Fn::Join": [",", {"Ref": arns}]}}
    environment.append({"Fn::If": [serves, served, NO_VALUE]})
    for parameter in _options(runner):
        condition = f"{runner.title}Sets{parameter.name}"
        template["Conditions"][condition] = {
            "Fn::And": [{"Condition": serves}, _not_empty(parameter.name)]
        }
        value = {"Name": _variable(runner, parameter), "Value": {"Ref": parameter.name}}
        environment.append({"Fn::If": [condition, value, NO_VALUE]})


# Shared ----------------------------------------------------------------------------


def _add_parameters(
    template: JsonDict, parameters: Sequence[DeployParameter], required: bool
) -> None:
    """Runners may share a parameter (the service's data bucket): it must then say the
    same everywhere."""
    declared = template.setdefault("Parameters", {})
    for parameter in parameters:
        entry: JsonDict = {"Type": "String", "Description": parameter.description}
        if parameter.default is not None or not required:
            entry["Default"] = parameter.default or ""
        if parameter.name in declared and declared[parameter.name] != entry:
            raise ValueError(f"parameter {parameter.name} is declared differently by two runners")
        declared[parameter.name] = entry


def _options(runner: RunnerDefinition[Any]) -> list[DeployParameter]:
    return [parameter for parameter in runner.parameters if parameter.option]


def _variable(runner: RunnerDefinition[Any], parameter: DeployParameter) -> str:
    """The variable ``runners.settings`` reads the option from, for this runner only."""
    assert parameter.option is not None
    return f"RUNNERS_{runner.name}_{parameter.option}".upper()


def _not_empty(parameter: str) -> JsonDict:
    return {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, ""]}]}


def _role_statements(template: JsonDict, role: str) -> list[Any]:
    [policy] = template["Resources"][role]["Properties"]["Policies"]
    statements: list[Any] = policy["PolicyDocument"]["Statement"]
    return statements


def policy_statement(permission: Permission) -> JsonDict:
    resources = [r if r == "*" else {"Fn::Sub": r} for r in permission.resources]
    return {
        "Effect": "Allow",
        "Action": list(permission.actions),
        "Resource": resources[0] if len(resources) == 1 else resources,
    }
