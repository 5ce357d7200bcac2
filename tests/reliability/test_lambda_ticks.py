"""The scheduled-Lambda path under attack: each tick is its own process running
``runners.handlers.runner.handler`` with the context Lambda gives it, and is SIGKILLed
at its timeout as Lambda ends a function that overruns.

A tick claims what earlier ticks left, checks and reports, polls while a whole long
poll still fits, and releases its leases before it returns (``runners/handlers/tick.py``).
Here ticks are 20 s long (their own deadline 10 s before that); polls last 1 s.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from runners.engine.store import create_job_table
from runners.local import Emulator
from runners.settings import RunnerConfig
from tests.reliability.conftest import Report
from tests.reliability.support import (
    Flow,
    Ledger,
    Tick,
    kill_when,
    logs_hold_no_token,
    machine,
    make_flow,
    start_executions,
    statuses_now,
    ticks,
    ticks_until_done,
    wait_all,
)
from tests.reliability.test_crash_points import steps

TICK_RUNNERS = ("glue", "athena")  # a start found by search, and an idempotent start


def tick_flow(aws: Emulator, runner: str, job_seconds: float = 1.5) -> tuple[Flow, RunnerConfig]:
    """A runner's flow and config for ticks, with its table created as the stack creates
    it (a tick never creates tables)."""
    flow = make_flow(aws, runner, job_seconds)
    config = flow.config()
    create_job_table(config.table, config.region)
    return flow, config


CASES = [(runner, step) for runner in TICK_RUNNERS for step in steps(runner, "t")]


@pytest.mark.parametrize(("runner", "step"), CASES, ids=[f"{r}-{s}" for r, s in CASES])
def test_a_tick_killed_after_each_step_is_finished_by_later_ticks(
    aws: Emulator, tmp_path: Path, report: Report, runner: str, step: str
) -> None:
    flow, config = tick_flow(aws, runner)
    operation, predicate = steps(runner, config.table)[step]
    ledger = Ledger(aws)
    [execution] = start_executions(aws, flow, machine(aws, flow), 1)

    with ticks(aws, tmp_path) as start:
        victim = start(config, "victim")
        aws.faults.on_call(operation, kill_when(victim.process, predicate))
        victim.wait()
        killed_at = time.monotonic()
        statuses = ticks_until_done(start, config, aws, [execution], timeout=90)
    recovery = time.monotonic() - killed_at

    report.add(
        "Lambda tick killed (SIGKILL) after each crash-safety step, Glue and Athena",
        executions=1,
        lost=int(statuses[execution] != "SUCCEEDED"),
        duplicated_jobs=ledger.duplicated_starts,
        duplicated_reports=ledger.duplicated_reports,
        recovery_seconds=recovery,
    )
    assert victim.process.returncode == -signal.SIGKILL
    assert not victim.timed_out  # killed at the step, not at the end of its time
    assert statuses[execution] == "SUCCEEDED"
    assert ledger.jobs_started == 1
    assert ledger.duplicated_reports == 0
    assert ledger.reported == 1
    assert logs_hold_no_token(aws, tmp_path)


def test_overlapping_ticks_share_the_tasks_without_a_second_job_or_report(
    aws: Emulator, tmp_path: Path, report: Report
) -> None:
    """A schedule faster than its ticks are long (rate(1 minute) with a 5-minute timeout,
    or EventBridge delivering one event twice): several ticks poll, claim and report
    over one table at once, while tasks keep arriving."""
    flow, config = tick_flow(aws, "glue", job_seconds=4.0)
    machine_arn = machine(aws, flow)
    ledger = Ledger(aws)
    executions: list[str] = []
    started: list[Tick] = []
    most_at_once = 0

    with ticks(aws, tmp_path) as start:
        began = time.monotonic()
        for beat in range(12):  # 3 executions every 1.5 s; a new tick every 3 s
            executions += start_executions(aws, flow, machine_arn, 3)
            if beat % 2 == 0:
                started.append(start(config, f"tick-{len(started) + 1}"))
            most_at_once = max(most_at_once, sum(t.process.poll() is None for t in started))
            time.sleep(1.5)
        while (
            time.monotonic() - began < 120 and "RUNNING" in statuses_now(aws, executions).values()
        ):
            started.append(start(config, f"tick-{len(started) + 1}"))
            time.sleep(3.0)
        statuses = wait_all(aws, executions, timeout=60)
        for tick in started:
            tick.wait()

    lost = sum(status != "SUCCEEDED" for status in statuses.values())
    report.add(
        "Overlapping ticks (a new 20 s tick every 3 s while tasks arrive)",
        executions=len(executions),
        lost=lost,
        duplicated_jobs=ledger.duplicated_starts,
        duplicated_reports=ledger.duplicated_reports,
    )
    summaries = [tick.summary() for tick in started]
    working = [s for s in summaries if s and s["runners"][0]["received"] > 0]
    assert most_at_once >= 3
    assert len(working) >= 2  # the tasks were shared, not all taken by one tick
    assert lost == 0
    assert ledger.jobs_started == len(executions)
    assert ledger.duplicated_reports == 0
    assert ledger.reported == len(executions)
    assert not any(tick.timed_out for tick in started)


def test_a_tick_whose_polls_outlast_its_time_returns_before_lambda_ends_it(
    aws: Emulator, tmp_path: Path, report: Report
) -> None:
    """Step Functions holds the tick's long polls past the tick's deadline (here: every
    ``GetActivityTask`` held 25 s). The tick gives up on them within its shutdown grace
    period and returns before its timeout; a task a held poll hands out later goes to a
    poller that is gone, and comes back through its state's heartbeat timeout and Retry."""
    flow, config = tick_flow(aws, "glue")
    ledger = Ledger(aws)
    executions = start_executions(aws, flow, machine(aws, flow), 3)
    outage = aws.faults.outage(25.0, pattern="states:GetActivityTask")
    outage_ends = time.monotonic() + 25.0

    with ticks(aws, tmp_path) as start:
        victim = start(config, "victim")
        victim.wait()
        time.sleep(max(0.0, outage_ends - time.monotonic()))
        statuses = ticks_until_done(start, config, aws, executions, timeout=90)
    recovery = time.monotonic() - outage_ends
    aws.faults.remove(outage)

    lost = sum(status != "SUCCEEDED" for status in statuses.values())
    report.add(
        "Lambda tick whose long polls are held past its timeout (25 s)",
        executions=len(executions),
        lost=lost,
        duplicated_jobs=ledger.duplicated_starts,
        duplicated_reports=ledger.duplicated_reports,
        recovery_seconds=recovery,
    )
    summary = victim.summary()
    assert victim.process.returncode == 0, "the tick must return before Lambda ends it"
    assert summary is not None
    assert summary["runners"][0]["received"] == 0
    assert lost == 0
    assert ledger.jobs_started == len(executions)
    assert ledger.duplicated_reports == 0


