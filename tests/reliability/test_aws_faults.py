"""AWS misbehaving: throttling, HTTP 500s and lost responses on every call; an outage."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runners.local import Emulator, Fault
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


@pytest.mark.parametrize("runner", ["glue", "athena"])
@pytest.mark.parametrize(
    "executions", [pytest.param(30, id="30"), pytest.param(200, id="200", marks=pytest.mark.slow)]
)
def test_throttling_errors_and_lost_responses_on_every_call(
    aws: Emulator, tmp_path: Path, report: Report, runner: str, executions: int
) -> None:
    """A share of every call is throttled, answered 500, or applied with its response
    lost; every execution still succeeds once, and the worker never exits."""
    flow = make_flow(aws, runner, job_seconds=1.0)
    ledger = Ledger(aws)
    machine_arn = machine(aws, flow)
    arns = start_executions(aws, flow, machine_arn, executions)
    for fault in (
        Fault("*", "throttle", rate=0.10),
        Fault("*", "error", rate=0.05),
        Fault("*", "lost", rate=0.03),
    ):
        aws.faults.add(fault)
    started = time.monotonic()

    with workers(aws, tmp_path, flow.config()) as [worker]:
        statuses = wait_all(aws, arns, timeout=180 + executions)
        alive = worker.poll() is None

    lost = sum(status != "SUCCEEDED" for status in statuses.values())
    report.add(
        "Throttling (10%), HTTP 500 (5%) and lost responses (3%) on every call",
        executions=executions,
        lost=lost,
        duplicated_jobs=ledger.duplicated_starts,
        duplicated_reports=ledger.duplicated_reports,
    )
    assert alive
    assert lost == 0, statuses
    assert ledger.duplicated_starts == 0
    assert (ledger.reported, ledger.duplicated_reports) == (executions, 0)
    assert logs_hold_no_token(aws, tmp_path)
    assert time.monotonic() - started < 180 + executions


@pytest.mark.parametrize(
    "outage", [pytest.param(8.0, id="8s"), pytest.param(30.0, id="30s", marks=pytest.mark.slow)]
)
def test_an_outage_ends_and_the_worker_recovers_by_itself(
    aws: Emulator, tmp_path: Path, report: Report, outage: float
) -> None:
    """The endpoint stops answering (every call hangs) while jobs run and tasks wait to
    be polled, then comes back; everything completes, once."""
    flow = make_flow(aws, "glue", job_seconds=3.0)
    ledger = Ledger(aws)
    # Heartbeats cannot get through an outage: the state allows for one.
    machine_arn = machine(aws, flow, heartbeat_seconds=int(outage) + 30)
    with workers(aws, tmp_path, flow.config()) as [worker]:
        arns = start_executions(aws, flow, machine_arn, 20)
        wait_until(lambda: ledger.jobs_started >= 10, timeout=30)
        aws.faults.outage(outage)
        time.sleep(outage)
        back_at = time.monotonic()
        statuses = wait_all(aws, arns, timeout=120)
        recovered = time.monotonic() - back_at
        alive = worker.poll() is None

    lost = sum(status != "SUCCEEDED" for status in statuses.values())
    report.add(
        f"Endpoint outage of {outage:.0f} s",
        executions=len(statuses),
        lost=lost,
        duplicated_jobs=ledger.duplicated_starts,
        duplicated_reports=ledger.duplicated_reports,
        recovery_seconds=recovered,
    )
    assert alive
    assert lost == 0, statuses
    assert (ledger.jobs_started, ledger.duplicated_starts) == (20, 0)
    assert (ledger.reported, ledger.duplicated_reports) == (20, 0)


@pytest.mark.parametrize(
    "outage", [pytest.param(10.0, id="10s"), pytest.param(30.0, id="30s", marks=pytest.mark.slow)]
)
def test_tasks_that_arrive_while_dynamodb_does_not_answer_are_kept_and_run_once(
    aws: Emulator, tmp_path: Path, report: Report, outage: float
) -> None:
    """Only DynamoDB stops answering (Step Functions and Glue are up): jobs keep running
    and tasks keep arriving that cannot be stored. The worker holds each received task
    until the table answers (it never starts a job it has not recorded), then runs them
    all, once; leases that lapsed meanwhile are its own again."""
    flow = make_flow(aws, "glue", job_seconds=3.0)
    ledger = Ledger(aws)
    # Received tasks send no heartbeat until they are stored: the state allows for it.
    machine_arn = machine(aws, flow, heartbeat_seconds=int(outage) + 30)
    with workers(aws, tmp_path, flow.config(pollers=4)) as [worker]:
        running = start_executions(aws, flow, machine_arn, 10)
        wait_until(lambda: ledger.jobs_started == 10, timeout=30)
        aws.faults.outage(outage, pattern="dynamodb:*")
        back_at = time.monotonic() + outage
        arriving = start_executions(aws, flow, machine_arn, 10)
        sfn = patient_client(aws, "stepfunctions")
        time.sleep(max(0.0, back_at - time.monotonic() - 2.0))
        received_during_outage = sum(bool(events(sfn, a, "ActivityStarted")) for a in arriving)
        # Read just before the end: the held writes are answered the moment it ends, and
        # the starts that follow them (within milliseconds) are no longer during it.
        time.sleep(max(0.0, back_at - time.monotonic() - 0.5))
        started_during_outage = ledger.jobs_started - 10
        statuses = wait_all(aws, [*running, *arriving], timeout=120)
        recovered = time.monotonic() - back_at
        alive = worker.poll() is None

    lost = sum(status != "SUCCEEDED" for status in statuses.values())
    report.add(
        f"DynamoDB does not answer for {outage:.0f} s while tasks arrive",
        executions=len(statuses),
        lost=lost,
        duplicated_jobs=ledger.duplicated_starts,
        duplicated_reports=ledger.duplicated_reports,
        recovery_seconds=recovered,
    )
    assert alive
    assert received_during_outage > 0  # the worker did take tasks it could not store
    assert started_during_outage == 0  # and started no job for a task the table does not know
    assert lost == 0, statuses
    assert (ledger.jobs_started, ledger.duplicated_starts) == (20, 0)
    assert (ledger.reported, ledger.duplicated_reports) == (20, 0)
