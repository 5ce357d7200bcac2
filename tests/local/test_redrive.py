"""RedriveExecution and execution status-change events on the emulator.

Each test quotes the AWS behaviour it reproduces: the Step Functions API reference
(https://docs.aws.amazon.com/step-functions/latest/apireference/API_RedriveExecution.html,
API_DescribeExecution.html) and the EventBridge event reference
(https://docs.aws.amazon.com/step-functions/latest/dg/cw-events.html).
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from runners.local import Emulator
from runners.local.stepfunctions import backend_for_arn
from tests.helpers import create_machine, error_code, events, finished, wait_until


@pytest.fixture
def sfn(aws: Emulator) -> Any:
    return aws.client("stepfunctions")


@pytest.fixture
def activity(sfn: Any) -> str:
    arn: str = sfn.create_activity(name="Work")["activityArn"]
    return arn


def task(activity: str, **fields: Any) -> dict[str, Any]:
    return {"Type": "Task", "Resource": activity, **fields}


def parallel_machine(sfn: Any, activity: str) -> str:
    """Two branches, one activity task each, then a Pass."""
    branch = {
        "Pass A": {"Type": "Pass", "Result": "a", "ResultPath": "$.pass", "Next": "Task A"},
        "Task A": task(activity, Parameters={"branch": "A"}, End=True),
    }
    other = {"Task B": task(activity, Parameters={"branch": "B"}, End=True)}
    return create_machine(
        sfn,
        "two-branches",
        {
            "StartAt": "Both",
            "States": {
                "Both": {
                    "Type": "Parallel",
                    "Branches": [
                        {"StartAt": "Pass A", "States": branch},
                        {"StartAt": "Task B", "States": other},
                    ],
                    "Next": "After",
                },
                "After": {"Type": "Pass", "End": True},
            },
        },
    )


def take(sfn: Any, activity: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        found: dict[str, Any] = sfn.get_activity_task(activityArn=activity, workerName="w")
        return found if found.get("taskToken") else None

    return wait_until(probe, timeout=15)


def no_task_scheduled(sfn: Any, activity: str) -> bool:
    return not sfn.get_activity_task(activityArn=activity, workerName="w").get("taskToken")


def failed_parallel_execution(sfn: Any, activity: str) -> str:
    """Branch A succeeds, then branch B fails: the execution fails."""
    execution: str = sfn.start_execution(
        stateMachineArn=parallel_machine(sfn, activity), input='{"day": "2026-12-03"}'
    )["executionArn"]
    tasks = {
        json.loads(t["input"])["branch"]: t for t in (take(sfn, activity), take(sfn, activity))
    }
    sfn.send_task_success(taskToken=tasks["A"]["taskToken"], output='{"rows": 10}')
    wait_until(lambda: events(sfn, execution, "ActivitySucceeded"))
    sfn.send_task_failure(taskToken=tasks["B"]["taskToken"], error="JobFailed", cause="disk")
    assert finished(sfn, execution)["status"] == "FAILED"
    return execution


def test_redrive_runs_only_the_failed_branch_under_the_same_arn(sfn: Any, activity: str) -> None:
    """RedriveExecution: "it continues the failed execution from the unsuccessful step
    and uses the same input. Step Functions preserves the results ... of the successful
    steps, and doesn't rerun these steps"; "For workflows that include an Inline Map or
    Parallel state, RedriveExecution ... redrives only the iterations and branches that
    failed"; "Redriven executions use the same ... execution ARN"."""
    execution = failed_parallel_execution(sfn, activity)
    before = sfn.describe_execution(executionArn=execution)
    assert before["redriveCount"] == 0
    assert before["redriveStatus"] == "REDRIVABLE"

    answer = sfn.redrive_execution(executionArn=execution)

    assert isinstance(answer["redriveDate"], datetime.datetime)
    assert sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"
    again = take(sfn, activity)
    assert json.loads(again["input"]) == {"branch": "B"}  # branch A is not run again
    sfn.send_task_success(taskToken=again["taskToken"], output='{"rows": 20}')
    after = finished(sfn, execution)
    assert after["status"] == "SUCCEEDED"
    assert json.loads(after["output"]) == [{"rows": 10}, {"rows": 20}]
    assert after["redriveCount"] == 1
    assert after["redriveDate"] == answer["redriveDate"]
    assert no_task_scheduled(sfn, activity)
    redriven = events(sfn, execution, "ExecutionRedriven")
    assert [e["executionRedrivenEventDetails"]["redriveCount"] for e in redriven] == [1]
    assert len(events(sfn, execution, "ActivityScheduled")) == 3  # A, B, then B again
    assert len(events(sfn, execution, "ExecutionStarted")) == 1


