"""The DMS replication task runner: input, start, checks, failures and stops, through
aiobotocore on the emulator, and end to end through the worker."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from runners.engine.runner import RUNNING, Failed, Job, Succeeded, TaskStart
from runners.errors import RunnerInputError, TryLater
from runners.local import Emulator, Fault, RunBehaviour
from runners.services.dms import (
    ARNS_PER_CALL,
    DmsReplicationRunner,
    ReplicationSpec,
    RunId,
)
from tests.aio import AioLoop
from tests.engine.test_ambiguous_starts import AcceptedStarts
from tests.engine.test_end_to_end import task_machine
from tests.helpers import finished, wait_until
from tests.local.test_dms import create_task, described, until_status
from tests.workers import config, running_worker

ARN = "arn:aws:dms:us-east-1:123456789012:task:nightly-orders"
KEY = "a" * 64


@pytest.fixture
def runner(aws: Emulator, aio_loop: AioLoop) -> Iterator[DmsReplicationRunner]:
    client = aio_loop.client("dms", aws.endpoint_url, aws.client_env())
    yield DmsReplicationRunner(client._client)
    client.close()


@pytest.fixture
def dms(aws: Emulator) -> Any:
    return aws.client("dms")


def started(
    aio_loop: AioLoop, runner: DmsReplicationRunner, arn: str, **document: Any
) -> Job[ReplicationSpec]:
    """A start made by the runner for a task that has just arrived."""
    spec = runner.parse({"ReplicationTaskArn": arn, **document})
    return Job(spec, aio_loop.run(runner.start(spec, TaskStart(KEY, time.time()))))


def status_when_done(
    aio_loop: AioLoop, runner: DmsReplicationRunner, job: Job[ReplicationSpec]
) -> Any:
    def probe() -> Succeeded | Failed | None:
        status = aio_loop.run(runner.check([job]))[job.run_id]
        return None if status is RUNNING else status

    return wait_until(probe)


def test_input_is_validated_field_by_field() -> None:
    runner = DmsReplicationRunner(None)
    spec = runner.parse(
        {
            "ReplicationTaskArn": ARN,
            "StartReplicationTaskType": "reload-target",
            "CdcStartTime": "2026-12-01T02:00:00",
            "CdcStopPosition": "commit_time:2026-12-02T02:00:00",
        }
    )
    assert spec.start_request("reload-target") == {
        "ReplicationTaskArn": ARN,
        "StartReplicationTaskType": "reload-target",
        "CdcStartTime": spec.cdc_start_time,
        "CdcStopPosition": "commit_time:2026-12-02T02:00:00",
    }
    assert spec.cdc_start_time is not None
    assert spec.cdc_start_time.hour == 2
    assert runner.parse({"ReplicationTaskArn": ARN}) == ReplicationSpec(ARN)
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "ReplicationTaskArn"),
        ({"ReplicationTaskArn": "nightly-orders"}, "ReplicationTaskArn"),
        ({"ReplicationTaskArn": ARN.replace(":dms:", ":glue:")}, "ReplicationTaskArn"),
        (
            {"ReplicationTaskArn": ARN, "StartReplicationTaskType": "restart"},
            "StartReplicationTaskType",
        ),
        ({"ReplicationTaskArn": ARN, "CdcStartTime": "yesterday"}, "CdcStartTime"),
        (
            {"ReplicationTaskArn": ARN, "CdcStartTime": "2026-12-01", "CdcStartPosition": "x"},
            "CdcStartPosition",
        ),
        ({"ReplicationTaskArn": ARN, "CdcStopPosition": "2026-12-01T00:00:00"}, "CdcStopPosition"),
        ({"ReplicationTaskArn": ARN, "CdcStopPosition": 5}, "CdcStopPosition"),
    ]
    for document, field in cases:
        with pytest.raises(RunnerInputError) as raised:
            runner.parse(document)
        assert raised.value.field == field, document


def test_a_full_load_succeeds_with_its_figures_night_after_night(
    aws: Emulator, aio_loop: AioLoop, runner: DmsReplicationRunner, dms: Any
) -> None:
    """The first run is a start-replication, the next a reload-target (DMS refuses
    start-replication once a task has run), each a run of its own."""
    aws.dms_tasks.add("orders", RunBehaviour(duration=0.5, metrics={"TablesLoaded": 3}))
    arn = create_task(dms, "nightly-orders")
    types: list[str] = []
    aws.faults.on_call(
        "dms:StartReplicationTask",
        lambda call: types.append(call.json()["StartReplicationTaskType"]),
    )
    first = started(aio_loop, runner, arn)
    first_status = status_when_done(aio_loop, runner, first)
    second = started(aio_loop, runner, arn)

    status = status_when_done(aio_loop, runner, second)

    assert isinstance(first_status, Succeeded)
    assert isinstance(status, Succeeded)
    assert types == ["start-replication", "reload-target"]
    assert first.run_id != second.run_id
    assert first.run_id.startswith(f"{arn}#")
    output = status.output
    assert (output["DmsReplicationTaskArn"], output["DmsReplicationTaskIdentifier"]) == (
        arn,
        "nightly-orders",
    )
    assert (output["DmsStatus"], output["DmsMigrationType"]) == ("stopped", "full-load")
    assert output["DmsStopReason"] == "Stop Reason FULL_LOAD_ONLY_FINISHED"
    assert (output["DmsTablesLoaded"], output["DmsFullLoadProgressPercent"]) == (3, 100)
    assert datetime.fromisoformat(output["DmsStartedAt"]) < datetime.fromisoformat(
        output["DmsStoppedAt"]
    )
    assert output["DmsStartedAt"] > first_status.output["DmsStoppedAt"]


def test_a_task_that_never_stops_is_refused_unless_told_where_to_stop(
    aws: Emulator, aio_loop: AioLoop, runner: DmsReplicationRunner, dms: Any
) -> None:
    aws.dms_tasks.default = RunBehaviour(duration=0.3)
    cdc = create_task(dms, "changes", "cdc")
    full_load = create_task(dms, "copy")
    cached = create_task(
        dms,
        "copy-then-stop",
        "full-load-and-cdc",
        settings={"FullLoadSettings": {"StopTaskCachedChangesNotApplied": True}},
    )
    refusals = [
        (cdc, {}, "CdcStopPosition"),
        (full_load, {"CdcStopPosition": "server_time:2026-12-01T02:00:00"}, "CdcStopPosition"),
        (full_load, {"StartReplicationTaskType": "resume-processing"}, "StartReplicationTaskType"),
    ]
    for arn, document, field in refusals:
        with pytest.raises(RunnerInputError) as raised:
            started(aio_loop, runner, arn, **document)
        assert raised.value.field == field
    dms.start_replication_task(
        ReplicationTaskArn=full_load, StartReplicationTaskType="start-replication"
    )
    until_status(dms, full_load, "stopped")
    with pytest.raises(RunnerInputError) as again:
        started(aio_loop, runner, full_load, StartReplicationTaskType="start-replication")
    assert again.value.field == "StartReplicationTaskType"

    bounded = started(aio_loop, runner, cdc, CdcStopPosition="server_time:2026-12-01T02:00:00")
    after_full_load = started(aio_loop, runner, cached)
    statuses = [status_when_done(aio_loop, runner, job) for job in (bounded, after_full_load)]

    assert [s.output["DmsStopReason"] for s in statuses] == [
        "Stop Reason STOPPED_AT_SERVER_TIME",
        "Stop Reason STOPPED_AFTER_FULL_LOAD",
    ]
    assert aws.faults.calls["dms:StartReplicationTask"] == 3  # one of them not the runner's


@pytest.mark.parametrize(
    ("final", "message"), [("failed", "Last Error ORA-00942"), ("stopped", "Last Error disk")]
)
def test_a_run_ended_by_an_error_fails_with_its_message(
    aws: Emulator,
    aio_loop: AioLoop,
    runner: DmsReplicationRunner,
    dms: Any,
    final: str,
    message: str,
) -> None:
    aws.dms_tasks.add(
        "broken", RunBehaviour(duration=0.3, final_state=final, error_message=message)
    )
    arn = create_task(dms, "broken-orders")
    job = started(aio_loop, runner, arn)

    status = status_when_done(aio_loop, runner, job)

    assert isinstance(status, Failed)
    assert status.error == "DmsTaskFailedError"
    assert status.cause == {
        "dms_replication_task_arn": arn,
        "dms_replication_task_identifier": "broken-orders",
        "dms_status": final,
        "dms_stop_reason": "Stop Reason FATAL_ERROR",
        "dms_last_failure_message": message,
    }


def test_a_task_stopped_by_someone_else_fails_and_a_stop_ignores_a_stopped_task(
    aws: Emulator, aio_loop: AioLoop, runner: DmsReplicationRunner, dms: Any
) -> None:
    aws.dms_tasks.add("long", RunBehaviour(duration=30))
    arn = create_task(dms, "long-orders")
    job = started(aio_loop, runner, arn)
    until_status(dms, arn, "running")
    dms.stop_replication_task(ReplicationTaskArn=arn)

    status = status_when_done(aio_loop, runner, job)
    aio_loop.run(runner.stop(job))  # already stopped: nothing to do

    assert isinstance(status, Failed)
    assert (status.cause["dms_status"], status.cause["dms_stop_reason"]) == (
        "stopped",
        "Stop Reason NORMAL",
    )
    assert aws.faults.calls["dms:StopReplicationTask"] == 1  # the runner saw it stopped


def test_start_refusals_are_classified(
    aws: Emulator, aio_loop: AioLoop, runner: DmsReplicationRunner, dms: Any
) -> None:
    aws.dms_tasks.add("busy", RunBehaviour(duration=30))
    arn = create_task(dms, "busy-orders")
    started(aio_loop, runner, arn)
    spec = runner.parse({"ReplicationTaskArn": arn})
    missing = runner.parse({"ReplicationTaskArn": arn.replace("busy", "gone")})

    with pytest.raises(ClientError) as busy:
        aio_loop.run(runner.start(spec, TaskStart("b" * 64, time.time())))
    with pytest.raises(ClientError) as unknown:
        aio_loop.run(runner.start(missing, TaskStart(KEY, time.time())))
    later, input_error = runner.refused(spec, busy.value), runner.refused(missing, unknown.value)

    assert isinstance(later, TryLater)
    assert later.error == "DmsTaskBusyError"
    assert isinstance(input_error, RunnerInputError)
    assert input_error.field == "ReplicationTaskArn"


def test_a_check_never_takes_an_earlier_start_for_this_one(
    aws: Emulator, aio_loop: AioLoop, dms: Any
) -> None:
    """Yesterday's run stopped; today's start is not described yet: still running."""
    client = aio_loop.client("dms", aws.endpoint_url, aws.client_env())
    runner = DmsReplicationRunner(client._client, clock_margin_seconds=0.2)
    aws.dms_tasks.default = RunBehaviour(duration=0.2)
    arn = create_task(dms, "nightly")
    yesterday = started(aio_loop, runner, arn)
    until_status(dms, arn, "stopped")
    time.sleep(0.5)
    today = Job(yesterday.spec, str(RunId(arn, int(time.time() * 1000))))

    statuses = aio_loop.run(runner.check([yesterday, today]))

    assert isinstance(statuses[yesterday.run_id], Succeeded)
    assert statuses[today.run_id] is RUNNING
    client.close()


def test_find_knows_this_tasks_start_but_not_an_earlier_one(
    aws: Emulator, aio_loop: AioLoop, runner: DmsReplicationRunner, dms: Any
) -> None:
    """A start made before the task arrived (the run that made it wait as busy) is not
    the task's; one made after it arrived is."""
    aws.dms_tasks.default = RunBehaviour(duration=30)
    arn = create_task(dms, "nightly")
    spec = runner.parse({"ReplicationTaskArn": arn})
    dms.start_replication_task(ReplicationTaskArn=arn, StartReplicationTaskType="start-replication")
    arrived_later = TaskStart(KEY, time.time() + 60)
    arrived_before = TaskStart(KEY, time.time() - 1)

    earlier = aio_loop.run(runner.find(spec, arrived_later))
    found = aio_loop.run(runner.find(spec, arrived_before))
    missing = aio_loop.run(
        runner.find(runner.parse({"ReplicationTaskArn": arn + "x"}), arrived_before)
    )

    assert (earlier, missing) == (None, None)
    start_date = described(dms, arn)["ReplicationTaskStartDate"]
    assert found == str(RunId(arn, int(start_date.timestamp() * 1000)))


