"""State machines with Glue and Athena activity tasks, served by the real worker on the
embedded emulator."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runners.local import Emulator, RunBehaviour
from tests.helpers import create_machine, events, finished, wait_until
from tests.workers import config, running_worker

ROLE = "arn:aws:iam::123456789012:role/Glue"


# Athena refuses a query with no result location (its own or its workgroup's).
RESULTS = {"AthenaResultOutputLocation": "s3://results/"}


def glue_job(
    aws: Emulator, name: str, behaviour: RunBehaviour | None = None, max_concurrent: int = 1
) -> str:
    aws.client("glue").create_job(
        Name=name,
        Role=ROLE,
        Command={"Name": "glueetl", "ScriptLocation": f"s3://s/{name}.py"},
        ExecutionProperty={"MaxConcurrentRuns": max_concurrent},
    )
    if behaviour is not None:
        aws.glue_runs.set(name, behaviour)
    return name


def task_machine(sfn: Any, name: str, activity: str, catch: str | None = None, **task: Any) -> str:
    work: dict[str, Any] = {"Type": "Task", "Resource": activity, "End": True, **task}
    states: dict[str, Any] = {"Work": work}
    if catch:
        work["Catch"] = [{"ErrorEquals": [catch], "Next": "Handled", "ResultPath": "$.error"}]
        states["Handled"] = {"Type": "Pass", "End": True}
    return create_machine(sfn, name, {"StartAt": "Work", "States": states})


def start(sfn: Any, machine: str, payload: Any) -> str:
    arn: str = sfn.start_execution(stateMachineArn=machine, input=json.dumps(payload))[
        "executionArn"
    ]
    return arn


@pytest.fixture
def sfn(aws: Emulator) -> Any:
    return aws.client("stepfunctions")


@pytest.fixture
def glue_activity(sfn: Any) -> str:
    arn: str = sfn.create_activity(name="GlueRunnerActivity")["activityArn"]
    return arn


@pytest.fixture
def athena_activity(sfn: Any) -> str:
    arn: str = sfn.create_activity(name="AthenaRunnerActivity")["activityArn"]
    return arn


def test_glue_and_athena_tasks_succeed_in_one_worker(
    aws: Emulator, sfn: Any, glue_activity: str, athena_activity: str
) -> None:
    glue_job(aws, "ProcessSalesData", RunBehaviour(duration=1.0))
    aws.athena_queries.add(
        "FROM sales", RunBehaviour(duration=1.0, metrics={"DataScannedInBytes": 4096})
    )
    glue_run = start(
        sfn,
        task_machine(sfn, "glue", glue_activity),
        {"GlueJobName": "ProcessSalesData", "Arguments": {"--day": "2024-01-01"}},
    )
    query = start(
        sfn,
        task_machine(sfn, "athena", athena_activity),
        {
            "AthenaQueryString": "SELECT day, sum(revenue) FROM sales WHERE day = ? GROUP BY day",
            "AthenaDatabase": "sales",
            "ExecutionParameters": ["'2024-01-01'"],
            "AthenaResultOutputLocation": "s3://results/sales/",
        },
    )

    with running_worker(config("glue", glue_activity), config("athena", athena_activity)):
        glue_done, query_done = finished(sfn, glue_run), finished(sfn, query)

    assert glue_done["status"] == "SUCCEEDED"
    glue_output = json.loads(glue_done["output"])
    assert glue_output["GlueJobName"] == "ProcessSalesData"
    assert glue_output["GlueJobRunState"] == "SUCCEEDED"
    assert glue_output["GlueJobCompletedOn"] >= glue_output["GlueJobStartedOn"]
    run = aws.client("glue").get_job_run(
        JobName="ProcessSalesData", RunId=glue_output["GlueJobRunId"]
    )["JobRun"]
    assert run["Arguments"]["--day"] == "2024-01-01"
    assert query_done["status"] == "SUCCEEDED"
    query_output = json.loads(query_done["output"])
    assert query_output["AthenaQueryExecutionState"] == "SUCCEEDED"
    assert query_output["AthenaQueryDataScannedInBytes"] == 4096
    assert query_output["AthenaQueryResultLocation"].startswith("s3://results/sales/")
    execution = aws.client("athena").get_query_execution(
        QueryExecutionId=query_output["AthenaQueryExecutionId"]
    )["QueryExecution"]
    assert execution["ExecutionParameters"] == ["'2024-01-01'"]


def test_a_failed_glue_run_is_caught_as_glue_job_failed_error(
    aws: Emulator, sfn: Any, glue_activity: str
) -> None:
    glue_job(
        aws,
        "Broken",
        RunBehaviour(
            duration=0.5, final_state="FAILED", error_message="AnalysisException: missing table"
        ),
    )
    execution = start(
        sfn,
        task_machine(sfn, "catch-glue", glue_activity, catch="GlueJobFailedError"),
        {"GlueJobName": "Broken"},
    )

    with running_worker(config("glue", glue_activity)):
        done = finished(sfn, execution)

    assert done["status"] == "SUCCEEDED"
    error = json.loads(done["output"])["error"]
    assert error["Error"] == "GlueJobFailedError"
    cause = json.loads(error["Cause"])
    run_id = cause["glue_job_run_id"]
    assert cause == {
        "glue_job_name": "Broken",
        "glue_job_run_id": run_id,
        "glue_job_run_state": "FAILED",
        "glue_job_run_error_msg": "AnalysisException: missing table",
        "glue_job_run_error_log_tail": cause["glue_job_run_error_log_tail"],
        "glue_job_run_error_log": {
            "group": "/aws-glue/jobs/error",
            "stream": run_id,
            "console": cause["glue_job_run_error_log"]["console"],
        },
    }
    assert cause["glue_job_run_error_log_tail"].endswith("\nAnalysisException: missing table")


@pytest.mark.parametrize("final_state", ["TIMEOUT", "ERROR", "STOPPED"])
def test_every_glue_failure_state_is_resolved(
    aws: Emulator, sfn: Any, glue_activity: str, final_state: str
) -> None:
    glue_job(aws, "Ends", RunBehaviour(duration=0.3, final_state=final_state))
    execution = start(sfn, task_machine(sfn, "states", glue_activity), {"GlueJobName": "Ends"})

    with running_worker(config("glue", glue_activity)):
        done = finished(sfn, execution)

    assert (done["status"], done["error"]) == ("FAILED", "GlueJobFailedError")
    assert json.loads(done["cause"])["glue_job_run_state"] == final_state


def test_a_failed_query_is_caught_as_athena_query_failed_error(
    aws: Emulator, sfn: Any, athena_activity: str
) -> None:
    aws.athena_queries.add(
        "broken",
        RunBehaviour(duration=0.3, final_state="FAILED", error_message="SYNTAX_ERROR: line 1:8"),
    )
    execution = start(
        sfn,
        task_machine(sfn, "catch-athena", athena_activity, catch="AthenaQueryFailedError"),
        {"AthenaQueryString": "SELECT broken(", "AthenaDatabase": "db", **RESULTS},
    )

    with running_worker(config("athena", athena_activity)):
        done = finished(sfn, execution)

    error = json.loads(done["output"])["error"]
    assert error["Error"] == "AthenaQueryFailedError"
    cause = json.loads(error["Cause"])
    assert cause["AthenaQueryExecutionState"] == "FAILED"
    assert cause["AthenaQueryExecutionStateChangeReason"] == "SYNTAX_ERROR: line 1:8"


def test_a_query_athena_queues_again_is_reported_when_it_ends(
    aws: Emulator, sfn: Any, athena_activity: str
) -> None:
    """QueryExecutionStatus: "For queries that experience certain transient errors, the
    state transitions from RUNNING back to QUEUED": the task waits through it."""
    aws.athena_queries.add(
        "flaky", RunBehaviour(phases=(("RUNNING", 0.3), ("QUEUED", 1.0), ("RUNNING", 0.3)))
    )
    execution = start(
        sfn,
        task_machine(sfn, "flaky", athena_activity),
        {"AthenaQueryString": "SELECT flaky", "AthenaDatabase": "db", **RESULTS},
    )

    with running_worker(config("athena", athena_activity)):
        done = finished(sfn, execution, timeout=15)

    assert done["status"] == "SUCCEEDED"
    assert json.loads(done["output"])["AthenaQueryExecutionState"] == "SUCCEEDED"