def test_redrive_after_a_fail_state_fails_there_again(sfn: Any, activity: str) -> None:
    """Redrive "continues the failed execution from the unsuccessful step": after a
    caught error whose path ends in a Fail state, that Fail state is the unsuccessful
    step; the caught task is not run again."""
    machine = create_machine(
        sfn,
        "caught",
        {
            "StartAt": "Job",
            "States": {
                "Job": task(
                    activity,
                    Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Give Up"}],
                    End=True,
                ),
                "Give Up": {"Type": "Fail", "Error": "Handled", "Cause": "notified"},
            },
        },
    )
    execution = sfn.start_execution(stateMachineArn=machine)["executionArn"]
    sfn.send_task_failure(taskToken=take(sfn, activity)["taskToken"], error="JobFailed")
    assert finished(sfn, execution)["error"] == "Handled"

    sfn.redrive_execution(executionArn=execution)

    def failed_again() -> dict[str, Any] | None:
        found: dict[str, Any] = sfn.describe_execution(executionArn=execution)
        return found if found["status"] == "FAILED" and found["redriveCount"] == 1 else None

    assert wait_until(failed_again)["error"] == "Handled"
    assert len(events(sfn, execution, "ActivityScheduled")) == 1
    assert no_task_scheduled(sfn, activity)


def test_only_unsuccessful_executions_can_be_redriven(sfn: Any, activity: str) -> None:
    """ExecutionNotRedrivable: "The execution Amazon Resource Name (ARN) that you
    specified for executionArn cannot be redriven." DescribeExecution redriveStatus
    NOT_REDRIVABLE with a reason such as "Execution is RUNNING and cannot be
    redriven"."""
    machine = create_machine(
        sfn, "plain", {"StartAt": "Job", "States": {"Job": task(activity, End=True)}}
    )
    execution = sfn.start_execution(stateMachineArn=machine)["executionArn"]
    running = sfn.describe_execution(executionArn=execution)
    assert running["redriveStatus"] == "NOT_REDRIVABLE"
    assert running["redriveStatusReason"] == "Execution is RUNNING and cannot be redriven."
    with pytest.raises(ClientError) as refused:
        sfn.redrive_execution(executionArn=execution)
    assert error_code(refused.value) == "ExecutionNotRedrivable"

    sfn.send_task_success(taskToken=take(sfn, activity)["taskToken"], output="{}")
    done = finished(sfn, execution)
    assert done["redriveStatusReason"] == "Execution is SUCCEEDED and cannot be redriven."
    with pytest.raises(ClientError) as refused:
        sfn.redrive_execution(executionArn=execution)
    assert error_code(refused.value) == "ExecutionNotRedrivable"


def test_the_redrive_window_is_14_days(sfn: Any, activity: str) -> None:
    """ "You can redrive executions ... if ... the execution [stopped] within the last
    14 days"; later, redriveStatusReason "Execution redrivable period exceeded"."""
    execution = failed_parallel_execution(sfn, activity)
    model = backend_for_arn(execution).describe_execution(execution)
    model.stop_date -= datetime.timedelta(days=15)

    description = sfn.describe_execution(executionArn=execution)

    assert description["redriveStatus"] == "NOT_REDRIVABLE"
    assert description["redriveStatusReason"] == "Execution redrivable period exceeded."
    with pytest.raises(ClientError) as refused:
        sfn.redrive_execution(executionArn=execution)
    assert error_code(refused.value) == "ExecutionNotRedrivable"


