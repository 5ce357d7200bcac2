"""Lambda functions run their deployed package; EventBridge delivers to functions and
state machines, and scheduled rules fire.

References: Lambda "Defined runtime environment variables"
(https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime),
"Lambda context object in Python"
(https://docs.aws.amazon.com/lambda/latest/dg/python-context.html), EventBridge "Event
patterns" and "Creating a rule that runs on a schedule"
(https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-rule-schedule.html),
and "Amazon EventBridge targets" (Step Functions: StartExecution with the event as input)
(https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-targets.html).
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from typing import Any

import pytest

from runners.local import Emulator
from tests.helpers import create_machine, wait_until

RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"

HANDLER = """
import json, os, time

def handler(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("fail"):
        raise ValueError("asked to fail")
    if event.get("import"):
        __import__(event["import"])
    return {
        "event": event,
        "function": context.function_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "request_id": context.aws_request_id,
        "greeting": os.environ.get("GREETING"),
        "region": os.environ["AWS_REGION"],
        "task_root": os.environ["LAMBDA_TASK_ROOT"],
        "endpoint": os.environ["AWS_ENDPOINT_URL"],
    }
"""


def package(source: str = HANDLER) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app/__init__.py", "")
        archive.writestr("app/main.py", source)
    return buffer.getvalue()


def create_function(aws: Emulator, name: str = "echo", timeout: int = 30) -> str:
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role = aws.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    response = aws.client("lambda").create_function(
        FunctionName=name,
        Runtime=RUNTIME,
        Role=role["Role"]["Arn"],
        Handler="app.main.handler",
        Code={"ZipFile": package()},
        Timeout=timeout,
        Environment={"Variables": {"GREETING": "hello"}},
    )
    arn: str = response["FunctionArn"]
    return arn


def invoke(aws: Emulator, name: str, event: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    response = aws.client("lambda").invoke(FunctionName=name, Payload=json.dumps(event))
    return json.loads(response["Payload"].read()), response.get("FunctionError")


def test_invoke_runs_the_package_with_the_runtime_environment(aws: Emulator) -> None:
    create_function(aws)
    result, error = invoke(aws, "echo", {"n": 1})
    assert error is None
    assert result["event"] == {"n": 1}
    assert result["function"] == "echo"
    assert result["greeting"] == "hello"
    assert result["region"] == "us-east-1"
    assert result["endpoint"] == aws.endpoint_url
    assert 0 < result["remaining_ms"] <= 30_000
    assert result["request_id"]


def test_the_package_sees_nothing_but_itself_and_the_standard_library(aws: Emulator) -> None:
    """A dependency missing from the zip fails as on AWS, even if the test runner has it."""
    create_function(aws)
    result, error = invoke(aws, "echo", {"import": "yaml"})
    assert error is not None
    assert result["errorType"] == "ModuleNotFoundError"


def test_a_raised_error_is_a_function_error(aws: Emulator) -> None:
    create_function(aws)
    result, error = invoke(aws, "echo", {"fail": True})
    assert error is not None
    assert result == {"errorType": "ValueError", "errorMessage": "asked to fail"}


def test_a_function_past_its_time_limit_is_stopped(aws: Emulator) -> None:
    """ "Task timed out after N seconds"; the emulator's cap shortens the timeout and the
    context's remaining time alike."""
    create_function(aws, timeout=60)
    aws.lambdas.time_limit_seconds = 1
    result, _ = invoke(aws, "echo", {"n": 2})
    assert result["remaining_ms"] <= 1000
    result, error = invoke(aws, "echo", {"sleep": 30})
    assert error is not None
    assert result["errorMessage"] == "Task timed out after 1.00 seconds"


def put_rule(aws: Emulator, name: str, target_arn: str, **rule: Any) -> None:
    events = aws.client("events")
    events.put_rule(Name=name, **rule)
    events.put_targets(Rule=name, Targets=[{"Id": "t", "Arn": target_arn}])


def s3_event(bucket: str = "data", key: str = "in/file.csv") -> dict[str, Any]:
    return {
        "Source": "aws.s3",
        "DetailType": "Object Created",
        "Detail": json.dumps({"bucket": {"name": bucket}, "object": {"key": key}}),
    }


PATTERN = json.dumps({"source": ["aws.s3"], "detail": {"object": {"key": [{"prefix": "in/"}]}}})


def test_a_matching_event_invokes_a_lambda_target(aws: Emulator) -> None:
    arn = create_function(aws)
    put_rule(aws, "to-lambda", arn, EventPattern=PATTERN)
    aws.client("events").put_events(Entries=[s3_event(key="in/a.csv"), s3_event(key="out/b")])
    aws.lambdas.wait_idle()
    [invocation] = aws.lambdas.invocations
    invocation.raise_for_error()
    assert invocation.result["event"]["detail"]["object"]["key"] == "in/a.csv"
    assert invocation.result["event"]["detail-type"] == "Object Created"


def test_a_matching_event_starts_a_state_machine_with_the_event_as_input(aws: Emulator) -> None:
    sfn = aws.client("stepfunctions")
    machine = create_machine(
        sfn, "OnArrival", {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
    )
    put_rule(aws, "to-sfn", machine, EventPattern=PATTERN)
    aws.client("events").put_events(Entries=[s3_event()])
    executions = wait_until(lambda: sfn.list_executions(stateMachineArn=machine)["executions"])
    arn = executions[0]["executionArn"]
    wait_until(lambda: sfn.describe_execution(executionArn=arn)["status"] == "SUCCEEDED")
    execution_input = json.loads(sfn.describe_execution(executionArn=arn)["input"])
    assert execution_input["source"] == "aws.s3"
    assert execution_input["detail"]["object"]["key"] == "in/file.csv"


def test_disabled_and_schedule_only_rules_deliver_no_events(aws: Emulator) -> None:
    arn = create_function(aws)
    put_rule(aws, "disabled", arn, EventPattern=PATTERN, State="DISABLED")
    put_rule(aws, "schedule", arn, ScheduleExpression="rate(1 minute)")
    aws.client("events").put_events(Entries=[s3_event()])
    aws.lambdas.wait_idle()
    assert aws.lambdas.invocations == []


@pytest.mark.parametrize("state", ["ENABLED", "DISABLED"])
def test_fire_schedules_sends_each_enabled_scheduled_rule_a_scheduled_event(
    aws: Emulator, state: str
) -> None:
    """A scheduled rule's target receives ``"detail-type": "Scheduled Event"`` from
    ``"source": "aws.events"`` naming the rule in ``resources``; a constant ``Input``
    replaces the event."""
    arn = create_function(aws)
    events = aws.client("events")
    events.put_rule(Name="tick", ScheduleExpression="rate(1 minute)", State=state)
    events.put_targets(Rule="tick", Targets=[{"Id": "t", "Arn": arn}])
    events.put_rule(Name="const", ScheduleExpression="rate(5 minutes)")
    events.put_targets(Rule="const", Targets=[{"Id": "t", "Arn": arn, "Input": '{"k": 1}'}])

    fired = aws.fire_schedules()
    aws.lambdas.wait_idle()

    assert sorted(fired) == (["const", "tick"] if state == "ENABLED" else ["const"])
    received = [invocation.result["event"] for invocation in aws.lambdas.invocations]
    assert {"k": 1} in received
    scheduled = [event for event in received if event != {"k": 1}]
    if state == "ENABLED":
        [event] = scheduled
        assert event["detail-type"] == "Scheduled Event"
        assert event["source"] == "aws.events"
        assert event["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/tick"]
        assert event["time"].endswith("Z")
        assert "ingestion-time" not in event
    else:
        assert scheduled == []


def test_a_scheduled_event_reaches_other_targets_too(aws: Emulator) -> None:
    sqs, events = aws.client("sqs"), aws.client("events")
    queue = sqs.create_queue(QueueName="ticks")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    events.put_rule(Name="tick", ScheduleExpression="rate(1 minute)")
    events.put_targets(Rule="tick", Targets=[{"Id": "q", "Arn": arn["Attributes"]["QueueArn"]}])
    assert aws.fire_schedules() == ["tick"]
    [message] = sqs.receive_message(QueueUrl=queue)["Messages"]
    event = json.loads(message["Body"])
    assert event["detail-type"] == "Scheduled Event"
    assert event["time"].endswith("Z")