def test_invalid_input_fails_its_task_while_others_succeed(
    aws: Emulator, sfn: Any, glue_activity: str
) -> None:
    glue_job(aws, "Good", RunBehaviour(duration=0.5), max_concurrent=10)
    machine = task_machine(sfn, "mixed", glue_activity)
    bad_inputs = [  # execution input exactly as a state machine would pass it on
        '"not json at all"',
        "[1, 2]",
        '{"GlueJobName": 42}',
        '{"GlueJobName": "Good", "Arguments": ["--x"]}',
        '{"Arguments": {}}',
    ]
    bad = [
        sfn.start_execution(stateMachineArn=machine, input=raw)["executionArn"]
        for raw in bad_inputs
    ]
    good = [start(sfn, machine, {"GlueJobName": "Good"}) for _ in range(3)]

    with running_worker(config("glue", glue_activity)) as worker:
        bad_done = [finished(sfn, arn) for arn in bad]
        good_done = [finished(sfn, arn) for arn in good]
        # A report lands before the worker closes its record and counts it.
        wait_until(lambda: worker.counters["succeeded"] == 3)
        counters = worker.counters

    assert {d["error"] for d in bad_done} == {"RunnerInputError"}
    fields = [json.loads(d["cause"])["field"] for d in bad_done]
    assert fields == ["$", "$", "GlueJobName", "Arguments", "GlueJobName"]
    assert [d["status"] for d in good_done] == ["SUCCEEDED"] * 3
    assert counters["input_errors"] == 5
    assert counters["succeeded"] == 3