def test_many_tasks_are_checked_with_one_describe_call_per_fifty(
    aws: Emulator, aio_loop: AioLoop, runner: DmsReplicationRunner, dms: Any
) -> None:
    aws.dms_tasks.default = RunBehaviour(duration=30)
    aws.dms_tasks.add("quick", RunBehaviour(duration=0.2))
    count = ARNS_PER_CALL + 10
    arns = [
        dms.create_replication_task(
            ReplicationTaskIdentifier=f"{'quick' if n == 0 else 'slow'}-{n}",
            SourceEndpointArn="arn:aws:dms:us-east-1:123456789012:endpoint:S",
            TargetEndpointArn="arn:aws:dms:us-east-1:123456789012:endpoint:T",
            ReplicationInstanceArn="arn:aws:dms:us-east-1:123456789012:rep:R",
            MigrationType="full-load",
            TableMappings="{}",
        )["ReplicationTask"]["ReplicationTaskArn"]
        for n in range(count)
    ]
    until_status(dms, arns[-1], "ready")
    jobs = [started(aio_loop, runner, arn) for arn in arns]
    until_status(dms, arns[0], "stopped")
    aws.faults.calls.clear()

    statuses = aio_loop.run(runner.check(jobs))

    assert isinstance(statuses[jobs[0].run_id], Succeeded)
    assert all(statuses[job.run_id] is RUNNING for job in jobs[1:])
    assert aws.faults.calls["dms:DescribeReplicationTasks"] == 2  # 60 tasks, 50 a call


