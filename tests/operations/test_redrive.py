"""``python -m runners redrive`` and the redrive Lambda, on the emulator: failed
executions from the failure queue (the status-change events a rule routes there) or by
state machine and time window; redriven, or started again, once."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from runners.handlers import redrive as redrive_handler
from runners.local import REGION, Emulator
from runners.operations.redrive import Action, Failure, Redriver, rerun_name
from tests.helpers import create_machine, events, finished, wait_until

PATTERN = {
    "source": ["aws.states"],
    "detail-type": ["Step Functions Execution Status Change"],
    "detail": {"status": ["FAILED", "TIMED_OUT", "ABORTED"]},
}


@pytest.fixture
def sfn(aws: Emulator) -> Any:
    return aws.client("stepfunctions")


@pytest.fixture
def sqs(aws: Emulator) -> Any:
    return aws.client("sqs")


@pytest.fixture
def activity(sfn: Any) -> str:
    arn: str = sfn.create_activity(name="Nightly")["activityArn"]
    return arn


@pytest.fixture
def failure_queue(aws: Emulator, sqs: Any) -> str:
    """The triggers-and-notifications stack's failure queue and its rule."""
    url: str = sqs.create_queue(QueueName="etl-failures")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    rules = aws.client("events")
    rules.put_rule(Name="failed-executions", EventPattern=json.dumps(PATTERN))
    rules.put_targets(Rule="failed-executions", Targets=[{"Id": "queue", "Arn": arn}])
    return url


def job(activity: str, **fields: Any) -> dict[str, Any]:
    return {"Type": "Task", "Resource": activity, "HeartbeatSeconds": 60, **fields}


def nightly_machine(sfn: Any, activity: str) -> str:
    """Load, then transform: the redrive must not load again."""
    return create_machine(
        sfn,
        "nightly",
        {
            "StartAt": "Load",
            "States": {
                "Load": job(activity, Parameters={"step": "load"}, ResultPath="$.load", Next="T"),
                "T": job(activity, Parameters={"step": "transform"}, End=True),
            },
        },
    )


def caught_machine(sfn: Any, activity: str) -> str:
    """A caught error ends in a Fail state: a redrive would only fail there again."""
    return create_machine(
        sfn,
        "caught",
        {
            "StartAt": "Load",
            "States": {
                "Load": job(
                    activity,
                    Parameters={"step": "load"},
                    Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Failed After Notifying"}],
                    End=True,
                ),
                "Failed After Notifying": {"Type": "Fail", "Error": "LoadFailed"},
            },
        },
    )


def take(sfn: Any, activity: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        task: dict[str, Any] = sfn.get_activity_task(activityArn=activity, workerName="test")
        return task if task.get("taskToken") else None

    return wait_until(probe, timeout=15)


def step(task: dict[str, Any]) -> str:
    return str(json.loads(task["input"])["step"])


def fail_at_transform(sfn: Any, activity: str, machine: str, name: str) -> str:
    execution: str = sfn.start_execution(
        stateMachineArn=machine, name=name, input='{"day": "2026-12-02"}'
    )["executionArn"]
    load = take(sfn, activity)
    assert step(load) == "load"
    sfn.send_task_success(taskToken=load["taskToken"], output='{"rows": 5}')
    transform = take(sfn, activity)
    sfn.send_task_failure(taskToken=transform["taskToken"], error="GlueJobFailedError")
    assert finished(sfn, execution)["status"] == "FAILED"
    return execution


def queued(sqs: Any, url: str, count: int) -> None:
    """Wait until ``count`` failure events are on the queue (without taking them)."""

    def probe() -> bool:
        attributes = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) >= count

    wait_until(probe)