def test_an_unknown_glue_job_fails_with_runner_input_error(
    aws: Emulator, sfn: Any, glue_activity: str
) -> None:
    execution = start(sfn, task_machine(sfn, "unknown", glue_activity), {"GlueJobName": "Nope"})

    with running_worker(config("glue", glue_activity)):
        done = finished(sfn, execution)

    assert done["error"] == "RunnerInputError"
    cause = json.loads(done["cause"])
    assert cause["field"] == "GlueJobName"
    assert "Nope" in cause["problem"]  # Glue's own message names the job


def test_a_stopped_execution_gets_its_glue_run_stopped(
    aws: Emulator, sfn: Any, glue_activity: str
) -> None:
    glue_job(aws, "Long", RunBehaviour(duration=60))
    execution = start(sfn, task_machine(sfn, "stop", glue_activity), {"GlueJobName": "Long"})
    glue = aws.client("glue")

    with running_worker(config("glue", glue_activity, heartbeat_interval_seconds=0.5)) as worker:
        runs = wait_until(lambda: glue.get_job_runs(JobName="Long")["JobRuns"])
        sfn.stop_execution(executionArn=execution)
        wait_until(
            lambda: (
                glue.get_job_run(JobName="Long", RunId=runs[0]["Id"])["JobRun"]["JobRunState"]
                in {"STOPPING", "STOPPED"}
            )
        )
        wait_until(lambda: worker.counters["cancelled"] == 1)

    assert finished(sfn, execution)["status"] == "ABORTED"
    assert aws.faults.calls["glue:BatchStopJobRun"] == 1


def test_concurrent_runs_exceeded_keeps_the_task_until_a_slot_frees(
    aws: Emulator, sfn: Any, glue_activity: str
) -> None:
    """ConcurrentRunsExceededException keeps the task pending and heartbeating; the start
    is retried until it succeeds."""
    glue_job(aws, "Single", RunBehaviour(duration=1.5))
    machine = task_machine(sfn, "queue", glue_activity, HeartbeatSeconds=5, TimeoutSeconds=60)
    executions = [start(sfn, machine, {"GlueJobName": "Single"}) for _ in range(2)]

    with running_worker(config("glue", glue_activity, heartbeat_interval_seconds=1)) as worker:
        done = [finished(sfn, arn, timeout=20) for arn in executions]

    assert [d["status"] for d in done] == ["SUCCEEDED", "SUCCEEDED"]
    assert aws.faults.calls["glue:StartJobRun"] >= 3  # one refusal at least
    assert len(aws.client("glue").get_job_runs(JobName="Single")["JobRuns"]) == 2
    assert worker.counters["started"] == 2