def dms_flow(
    aws: Emulator, documents: list[dict[str, Any]], **task: Any
) -> tuple[Any, str, list[str]]:
    sfn = aws.client("stepfunctions")
    activity = sfn.create_activity(name="DmsRunnerActivity")["activityArn"]
    machine = task_machine(sfn, "dms", activity, catch="DmsTaskFailedError", **task)
    executions = [
        sfn.start_execution(stateMachineArn=machine, input=json.dumps(document))["executionArn"]
        for document in documents
    ]
    return sfn, activity, executions


def test_a_replication_runs_end_to_end_and_its_failure_can_be_caught(
    aws: Emulator, dms: Any
) -> None:
    aws.dms_tasks.add("orders", RunBehaviour(duration=0.5, metrics={"TablesLoaded": 7}))
    aws.dms_tasks.add(
        "broken", RunBehaviour(duration=0.3, final_state="failed", error_message="boom")
    )
    good, bad = create_task(dms, "nightly-orders"), create_task(dms, "broken-orders")
    sfn, activity, (ok, caught) = dms_flow(
        aws, [{"ReplicationTaskArn": good}, {"ReplicationTaskArn": bad}]
    )

    with running_worker(config("dms", activity)):
        succeeded, handled = finished(sfn, ok, timeout=20), finished(sfn, caught, timeout=20)

    assert succeeded["status"] == "SUCCEEDED"
    output = json.loads(succeeded["output"])
    assert output["DmsStopReason"] == "Stop Reason FULL_LOAD_ONLY_FINISHED"
    assert output["DmsTablesLoaded"] == 7
    assert handled["status"] == "SUCCEEDED"  # through the Catch
    error = json.loads(handled["output"])["error"]
    assert error["Error"] == "DmsTaskFailedError"
    assert json.loads(error["Cause"])["dms_last_failure_message"] == "boom"


