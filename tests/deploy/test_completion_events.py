"""Completion events in the runner stacks (issue #15): with ``CompletionEvents`` "true",
each runner whose service sends state-change events gets a rule on the default bus with
its pattern, a queue the rule alone may send to (with a dead-letter queue and an alarm
on it) and a consumer: the runner's Lambda through an event source mapping, or the
container worker itself. With the default, none of it is created.

The templates are read as CloudFormation would create them for given parameters
(conditions evaluated, ``Fn::If`` chosen, ``AWS::NoValue`` removed); the variables they
give are then read by ``runners.settings`` as a worker would at start-up. On the
emulator, the stacks are deployed with events on and a put event reaches the queues.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from deploy import templates
from deploy.params import Parameters
from deploy.project import RUNNERS, STACKS, DeployError
from runners import settings
from runners.engine.definition import RunnerDefinition
from runners.local import Emulator
from tests.deploy.conftest import filled_params, run_pynt
from tests.helpers import wait_until

EVENT_RUNNERS = [r for r in RUNNERS if r.completion_events is not None]
QUIET_RUNNERS = [r for r in RUNNERS if r.completion_events is None]
ON = {"CompletionEvents": "true"}
_REMOVED = object()
ACCOUNT = "123456789012"


def activity(name: str) -> str:
    return f"arn:aws:states:us-east-1:{ACCOUNT}:activity:{name}"


# CloudFormation's reading of a template, for given parameters ----------------------


class Created:
    """The resources a template creates for ``values`` (the rest: their defaults), with
    every ``Fn::If`` decided and ``AWS::NoValue`` removed; parameters' ``Ref`` read as
    their values, other ``Ref``/``GetAtt`` left as they are."""

    def __init__(self, template: dict[str, Any], values: Mapping[str, str]) -> None:
        self.parameters: dict[str, Any] = {}
        for name, declared in template.get("Parameters", {}).items():
            value = values.get(name, declared.get("Default"))
            assert value is not None, f"parameter {name} needs a value"
            if declared["Type"] == "CommaDelimitedList":
                value = [item for item in str(value).split(",") if item] or [""]
            self.parameters[name] = value
        self._conditions = template.get("Conditions", {})
        self._decided: dict[str, bool] = {}
        self.resources = {
            name: self.resolve(resource)
            for name, resource in template["Resources"].items()
            if "Condition" not in resource or self.condition(resource["Condition"])
        }

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {
            name: resource.get("Properties", {})
            for name, resource in self.resources.items()
            if resource["Type"] == kind
        }

    def condition(self, name: str) -> bool:
        if name not in self._decided:
            self._decided[name] = bool(self._value(self._conditions[name]))
        return self._decided[name]

    def _value(self, node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        [(function, argument)] = node.items()
        readings: dict[str, Callable[[Any], Any]] = {
            "Ref": lambda a: self.parameters[a],
            "Condition": self.condition,
            "Fn::Equals": lambda a: self._value(a[0]) == self._value(a[1]),
            "Fn::Not": lambda a: not self._value(a[0]),
            "Fn::And": lambda a: all(self._value(x) for x in a),
            "Fn::Or": lambda a: any(self._value(x) for x in a),
            "Fn::Join": lambda a: a[0].join(str(i) for i in self._value(a[1])),
        }
        assert function in readings, f"no reading of {function} in conditions"
        return readings[function](argument)

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            items = (self.resolve(item) for item in node)
            return [item for item in items if item is not _REMOVED]
        if not isinstance(node, dict) or node == templates.NO_VALUE:
            return _REMOVED if node == templates.NO_VALUE else node
        if set(node) == {"Fn::If"}:
            condition, yes, no = node["Fn::If"]
            return self.resolve(yes if self.condition(condition) else no)
        if set(node) == {"Ref"} and node["Ref"] in self.parameters:
            return self.parameters[node["Ref"]]
        if set(node) in ({"Fn::Sub"}, {"Fn::Join"}):
            return self._text(node)
        resolved = {key: self.resolve(value) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not _REMOVED}

    def _text(self, node: dict[str, Any]) -> Any:
        """``Fn::Sub`` of parameters, ``Fn::Join`` of values; else the node as it is."""
        if "Fn::Join" in node:
            separator, items = node["Fn::Join"]
            items = self.resolve(items)
            known = isinstance(items, list) and not any(isinstance(i, dict) for i in items)
            return separator.join(map(str, items)) if known else node
        text = node["Fn::Sub"]
        if not isinstance(text, str):
            return node
        for name, value in self.parameters.items():
            if isinstance(value, str):
                text = text.replace("${" + name + "}", value)
        return text if "${" not in text else node


def lambda_stack(runner: RunnerDefinition[Any], **values: str) -> Created:
    base = {"Runner": runner.name, "SourceS3BucketName": "bucket", "SourceS3Key": "package.zip"}
    base |= {"DDBTableName": "Jobs", "FunctionName": runner.function}
    base |= {p.name: "value" for p in runner.parameters if p.default is None}
    return Created(STACKS[f"{runner.function}-lambda"].rendered(), base | values)


def service_stack(
    values: Mapping[str, str] | None = None, served: list[RunnerDefinition[Any]] = RUNNERS
) -> Created:
    base = {"ContainerImage": "image", "VpcId": "vpc-1", "SubnetIds": "subnet-1"}
    base |= {f"{r.title}ActivityArns": activity(r.name) for r in served}
    # What the served runners need (as the shipped parameter file gives it).
    base |= {"WaitTableName": "Waits", "WaitBucketName": "data"}
    base |= {"EmrServerlessApplicationId": "00fabc123def4567"}
    base |= {"EmrServerlessExecutionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/EmrServerlessJobs"}
    return Created(STACKS["runner-service"].rendered(), base | dict(values or {}))


def role_statements(created: Created, role: str) -> list[dict[str, Any]]:
    [policy] = created.resources[role]["Properties"]["Policies"]
    statements: list[dict[str, Any]] = policy["PolicyDocument"]["Statement"]
    return statements


def sqs_statements(created: Created, role: str) -> list[dict[str, Any]]:
    return [
        s
        for s in role_statements(created, role)
        if any(a.startswith("sqs:") for a in listed(s["Action"]))
    ]


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def arn_of(resource: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [resource, "Arn"]}


def assert_route(created: Created, prefix: str, runner: RunnerDefinition[Any]) -> str:
    """The rule (the runner's pattern) -> queue (only the rule may send) -> dead-letter
    queue (and its alarm) of ``runner``; returns the queue's logical id."""
    assert runner.completion_events is not None
    queue, dead, rule = (f"{prefix}Completion{p}" for p in ("Queue", "DeadLetterQueue", "Rule"))
    rules = created.of_type("AWS::Events::Rule")
    assert rules[rule]["EventPattern"] == runner.completion_events.pattern
    assert "EventBusName" not in rules[rule]  # the default bus: where the services send
    assert rules[rule]["State"] == "ENABLED"
    assert rules[rule]["Targets"] == [{"Id": "completion-queue", "Arn": arn_of(queue)}]
    queues = created.of_type("AWS::SQS::Queue")
    assert queues[queue]["RedrivePolicy"] == {
        "deadLetterTargetArn": arn_of(dead),
        "maxReceiveCount": 10,
    }
    assert queues[queue]["SqsManagedSseEnabled"] is True
    assert queues[dead]["SqsManagedSseEnabled"] is True
    assert queues[dead]["MessageRetentionPeriod"] >= queues[queue]["MessageRetentionPeriod"]
    [policy] = [
        p
        for p in created.of_type("AWS::SQS::QueuePolicy").values()
        if p["Queues"] == [{"Ref": queue}]
    ]
    assert policy["PolicyDocument"]["Statement"] == [
        {
            "Sid": "EventBridgeSends",
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": arn_of(queue),
            "Condition": {"ArnEquals": {"aws:SourceArn": arn_of(rule)}},
        }
    ]
    alarm = created.of_type("AWS::CloudWatch::Alarm")[f"{dead}Alarm"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
    )
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [dead, "QueueName"]}}
    ]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    return queue


