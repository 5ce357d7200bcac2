"""The per-runner section: every job runner's status calls, with our worker alone.

Each runner serves ``Sizes.runner_executions`` executions of one Task state, its jobs
lasting ``Sizes.job_seconds`` like the flows'. There is no baseline column: the
original sample's algorithm only knows Glue and Athena. What the section shows is that
each runner checks its jobs in batches: well under one status call per task per check.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.scenarios import (
    HEARTBEAT,
    Reports,
    Sizes,
    deadline_seconds,
    history,
    job_durations,
    prepare_flow,
    side_process,
    start_paced,
    task_machine,
    wait_for_polls,
)
from runners.local import Call, Emulator, RunBehaviour

# The calls each runner makes to learn its jobs' states, as the fault injector names them.
STATUS_CALLS: dict[str, frozenset[str]] = {
    "glue": frozenset({"glue:GetJobRun", "glue:GetJobRuns"}),
    "athena": frozenset({"athena:GetQueryExecution", "athena:BatchGetQueryExecution"}),
    "redshift": frozenset({"redshift-data:DescribeStatement", "redshift-data:ListStatements"}),
    "emrstep": frozenset({"elasticmapreduce:ListSteps", "elasticmapreduce:DescribeStep"}),
    "emrserverless": frozenset({"emr-serverless:GetJobRun", "emr-serverless:ListJobRuns"}),
    "dms": frozenset({"dms:DescribeReplicationTasks"}),
}
RUNNERS = tuple(STATUS_CALLS)
DMS_DESCRIBE = "dms:DescribeReplicationTasks"
ROLE = "arn:aws:iam::123456789012:role/EmrServerlessJobRole"
EMR_STEPS_AT_ONCE = 256  # StepConcurrencyLevel's most: the emulator runs one by default


@dataclass
class RunnerResult:
    """One runner's executions, counted on the emulator's side."""

    runner: str
    executions: int
    succeeded: int
    status_calls: int  # made by check cycles
    start_calls: int  # status operations made by starts (DMS describes its task first)
    heartbeats: int
    check_cycles: float  # summed over the tasks: see tracked_cycles
    check_seconds: float

    def per_task(self, count: float) -> float:
        return count / max(self.succeeded, 1)

    @property
    def per_task_per_check(self) -> float:
        return self.status_calls / self.check_cycles if self.check_cycles else float("nan")


def run_runner(aws: Emulator, runner: str, sizes: Sizes, workdir: Path) -> RunnerResult:
    """``runner_executions`` executions served by one worker process, until reported."""
    count = sizes.runner_executions
    aws.reset()
    sfn = aws.client("stepfunctions", retries={"mode": "standard", "max_attempts": 10})
    activity = sfn.create_activity(name=f"{runner}-only-activity")["activityArn"]
    machine = task_machine(aws, activity)
    inputs, options = prepare(aws, runner, job_durations(sizes, count))
    reports = Reports(aws)
    reports.expect(count)
    table, interval = f"only-{runner}-tasks", sizes.check_seconds
    with side_process(
        aws, "runners", runner, activity, table, sizes, workdir,
        check_interval_seconds=interval, **options,
    ) as _:  # fmt: skip
        wait_for_polls(aws, 1)
        in_starts = StartDescribes(aws)
        before = Counter(aws.faults.calls)
        arns = start_paced(sfn, machine, inputs, sizes.start_window_seconds)
        reports.done.wait(deadline_seconds("runners", sizes, count))
        calls = Counter(aws.faults.calls) - before
        histories = [history(sfn, arn) for arn in arns]
    status = sum(calls[name] for name in STATUS_CALLS[runner])
    return RunnerResult(
        runner=runner,
        executions=len(arns),
        succeeded=sum(1 for item in histories if item.get("succeeded")),
        status_calls=status - in_starts.count,
        start_calls=in_starts.count,
        heartbeats=calls[HEARTBEAT],
        check_cycles=tracked_cycles(histories, interval),
        check_seconds=interval,
    )


def tracked_cycles(histories: list[dict[str, Any]], interval: float) -> float:
    """The check cycles the tasks were tracked through: each reported task's tracked
    time (``ActivityStarted`` -> ``ActivitySucceeded`` in its history: the worker starts
    the job on receipt, within milliseconds) over the check interval, summed. A runner
    that spent one call per job per cycle would make this many status calls."""
    return sum(
        float(item["reported"] - item["received"]) / interval
        for item in histories
        if "reported" in item and "received" in item
    )


class StartDescribes:
    """DMS describes its replication task before each start (to choose the start type):
    those calls are starts' costs, not checks'. A check's describe pages (``MaxRecords``);
    a start's does not."""

    def __init__(self, aws: Emulator) -> None:
        self.count = 0
        aws.faults.on_call(DMS_DESCRIBE, self._seen)

    def _seen(self, call: Call) -> None:
        if "MaxRecords" not in call.json():
            self.count += 1  # one hook call at a time per request; += under the GIL is fine


