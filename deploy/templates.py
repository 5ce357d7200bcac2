"""Templates as they are deployed.

The runner templates in ``cloudformation/`` hold what every runner shares. Before a
stack operation, each runner's declaration (``runners.engine.definition``) adds what is
its own: its role's permissions, its stack parameters, the variables that pass them to
the runner, and, for a runner whose service sends completion events, their route (off
unless the stack's ``CompletionEvents`` is "true"): a rule on the default bus with the
runner's pattern, a queue (with a dead-letter queue and its alarm) the rule sends to,
and what consumes it. ``runner-lambda.yaml`` is rendered for one runner;
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

# Completion events: the switch, and what the runners it turns on use instead.
EVENTS_ON = "CompletionEventsOn"
EVENTS_PARAMETERS: JsonDict = {
    "CompletionEvents": {
        "Type": "String",
        "Default": "false",
        "AllowedValues": ["true", "false"],
        "Description": (
            "true: route the services' job state-change events (EventBridge, default bus) "
            "to the runners that have them, which then report a job's end at once and "
            "check on the longer EventsCheckIntervalSeconds (events are best effort: the "
            "check stays as the safety net)."
        ),
    },
    "EventsCheckIntervalSeconds": {
        "Type": "String",
        "Default": "60",
        "AllowedPattern": "^[1-9][0-9]*$",
        "Description": (
            "Whole seconds between check cycles of a runner with completion events on "
            "(instead of CheckIntervalSeconds); at most half EventsLeaseSeconds."
        ),
    },
    "EventsLeaseSeconds": {
        "Type": "String",
        "Default": "300",
        "AllowedPattern": "^[1-9][0-9]*$",
        "Description": (
            "Whole seconds a worker's lease on a task lasts when completion events are on "
            "(RUNNERS_LEASE_SECONDS); check cycles renew it, so at least twice "
            "EventsCheckIntervalSeconds."
        ),
    },
}
# The completion queue: a message the consumer does not delete comes back after this
# many seconds (the consumer shortens it itself to retry sooner) and goes to the
# dead-letter queue after this many receives (the code lets go of one after 4).
COMPLETION_VISIBILITY_SECONDS = 60
COMPLETION_MAX_RECEIVES = 10
COMPLETION_RETENTION_SECONDS = 86400  # an event older than a day only repeats a check
DEAD_LETTER_RETENTION_SECONDS = 1209600  # 14 days, SQS's most


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
    if runner.completion_events is not None:
        _add_events_to_lambda(template, runner)


def _add_events_to_lambda(template: JsonDict, runner: RunnerDefinition[Any]) -> None:
    """The runner's completion queue, consumed by its own function through an event
    source mapping (the handler tells SQS records from a scheduled tick). With events
    on, the function checks on the longer interval, with a lease twice as long at least."""
    _add_events_parameters(template)
    resources = template["Resources"]
    queue = _add_completion_route(template, "", runner, EVENTS_ON, visibility={"Ref": "Timeout"})
    resources["CompletionEventSource"] = {
        "Type": "AWS::Lambda::EventSourceMapping",
        "Condition": EVENTS_ON,
        "Properties": {
            "EventSourceArn": {"Fn::GetAtt": [queue, "Arn"]},
            "FunctionName": {"Ref": "Function"},
            "BatchSize": 10,
            "MaximumBatchingWindowInSeconds": 0,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "Enabled": True,
        },
    }
    consumes = {
        "Effect": "Allow",
        "Action": [
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:GetQueueAttributes",
        ],
        "Resource": {"Fn::GetAtt": [queue, "Arn"]},
    }
    _role_statements(template, "Role").append({"Fn::If": [EVENTS_ON, consumes, NO_VALUE]})
    variables = resources["Function"]["Properties"]["Environment"]["Variables"]
    variables["RUNNERS_COMPLETION_EVENTS"] = {"Fn::If": [EVENTS_ON, "true", NO_VALUE]}
    variables["RUNNERS_CHECK_INTERVAL_SECONDS"] = {
        "Fn::If": [
            EVENTS_ON,
            {"Ref": "EventsCheckIntervalSeconds"},
            variables["RUNNERS_CHECK_INTERVAL_SECONDS"],
        ]
    }
    variables["RUNNERS_LEASE_SECONDS"] = {
        "Fn::If": [EVENTS_ON, {"Ref": "EventsLeaseSeconds"}, NO_VALUE]
    }
    # The slow-cycle alarm fires above the interval in force.
    alarm = resources["SlowCheckCycleAlarm"]["Properties"]
    alarm["Threshold"] = {
        "Fn::If": [EVENTS_ON, {"Fn::Sub": "${EventsCheckIntervalSeconds}000"}, alarm["Threshold"]]
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
    if runner.completion_events is not None:
        _add_events_to_service(template, runner, environment)


def _add_events_to_service(
    template: JsonDict, runner: RunnerDefinition[Any], environment: list[Any]
) -> None:
    """The runner's completion queue, consumed by the worker itself. Only this runner
    checks on the longer interval (``RUNNERS_<RUNNER>_...`` variables): the runners
    without events keep CheckIntervalSeconds."""
    _add_events_parameters(template)
    condition = f"{runner.title}CompletionEvents"
    template["Conditions"][condition] = {
        "Fn::And": [{"Condition": EVENTS_ON}, {"Condition": f"Serves{runner.title}"}]
    }
    queue = _add_completion_route(template, runner.title, runner, condition)
    consumes = {
        "Effect": "Allow",
        "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"],
        "Resource": {"Fn::GetAtt": [queue, "Arn"]},
    }
    _role_statements(template, "TaskRole").append({"Fn::If": [condition, consumes, NO_VALUE]})
    prefix = f"RUNNERS_{runner.name.upper()}_"
    for name, value in (
        ("COMPLETION_QUEUE_URL", {"Ref": queue}),
        ("CHECK_INTERVAL_SECONDS", {"Ref": "EventsCheckIntervalSeconds"}),
        ("LEASE_SECONDS", {"Ref": "EventsLeaseSeconds"}),
    ):
        variable = {"Name": prefix + name, "Value": value}
        environment.append({"Fn::If": [condition, variable, NO_VALUE]})


# Shared ----------------------------------------------------------------------------


def _add_events_parameters(template: JsonDict) -> None:
    template["Parameters"].update(EVENTS_PARAMETERS)
    template.setdefault("Conditions", {})[EVENTS_ON] = {
        "Fn::Equals": [{"Ref": "CompletionEvents"}, "true"]
    }


def _add_completion_route(
    template: JsonDict,
    prefix: str,
    runner: RunnerDefinition[Any],
    condition: str,
    visibility: Any = COMPLETION_VISIBILITY_SECONDS,
) -> str:
    """The rule sending the runner's completion events to its queue, the queue (with the
    policy that lets only that rule send), its dead-letter queue and the alarm on it;
    returns the queue's logical id. ``visibility``: the queue's VisibilityTimeout."""
    assert runner.completion_events is not None
    queue, dead, rule = (
        f"{prefix}Completion{part}" for part in ("Queue", "DeadLetterQueue", "Rule")
    )
    alarm_actions = {"Fn::If": ["Notifies", [{"Ref": "AlarmTopicArn"}], NO_VALUE]}
    template["Resources"].update(
        {
            rule: {
                "Type": "AWS::Events::Rule",
                "Condition": condition,
                "Properties": {
                    "Description": f"{runner.name} jobs that ended: to its completion queue",
                    "EventPattern": runner.completion_events.pattern,
                    "State": "ENABLED",
                    "Targets": [{"Id": "completion-queue", "Arn": {"Fn::GetAtt": [queue, "Arn"]}}],
                },
            },
            queue: {
                "Type": "AWS::SQS::Queue",
                "Condition": condition,
                "Properties": {
                    "SqsManagedSseEnabled": True,
                    "VisibilityTimeout": visibility,
                    "MessageRetentionPeriod": COMPLETION_RETENTION_SECONDS,
                    "RedrivePolicy": {
                        "deadLetterTargetArn": {"Fn::GetAtt": [dead, "Arn"]},
                        "maxReceiveCount": COMPLETION_MAX_RECEIVES,
                    },
                },
            },
            dead: {
                "Type": "AWS::SQS::Queue",
                "Condition": condition,
                "Properties": {
                    "SqsManagedSseEnabled": True,
                    "MessageRetentionPeriod": DEAD_LETTER_RETENTION_SECONDS,
                },
            },
            f"{queue}Policy": {
                "Type": "AWS::SQS::QueuePolicy",
                "Condition": condition,
                "Properties": {
                    "Queues": [{"Ref": queue}],
                    "PolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Sid": "EventBridgeSends",
                                "Effect": "Allow",
                                "Principal": {"Service": "events.amazonaws.com"},
                                "Action": "sqs:SendMessage",
                                "Resource": {"Fn::GetAtt": [queue, "Arn"]},
                                "Condition": {
                                    "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [rule, "Arn"]}}
                                },
                            }
                        ],
                    },
                },
            },
            f"{dead}Alarm": {
                "Type": "AWS::CloudWatch::Alarm",
                "Condition": condition,
                "Properties": {
                    "AlarmDescription": (
                        f"{runner.name} completion events went to the dead-letter queue: "
                        "their consumer keeps failing (the periodic check still reports)"
                    ),
                    "Namespace": "AWS/SQS",
                    "MetricName": "ApproximateNumberOfMessagesVisible",
                    "Dimensions": [
                        {"Name": "QueueName", "Value": {"Fn::GetAtt": [dead, "QueueName"]}}
                    ],
                    "Statistic": "Maximum",
                    "Period": 300,
                    "EvaluationPeriods": 1,
                    "Threshold": 0,
                    "ComparisonOperator": "GreaterThanThreshold",
                    "TreatMissingData": "notBreaching",
                    "AlarmActions": alarm_actions,
                },
            },
        }
    )
    return queue


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