def test_a_busy_task_waits_and_then_runs(aws: Emulator, dms: Any) -> None:
    """Someone else's run holds the task: the start is refused as busy and tried again
    until that run has stopped, as Glue's concurrency limit is."""
    aws.dms_tasks.default = RunBehaviour(duration=30)
    arn = create_task(dms, "shared")
    dms.start_replication_task(ReplicationTaskArn=arn, StartReplicationTaskType="start-replication")
    answers: list[int] = []
    aws.faults.on_call("dms:StartReplicationTask", lambda call: answers.append(call.status))
    sfn, activity, (execution,) = dms_flow(aws, [{"ReplicationTaskArn": arn}])

    with running_worker(config("dms", activity)):
        wait_until(lambda: len(answers) >= 2, timeout=15)  # refused, and tried again
        aws.dms_tasks.default = RunBehaviour(duration=0.5)
        dms.stop_replication_task(ReplicationTaskArn=arn)
        done = finished(sfn, execution, timeout=20)

    assert done["status"] == "SUCCEEDED"
    assert answers[:2] == [400, 400]
    assert answers[-1] == 200
    assert json.loads(done["output"])["DmsStopReason"] == "Stop Reason FULL_LOAD_ONLY_FINISHED"


def test_a_stopped_execution_stops_its_replication_task(aws: Emulator, dms: Any) -> None:
    aws.dms_tasks.add("long", RunBehaviour(duration=60))
    arn = create_task(dms, "long-orders")
    sfn, activity, (execution,) = dms_flow(aws, [{"ReplicationTaskArn": arn}])

    with running_worker(config("dms", activity, heartbeat_interval_seconds=0.5)):
        wait_until(lambda: aws.faults.calls["dms:StartReplicationTask"] == 1)
        sfn.stop_execution(executionArn=execution)
        wait_until(lambda: aws.faults.calls["dms:StopReplicationTask"] == 1, timeout=15)

    task = until_status(dms, arn, "stopped")
    assert task["StopReason"] == "Stop Reason NORMAL"