# Inputs and emulator set-up, per runner -------------------------------------------------


def prepare(aws: Emulator, runner: str, durations: list[float]) -> tuple[list[str], dict[str, Any]]:
    """Each execution's input (job n lasts ``durations[n]``), and the worker's runner
    options."""
    if runner in ("glue", "athena"):
        return prepare_flow(aws, "runners", runner, durations), {}
    documents, options = PREPARE[runner](aws, durations)
    return [json.dumps(document) for document in documents], options


Prepared = tuple[list[dict[str, Any]], dict[str, Any]]


def marker(seconds: float) -> str:
    """The text a behaviour rule finds in a job's SQL, name or arguments."""
    return f"[{seconds}s]"


def redshift(aws: Emulator, durations: list[float]) -> Prepared:
    for seconds in set(durations):
        aws.redshift_statements.add(marker(seconds), RunBehaviour(duration=seconds))
    sql = "INSERT INTO daily SELECT day, sum(revenue) FROM sales GROUP BY day /* {} */"
    documents = [
        {"Sql": sql.format(marker(seconds)), "WorkgroupName": "etl", "Database": "dev"}
        for seconds in durations
    ]
    return documents, {}


def emrstep(aws: Emulator, durations: list[float]) -> Prepared:
    for seconds in set(durations):
        aws.emr_steps.add(marker(seconds), RunBehaviour(duration=seconds))
    cluster_id = aws.client("emr").run_job_flow(
        Name="analytics",
        ReleaseLabel="emr-7.0.0",
        Instances={
            "MasterInstanceType": "m5.xlarge",
            "SlaveInstanceType": "m5.xlarge",
            "InstanceCount": 3,
            "KeepJobFlowAliveWhenNoSteps": True,
        },
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
        StepConcurrencyLevel=EMR_STEPS_AT_ONCE,
    )["JobFlowId"]
    documents = [
        {
            "ClusterId": cluster_id,
            "StepName": f"load {marker(seconds)}",
            "Args": ["spark-submit", "s3://scripts/load.py"],
        }
        for seconds in durations
    ]
    return documents, {}


def emrserverless(aws: Emulator, durations: list[float]) -> Prepared:
    for seconds in set(durations):
        aws.emrserverless_runs.add(marker(seconds), RunBehaviour(duration=seconds))
    application = aws.client("emr-serverless").create_application(
        name="etl", releaseLabel="emr-7.1.0", type="SPARK"
    )["applicationId"]
    documents = [
        {
            "Name": f"load {marker(seconds)}",
            "JobDriver": {"sparkSubmit": {"entryPoint": "s3://scripts/load.py"}},
        }
        for seconds in durations
    ]
    options = {
        "emrserverless_application_id": application,
        "emrserverless_execution_role_arn": ROLE,
    }
    return documents, options


def dms(aws: Emulator, durations: list[float]) -> Prepared:
    """One full-load replication task per execution (a task runs once at a time), on
    one replication instance and one pair of endpoints."""
    client = aws.client("dms")
    instance = client.create_replication_instance(
        ReplicationInstanceIdentifier="benchmark-instance",
        ReplicationInstanceClass="dms.t3.medium",
    )["ReplicationInstance"]["ReplicationInstanceArn"]
    source, target = (
        client.create_endpoint(
            EndpointIdentifier=f"benchmark-{kind}", EndpointType=kind, EngineName=engine
        )["Endpoint"]["EndpointArn"]
        for kind, engine in (("source", "postgres"), ("target", "s3"))
    )
    documents = []
    for index, seconds in enumerate(durations):
        identifier = f"load-{index:04d}"  # no identifier holds another
        aws.dms_tasks.add(identifier, RunBehaviour(duration=seconds))
        arn = client.create_replication_task(
            ReplicationTaskIdentifier=identifier,
            SourceEndpointArn=source,
            TargetEndpointArn=target,
            ReplicationInstanceArn=instance,
            MigrationType="full-load",
            TableMappings=json.dumps({"rules": []}),
        )["ReplicationTask"]["ReplicationTaskArn"]
        documents.append({"ReplicationTaskArn": arn})
    wait_until_ready(client, len(durations))
    return documents, {}


def wait_until_ready(client: Any, count: int, timeout: float = 30.0) -> None:
    """A task is "creating" for a moment; a start before it is "ready" is refused."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pages = client.get_paginator("describe_replication_tasks").paginate(WithoutSettings=True)
        statuses = [task["Status"] for page in pages for task in page["ReplicationTasks"]]
        if statuses.count("ready") == count:
            return
        time.sleep(0.1)
    raise TimeoutError("the replication tasks never became ready")


PREPARE = {
    "redshift": redshift,
    "emrstep": emrstep,
    "emrserverless": emrserverless,
    "dms": dms,
}
