"""SIGTERM in the middle of a burst of tasks loses none of them."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from runners.local import Emulator
from tests.helpers import events, wait_until
from tests.reliability.conftest import Report
from tests.reliability.support import (
    Ledger,
    machine,
    make_flow,
    patient_client,
    start_executions,
    wait_all,
    workers,
)


@pytest.mark.parametrize(
    "executions", [pytest.param(40, id="40"), pytest.param(200, id="200", marks=pytest.mark.slow)]
)
def test_sigterm_during_a_burst_hands_every_task_on(
    aws: Emulator, tmp_path: Path, report: Report, executions: int
) -> None:
    """Every task the worker received is stored or reported before it exits; the next
    worker finishes them at once, with no task left to time out."""
    flow = make_flow(aws, "glue", job_seconds=4.0)
    ledger = Ledger(aws)
    machine_arn = machine(aws, flow)
    worker_config = flow.config(pollers=8)

    with workers(aws, tmp_path, worker_config, name="leaving") as [leaving]:
        arns = start_executions(aws, flow, machine_arn, executions)
        wait_until(lambda: ledger.jobs_started >= executions // 3, timeout=60)
        leaving.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        assert leaving.wait(timeout=30) == 0
    drained = time.monotonic() - stopped_at

    with workers(aws, tmp_path, worker_config, name="next"):
        statuses = wait_all(aws, arns, timeout=120)
    recovery = time.monotonic() - stopped_at

    sfn = patient_client(aws, "stepfunctions")
    timed_out = [arn for arn in arns if events(sfn, arn, "ActivityTimedOut")]
    lost = sum(status != "SUCCEEDED" for status in statuses.values()) + len(timed_out)
    report.add(
        "SIGTERM during a burst of tasks",
        executions=executions,
        lost=lost,
        duplicated_jobs=ledger.duplicated_starts,
        duplicated_reports=ledger.duplicated_reports,
        recovery_seconds=recovery,
    )
    assert drained < 10  # the emulator's long poll is 1 s; on AWS up to 60 s
    assert lost == 0
    assert timed_out == []
    assert (ledger.jobs_started, ledger.duplicated_starts) == (executions, 0)
    assert (ledger.reported, ledger.duplicated_reports) == (executions, 0)


GRACE_SECONDS = 3.0


def test_sigterm_while_the_table_does_not_answer_exits_within_the_grace_period(
    aws: Emulator, tmp_path: Path, report: Report, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DynamoDB holds every call while tasks arrive; SIGTERM then cannot store or release
    anything. The worker exits 1 once its grace period is over, saying what it left; the
    next worker finishes every task (held ones by lease expiry, unstored ones through
    their state's heartbeat timeout and Retry), none started or reported twice."""
    monkeypatch.setenv("RUNNERS_SHUTDOWN_GRACE_SECONDS", str(GRACE_SECONDS))
    flow = make_flow(aws, "glue", job_seconds=4.0)
    ledger = Ledger(aws)
    outage = 15.0
    # Heartbeats stop with the worker: the state allows for the outage and a takeover.
    machine_arn = machine(aws, flow, heartbeat_seconds=int(outage) + 25)
    worker_config = flow.config(pollers=4)
    sfn = patient_client(aws, "stepfunctions")

    with workers(aws, tmp_path, worker_config, name="stuck") as [stuck]:
        held = start_executions(aws, flow, machine_arn, 10)
        wait_until(lambda: ledger.jobs_started == 10, timeout=60)
        aws.faults.outage(outage, pattern="dynamodb:*")
        outage_ends = time.monotonic() + outage
        unstored = start_executions(aws, flow, machine_arn, 5)
        wait_until(lambda: all(events(sfn, arn, "ActivityStarted") for arn in unstored))
        stuck.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        exit_code = stuck.wait(timeout=30)
        exited = time.monotonic() - stopped_at
    log = (tmp_path / "stuck-0.log").read_text(errors="replace")

    time.sleep(max(0.0, outage_ends - time.monotonic()))
    with workers(aws, tmp_path, worker_config, name="next"):
        statuses = wait_all(aws, [*held, *unstored], timeout=120)
    recovery = time.monotonic() - stopped_at

    lost = sum(status != "SUCCEEDED" for status in statuses.values())
    report.add(
        "SIGTERM while DynamoDB does not answer (15 s), 3 s grace period",
        executions=len(statuses),
        lost=lost,
        duplicated_jobs=ledger.duplicated_starts,
        duplicated_reports=ledger.duplicated_reports,
        recovery_seconds=recovery,
    )
    assert exit_code == 1
    assert GRACE_SECONDS <= exited < GRACE_SECONDS + 3
    assert "shutdown grace period over" in log
    assert lost == 0
    assert (ledger.jobs_started, ledger.duplicated_starts) == (15, 0)
    assert (ledger.reported, ledger.duplicated_reports) == (15, 0)