def completion_resources(created: Created) -> list[str]:
    return sorted(name for name in created.resources if "Completion" in name)


# The Lambda stacks -------------------------------------------------------------------


def test_three_runners_have_completion_events() -> None:
    assert {r.name for r in EVENT_RUNNERS} == {"glue", "athena", "crawler"}


@pytest.mark.parametrize("runner", EVENT_RUNNERS, ids=[r.name for r in EVENT_RUNNERS])
def test_a_runner_lambda_with_events_on_routes_them_to_its_function(runner: Any) -> None:
    created = lambda_stack(runner, **ON, AlarmTopicArn="arn:aws:sns:us-east-1:1:alarms")
    queue = assert_route(created, "", runner)
    assert completion_resources(created) == sorted(
        [
            "CompletionRule",
            "CompletionQueue",
            "CompletionQueuePolicy",
            "CompletionDeadLetterQueue",
            "CompletionDeadLetterQueueAlarm",
            "CompletionEventSource",
        ]
    )
    # Lambda refuses a mapping from a queue whose visibility is shorter than the function's timeout.
    assert (
        created.of_type("AWS::SQS::Queue")[queue]["VisibilityTimeout"]
        == created.parameters["Timeout"]
    )
    mapping = created.of_type("AWS::Lambda::EventSourceMapping")["CompletionEventSource"]
    assert mapping == {
        "EventSourceArn": arn_of(queue),
        "FunctionName": {"Ref": "Function"},
        "BatchSize": 10,
        "MaximumBatchingWindowInSeconds": 0,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "Enabled": True,
    }
    assert sqs_statements(created, "Role") == [
        {
            "Effect": "Allow",
            "Action": [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
            ],
            "Resource": arn_of(queue),
        }
    ]
    variables = created.resources["Function"]["Properties"]["Environment"]["Variables"]
    assert variables["RUNNERS_COMPLETION_EVENTS"] == "true"
    assert variables["RUNNERS_CHECK_INTERVAL_SECONDS"] == "60"
    assert variables["RUNNERS_LEASE_SECONDS"] == "300"
    alarms = created.of_type("AWS::CloudWatch::Alarm")
    assert alarms["SlowCheckCycleAlarm"]["Threshold"] == "60000"
    assert alarms["CompletionDeadLetterQueueAlarm"]["AlarmActions"] == [
        "arn:aws:sns:us-east-1:1:alarms"
    ]