def test_a_queued_failure_is_redriven_once(
    sfn: Any, sqs: Any, activity: str, failure_queue: str
) -> None:
    execution = fail_at_transform(sfn, activity, nightly_machine(sfn, activity), "night-1")
    queued(sqs, failure_queue, 1)
    event = sqs.receive_message(QueueUrl=failure_queue, VisibilityTimeout=0)["Messages"][0]

    first = Redriver(sfn).from_queue(sqs, failure_queue)

    assert [(o.execution_arn, o.action) for o in first] == [(execution, Action.REDRIVEN)]
    again = take(sfn, activity)
    assert step(again) == "transform"  # the load is not run again
    # The same failure delivered twice, and a second run on it: nothing more happens.
    sqs.send_message(QueueUrl=failure_queue, MessageBody=event["Body"])
    second = Redriver(sfn).from_queue(sqs, failure_queue)
    assert [o.action for o in second] == [Action.SKIPPED]
    assert "redriven since" in second[0].reason
    sfn.send_task_success(taskToken=again["taskToken"], output='{"ok": true}')
    assert finished(sfn, execution)["status"] == "SUCCEEDED"
    assert len(events(sfn, execution, "ExecutionRedriven")) == 1
    assert Redriver(sfn).from_queue(sqs, failure_queue) == []  # every message was deleted


def test_a_failure_in_a_fail_state_starts_a_new_execution_once(
    sfn: Any, sqs: Any, activity: str, failure_queue: str
) -> None:
    machine = caught_machine(sfn, activity)
    execution = sfn.start_execution(
        stateMachineArn=machine, name="night-2", input='{"day": "2026-12-02"}'
    )["executionArn"]
    sfn.send_task_failure(taskToken=take(sfn, activity)["taskToken"], error="JobFailed")
    assert finished(sfn, execution)["error"] == "LoadFailed"
    queued(sqs, failure_queue, 1)
    event = sqs.receive_message(QueueUrl=failure_queue, VisibilityTimeout=0)["Messages"][0]

    [outcome] = Redriver(sfn).from_queue(sqs, failure_queue)

    assert outcome.action is Action.STARTED
    assert "Fail state 'Failed After Notifying'" in outcome.reason
    assert outcome.new_execution_arn == f"{machine.replace(':stateMachine:', ':execution:')}:" + (
        rerun_name("night-2", Failure(execution, 0))
    )
    rerun = sfn.describe_execution(executionArn=outcome.new_execution_arn)
    assert json.loads(rerun["input"]) == {"day": "2026-12-02"}
    assert step(take(sfn, activity)) == "load"
    sqs.send_message(QueueUrl=failure_queue, MessageBody=event["Body"])
    [second] = Redriver(sfn).from_queue(sqs, failure_queue)
    assert second.action is Action.SKIPPED
    assert second.reason == "started again earlier (RUNNING)"
    assert sfn.describe_execution(executionArn=execution)["redriveCount"] == 0
    assert len(sfn.list_executions(stateMachineArn=machine)["executions"]) == 2


def test_failures_listed_by_state_machine_and_window(sfn: Any, activity: str) -> None:
    machine = nightly_machine(sfn, activity)
    execution = fail_at_transform(sfn, activity, machine, "night-3")
    now = datetime.datetime.now(tz=datetime.UTC)
    redriver = Redriver(sfn)

    too_old = redriver.from_listing(
        [machine], now - datetime.timedelta(days=3), now - datetime.timedelta(days=1)
    )
    assert too_old == []
    [outcome] = redriver.from_listing([machine], now - datetime.timedelta(hours=1), now)
    assert (outcome.execution_arn, outcome.action) == (execution, Action.REDRIVEN)
    task = take(sfn, activity)
    assert step(task) == "transform"
    # Failing again after one redrive: the next run leaves it to a person.
    sfn.send_task_failure(taskToken=task["taskToken"], error="GlueJobFailedError")
    wait_until(lambda: sfn.describe_execution(executionArn=execution)["status"] == "FAILED")
    later = datetime.datetime.now(tz=datetime.UTC)
    [again] = redriver.from_listing([machine], now - datetime.timedelta(hours=1), later)
    assert again.action is Action.SKIPPED
    assert again.reason == "failed again after 1 reruns; left for a person"
    assert sfn.describe_execution(executionArn=execution)["redriveCount"] == 1