def test_a_start_that_never_gets_a_slot_fails_by_its_deadline(
    aws: Emulator, sfn: Any, glue_activity: str
) -> None:
    glue_job(aws, "Busy", RunBehaviour(duration=60))
    aws.client("glue").start_job_run(JobName="Busy")  # holds the only slot
    execution = start(sfn, task_machine(sfn, "deadline", glue_activity), {"GlueJobName": "Busy"})

    with running_worker(config("glue", glue_activity, start_timeout_seconds=1.5)):
        done = finished(sfn, execution, timeout=15)

    assert (done["status"], done["error"]) == ("FAILED", "GlueConcurrentRunsExceededError")


def test_heartbeats_follow_the_interval_not_the_checks(
    aws: Emulator, sfn: Any, glue_activity: str
) -> None:
    glue_job(aws, "Steady", RunBehaviour(duration=3.2))
    execution = start(
        sfn,
        task_machine(sfn, "beats", glue_activity, HeartbeatSeconds=3, TimeoutSeconds=60),
        {"GlueJobName": "Steady"},
    )

    with running_worker(
        config("glue", glue_activity, check_interval_seconds=0.2, heartbeat_interval_seconds=1.0)
    ):
        done = finished(sfn, execution, timeout=15)

    assert done["status"] == "SUCCEEDED"
    checks = aws.faults.calls["glue:GetJobRun"]
    heartbeats = aws.faults.calls["states:SendTaskHeartbeat"]
    assert checks >= 10
    assert 2 <= heartbeats <= 4


def test_original_state_machine_runs_unchanged(aws: Emulator, sfn: Any, glue_activity: str) -> None:
    """The sample's shape: input as a JSON string in a Pass state's Result, GlueJobName
    only, a Catch on GlueJobFailedError."""
    glue_job(aws, "ProcessSalesData", RunBehaviour(duration=0.5))
    glue_job(aws, "JoinMarketingAndSalesData", RunBehaviour(duration=0.5, final_state="FAILED"))
    definition = {
        "StartAt": "Prep",
        "States": {
            "Prep": {
                "Type": "Pass",
                "Result": '{"GlueJobName" : "ProcessSalesData"}',
                "Next": "Process Sales Data",
            },
            "Process Sales Data": {"Type": "Task", "Resource": glue_activity, "Next": "Prep Join"},
            "Prep Join": {
                "Type": "Pass",
                "Result": '{"GlueJobName" : "JoinMarketingAndSalesData"}',
                "Next": "Join",
            },
            "Join": {
                "Type": "Task",
                "Resource": glue_activity,
                "Catch": [{"ErrorEquals": ["GlueJobFailedError"], "Next": "Fallback"}],
                "End": True,
            },
            "Fallback": {
                "Type": "Pass",
                "Result": "This is a fallback from an ETL job failure.",
                "End": True,
            },
        },
    }
    execution = start(sfn, create_machine(sfn, "original", definition), {})

    with running_worker(config("glue", glue_activity)):
        done = finished(sfn, execution)

    assert done["status"] == "SUCCEEDED"
    assert json.loads(done["output"]) == "This is a fallback from an ETL job failure."
    assert len(events(sfn, execution, "ActivitySucceeded")) == 1


def test_no_log_line_holds_a_task_token(
    aws: Emulator, sfn: Any, glue_activity: str, capsys: pytest.CaptureFixture[str]
) -> None:
    glue_job(aws, "Quiet", RunBehaviour(duration=0.3))
    good = start(sfn, task_machine(sfn, "logs", glue_activity), {"GlueJobName": "Quiet"})
    bad = start(sfn, task_machine(sfn, "logs-bad", glue_activity), {"Nope": 1})

    with running_worker(config("glue", glue_activity)):
        finished(sfn, good)
        finished(sfn, bad)

    captured = "".join(capsys.readouterr())
    tokens = aws.issued_task_tokens()
    assert len(tokens) == 2
    assert "task received" in captured
    assert "task input rejected" in captured
    assert not [token for token in tokens if token in captured]