@pytest.mark.parametrize("runner", EVENT_RUNNERS, ids=[r.name for r in EVENT_RUNNERS])
def test_a_runner_lambda_creates_nothing_of_it_by_default(runner: Any) -> None:
    template = STACKS[f"{runner.function}-lambda"].rendered()
    assert template["Parameters"]["CompletionEvents"]["Default"] == "false"
    created = lambda_stack(runner)
    assert completion_resources(created) == []
    assert not created.of_type("AWS::SQS::Queue")
    assert not created.of_type("AWS::Lambda::EventSourceMapping")
    assert list(created.of_type("AWS::Events::Rule")) == ["Schedule"]
    assert sqs_statements(created, "Role") == []
    variables = created.resources["Function"]["Properties"]["Environment"]["Variables"]
    assert "RUNNERS_COMPLETION_EVENTS" not in variables
    assert "RUNNERS_LEASE_SECONDS" not in variables
    assert variables["RUNNERS_CHECK_INTERVAL_SECONDS"] == "5"
    assert created.of_type("AWS::CloudWatch::Alarm")["SlowCheckCycleAlarm"]["Threshold"] == "5000"


def test_the_dead_letter_alarm_notifies_only_when_a_topic_is_given() -> None:
    [glue] = [r for r in EVENT_RUNNERS if r.name == "glue"]
    alarm = lambda_stack(glue, **ON).of_type("AWS::CloudWatch::Alarm")[
        "CompletionDeadLetterQueueAlarm"
    ]
    assert "AlarmActions" not in alarm