def test_a_tick_whose_release_hangs_returns_within_its_time(
    aws: Emulator, tmp_path: Path, report: Report
) -> None:
    """DynamoDB stops answering just before the tick's deadline while it holds three
    running jobs: releasing their leases hangs. The tick gives up after its shutdown
    grace period (8 s, inside the 10 s it keeps before Lambda's timeout), returns saying
    what it left, and later ticks take the tasks over once the table answers."""
    flow, config = tick_flow(aws, "glue", job_seconds=20.0)
    ledger = Ledger(aws)
    executions = start_executions(aws, flow, machine(aws, flow, heartbeat_seconds=60), 3)

    with ticks(aws, tmp_path) as start:
        victim = start(config, "victim")
        time.sleep(9.0)  # the tick's deadline is at 10 s; its jobs are running
        outage = aws.faults.outage(20.0, pattern="dynamodb:*")
        outage_ends = time.monotonic() + 20.0
        victim.wait()
        statuses = ticks_until_done(start, config, aws, executions, timeout=120)
    recovery = time.monotonic() - outage_ends
    aws.faults.remove(outage)

    lost = sum(status != "SUCCEEDED" for status in statuses.values())
    report.add(
        "Lambda tick whose lease release hangs (DynamoDB held 20 s at its deadline)",
        executions=len(executions),
        lost=lost,
        duplicated_jobs=ledger.duplicated_starts,
        duplicated_reports=ledger.duplicated_reports,
        recovery_seconds=recovery,
    )
    summary = victim.summary()
    assert victim.process.returncode == 0
    assert not victim.timed_out
    assert summary is not None
    assert summary["left_behind"] == {"held": 3, "unstored": 0}
    assert lost == 0
    assert ledger.jobs_started == len(executions)
    assert ledger.duplicated_reports == 0


def test_a_tick_that_starts_while_dynamodb_does_not_answer_takes_no_task(
    aws: Emulator, tmp_path: Path, report: Report
) -> None:
    """Every DynamoDB call held for 15 s from the tick's start: its table check waits,
    its deadline passes, and it polls nothing (a task it took could not be stored)."""
    flow, config = tick_flow(aws, "glue")
    ledger = Ledger(aws)
    executions = start_executions(aws, flow, machine(aws, flow), 3)
    polls_before = aws.faults.calls["states:GetActivityTask"]
    outage = aws.faults.outage(15.0, pattern="dynamodb:*")
    outage_ends = time.monotonic() + 15.0

    with ticks(aws, tmp_path) as start:
        victim = start(config, "victim")
        victim.wait()
        polls_by_victim = aws.faults.calls["states:GetActivityTask"] - polls_before
        statuses = ticks_until_done(start, config, aws, executions, timeout=90)
    recovery = time.monotonic() - outage_ends
    aws.faults.remove(outage)

    lost = sum(status != "SUCCEEDED" for status in statuses.values())
    report.add(
        "Lambda tick that starts while DynamoDB does not answer (15 s)",
        executions=len(executions),
        lost=lost,
        duplicated_jobs=ledger.duplicated_starts,
        duplicated_reports=ledger.duplicated_reports,
        recovery_seconds=recovery,
    )
    assert polls_by_victim == 0
    assert not victim.timed_out  # it ended by itself, inside its time
    assert lost == 0
    assert ledger.jobs_started == len(executions)
    assert ledger.duplicated_reports == 0
