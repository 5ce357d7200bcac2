"""Records whose stored input no longer parses (validation tightened by an upgrade, or a
record edited by hand), met by the worker that takes them over."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from runners.local import Emulator
from tests.helpers import events, wait_until
from tests.reliability.conftest import Report
from tests.reliability.support import (
    Ledger,
    logs_hold_no_token,
    machine,
    make_flow,
    patient_client,
    start_executions,
    wait_all,
    workers,
)

EXECUTIONS, POISONED = 20, 5


def poison(aws: Emulator, table: str, count: int) -> set[str]:
    """Make the stored input of the first ``count`` tasks (by their ``--n``) unreadable
    to the runner; returns those inputs' ``--n``."""
    dynamodb = patient_client(aws, "dynamodb")
    poisoned = {str(n) for n in range(count)}
    for item in dynamodb.scan(TableName=table)["Items"]:
        document = json.loads(item["task_input"]["S"])
        if document["Arguments"]["--n"] in poisoned:
            document["GlueJobName"] = 7  # no longer a job name
            dynamodb.update_item(
                TableName=table,
                Key={"task_id": item["task_id"]},
                UpdateExpression="SET task_input = :input",
                ExpressionAttributeValues={":input": {"S": json.dumps(document)}},
            )
    return poisoned


def failed_at(sfn: Any, execution: str) -> tuple[str, float]:
    """The task failure's error and when (epoch seconds) it was reported."""
    [failed] = events(sfn, execution, "ActivityFailed")
    return failed["activityFailedEventDetails"].get("error", ""), failed["timestamp"].timestamp()


def test_a_poison_record_fails_its_task_once_and_the_rest_complete(
    aws: Emulator, tmp_path: Path, report: Report
) -> None:
    # Jobs outlast the takeover, so the second worker meets every record still open.
    flow = make_flow(aws, "glue", job_seconds=8.0)
    ledger = Ledger(aws)
    machine_arn = machine(aws, flow)
    settings = flow.config(pollers=4)
    sfn = patient_client(aws, "stepfunctions")

    arns = start_executions(aws, flow, machine_arn, EXECUTIONS)
    with workers(aws, tmp_path, settings, name="first") as [first]:
        wait_until(lambda: ledger.jobs_started == EXECUTIONS, timeout=60)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    poisoned = poison(aws, settings.table, POISONED)
    killed_at = time.time()
    with workers(aws, tmp_path, settings, name="second") as [second]:
        statuses = wait_all(aws, arns, timeout=120)
        alive = second.poll() is None

    by_n = {
        arn: json.loads(sfn.describe_execution(executionArn=arn)["input"])["Arguments"]["--n"]
        for arn in arns
    }
    bad = [arn for arn in arns if by_n[arn] in poisoned]
    good = [arn for arn in arns if by_n[arn] not in poisoned]
    failures = {arn: failed_at(sfn, arn) for arn in bad if statuses[arn] == "FAILED"}
    attack = "Stored input no longer parses (poison record) at a takeover"
    for arn in bad:
        error, at = failures.get(arn, ("", killed_at))
        report.add(attack, 1, int(error != "RunnerInputError"), 0, 0, at - killed_at)
    lost = sum(statuses[arn] != "SUCCEEDED" for arn in good)
    report.add(attack, len(good), lost, ledger.duplicated_starts, ledger.duplicated_reports)

    assert alive
    assert {error for error, _at in failures.values()} == {"RunnerInputError"}
    assert len(failures) == POISONED
    assert [statuses[arn] for arn in good] == ["SUCCEEDED"] * len(good)
    assert (ledger.jobs_started, ledger.duplicated_starts) == (EXECUTIONS, 0)
    assert (ledger.reported, ledger.duplicated_reports) == (EXECUTIONS, 0)
    assert logs_hold_no_token(aws, tmp_path)
