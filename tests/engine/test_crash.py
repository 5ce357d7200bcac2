"""A worker killed mid-task is replaced without a second job run or a second report."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

from runners.local import Call, Emulator, RunBehaviour
from tests.engine.test_end_to_end import glue_job, task_machine
from tests.helpers import finished, wait_until
from tests.workers import config, worker_process


def kill_once(process: Any) -> Any:
    """An after-call hook: SIGKILL the worker once the call was served, before the
    worker reads the response."""
    fired: list[Call] = []

    def hook(call: Call) -> None:
        if not fired:
            fired.append(call)
            os.kill(process.pid, signal.SIGKILL)

    return hook


def test_worker_killed_after_starting_the_job_is_replaced(aws: Emulator, tmp_path: Path) -> None:
    sfn, glue = aws.client("stepfunctions"), aws.client("glue")
    activity = sfn.create_activity(name="GlueRunnerActivity")["activityArn"]
    glue_job(aws, "Nightly", RunBehaviour(duration=2.0))
    runner_config = config("glue", activity, lease_seconds=3)
    execution = sfn.start_execution(
        stateMachineArn=task_machine(sfn, "crash", activity),
        input=json.dumps({"GlueJobName": "Nightly"}),
    )["executionArn"]

    with worker_process(aws, tmp_path, runner_config, log_name="victim") as victim:
        aws.faults.on_call("glue:StartJobRun", kill_once(victim))
        assert wait_until(lambda: victim.poll() is not None, timeout=30)
    assert victim.returncode == -signal.SIGKILL
    assert len(glue.get_job_runs(JobName="Nightly")["JobRuns"]) == 1

    with worker_process(aws, tmp_path, runner_config, log_name="replacement"):
        done = finished(sfn, execution, timeout=30)

    assert done["status"] == "SUCCEEDED"
    assert aws.faults.calls["glue:StartJobRun"] == 1
    assert aws.faults.calls["states:SendTaskSuccess"] == 1
    assert len(glue.get_job_runs(JobName="Nightly")["JobRuns"]) == 1
    assert "task taken over" in (tmp_path / "replacement.log").read_text()


def test_sigterm_hands_tasks_to_the_next_worker_at_once(aws: Emulator, tmp_path: Path) -> None:
    """On SIGTERM the worker drains its polls, releases its leases and exits 0; the next
    worker takes the running job over without waiting for the lease to expire."""
    sfn = aws.client("stepfunctions")
    activity = sfn.create_activity(name="GlueRunnerActivity")["activityArn"]
    glue_job(aws, "Long", RunBehaviour(duration=4.0))
    runner_config = config("glue", activity, lease_seconds=600)
    execution = sfn.start_execution(
        stateMachineArn=task_machine(sfn, "drain", activity),
        input=json.dumps({"GlueJobName": "Long"}),
    )["executionArn"]

    with worker_process(aws, tmp_path, runner_config, log_name="first") as first:
        wait_until(lambda: aws.faults.calls["glue:StartJobRun"] == 1, timeout=30)
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0

    with worker_process(aws, tmp_path, runner_config, log_name="second"):
        done = finished(sfn, execution, timeout=30)

    assert done["status"] == "SUCCEEDED"
    assert aws.faults.calls["glue:StartJobRun"] == 1
    assert "task taken over" in (tmp_path / "second.log").read_text()


def test_a_stopped_execution_stops_the_run_a_dead_worker_started(
    aws: Emulator, tmp_path: Path
) -> None:
    """The run id never reached the store; the replacement finds the run by its task key
    and stops it once Step Functions says the task is closed."""
    sfn, glue = aws.client("stepfunctions"), aws.client("glue")
    activity = sfn.create_activity(name="GlueRunnerActivity")["activityArn"]
    glue_job(aws, "Forever", RunBehaviour(duration=600))
    runner_config = config("glue", activity, lease_seconds=2)
    execution = sfn.start_execution(
        stateMachineArn=task_machine(sfn, "orphan", activity),
        input=json.dumps({"GlueJobName": "Forever"}),
    )["executionArn"]

    with worker_process(aws, tmp_path, runner_config, log_name="victim") as victim:
        aws.faults.on_call("glue:StartJobRun", kill_once(victim))
        assert wait_until(lambda: victim.poll() is not None, timeout=30)
    sfn.stop_execution(executionArn=execution)
    [run] = glue.get_job_runs(JobName="Forever")["JobRuns"]

    with worker_process(aws, tmp_path, runner_config, log_name="cleaner"):
        wait_until(
            lambda: (
                glue.get_job_run(JobName="Forever", RunId=run["Id"])["JobRun"]["JobRunState"]
                in {"STOPPING", "STOPPED"}
            ),
            timeout=30,
        )

    assert aws.faults.calls["glue:StartJobRun"] == 1
    assert aws.faults.calls["glue:BatchStopJobRun"] == 1
