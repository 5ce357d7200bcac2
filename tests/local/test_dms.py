"""AWS DMS replication tasks on the emulator, through boto3 and aiobotocore.

Quotes are from the AWS Database Migration Service API reference
(https://docs.aws.amazon.com/dms/latest/APIReference/): ``ReplicationTask``,
``ReplicationTaskStats``, ``StartReplicationTask``, ``StopReplicationTask`` and
``DescribeReplicationTasks``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from runners.local import Emulator, RunBehaviour
from tests.conftest import ClientFactory
from tests.helpers import error_code, wait_until


@pytest.fixture
def dms(client: ClientFactory) -> Any:
    return client("dms")


def create_task(
    dms: Any,
    identifier: str,
    migration_type: str = "full-load",
    settings: dict[str, Any] | None = None,
) -> str:
    """A replication task as a deployment makes one: a replication instance, a source
    and a target endpoint, then the task; returned once it is "ready"."""
    instance = dms.create_replication_instance(
        ReplicationInstanceIdentifier=f"{identifier}-instance",
        ReplicationInstanceClass="dms.t3.medium",
    )["ReplicationInstance"]["ReplicationInstanceArn"]
    endpoints = [
        dms.create_endpoint(
            EndpointIdentifier=f"{identifier}-{kind}", EndpointType=kind, EngineName=engine
        )["Endpoint"]["EndpointArn"]
        for kind, engine in (("source", "postgres"), ("target", "s3"))
    ]
    arn: str = dms.create_replication_task(
        ReplicationTaskIdentifier=identifier,
        SourceEndpointArn=endpoints[0],
        TargetEndpointArn=endpoints[1],
        ReplicationInstanceArn=instance,
        MigrationType=migration_type,
        TableMappings=json.dumps({"rules": []}),
        ReplicationTaskSettings=json.dumps(settings or {}),
    )["ReplicationTask"]["ReplicationTaskArn"]
    wait_until(lambda: described(dms, arn)["Status"] == "ready")
    return arn


def described(dms: Any, arn: str) -> dict[str, Any]:
    answer = dms.describe_replication_tasks(
        Filters=[{"Name": "replication-task-arn", "Values": [arn]}], WithoutSettings=True
    )
    task: dict[str, Any] = answer["ReplicationTasks"][0]
    return task


def start(dms: Any, arn: str, start_type: str = "start-replication", **cdc: str) -> Any:
    return dms.start_replication_task(
        ReplicationTaskArn=arn, StartReplicationTaskType=start_type, **cdc
    )["ReplicationTask"]


def until_status(dms: Any, arn: str, *statuses: str, timeout: float = 10) -> dict[str, Any]:
    """The task once it is in one of ``statuses``."""

    def probe() -> dict[str, Any] | None:
        task = described(dms, arn)
        return task if task["Status"] in statuses else None

    return wait_until(probe, timeout=timeout)


def test_a_full_load_moves_through_its_states_on_the_clock(aws: Emulator, dms: Any) -> None:
    """Status: "creating" - "The task is being created", "ready" - "where it can respond
    to other task operations", "starting" - "preparing to perform a database migration",
    "running" - "performing a database migration", "stopped". StopReason: "Stop Reason
    FULL_LOAD_ONLY_FINISHED - The task completed the full load phase." Stats: "The
    percent complete for the full load migration task", "The number of tables loaded".
    """
    aws.dms_tasks.add("orders", RunBehaviour(duration=1.0, metrics={"TablesLoaded": 4}))
    created = dms.create_replication_task(
        ReplicationTaskIdentifier="other",
        SourceEndpointArn="arn:aws:dms:us-east-1:123456789012:endpoint:S",
        TargetEndpointArn="arn:aws:dms:us-east-1:123456789012:endpoint:T",
        ReplicationInstanceArn="arn:aws:dms:us-east-1:123456789012:rep:R",
        MigrationType="full-load",
        TableMappings="{}",
    )["ReplicationTask"]
    arn = create_task(dms, "nightly-orders")

    started = start(dms, arn)
    seen = [described(dms, arn)]
    deadline = time.monotonic() + 10
    while seen[-1]["Status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.05)
        seen.append(described(dms, arn))
    statuses = [task["Status"] for task in seen]
    midway = next(task for task in seen if task["Status"] == "running")
    done = seen[-1]

    assert created["Status"] == "creating"
    assert started["Status"] == "starting"
    assert [s for n, s in enumerate(statuses) if statuses.index(s) == n] == [
        "starting",
        "running",
        "stopped",
    ]
    assert midway["ReplicationTaskStats"]["FullLoadProgressPercent"] < 100
    assert done["StopReason"] == "Stop Reason FULL_LOAD_ONLY_FINISHED"
    assert done["ReplicationTaskStartDate"] == started["ReplicationTaskStartDate"]
    stats = done["ReplicationTaskStats"]
    assert (stats["FullLoadProgressPercent"], stats["TablesLoaded"], stats["TablesQueued"]) == (
        100,
        4,
        0,
    )
    assert 900 <= stats["ElapsedTimeMillis"] <= 1100
    assert stats["StopDate"] > stats["StartDate"]
    assert "LastFailureMessage" not in done


@pytest.mark.parametrize("final", ["failed", "stopped"])
def test_a_run_ended_by_an_error_says_why(aws: Emulator, dms: Any, final: str) -> None:
    """ "failed" - "The task failed to successfully complete the database migration";
    LastFailureMessage: "The last error (failure) message generated for the replication
    task"; a task stopped by an error reports "Stop Reason FATAL_ERROR"."""
    aws.dms_tasks.add(
        "broken",
        RunBehaviour(
            duration=0.5, final_state=final, error_message="Last Error ORA-00942 table missing"
        ),
    )
    arn = create_task(dms, "broken-orders")
    start(dms, arn)

    task = until_status(dms, arn, "failed", "stopped")

    assert task["Status"] == final
    assert task["LastFailureMessage"] == "Last Error ORA-00942 table missing"
    assert task["StopReason"] == "Stop Reason FATAL_ERROR"
    assert task["ReplicationTaskStats"]["TablesErrored"] == 1


