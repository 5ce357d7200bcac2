"""Step Functions activity tasks on the emulator, through boto3 and aiobotocore.

Each test names the AWS behaviour it reproduces and quotes the AWS Step Functions API
reference (https://docs.aws.amazon.com/step-functions/latest/apireference/).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from runners.local import Emulator
from tests.conftest import POLL_SECONDS, ClientFactory
from tests.helpers import (
    activity_machine,
    create_machine,
    error_code,
    events,
    finished,
    wait_until,
)


@pytest.fixture
def sfn(client: ClientFactory) -> Any:
    return client("stepfunctions")


@pytest.fixture
def activity(sfn: Any) -> str:
    arn: str = sfn.create_activity(name="Work")["activityArn"]
    return arn


def start(sfn: Any, machine: str, payload: dict[str, Any] | None = None) -> str:
    arn: str = sfn.start_execution(stateMachineArn=machine, input=json.dumps(payload or {}))[
        "executionArn"
    ]
    return arn


def poll(sfn: Any, activity: str, worker: str = "worker-1", polls: int = 5) -> dict[str, Any]:
    """Long-poll as a worker does until a task comes (at most ``polls`` polls)."""
    for _ in range(polls):
        task: dict[str, Any] = sfn.get_activity_task(activityArn=activity, workerName=worker)
        if task.get("taskToken"):
            return task
    raise AssertionError(f"no task within {polls} polls")


# 1. GetActivityTask -------------------------------------------------------------------


def test_get_activity_task_returns_the_scheduled_task_and_logs_the_worker(
    sfn: Any, activity: str
) -> None:
    """GetActivityTask: "Used by workers to retrieve a task (with the specified activity
    ARN) which has been scheduled for execution by a running state machine."
    workerName: "This name is used when it is logged in the execution history."
    """
    execution = start(sfn, activity_machine(sfn, "one", activity), {"job": "a"})

    task = poll(sfn, activity, worker="glue-worker-7")

    assert json.loads(task["input"]) == {"job": "a"}
    started = wait_until(lambda: events(sfn, execution, "ActivityStarted"))
    assert started[0]["activityStartedEventDetails"] == {"workerName": "glue-worker-7"}
    sfn.send_task_success(taskToken=task["taskToken"], output='{"done": true}')
    description = finished(sfn, execution)
    assert description["status"] == "SUCCEEDED"
    assert json.loads(description["output"]) == {"done": True}


def test_a_task_whose_input_is_a_json_string_gets_it_json_encoded(sfn: Any, activity: str) -> None:
    """GetActivityTask ``input``: "The string that contains the JSON input data for the
    task." A state whose input is a JSON string (the original sample's Pass states with a
    string ``Result``) delivers that string's JSON text, which the original sample's
    runners decode twice (``json.loads(json.loads(response['input']))``)."""
    document = '{"GlueJobName" : "ProcessSalesData"}'
    machine = create_machine(
        sfn,
        "prep",
        {
            "StartAt": "Prep",
            "States": {
                "Prep": {"Type": "Pass", "Result": document, "Next": "Work"},
                "Work": {"Type": "Task", "Resource": activity, "End": True},
            },
        },
    )
    start(sfn, machine)

    task = poll(sfn, activity)

    assert task["input"] == json.dumps(document)
    assert json.loads(json.loads(task["input"])) == {"GlueJobName": "ProcessSalesData"}


def test_task_tokens_are_opaque_and_as_long_as_aws_makes_them(sfn: Any, activity: str) -> None:
    """GetActivityTask taskToken: "The string that represents a task token" of "Length
    Constraints: Minimum length of 1. Maximum length of 2048"; AWS's are opaque base64
    text of several hundred characters (moto's are 36-character UUIDs)."""
    machine = activity_machine(sfn, "tokens", activity)
    start(sfn, machine)
    start(sfn, machine)

    first, second = poll(sfn, activity), poll(sfn, activity)

    for task in (first, second):
        assert 500 <= len(task["taskToken"]) <= 2048
        assert re.fullmatch(r"[A-Za-z0-9+/=]+", task["taskToken"])
    assert first["taskToken"] != second["taskToken"]
    sfn.send_task_success(taskToken=first["taskToken"], output="{}")


def test_a_poll_waits_for_a_task_scheduled_after_it_began(sfn: Any, activity: str) -> None:
    """GetActivityTask: "the service holds the HTTP connection open and responds as soon
    as a task becomes available"."""
    machine = activity_machine(sfn, "late", activity)
    starter = threading.Timer(0.3, lambda: start(sfn, machine))
    starter.start()
    began = time.monotonic()

    task = poll(sfn, activity)
    waited = time.monotonic() - began
    starter.join(timeout=10)  # its call must end before the test's client closes

    assert task["taskToken"]
    assert waited < POLL_SECONDS


def test_an_empty_poll_returns_no_token_after_the_long_poll(sfn: Any, activity: str) -> None:
    """GetActivityTask: "If no task is available within 60 seconds, the poll returns a
    taskToken with a null string." (The test emulator holds polls for POLL_SECONDS.)"""
    began = time.monotonic()

    response = sfn.get_activity_task(activityArn=activity, workerName="idle")

    assert not response.get("taskToken")
    assert POLL_SECONDS * 0.9 <= time.monotonic() - began < POLL_SECONDS + 1.5


def test_each_task_goes_to_exactly_one_of_many_concurrent_pollers(sfn: Any, activity: str) -> None:
    """A task is assigned to one worker: "Used by workers to retrieve a task ... the
    task token ... identifies the task" for the worker it was handed to."""
    machine = activity_machine(sfn, "fanout", activity)
    for index in range(12):
        start(sfn, machine, {"n": index})

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(
            pool.map(
                lambda n: sfn.get_activity_task(activityArn=activity, workerName=f"w{n}"), range(20)
            )
        )

    tokens = [r["taskToken"] for r in responses if r.get("taskToken")]
    inputs = sorted(json.loads(r["input"])["n"] for r in responses if r.get("taskToken"))
    assert len(tokens) == 12
    assert len(set(tokens)) == 12
    assert inputs == list(range(12))


def test_unknown_activity_answers_activity_does_not_exist(sfn: Any) -> None:
    """GetActivityTask errors: "ActivityDoesNotExist: The specified activity does not
    exist." and "InvalidArn: The provided Amazon Resource Name (ARN) is not valid." """
    missing = "arn:aws:states:us-east-1:123456789012:activity:Nobody"
    with pytest.raises(ClientError) as raised:
        sfn.get_activity_task(activityArn=missing)
    assert error_code(raised.value) == "ActivityDoesNotExist"

    with pytest.raises(ClientError) as raised:
        sfn.get_activity_task(activityArn="not-an-arn")
    assert error_code(raised.value) == "InvalidArn"


@pytest.mark.slow
def test_the_default_long_poll_lasts_sixty_seconds(aws: Emulator) -> None:
    """GetActivityTask: "The maximum time the service holds on to the request before
    responding is 60 seconds." The emulator keeps that default."""
    from runners.local import stepfunctions

    saved = stepfunctions.Settings.poll_seconds
    stepfunctions.Settings.poll_seconds = Emulator().activity_poll_seconds
    try:
        sfn = aws.client("stepfunctions")
        activity = sfn.create_activity(name="Quiet")["activityArn"]
        began = time.monotonic()
        assert not sfn.get_activity_task(activityArn=activity).get("taskToken")
        assert 59.0 <= time.monotonic() - began < 62.0
    finally:
        stepfunctions.Settings.poll_seconds = saved


# 2. Activities are visible to running executions ----------------------------------------


def test_activities_created_with_create_activity_serve_executions(sfn: Any) -> None:
    """CreateActivity: "Creates an activity. An activity is a task that you write in any
    programming language and host on any machine that has access to Step Functions."
    An execution's activity Task state is served by that activity's workers."""
    machine_first = {
        "StartAt": "W",
        "States": {
            "W": {
                "Type": "Task",
                "Resource": "arn:aws:states:us-east-1:123456789012:activity:Later",
                "End": True,
            }
        },
    }
    machine = create_machine(sfn, "defined-before-activity", machine_first)
    activity = sfn.create_activity(name="Later")["activityArn"]
    execution = start(sfn, machine)

    sfn.send_task_success(taskToken=poll(sfn, activity)["taskToken"], output="{}")

    assert finished(sfn, execution)["status"] == "SUCCEEDED"


def test_create_activity_is_idempotent(sfn: Any) -> None:
    """CreateActivity: "CreateActivity is an idempotent API. Subsequent requests won't
    create a duplicate resource if it was already created." """
    first = sfn.create_activity(name="Twice")["activityArn"]
    second = sfn.create_activity(name="Twice")["activityArn"]

    assert first == second
    assert [a["name"] for a in sfn.list_activities()["activities"]] == ["Twice"]


def test_an_execution_whose_activity_does_not_exist_fails(sfn: Any) -> None:
    """An activity Task state cannot be scheduled on a missing activity: the execution
    fails instead of waiting forever."""
    ghost = "arn:aws:states:us-east-1:123456789012:activity:Ghost"
    execution = start(sfn, activity_machine(sfn, "ghost", ghost))

    description = finished(sfn, execution)

    assert description["status"] == "FAILED"
    assert description["error"] == "States.Runtime"


# 3. Heartbeats and timeouts -------------------------------------------------------------


def test_heartbeat_is_accepted_without_heartbeat_seconds(sfn: Any, activity: str) -> None:
    """SendTaskHeartbeat: "Used by activity workers ... to report to Step Functions that
    the task represented by the specified taskToken is still making progress." It has
    no precondition on HeartbeatSeconds (moto answers InvalidToken)."""
    execution = start(sfn, activity_machine(sfn, "no-hb", activity))
    token = poll(sfn, activity)["taskToken"]

    sfn.send_task_heartbeat(taskToken=token)
    sfn.send_task_success(taskToken=token, output="{}")

    assert finished(sfn, execution)["status"] == "SUCCEEDED"


def test_heartbeats_keep_a_task_alive_past_heartbeat_seconds(sfn: Any, activity: str) -> None:
    """SendTaskHeartbeat: "This action resets the Heartbeat clock." """
    execution = start(
        sfn, activity_machine(sfn, "beats", activity, HeartbeatSeconds=1, TimeoutSeconds=30)
    )
    token = poll(sfn, activity)["taskToken"]
    for _ in range(5):
        time.sleep(0.4)
        sfn.send_task_heartbeat(taskToken=token)

    sfn.send_task_success(taskToken=token, output="{}")

    assert finished(sfn, execution)["status"] == "SUCCEEDED"


def test_missed_heartbeat_fails_with_heartbeat_timeout(sfn: Any, activity: str) -> None:
    """States.HeartbeatTimeout: "A Task state failed to send a heartbeat for a period
    longer than the HeartbeatSeconds value." SendTaskHeartbeat: "if the task times out,
    the execution history contains an ActivityTimedOut entry for activities"."""
    execution = start(
        sfn, activity_machine(sfn, "silent", activity, HeartbeatSeconds=1, TimeoutSeconds=30)
    )
    poll(sfn, activity)

    description = finished(sfn, execution)

    assert description["status"] == "FAILED"
    assert description["error"] == "States.HeartbeatTimeout"
    timed_out = events(sfn, execution, "ActivityTimedOut")
    assert timed_out[0]["activityTimedOutEventDetails"]["error"] == "States.HeartbeatTimeout"


def test_timeout_seconds_fails_with_states_timeout(sfn: Any, activity: str) -> None:
    """Task state TimeoutSeconds: "If the task runs longer than the specified seconds,
    this state fails with a States.Timeout error name." The count begins "when
    ActivityStarted ... logged"; heartbeats do not extend it: "The Timeout of a task ...
    is its maximum allowed duration, regardless of the number of SendTaskHeartbeat
    requests received." """
    execution = start(sfn, activity_machine(sfn, "slow", activity, TimeoutSeconds=1))
    token = poll(sfn, activity)["taskToken"]
    sfn.send_task_heartbeat(taskToken=token)

    description = finished(sfn, execution)

    assert description["status"] == "FAILED"
    assert description["error"] == "States.Timeout"
    assert events(sfn, execution, "ActivityTimedOut")


def test_a_task_nobody_polls_times_out(sfn: Any, activity: str) -> None:
    """An activity task that no worker picks up within TimeoutSeconds fails with
    States.Timeout instead of waiting forever, and is never handed out afterwards."""
    execution = start(sfn, activity_machine(sfn, "unpolled", activity, TimeoutSeconds=1))

    assert finished(sfn, execution)["error"] == "States.Timeout"
    assert not sfn.get_activity_task(activityArn=activity).get("taskToken")


def test_retry_and_catch_act_on_timeouts(sfn: Any, activity: str) -> None:
    """Retry on States.Timeout schedules a new task; a States.Timeout catcher also
    catches heartbeat timeouts ("States.Timeout: A Task state either ran longer than the
    TimeoutSeconds value, or failed to send a heartbeat for a period longer than the
    HeartbeatSeconds value.")."""
    definition = {
        "StartAt": "Work",
        "States": {
            "Work": {
                "Type": "Task",
                "Resource": activity,
                "HeartbeatSeconds": 1,
                "TimeoutSeconds": 30,
                "Retry": [
                    {"ErrorEquals": ["States.Timeout"], "MaxAttempts": 1, "IntervalSeconds": 1}
                ],
                "Catch": [
                    {"ErrorEquals": ["States.Timeout"], "Next": "Caught", "ResultPath": "$.error"}
                ],
                "End": True,
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }
    execution = start(sfn, create_machine(sfn, "retry-catch", definition))

    first = poll(sfn, activity)["taskToken"]
    second = poll(sfn, activity)["taskToken"]
    description = finished(sfn, execution)

    assert first != second
    assert description["status"] == "SUCCEEDED"
    assert json.loads(description["output"])["error"]["Error"] == "States.HeartbeatTimeout"


# 4. Closed tasks --------------------------------------------------------------------


def test_reports_after_stop_execution_answer_task_timed_out(sfn: Any, activity: str) -> None:
    """TaskTimedOut: "The task token has either expired or the task associated with the
    token has already been closed." StopExecution closes the execution's open task."""
    execution = start(sfn, activity_machine(sfn, "stopped", activity))
    token = poll(sfn, activity)["taskToken"]

    sfn.stop_execution(executionArn=execution)

    assert finished(sfn, execution)["status"] == "ABORTED"
    history = sfn.get_execution_history(executionArn=execution)["events"]
    assert history[-1]["type"] == "ExecutionAborted"
    assert not events(sfn, execution, "ActivityFailed")
    reports: list[tuple[str, dict[str, str]]] = [
        ("send_task_heartbeat", {}),
        ("send_task_success", {"output": "{}"}),
        ("send_task_failure", {"error": "E", "cause": "c"}),
    ]
    for operation, arguments in reports:
        with pytest.raises(ClientError) as raised:
            getattr(sfn, operation)(taskToken=token, **arguments)
        assert error_code(raised.value) == "TaskTimedOut"


def test_reports_after_a_timeout_answer_task_timed_out(sfn: Any, activity: str) -> None:
    """TaskTimedOut: "The task token has either expired ..." """
    execution = start(
        sfn, activity_machine(sfn, "expired", activity, HeartbeatSeconds=1, TimeoutSeconds=10)
    )
    token = poll(sfn, activity)["taskToken"]
    assert finished(sfn, execution)["error"] == "States.HeartbeatTimeout"

    with pytest.raises(ClientError) as raised:
        sfn.send_task_success(taskToken=token, output="{}")
    assert error_code(raised.value) == "TaskTimedOut"


def test_a_second_report_answers_task_timed_out(sfn: Any, activity: str) -> None:
    """TaskTimedOut: "... or the task associated with the token has already been
    closed." The first report closes the task; a re-report cannot change the outcome."""
    execution = start(sfn, activity_machine(sfn, "twice", activity))
    token = poll(sfn, activity)["taskToken"]
    sfn.send_task_success(taskToken=token, output='{"first": true}')

    with pytest.raises(ClientError) as raised:
        sfn.send_task_failure(taskToken=token, error="Late")

    assert error_code(raised.value) == "TaskTimedOut"
    assert json.loads(finished(sfn, execution)["output"]) == {"first": True}


def test_an_unknown_token_answers_invalid_token(sfn: Any) -> None:
    """InvalidToken: "The provided token is not valid." """
    with pytest.raises(ClientError) as raised:
        sfn.send_task_success(taskToken="never-issued", output="{}")
    assert error_code(raised.value) == "InvalidToken"


def test_output_that_is_not_json_answers_invalid_output(sfn: Any, activity: str) -> None:
    """InvalidOutput: "The provided JSON output data is not valid." The task stays open."""
    execution = start(sfn, activity_machine(sfn, "badjson", activity))
    token = poll(sfn, activity)["taskToken"]

    with pytest.raises(ClientError) as raised:
        sfn.send_task_success(taskToken=token, output="not json")
    assert error_code(raised.value) == "InvalidOutput"
    sfn.send_task_success(taskToken=token, output="{}")
    assert finished(sfn, execution)["status"] == "SUCCEEDED"


# 5. Custom errors route through Catch --------------------------------------------------


def test_catch_routes_a_custom_error_with_its_cause(sfn: Any, activity: str) -> None:
    """SendTaskFailure carries "error: The error code of the failure" and "cause: A more
    detailed explanation of the cause of the failure"; a catcher whose ErrorEquals names
    the error handles it, with {"Error", "Cause"} at its ResultPath."""
    definition = {
        "StartAt": "Work",
        "States": {
            "Work": {
                "Type": "Task",
                "Resource": activity,
                "Next": "Done",
                "Catch": [
                    {"ErrorEquals": ["OtherError"], "Next": "Wrong"},
                    {
                        "ErrorEquals": ["GlueJobFailedError"],
                        "Next": "Notify",
                        "ResultPath": "$.failure",
                    },
                ],
            },
            "Notify": {"Type": "Pass", "End": True},
            "Wrong": {"Type": "Fail", "Error": "WrongCatcher"},
            "Done": {"Type": "Succeed"},
        },
    }
    execution = start(sfn, create_machine(sfn, "catch", definition), {"job": "sales"})

    sfn.send_task_failure(
        taskToken=poll(sfn, activity)["taskToken"],
        error="GlueJobFailedError",
        cause='{"state": "FAILED"}',
    )
    description = finished(sfn, execution)

    assert description["status"] == "SUCCEEDED"
    assert json.loads(description["output"]) == {
        "job": "sales",
        "failure": {"Error": "GlueJobFailedError", "Cause": '{"state": "FAILED"}'},
    }
    failed = events(sfn, execution, "ActivityFailed")[0]["activityFailedEventDetails"]
    assert failed == {"error": "GlueJobFailedError", "cause": '{"state": "FAILED"}'}


def test_an_uncaught_custom_error_fails_the_execution(sfn: Any, activity: str) -> None:
    """Without a matching catcher the error fails the execution with that error name."""
    execution = start(sfn, activity_machine(sfn, "uncaught", activity))

    sfn.send_task_failure(
        taskToken=poll(sfn, activity)["taskToken"],
        error="AthenaQueryFailedError",
        cause="syntax error",
    )

    description = finished(sfn, execution)
    assert (description["status"], description["error"], description["cause"]) == (
        "FAILED",
        "AthenaQueryFailedError",
        "syntax error",
    )


# 6. Generated execution names ---------------------------------------------------------


def test_unnamed_executions_get_unique_generated_names(sfn: Any, activity: str) -> None:
    """StartExecution name: "If you don't provide a name for the execution, Step
    Functions automatically generates a universally unique identifier (UUID) as the
    execution name." """
    machine = activity_machine(sfn, "unnamed", activity)

    arns = [sfn.start_execution(stateMachineArn=machine)["executionArn"] for _ in range(3)]

    names = [sfn.describe_execution(executionArn=arn)["name"] for arn in arns]
    assert len(set(names)) == 3
    assert all(len(name) == 36 and name.count("-") == 4 for name in names)


# Done when: 100 executions, Parallel of two activity tasks, 10 pollers --------------------


def test_hundred_parallel_executions_served_by_ten_pollers(aws: Emulator) -> None:
    """Every task of 100 executions of a two-branch Parallel is delivered to exactly one
    of 10 concurrent pollers and every execution SUCCEEDED."""
    sfn = aws.client("stepfunctions", max_pool_connections=20)
    sales = sfn.create_activity(name="Sales")["activityArn"]
    marketing = sfn.create_activity(name="Marketing")["activityArn"]

    def branch(arn: str) -> dict[str, Any]:
        task = {"Type": "Task", "Resource": arn, "TimeoutSeconds": 120, "End": True}
        return {"StartAt": "T", "States": {"T": task}}

    machine = create_machine(
        sfn,
        "parallel",
        {
            "StartAt": "Both",
            "States": {
                "Both": {
                    "Type": "Parallel",
                    "Branches": [branch(sales), branch(marketing)],
                    "End": True,
                }
            },
        },
    )
    executions = [start(sfn, machine, {"n": n}) for n in range(100)]
    delivered: Counter[str] = Counter()
    lock = threading.Lock()

    def serve(activity_arn: str) -> None:
        while True:
            task = sfn.get_activity_task(activityArn=activity_arn, workerName="poller")
            if not task.get("taskToken"):
                return
            with lock:
                delivered[task["taskToken"]] += 1
            sfn.send_task_success(taskToken=task["taskToken"], output=task["input"])

    with ThreadPoolExecutor(max_workers=10) as pool:
        for index in range(10):
            pool.submit(serve, sales if index % 2 else marketing)

    statuses = Counter(finished(sfn, arn, timeout=30)["status"] for arn in executions)
    assert statuses == {"SUCCEEDED": 100}
    assert len(delivered) == 200
    assert set(delivered.values()) == {1}


def test_thousands_of_waiting_executions_cost_one_thread_each(aws: Emulator) -> None:
    """A benchmark holds 10,000 executions waiting on activity tasks in one emulator:
    each waiting execution must cost one thread (moto: two), and a waiting task must not
    wake on a timer (the emulator's one watcher notices ended executions for all)."""
    sfn = aws.client("stepfunctions")
    activity = sfn.create_activity(name="Many")["activityArn"]
    machine = activity_machine(sfn, "many", activity)
    before = threading.active_count()

    executions = [start(sfn, machine) for _ in range(200)]
    wait_until(lambda: len(events(sfn, executions[-1], "ActivityScheduled")) == 1)

    assert threading.active_count() - before <= 200 + 5
    sfn.stop_execution(executionArn=executions[0])
    assert finished(sfn, executions[0])["status"] == "ABORTED"


def test_result_selector_and_result_path_apply_to_a_task_output(sfn: Any, activity: str) -> None:
    """ResultSelector "manipulates a state's result before ResultPath is applied";
    ResultPath "specifies where (in the input) to place the results"."""
    machine = activity_machine(
        sfn,
        "paths",
        activity,
        ResultSelector={"run.$": "$.GlueJobRunId"},
        ResultPath="$.job",
    )
    execution = start(sfn, machine, {"day": "2024-01-01"})
    task = poll(sfn, activity)
    sfn.send_task_success(taskToken=task["taskToken"], output='{"GlueJobRunId": "jr_1"}')

    output = json.loads(finished(sfn, execution)["output"])

    assert output == {"day": "2024-01-01", "job": {"run": "jr_1"}}


def test_an_execution_timeout_still_ends_a_waiting_execution(sfn: Any, activity: str) -> None:
    """``TimeoutSeconds`` of a state machine: "the maximum number of seconds an
    execution of the state machine can run"; it ends TIMED_OUT."""
    machine = create_machine(
        sfn,
        "timed",
        {
            "StartAt": "Work",
            "TimeoutSeconds": 1,
            "States": {"Work": {"Type": "Task", "Resource": activity, "End": True}},
        },
    )
    execution = start(sfn, machine)

    assert finished(sfn, execution, timeout=10)["status"] == "TIMED_OUT"


def test_a_string_output_is_described_as_json(sfn: Any) -> None:
    """DescribeExecution output: "The JSON output data of the execution." A Pass state
    whose Result is a string ends the execution with a JSON string."""
    machine = create_machine(
        sfn,
        "string-output",
        {
            "StartAt": "P",
            "States": {"P": {"Type": "Pass", "Result": "done, with a fallback", "End": True}},
        },
    )

    execution = start(sfn, machine)

    assert json.loads(finished(sfn, execution)["output"]) == "done, with a fallback"
