"""Several workers share one job table and one activity; one dies mid-run."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest

from runners.local import Emulator
from tests.helpers import wait_until
from tests.reliability.conftest import Report
from tests.reliability.support import (
    LEASE_SECONDS,
    Ledger,
    logs_hold_no_token,
    machine,
    make_flow,
    start_executions,
    wait_all,
    workers,
)


def takeovers(log: Path) -> list[float]:
    """Wall-clock times at which this worker took a task over."""
    times = []
    for line in log.read_text(errors="replace").splitlines():
        if '"task taken over"' in line:
            stamp = json.loads(line)["timestamp"]
            times.append(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
    return times


def serving(log: Path) -> bool:
    return '"worker started"' in log.read_text(errors="replace")


@pytest.mark.parametrize(
    "executions", [pytest.param(60, id="60"), pytest.param(300, id="300", marks=pytest.mark.slow)]
)
def test_three_workers_lose_one_and_run_every_task_exactly_once(
    aws: Emulator, tmp_path: Path, report: Report, executions: int
) -> None:
    flow = make_flow(aws, "glue", job_seconds=6.0)
    ledger = Ledger(aws)
    machine_arn = machine(aws, flow)
    worker_config = flow.config(pollers=4)

    with workers(aws, tmp_path, worker_config, count=3, name="fleet") as fleet:
        # Every worker serves before the burst (one still starting would get no share),
        # and jobs outlast the burst of starts, so the victim dies holding its share.
        logs = [tmp_path / f"fleet-{n}.log" for n in range(3)]
        wait_until(lambda: all(serving(log) for log in logs), timeout=60)
        arns = start_executions(aws, flow, machine_arn, executions)
        wait_until(lambda: ledger.jobs_started >= executions * 0.9, timeout=120)
        victim = fleet[0]
        os.kill(victim.pid, signal.SIGKILL)
        killed_at, killed_wall = time.monotonic(), time.time()
        statuses = wait_all(aws, arns, timeout=120 + executions)
        done_at = time.monotonic()
        assert all(worker.poll() is None for worker in fleet[1:])

    taken = [t for n in (1, 2) for t in takeovers(tmp_path / f"fleet-{n}.log")]
    lost = sum(status != "SUCCEEDED" for status in statuses.values())
    report.add(
        "Three workers share a table; one killed mid-run",
        executions=executions,
        lost=lost,
        duplicated_jobs=ledger.duplicated_starts,
        duplicated_reports=ledger.duplicated_reports,
        recovery_seconds=(max(taken) - killed_wall) if taken else done_at - killed_at,
    )
    assert lost == 0
    assert ledger.jobs_started == executions
    assert ledger.duplicated_starts == 0
    assert (ledger.reported, ledger.duplicated_reports) == (executions, 0)
    # The dead worker held tasks; the others took each over once its lease ran out
    # (plus one claim round, a quarter lease, and the clock-skew margin).
    assert taken
    assert max(taken) - killed_wall <= LEASE_SECONDS * 1.25 + worker_config.clock_skew_seconds + 2
    assert logs_hold_no_token(aws, tmp_path)