@pytest.mark.parametrize("runner", QUIET_RUNNERS, ids=[r.name for r in QUIET_RUNNERS])
def test_a_runner_without_completion_events_has_no_switch_for_them(runner: Any) -> None:
    template = STACKS[f"{runner.function}-lambda"].rendered()
    assert "CompletionEvents" not in template["Parameters"]
    assert not [name for name in template["Resources"] if "Completion" in name]


@pytest.mark.parametrize("runner", EVENT_RUNNERS, ids=[r.name for r in EVENT_RUNNERS])
def test_the_lambda_variables_configure_the_runner_with_events_on(runner: Any) -> None:
    """What ``runners.settings`` makes of the function's variables: events on, and a lease
    the engine accepts (at least twice the check interval)."""
    created = lambda_stack(runner, **ON)
    variables = created.resources["Function"]["Properties"]["Environment"]["Variables"]
    # (The resources' names and ARNs as the stack's resources would give them.)
    placeholders = {"Activity": activity("created"), "JobTable": "Jobs"}
    environ = {
        name: placeholders[value["Ref"]] if isinstance(value, dict) else str(value)
        for name, value in variables.items()
    }
    [config] = settings.from_environment(runner.name, environ)
    assert config.completion_events is True
    assert (config.check_interval_seconds, config.lease_seconds) == (60, 300)


# The service --------------------------------------------------------------------------


def container_environment(created: Created) -> dict[str, Any]:
    [container] = created.resources["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    return {item["Name"]: item["Value"] for item in container["Environment"]}


def test_the_service_with_events_on_routes_each_served_runners_events_to_the_worker() -> None:
    created = service_stack(ON)
    environment = container_environment(created)
    queues = []
    for runner in EVENT_RUNNERS:
        queue = assert_route(created, runner.title, runner)
        queues.append(queue)
        assert created.of_type("AWS::SQS::Queue")[queue]["VisibilityTimeout"] == 60
        prefix = f"RUNNERS_{runner.name.upper()}_"
        assert environment[prefix + "COMPLETION_QUEUE_URL"] == {"Ref": queue}
        assert environment[prefix + "CHECK_INTERVAL_SECONDS"] == "60"
        assert environment[prefix + "LEASE_SECONDS"] == "300"
    for runner in QUIET_RUNNERS:  # checked as often as before
        assert not [n for n in environment if n.startswith(f"RUNNERS_{runner.name.upper()}_C")]
    assert environment["RUNNERS_CHECK_INTERVAL_SECONDS"] == "5"
    assert "RUNNERS_LEASE_SECONDS" not in environment
    assert not created.of_type("AWS::Lambda::EventSourceMapping")
    assert sqs_statements(created, "TaskRole") == [
        {
            "Effect": "Allow",
            "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"],
            "Resource": arn_of(queue),
        }
        for queue in queues
    ]


def test_the_service_creates_nothing_of_it_by_default_nor_for_a_runner_it_does_not_serve() -> None:
    assert completion_resources(service_stack()) == []
    assert sqs_statements(service_stack(), "TaskRole") == []
    assert not [n for n in container_environment(service_stack()) if "COMPLETION" in n]
    [glue] = [r for r in EVENT_RUNNERS if r.name == "glue"]
    created = service_stack(ON, [glue])
    assert {n for n in completion_resources(created) if not n.startswith("Glue")} == set()
    assert len(sqs_statements(created, "TaskRole")) == 1


def test_the_container_variables_configure_each_runner() -> None:
    created = service_stack(ON)
    environ = {
        name: f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/{value['Ref']}"
        if isinstance(value, dict)
        else str(value)
        for name, value in container_environment(created).items()
    }
    environ["RUNNERS_TABLE"] = "RunnerServiceJobs"
    configs = {config.runner: config for config in settings.served_from_environment(environ)}
    for runner in RUNNERS:
        config = configs[runner.name]
        if runner.completion_events is None:
            assert (config.completion_queue_url, config.check_interval_seconds) == ("", 5)
        else:
            assert config.completion_queue_url.endswith(f"/{runner.title}CompletionQueue")
            assert (config.check_interval_seconds, config.lease_seconds) == (60, 300)


