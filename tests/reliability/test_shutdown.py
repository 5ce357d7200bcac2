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