def test_a_start_whose_answer_was_lost_starts_the_task_once(aws: Emulator, dms: Any) -> None:
    """DMS took the start and the answer was lost (HTTP 500): the worker finds the start
    by its date instead of starting again (a second start would be refused as busy and
    then run the task a second time)."""
    aws.dms_tasks.default = RunBehaviour(duration=0.5)
    arn = create_task(dms, "nightly-orders")
    starts = AcceptedStarts(aws, "dms:StartReplicationTask")
    aws.faults.add(Fault("dms:StartReplicationTask", "lost", limit=1))
    sfn, activity, (execution,) = dms_flow(aws, [{"ReplicationTaskArn": arn}])

    with running_worker(config("dms", activity)):
        done = finished(sfn, execution, timeout=30)
    time.sleep(1.0)  # a second start, had one been made, would be served by now

    assert done["status"] == "SUCCEEDED"
    assert starts.count == 1
    assert aws.faults.calls["dms:StartReplicationTask"] == 1


def test_a_cdc_task_without_a_stop_fails_with_runner_input_error(aws: Emulator, dms: Any) -> None:
    arn = create_task(dms, "changes", "cdc")
    sfn, activity, (execution,) = dms_flow(aws, [{"ReplicationTaskArn": arn}])

    with running_worker(config("dms", activity)):
        done = finished(sfn, execution)

    assert done["status"] == "FAILED"
    assert done["error"] == "RunnerInputError"
    assert json.loads(done["cause"])["field"] == "CdcStopPosition"
    assert aws.faults.calls["dms:StartReplicationTask"] == 0