def test_a_lease_shorter_than_two_check_intervals_stops_the_deployment(
    shipped_params: Path,
) -> None:
    path = shipped_params / "gluerunner-lambda-params.json"
    entries = json.loads(path.read_text())
    entries += [
        {"ParameterKey": "CompletionEvents", "ParameterValue": "true"},
        {"ParameterKey": "EventsCheckIntervalSeconds", "ParameterValue": "200"},
    ]
    path.write_text(json.dumps(entries))
    with pytest.raises(DeployError, match=r"EventsLeaseSeconds \(300\) must be at least twice"):
        Parameters(None, shipped_params).for_stack(STACKS["gluerunner-lambda"])


# On the emulator ----------------------------------------------------------------------


def add_parameters(directory: Path, params_file: str, values: dict[str, str]) -> None:
    path = directory / params_file
    entries = [e for e in json.loads(path.read_text()) if e["ParameterKey"] not in values]
    entries += [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]
    path.write_text(json.dumps(entries, indent=2))


@pytest.fixture(scope="module")
def events_on(
    emulator: Emulator, build_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, dict[str, str]]]:
    """The Glue runner's Lambda stack and the service (serving Glue and Athena), both
    with completion events on; returns each stack's resources' physical ids."""
    emulator.reset()
    ec2 = emulator.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    sfn = emulator.client("stepfunctions")
    served = {
        name: sfn.create_activity(name=f"{name}Service")["activityArn"]
        for name in ("Glue", "Athena")
    }
    service_values = {f"{r.title}ActivityArns": served.get(r.title, "") for r in RUNNERS} | {
        "WaitTableName": "Waits",
        "WaitBucketName": "runners-data",
        "AthenaResultsBucketName": "runners-artifacts",
        "AthenaDataBucketName": "runners-data",
    }
    params = filled_params(
        tmp_path_factory.mktemp("params"),
        {"VpcId": vpc, "SubnetIds": subnet, "ActivityArns": "", **service_values},
    )
    add_parameters(params, "gluerunner-lambda-params.json", ON)
    add_parameters(params, "runner-service-params.json", ON)
    env = {
        **os.environ,
        **emulator.client_env(),
        "RUNNERS_BUILD_DIR": str(build_dir),
        "RUNNERS_PARAMS_DIR": str(params),
        "RUNNERS_STACK_POLL_SECONDS": "0.1",
    }
    stacks = ["gluerunner-lambda", "runner-service"]
    result = run_pynt(
        "deploylambda[gluerunner]", *(f"createstack[{name}]" for name in stacks), env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    cfn = emulator.client("cloudformation")
    physical = {
        name: {
            r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
            for r in cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]
        }
        for name in stacks
    }
    try:
        yield physical
    finally:
        emulator.reset()


def glue_event(run_id: str) -> dict[str, Any]:
    return {
        "Source": "aws.glue",
        "DetailType": "Glue Job State Change",
        "Detail": json.dumps(
            {"jobName": "ProcessSalesData", "state": "SUCCEEDED", "jobRunId": run_id}
        ),
    }


