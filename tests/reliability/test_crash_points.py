"""Kill the worker (SIGKILL) right after each step of the crash-safety protocol, for each
runner, and check a new worker finishes the execution with one job and one report.

The steps are DESIGN.md's: the task was polled (nothing stored yet: the state machine's
heartbeat timeout and Retry bring it back), its record was stored, its job was started,
its job was seen finished, it was reported. The kill is triggered from the emulator's
side, when it has served the call that completes the step.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from runners.local import Call, Emulator
from runners.services.dms import FINISHED_REASONS
from tests.helpers import wait_until
from tests.reliability.conftest import Report
from tests.reliability.support import (
    RUNNERS,
    Ledger,
    kill_when,
    logs_hold_no_token,
    machine,
    make_flow,
    start_executions,
    wait_all,
    workers,
)

Step = tuple[str, Callable[[Call], bool]]


def polled(call: Call) -> bool:
    return "taskToken" in call.response_json()


def stored(table: str) -> Callable[[Call], bool]:
    def check(call: Call) -> bool:
        body = call.json()
        condition = body.get("ConditionExpression", "")
        return (
            call.status == 200
            and body.get("TableName") == table
            and "attribute_not_exists" in condition
        )

    return check


def accepted(call: Call) -> bool:
    return call.status == 200


def glue_finished(call: Call) -> bool:
    response = call.response_json()
    runs = response.get("JobRuns", []) + ([response["JobRun"]] if "JobRun" in response else [])
    return any(run.get("JobRunState") == "SUCCEEDED" for run in runs)


def athena_finished(call: Call) -> bool:
    executions = call.response_json().get("QueryExecutions", [])
    return any(e["Status"]["State"] == "SUCCEEDED" for e in executions)


def crawl_finished(call: Call) -> bool:
    crawlers = call.response_json().get("Crawlers", [])
    return any(
        c.get("State") == "READY" and (c.get("LastCrawl") or {}).get("Status") == "SUCCEEDED"
        for c in crawlers
    )


def redshift_finished(call: Call) -> bool:
    return call.response_json().get("Status") == "FINISHED"


def emr_step_finished(call: Call) -> bool:
    """A check (``ListSteps`` by ``StepIds``) that shows a step COMPLETED."""
    steps = call.response_json().get("Steps", []) if call.json().get("StepIds") else []
    return any(step["Status"]["State"] == "COMPLETED" for step in steps)


def emrserverless_finished(call: Call) -> bool:
    run = call.response_json().get("jobRun", {})
    return bool(run.get("state") == "SUCCESS")


def dms_finished(call: Call) -> bool:
    tasks = call.response_json().get("ReplicationTasks", [])
    return any(t["Status"] == "stopped" and t.get("StopReason") in FINISHED_REASONS for t in tasks)


def steps(runner: str, table: str) -> dict[str, Step]:
    """Each protocol step of ``runner``: the call that completes it, and which of them."""
    common: dict[str, Step] = {
        "polled": ("states:GetActivityTask", polled),
        "stored": ("dynamodb:PutItem", stored(table)),
    }
    jobs: dict[str, dict[str, Step]] = {
        "glue": {
            "started": ("glue:StartJobRun", accepted),
            "finished": ("glue:GetJobRun*", glue_finished),
        },
        "athena": {
            "started": ("athena:StartQueryExecution", accepted),
            "finished": ("athena:BatchGetQueryExecution", athena_finished),
        },
        "crawler": {
            "started": ("glue:StartCrawler", accepted),
            "finished": ("glue:BatchGetCrawlers", crawl_finished),
        },
        "s3wait": {},  # the object is there: the wait settles when it starts
        "redshift": {
            "started": ("redshift-data:ExecuteStatement", accepted),
            "finished": ("redshift-data:DescribeStatement", redshift_finished),
        },
        "emrstep": {
            "started": ("elasticmapreduce:AddJobFlowSteps", accepted),
            "finished": ("elasticmapreduce:ListSteps", emr_step_finished),
        },
        "emrserverless": {
            "started": ("emr-serverless:StartJobRun", accepted),
            "finished": ("emr-serverless:GetJobRun", emrserverless_finished),
        },
        "dms": {
            "started": ("dms:StartReplicationTask", accepted),
            "finished": ("dms:DescribeReplicationTasks", dms_finished),
        },
    }
    return {**common, **jobs[runner], "reported": ("states:SendTaskSuccess", accepted)}


CASES = [(runner, step) for runner in RUNNERS for step in steps(runner, "t")]


@pytest.mark.parametrize(("runner", "step"), CASES, ids=[f"{r}-{s}" for r, s in CASES])
def test_a_worker_killed_after_each_step_is_replaced_without_a_second_job_or_report(
    aws: Emulator, tmp_path: Path, report: Report, runner: str, step: str
) -> None:
    flow = make_flow(aws, runner)
    worker_config = flow.config()
    operation, predicate = steps(runner, worker_config.table)[step]
    ledger = Ledger(aws)
    [execution] = start_executions(aws, flow, machine(aws, flow), 1)

    with workers(aws, tmp_path, worker_config, name="victim") as [victim]:
        aws.faults.on_call(operation, kill_when(victim, predicate))
        wait_until(lambda: victim.poll() is not None, timeout=30)
    killed_at = time.monotonic()
    assert victim.returncode == -signal.SIGKILL  # killed at the step, not ended by itself

    with workers(aws, tmp_path, worker_config, name="replacement"):
        status = wait_all(aws, [execution], timeout=60)[execution]
    recovery = time.monotonic() - killed_at

    report.add(
        "Worker killed (SIGKILL) after each crash-safety step, each runner",
        executions=1,
        lost=int(status != "SUCCEEDED"),
        duplicated_jobs=ledger.duplicated_starts,
        duplicated_reports=ledger.duplicated_reports,
        recovery_seconds=recovery,
    )
    assert status == "SUCCEEDED"
    assert ledger.jobs_started == (0 if runner == "s3wait" else 1)
    assert ledger.duplicated_reports == 0
    assert ledger.reported == 1
    assert logs_hold_no_token(aws, tmp_path)
    output = json.loads(
        aws.client("stepfunctions").describe_execution(executionArn=execution)["output"]
    )
    assert output