def test_an_unknown_execution_does_not_exist(sfn: Any, activity: str) -> None:
    """ExecutionDoesNotExist: "The specified execution does not exist." """
    machine = parallel_machine(sfn, activity)
    unknown = machine.replace(":stateMachine:", ":execution:") + ":never-started"
    with pytest.raises(ClientError) as refused:
        sfn.redrive_execution(executionArn=unknown)
    assert error_code(refused.value) == "ExecutionDoesNotExist"


def test_a_repeated_client_token_redrives_once(sfn: Any, activity: str) -> None:
    """clientToken: "A unique, case-sensitive identifier that you provide to ensure the
    idempotency of the request." """
    execution = failed_parallel_execution(sfn, activity)

    first = sfn.redrive_execution(executionArn=execution, clientToken="night-of-12-03")
    second = sfn.redrive_execution(executionArn=execution, clientToken="night-of-12-03")

    assert second["redriveDate"] == first["redriveDate"]
    assert sfn.describe_execution(executionArn=execution)["redriveCount"] == 1
    listed = sfn.list_executions(
        stateMachineArn=execution.rsplit(":", 1)[0].replace(":execution:", ":stateMachine:")
    )["executions"]
    assert [item["redriveCount"] for item in listed] == [1]


def test_an_ended_execution_sends_a_status_change_event(
    aws: Emulator, sfn: Any, activity: str
) -> None:
    """EventBridge "Step Functions Execution Status Change": source "aws.states",
    detail with executionArn, stateMachineArn, name, status, startDate/stopDate (epoch
    ms), input, error, cause, redriveCount, redriveStatus."""
    sqs, rules = aws.client("sqs"), aws.client("events")
    url = sqs.create_queue(QueueName="failed-executions")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    pattern = {
        "source": ["aws.states"],
        "detail-type": ["Step Functions Execution Status Change"],
        "detail": {"status": ["FAILED", "TIMED_OUT", "ABORTED"]},
    }
    rules.put_rule(Name="failures", EventPattern=json.dumps(pattern))
    rules.put_targets(Rule="failures", Targets=[{"Id": "queue", "Arn": arn}])

    execution = failed_parallel_execution(sfn, activity)

    message = wait_until(lambda: sqs.receive_message(QueueUrl=url).get("Messages"))[0]
    event = json.loads(message["Body"])
    assert event["source"] == "aws.states"
    assert event["detail-type"] == "Step Functions Execution Status Change"
    assert event["resources"] == [execution]
    detail = event["detail"]
    assert detail["executionArn"] == execution
    assert detail["status"] == "FAILED"
    assert detail["error"] == "JobFailed"
    assert json.loads(detail["input"]) == {"day": "2026-12-03"}
    assert detail["redriveCount"] == 0
    assert detail["redriveStatus"] == "REDRIVABLE"
    assert detail["stopDate"] >= detail["startDate"] > 1_700_000_000_000


def test_history_in_reverse_order_and_in_pages(sfn: Any, activity: str) -> None:
    """GetExecutionHistory reverseOrder: "Lists events in descending order of their
    timeStamp"; maxResults: "The maximum number of results that are returned per call";
    nextToken: "If nextToken is returned, there are more results available"."""
    execution = failed_parallel_execution(sfn, activity)
    every = sfn.get_execution_history(executionArn=execution)["events"]

    newest = sfn.get_execution_history(executionArn=execution, reverseOrder=True, maxResults=2)
    rest = sfn.get_execution_history(
        executionArn=execution, reverseOrder=True, maxResults=100, nextToken=newest["nextToken"]
    )

    assert [e["id"] for e in newest["events"]] == [every[-1]["id"], every[-2]["id"]]
    assert newest["events"][0]["type"] == "ExecutionFailed"
    assert [e["id"] for e in newest["events"] + rest["events"]] == [
        e["id"] for e in reversed(every)
    ]
    assert "nextToken" not in rest
