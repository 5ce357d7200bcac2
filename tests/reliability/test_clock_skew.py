"""A worker whose wall clock runs 5 s ahead shares a table with one whose clock is right.

Leases compare wall clocks of different hosts. The assumption is NTP-synced hosts
(milliseconds apart); ``clock_skew_seconds`` (default 5) is the margin that keeps a
lease safe from a claimer whose clock is ahead by up to that much. The worker here runs
with ``time.time`` patched 5 s ahead before the runners are imported (``tests.workers``);
with the margin it takes over no live lease, and without it (0.5 s) it does.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from runners.local import Emulator
from tests.helpers import wait_until
from tests.reliability.conftest import Report
from tests.reliability.support import (
    LEASE_SECONDS,
    Ledger,
    machine,
    make_flow,
    start_executions,
    wait_all,
    workers,
)
from tests.reliability.test_fleet import serving, takeovers

AHEAD_SECONDS = 5.0


@pytest.mark.parametrize(("margin", "steals"), [(5.0, False), (0.5, True)], ids=["5s", "0.5s"])
def test_a_worker_whose_clock_is_ahead_takes_no_live_lease(
    aws: Emulator, tmp_path: Path, report: Report, margin: float, steals: bool
) -> None:
    flow = make_flow(aws, "glue", job_seconds=20.0)  # still running at the kill
    ledger = Ledger(aws)
    machine_arn = machine(aws, flow)
    config = flow.config(pollers=2, clock_skew_seconds=margin)

    with (
        workers(aws, tmp_path, config, name="right") as [right],
        workers(aws, tmp_path, config, name="ahead", clock_ahead_seconds=AHEAD_SECONDS),
    ):
        # Both serve before the executions start, so the right one holds its share.
        logs = [tmp_path / "right-0.log", tmp_path / "ahead-0.log"]
        wait_until(lambda: all(serving(log) for log in logs), timeout=60)
        arns = start_executions(aws, flow, machine_arn, 20)
        wait_until(lambda: ledger.jobs_started == 20, timeout=60)
        time.sleep(3 * LEASE_SECONDS)  # several claim rounds while every lease is live
        taken_while_alive = takeovers(tmp_path / "ahead-0.log")
        os.kill(right.pid, signal.SIGKILL)
        killed_wall = time.time()
        statuses = wait_all(aws, arns, timeout=120)
    taken_after_kill = [t for t in takeovers(tmp_path / "ahead-0.log") if t >= killed_wall]

    lost = sum(status != "SUCCEEDED" for status in statuses.values())
    if steals:  # the control: the same run without the margin
        assert taken_while_alive
        return
    report.add(
        "A worker whose clock is 5 s ahead shares the table; the other killed",
        executions=len(arns),
        lost=lost,
        duplicated_jobs=ledger.duplicated_starts,
        duplicated_reports=ledger.duplicated_reports,
        recovery_seconds=(max(taken_after_kill) - killed_wall) if taken_after_kill else None,
    )
    assert taken_while_alive == []
    assert lost == 0
    assert (ledger.jobs_started, ledger.duplicated_starts) == (20, 0)
    assert (ledger.reported, ledger.duplicated_reports) == (20, 0)
    # The right worker held tasks; the one ahead took each over once its lease ran out.
    assert taken_after_kill
    assert max(taken_after_kill) - killed_wall <= LEASE_SECONDS * 1.25 + 2