def test_a_task_that_is_not_stopped_cannot_be_started(aws: Emulator, dms: Any) -> None:
    """StartReplicationTask errors: "InvalidResourceStateFault - The resource is in a
    state that prevents it from being used for database migration."
    StartReplicationTaskType: "resume-processing is only available for previously
    executed tasks." CdcStartTime: "Specifying both values results in an error.\""""
    aws.dms_tasks.add("busy", RunBehaviour(duration=30))
    arn = create_task(dms, "busy-orders")
    fresh = create_task(dms, "fresh-orders")
    start(dms, arn)

    refused = []
    for task_arn, start_type in ((arn, "start-replication"), (fresh, "resume-processing")):
        with pytest.raises(ClientError) as raised:
            start(dms, task_arn, start_type)
        refused.append(error_code(raised.value))
    with pytest.raises(ClientError) as both:
        start(dms, fresh, CdcStartTime="2026-12-01T00:00:00", CdcStartPosition="checkpoint:x")
    with pytest.raises(ClientError) as missing:
        start(dms, arn.replace("busy", "gone"))

    assert refused == ["InvalidResourceStateFault", "InvalidResourceStateFault"]
    assert error_code(both.value) == "InvalidParameterCombinationException"
    assert error_code(missing.value) == "ResourceNotFoundFault"
    assert described(dms, fresh)["Status"] == "ready"


def test_stopping_a_task_moves_it_to_stopping_then_stopped(aws: Emulator, dms: Any) -> None:
    """ "stopping" - "The task is preparing to stop in response to running the
    StopReplicationTask operation", then "stopped"; the reference names no reason for a
    stop on request, and "Stop Reason NORMAL" is the one "with no additional
    information returned". Stopping a stopped task: InvalidResourceStateFault."""
    aws.dms_tasks.add("long", RunBehaviour(duration=30, metrics={"TablesLoaded": 10}))
    arn = create_task(dms, "long-orders")
    start(dms, arn)
    until_status(dms, arn, "running")

    answer = dms.stop_replication_task(ReplicationTaskArn=arn)["ReplicationTask"]
    stopped = until_status(dms, arn, "stopped")
    with pytest.raises(ClientError) as again:
        dms.stop_replication_task(ReplicationTaskArn=arn)

    assert answer["Status"] == "stopping"
    assert stopped["StopReason"] == "Stop Reason NORMAL"
    assert stopped["ReplicationTaskStats"]["FullLoadProgressPercent"] < 100
    assert error_code(again.value) == "InvalidResourceStateFault"