def test_the_stacks_with_events_on_create_the_routes(
    emulator: Emulator, events_on: dict[str, dict[str, str]]
) -> None:
    lambda_ids, service_ids = events_on["gluerunner-lambda"], events_on["runner-service"]
    assert {n for n in lambda_ids if "Completion" in n} == {
        "CompletionRule",
        "CompletionQueue",
        "CompletionQueuePolicy",
        "CompletionDeadLetterQueue",
        "CompletionDeadLetterQueueAlarm",
        "CompletionEventSource",
    }
    assert {n for n in service_ids if "CompletionQueue" in n} == {
        "GlueCompletionQueue",
        "GlueCompletionQueuePolicy",
        "AthenaCompletionQueue",
        "AthenaCompletionQueuePolicy",
    }
    sqs = emulator.client("sqs")
    attributes = sqs.get_queue_attributes(
        QueueUrl=lambda_ids["CompletionQueue"], AttributeNames=["All"]
    )["Attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(
        ":" + lambda_ids["CompletionDeadLetterQueue"].rsplit("/", 1)[-1]
    )
    assert int(redrive["maxReceiveCount"]) == 10
    policy = json.loads(attributes["Policy"])
    assert policy["Statement"][0]["Principal"] == {"Service": "events.amazonaws.com"}

    awslambda = emulator.client("lambda")
    [mapping] = awslambda.list_event_source_mappings(FunctionName="gluerunner")[
        "EventSourceMappings"
    ]
    assert mapping["EventSourceArn"] == attributes["QueueArn"]
    assert mapping["BatchSize"] == 10
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    variables = awslambda.get_function(FunctionName="gluerunner")["Configuration"]["Environment"][
        "Variables"
    ]
    assert variables["RUNNERS_COMPLETION_EVENTS"] == "true"
    assert (variables["RUNNERS_CHECK_INTERVAL_SECONDS"], variables["RUNNERS_LEASE_SECONDS"]) == (
        "60",
        "300",
    )

    task = emulator.client("ecs").describe_task_definition(taskDefinition="runner-service")
    [container] = task["taskDefinition"]["containerDefinitions"]
    environment = {item["name"]: item["value"] for item in container["environment"]}
    assert environment["RUNNERS_GLUE_COMPLETION_QUEUE_URL"] == service_ids["GlueCompletionQueue"]
    assert (
        environment["RUNNERS_ATHENA_COMPLETION_QUEUE_URL"] == service_ids["AthenaCompletionQueue"]
    )
    assert "RUNNERS_CRAWLER_COMPLETION_QUEUE_URL" not in environment  # not served

    for name, ids in events_on.items():
        table = emulator.client("dynamodb").describe_table(TableName=ids["JobTable"])["Table"]
        indexes = {index["IndexName"] for index in table["GlobalSecondaryIndexes"]}
        assert indexes == {"by-lease", "by-event"}, name
    iam = emulator.client("iam")
    document = iam.get_role_policy(RoleName=service_ids["TaskRole"], PolicyName="runners")[
        "PolicyDocument"
    ]
    if isinstance(document, str):  # moto keeps a stack's inline policy as Python's repr
        document = ast.literal_eval(document)
    sqs_resources = [
        s["Resource"] for s in document["Statement"] if "sqs:ReceiveMessage" in s["Action"]
    ]
    assert sorted(sqs_resources) == sorted(
        sqs.get_queue_attributes(QueueUrl=service_ids[q], AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        for q in ("GlueCompletionQueue", "AthenaCompletionQueue")
    )


def test_a_put_event_reaches_the_glue_queues_and_the_runner_lambda(
    emulator: Emulator, events_on: dict[str, dict[str, str]]
) -> None:
    """The service's Glue queue receives the event (Athena's does not); the Lambda
    stack's queue hands it to the function through the mapping, whose completion path
    finds no task for the run and returns it for a later try."""
    service_ids = events_on["runner-service"]
    emulator.lambdas.clear()
    sqs = emulator.client("sqs")
    answer = emulator.client("events").put_events(Entries=[glue_event("jr_completion_events")])
    assert answer["FailedEntryCount"] == 0

    [message] = wait_until(
        lambda: sqs.receive_message(
            QueueUrl=service_ids["GlueCompletionQueue"], WaitTimeSeconds=1
        ).get("Messages")
    )
    event = json.loads(message["Body"])
    assert (event["source"], event["detail-type"]) == ("aws.glue", "Glue Job State Change")
    assert event["detail"]["jobRunId"] == "jr_completion_events"
    athena = sqs.receive_message(QueueUrl=service_ids["AthenaCompletionQueue"])
    assert "Messages" not in athena

    emulator.lambdas.wait_idle(timeout=120)
    [invocation] = [i for i in emulator.lambdas.invocations if i.function_name == "gluerunner"]
    invocation.raise_for_error()
    [record] = invocation.event["Records"]
    assert record["eventSource"] == "aws:sqs"
    assert json.loads(record["body"])["detail"]["jobRunId"] == "jr_completion_events"
    assert invocation.result["events"] == 1
    assert invocation.result["naming_jobs"] == 1
    assert invocation.result["batchItemFailures"] == [{"itemIdentifier": record["messageId"]}]