def test_a_dry_run_changes_nothing(sfn: Any, sqs: Any, activity: str, failure_queue: str) -> None:
    execution = fail_at_transform(sfn, activity, nightly_machine(sfn, activity), "night-4")
    queued(sqs, failure_queue, 1)

    [outcome] = Redriver(sfn, dry_run=True).from_queue(sqs, failure_queue)

    assert outcome.action is Action.REDRIVEN
    description = sfn.describe_execution(executionArn=execution)
    assert (description["status"], description["redriveCount"]) == ("FAILED", 0)
    queued(sqs, failure_queue, 1)  # the message stays for the real run


def test_an_unreadable_message_is_kept_and_reported(sfn: Any, sqs: Any, failure_queue: str) -> None:
    sqs.send_message(QueueUrl=failure_queue, MessageBody="not json {")

    [outcome] = Redriver(sfn).from_queue(sqs, failure_queue)

    assert (outcome.execution_arn, outcome.action) == ("", Action.SKIPPED)
    assert "not an execution status-change event" in outcome.reason
    queued(sqs, failure_queue, 1)


def test_the_lambda_redrives_the_queue(
    aws: Emulator, sfn: Any, sqs: Any, activity: str, failure_queue: str
) -> None:
    execution = fail_at_transform(sfn, activity, nightly_machine(sfn, activity), "night-5")
    queued(sqs, failure_queue, 1)
    environ = {"RUNNERS_FAILURE_QUEUE_URL": failure_queue, "AWS_REGION": REGION}

    result = redrive_handler.handler({}, None, environ)

    assert (result["redriven"], result["error"]) == (1, 0)
    assert result["outcomes"][0]["execution_arn"] == execution
    assert sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"
    assert redrive_handler.handler({}, None, environ)["outcomes"] == []


def run_cli(aws: Emulator, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runners", "redrive", "--region", REGION, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **aws.client_env()},
    )


def test_the_cli_reports_json_and_rejects_bad_input(
    aws: Emulator, sfn: Any, sqs: Any, activity: str, failure_queue: str
) -> None:
    execution = fail_at_transform(sfn, activity, nightly_machine(sfn, activity), "night-6")
    queued(sqs, failure_queue, 1)

    done = run_cli(aws, "--queue", failure_queue, "--json")

    assert done.returncode == 0, done.stderr
    [outcome] = json.loads(done.stdout)["outcomes"]
    assert (outcome["execution_arn"], outcome["action"]) == (execution, "redriven")
    bad = run_cli(aws, "--state-machine", "arn:x", "--since", "yesterday")
    assert bad.returncode == 2
    assert "give minutes, hours or days" in bad.stderr
    missing = run_cli(aws, "--queue", failure_queue.replace("etl-failures", "nope"))
    assert missing.returncode == 1
    assert missing.stderr.startswith("AWS error:")


def test_an_aborted_execution_is_left_unless_asked(sfn: Any, activity: str) -> None:
    machine = nightly_machine(sfn, activity)
    execution = sfn.start_execution(stateMachineArn=machine, name="night-7")["executionArn"]
    take(sfn, activity)
    sfn.stop_execution(executionArn=execution, error="Operator", cause="bad input file")
    assert finished(sfn, execution)["status"] == "ABORTED"
    failure = Failure(execution, 0)

    left = Redriver(sfn).handle(failure)
    taken = Redriver(sfn, include_aborted=True).handle(failure)

    assert (left.action, left.reason) == (Action.SKIPPED, "it was stopped on purpose (ABORTED)")
    assert taken.action is Action.REDRIVEN
    assert step(take(sfn, activity)) == "load"  # the load never finished: it runs again