def test_cdc_runs_until_its_stop_position_and_never_stops_without_one(
    aws: Emulator, dms: Any
) -> None:
    """CdcStopPosition: "Indicates when you want a change data capture (CDC) operation
    to stop. The value can be either server time or commit time"; StopReason "Stop
    Reason STOPPED_AT_SERVER_TIME - User-defined server time for stopping task". A
    full-load-and-cdc task with StopTaskCachedChangesApplied stops with "Stop Reason
    STOPPED_AFTER_CACHED_EVENTS - Full load completed, with cached changes applied"."""
    aws.dms_tasks.default = RunBehaviour(duration=0.5)
    bounded = create_task(dms, "bounded", "cdc")
    endless = create_task(dms, "endless", "cdc")
    cached = create_task(
        dms,
        "cached",
        "full-load-and-cdc",
        settings={"FullLoadSettings": {"StopTaskCachedChangesApplied": True}},
    )

    start(dms, bounded, CdcStopPosition="server_time:2026-12-01T02:00:00")
    start(dms, endless)
    start(dms, cached)
    stopped = until_status(dms, bounded, "stopped")
    after_full_load = until_status(dms, cached, "stopped")
    time.sleep(0.3)

    assert stopped["StopReason"] == "Stop Reason STOPPED_AT_SERVER_TIME"
    assert stopped["CdcStopPosition"] == "server_time:2026-12-01T02:00:00"
    assert after_full_load["StopReason"] == "Stop Reason STOPPED_AFTER_CACHED_EVENTS"
    assert described(dms, endless)["Status"] == "running"


def test_each_start_is_a_new_run_with_its_own_start_date(aws: Emulator, dms: Any) -> None:
    """Stats: StartDate - "started either with a fresh start or a resume",
    FreshStartDate - "started either with a fresh start or a target reload";
    StartReplicationTaskType: "start-replication is the only valid action that can be
    used for the first time a task ... is run" (and DMS refuses it afterwards)."""
    aws.dms_tasks.default = RunBehaviour(duration=0.3)
    arn = create_task(dms, "again")
    first = start(dms, arn)
    until_status(dms, arn, "stopped")
    with pytest.raises(ClientError) as again:
        start(dms, arn)

    resumed = start(dms, arn, "resume-processing")
    done = until_status(dms, arn, "stopped")

    assert resumed["ReplicationTaskStartDate"] > first["ReplicationTaskStartDate"]
    assert done["ReplicationTaskStats"]["StartDate"] == resumed["ReplicationTaskStartDate"]
    assert done["ReplicationTaskStats"]["FreshStartDate"] == first["ReplicationTaskStartDate"]
    assert error_code(again.value) == "InvalidResourceStateFault"


def test_describe_filters_by_arn_pages_and_omits_settings(aws: Emulator, dms: Any) -> None:
    """Filters: "replication-task-arn"; MaxRecords: "If more records exist than the
    specified MaxRecords value, a pagination token called a marker is included ...
    Constraints: Minimum 20, maximum 100"; WithoutSettings: "avoid returning information
    about settings"; errors: "ResourceNotFoundFault - The resource could not be found.\""""
    instance = "arn:aws:dms:us-east-1:123456789012:rep:R"
    arns = [
        dms.create_replication_task(
            ReplicationTaskIdentifier=f"t{n:02}",
            SourceEndpointArn="arn:aws:dms:us-east-1:123456789012:endpoint:S",
            TargetEndpointArn="arn:aws:dms:us-east-1:123456789012:endpoint:T",
            ReplicationInstanceArn=instance,
            MigrationType="full-load",
            TableMappings="{}",
            ReplicationTaskSettings="{}",
        )["ReplicationTask"]["ReplicationTaskArn"]
        for n in range(25)
    ]
    wanted = arns[:22]
    request = {"Filters": [{"Name": "replication-task-arn", "Values": wanted}]}

    first = dms.describe_replication_tasks(**request, MaxRecords=20, WithoutSettings=True)
    rest = dms.describe_replication_tasks(**request, MaxRecords=20, Marker=first["Marker"])
    with pytest.raises(ClientError) as small:
        dms.describe_replication_tasks(**request, MaxRecords=10)
    with pytest.raises(ClientError) as none:
        dms.describe_replication_tasks(
            Filters=[{"Name": "replication-task-arn", "Values": [arns[0] + "x"]}]
        )

    pages = first["ReplicationTasks"] + rest["ReplicationTasks"]
    assert [t["ReplicationTaskArn"] for t in pages] == wanted
    assert "Marker" not in rest
    assert "ReplicationTaskSettings" not in first["ReplicationTasks"][0]
    assert rest["ReplicationTasks"][0]["ReplicationTaskSettings"] == "{}"
    assert error_code(small.value) == "InvalidParameterValueException"
    assert error_code(none.value) == "ResourceNotFoundFault"
