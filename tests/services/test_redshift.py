"""The Redshift Data API runner: input, start, checks, failures and stops, through
aiobotocore on the emulator, and end to end through the worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from runners.engine.runner import RUNNING, Failed, Job, Succeeded, TaskStart
from runners.errors import RunnerInputError
from runners.local import Emulator, Fault, RunBehaviour
from runners.services.redshift import (
    DESCRIBE_AT_MOST,
    RedshiftOptions,
    RedshiftStatementRunner,
    StatementSpec,
)
from tests.aio import AioLoop
from tests.engine.test_end_to_end import task_machine
from tests.helpers import finished, wait_until
from tests.workers import config, running_worker

TARGET = {"WorkgroupName": "etl", "Database": "dev"}


@pytest.fixture
def runner(aws: Emulator, aio_loop: AioLoop) -> Iterator[RedshiftStatementRunner]:
    client = aio_loop.client("redshift-data", aws.endpoint_url, aws.client_env())
    yield RedshiftStatementRunner(client._client)
    client.close()


def test_input_is_validated_field_by_field() -> None:
    runner = RedshiftStatementRunner(None, RedshiftOptions(redshift_database="dev"))
    spec = runner.parse(
        {
            "Sql": "SELECT * FROM t WHERE day = :day",
            "ClusterIdentifier": "warehouse",
            "Parameters": {"day": "2026-12-01"},
        }
    )
    assert spec == StatementSpec(
        sqls=("SELECT * FROM t WHERE day = :day",),
        batch=False,
        database="dev",
        cluster_identifier="warehouse",
        parameters=(("day", "2026-12-01"),),
    )
    assert spec.start_request("k" * 64)["Parameters"] == [{"name": "day", "value": "2026-12-01"}]
    batch = runner.parse({"Sqls": ["CREATE TABLE a (n int)", "DROP TABLE b"], **TARGET})
    assert (batch.batch, batch.workgroup_name, "Sqls" in batch.start_request("k")) == (
        True,
        "etl",
        True,
    )
    cases: list[tuple[dict[str, Any], str]] = [
        ({"WorkgroupName": "etl"}, "Sql"),
        ({"Sql": "SELECT 1", "Sqls": ["SELECT 2"], **TARGET}, "Sql"),
        ({"Sqls": [], **TARGET}, "Sqls"),
        ({"Sqls": ["SELECT 1", " "], **TARGET}, "Sqls[1]"),
        ({"Sqls": ["SELECT 1"] * 41, **TARGET}, "Sqls"),
        ({"Sql": "SELECT 1", "Database": "dev"}, "ClusterIdentifier"),
        ({"Sql": "SELECT 1", "ClusterIdentifier": "c", **TARGET}, "WorkgroupName"),
        ({"Sql": 1, **TARGET}, "Sql"),
        ({"Sql": "SELECT 1", "Parameters": {"day-1": "x"}, **TARGET}, "Parameters.day-1"),
        ({"Sql": "SELECT 1", "Parameters": {"day": ""}, **TARGET}, "Parameters.day"),
        ({"Sql": "SELECT 1", "Parameters": {"day": 1}, **TARGET}, "Parameters"),
    ]
    for document, field in cases:
        with pytest.raises(RunnerInputError) as raised:
            runner.parse(document)
        assert raised.value.field == field, document
    with pytest.raises(RunnerInputError) as missing:
        RedshiftStatementRunner(None).parse({"Sql": "SELECT 1", "WorkgroupName": "etl"})
    assert missing.value.field == "Database"


def test_a_start_with_the_same_task_key_runs_one_statement(
    aws: Emulator, aio_loop: AioLoop, runner: RedshiftStatementRunner
) -> None:
    spec = runner.parse({"Sql": "SELECT 1", **TARGET})

    first = aio_loop.run(runner.start(spec, TaskStart("a" * 64, 0.0)))
    again = aio_loop.run(runner.find(spec, TaskStart("a" * 64, 0.0)))

    assert first == again
    assert aws.faults.calls["redshift-data:ExecuteStatement"] == 2
    listed = aws.client("redshift-data").list_statements(Status="ALL")["Statements"]
    assert [s["Id"] for s in listed] == [first]


def test_many_statements_are_checked_by_listing_the_active_ones(
    aws: Emulator, aio_loop: AioLoop, runner: RedshiftStatementRunner
) -> None:
    aws.redshift_statements.add("slow", RunBehaviour(duration=30))
    aws.redshift_statements.add(
        "quick", RunBehaviour(duration=0.1, metrics={"ResultRows": 3, "HasResultSet": 1})
    )
    slow, quick = (runner.parse({"Sql": f"SELECT {name}", **TARGET}) for name in ("slow", "quick"))
    jobs = [
        Job(slow, aio_loop.run(runner.start(slow, TaskStart(f"{n:064}", 0.0)))) for n in range(20)
    ]
    jobs.append(Job(quick, aio_loop.run(runner.start(quick, TaskStart("q" * 64, 0.0)))))
    data = aws.client("redshift-data")
    wait_until(lambda: data.describe_statement(Id=jobs[-1].run_id)["Status"] == "FINISHED")
    wait_until(lambda: data.describe_statement(Id=jobs[0].run_id)["Status"] == "STARTED")
    wait_until(lambda: data.describe_statement(Id=jobs[-2].run_id)["Status"] == "STARTED")
    aws.faults.calls.clear()

    statuses = aio_loop.run(runner.check(jobs))

    assert all(statuses[job.run_id] is RUNNING for job in jobs[:20])
    done = statuses[jobs[-1].run_id]
    assert isinstance(done, Succeeded)
    assert (done.output["RedshiftResultRows"], done.output["RedshiftHasResultSet"]) == (3, True)
    assert aws.faults.calls["redshift-data:ListStatements"] == 3  # SUBMITTED, PICKED, STARTED
    assert aws.faults.calls["redshift-data:DescribeStatement"] == 1  # the finished one
    few = aio_loop.run(runner.check(jobs[:DESCRIBE_AT_MOST]))
    assert len(few) == DESCRIBE_AT_MOST
    assert aws.faults.calls["redshift-data:ListStatements"] == 3  # a few are described


@pytest.mark.parametrize("final", ["FAILED", "ABORTED"])
def test_a_failed_or_aborted_statement_fails_with_its_error(
    aws: Emulator, aio_loop: AioLoop, runner: RedshiftStatementRunner, final: str
) -> None:
    aws.redshift_statements.add(
        "broken", RunBehaviour(duration=0.1, final_state=final, error_message="ERROR: no table")
    )
    spec = runner.parse({"Sqls": ["SELECT 1", "SELECT broken"], **TARGET})
    job = Job(spec, aio_loop.run(runner.start(spec, TaskStart("f" * 64, 0.0))))
    data = aws.client("redshift-data")
    wait_until(lambda: data.describe_statement(Id=job.run_id)["Status"] in ("FAILED", "ABORTED"))

    status = aio_loop.run(runner.check([job]))[job.run_id]

    assert isinstance(status, Failed)
    assert status.error == "RedshiftStatementFailedError"
    assert status.cause["redshift_statement_status"] == final
    assert status.cause["redshift_target"] == "etl"
    if final == "FAILED":
        assert status.cause["redshift_statement_error"] == "ERROR: no table"


def test_stopping_cancels_a_running_statement_and_ignores_a_finished_one(
    aws: Emulator, aio_loop: AioLoop, runner: RedshiftStatementRunner
) -> None:
    aws.redshift_statements.add("slow", RunBehaviour(duration=30))
    aws.redshift_statements.add("quick", RunBehaviour(duration=0.05))
    slow, quick = (runner.parse({"Sql": f"SELECT {name}", **TARGET}) for name in ("slow", "quick"))
    running = Job(slow, aio_loop.run(runner.start(slow, TaskStart("s" * 64, 0.0))))
    done = Job(quick, aio_loop.run(runner.start(quick, TaskStart("d" * 64, 0.0))))
    data = aws.client("redshift-data")
    wait_until(lambda: data.describe_statement(Id=done.run_id)["Status"] == "FINISHED")

    aio_loop.run(runner.stop(running))
    aio_loop.run(runner.stop(done))

    assert data.describe_statement(Id=running.run_id)["Status"] == "ABORTED"


def redshift_flow(aws: Emulator, document: dict[str, Any], **task: Any) -> tuple[Any, str, str]:
    sfn = aws.client("stepfunctions")
    activity = sfn.create_activity(name="RedshiftRunnerActivity")["activityArn"]
    machine = task_machine(sfn, "redshift", activity, catch="RedshiftStatementFailedError", **task)
    execution = sfn.start_execution(stateMachineArn=machine, input=json.dumps(document))[
        "executionArn"
    ]
    return sfn, activity, execution


def test_a_statement_runs_end_to_end_and_its_failure_can_be_caught(aws: Emulator) -> None:
    aws.redshift_statements.add("sales", RunBehaviour(duration=0.5, metrics={"ResultRows": 7}))
    aws.redshift_statements.add("broken", RunBehaviour(duration=0.3, final_state="FAILED"))
    sfn, activity, good = redshift_flow(aws, {"Sql": "INSERT INTO sales SELECT 1", **TARGET})
    bad = sfn.start_execution(
        stateMachineArn=sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"],
        input=json.dumps({"Sql": "SELECT broken", **TARGET}),
    )["executionArn"]

    with running_worker(config("redshift", activity)):
        succeeded, caught = finished(sfn, good), finished(sfn, bad)

    assert succeeded["status"] == "SUCCEEDED"
    output = json.loads(succeeded["output"])
    assert (output["RedshiftStatementStatus"], output["RedshiftResultRows"]) == ("FINISHED", 7)
    assert caught["status"] == "SUCCEEDED"  # through the Catch
    error = json.loads(caught["output"])["error"]
    assert error["Error"] == "RedshiftStatementFailedError"
    assert aws.faults.calls["redshift-data:ExecuteStatement"] == 2


def test_a_stopped_execution_cancels_its_statement(aws: Emulator) -> None:
    aws.redshift_statements.add("long", RunBehaviour(duration=60))
    sfn, activity, execution = redshift_flow(aws, {"Sql": "SELECT long", **TARGET})

    with running_worker(config("redshift", activity, heartbeat_interval_seconds=0.5)):
        wait_until(lambda: aws.faults.calls["redshift-data:ExecuteStatement"] == 1)
        sfn.stop_execution(executionArn=execution)
        wait_until(lambda: aws.faults.calls["redshift-data:CancelStatement"] == 1, timeout=15)

    [listed] = aws.client("redshift-data").list_statements(Status="ALL")["Statements"]
    assert listed["Status"] == "ABORTED"


def test_a_start_whose_answer_was_lost_runs_one_statement(aws: Emulator) -> None:
    """The Data API took the statement and the answer was lost (HTTP 500): the start is
    sent again with the same ClientToken, which returns the same statement."""
    aws.faults.add(Fault("redshift-data:ExecuteStatement", "lost", limit=2))
    aws.redshift_statements.add("nightly", RunBehaviour(duration=0.3))
    sfn, activity, execution = redshift_flow(aws, {"Sql": "CALL nightly()", **TARGET})

    with running_worker(config("redshift", activity)):
        done = finished(sfn, execution, timeout=30)

    assert done["status"] == "SUCCEEDED"
    assert aws.faults.calls["redshift-data:ExecuteStatement"] >= 3
    assert len(aws.client("redshift-data").list_statements(Status="ALL")["Statements"]) == 1


def test_bad_input_fails_the_task_with_runner_input_error_naming_the_field(
    aws: Emulator,
) -> None:
    sfn, activity, execution = redshift_flow(aws, {"Sql": "SELECT 1", "WorkgroupName": "etl"})

    with running_worker(config("redshift", activity)):
        done = finished(sfn, execution)

    assert done["status"] == "FAILED"
    assert done["error"] == "RunnerInputError"
    assert json.loads(done["cause"])["field"] == "Database"
