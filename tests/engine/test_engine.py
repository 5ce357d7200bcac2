"""Engine behaviour between workers: takeover, lost leases, backpressure."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from runners.engine.engine import Engine
from runners.local import Emulator, RunBehaviour
from runners.runtime import open_engines
from tests.engine.test_end_to_end import glue_job, task_machine
from tests.helpers import finished, wait_until
from tests.workers import config, running_worker


def test_an_expired_lease_is_taken_over_and_the_old_owner_lets_go(aws: Emulator) -> None:
    sfn = aws.client("stepfunctions")
    activity = sfn.create_activity(name="GlueRunnerActivity")["activityArn"]
    glue_job(aws, "Job", RunBehaviour(duration=3.0))
    execution = sfn.start_execution(
        stateMachineArn=task_machine(sfn, "lease", activity),
        input=json.dumps({"GlueJobName": "Job"}),
    )["executionArn"]
    runner_config = config("glue", activity, lease_seconds=1.0)

    async def scenario() -> tuple[Engine[Any], Engine[Any]]:
        async with (
            open_engines([runner_config], "a", create_tables=True) as [first],
            open_engines([runner_config], "b") as [second],
        ):
            task = await first.channel.poll()
            assert task is not None
            await first.accept(task)
            # The first owner stalls past its lease and the clock-skew margin.
            await asyncio.sleep(
                runner_config.lease_seconds + runner_config.clock_skew_seconds + 0.2
            )
            assert await second.claim() == 1
            await first.check()  # its next write is refused: it lets go
            while second.in_flight:
                await asyncio.sleep(0.3)
                await second.check()
            return first, second

    first, second = asyncio.run(scenario())

    assert (first.counters.lost, len(first.in_flight)) == (1, 0)
    assert (second.counters.claimed, second.counters.succeeded) == (1, 1)
    assert finished(sfn, execution)["status"] == "SUCCEEDED"
    assert aws.faults.calls["glue:StartJobRun"] == 1
    assert aws.faults.calls["states:SendTaskSuccess"] == 1


def test_polling_pauses_at_the_in_flight_cap(aws: Emulator) -> None:
    sfn = aws.client("stepfunctions")
    activity = sfn.create_activity(name="GlueRunnerActivity")["activityArn"]
    glue_job(aws, "Capped", RunBehaviour(duration=1.0), max_concurrent=10)
    machine = task_machine(sfn, "cap", activity)
    executions = [
        sfn.start_execution(stateMachineArn=machine, input='{"GlueJobName": "Capped"}')[
            "executionArn"
        ]
        for _ in range(6)
    ]
    highest = [0]
    sampling = threading.Event()

    with running_worker(config("glue", activity, max_in_flight=2, pollers=4)) as worker:

        def sample() -> None:
            while not sampling.is_set():
                highest[0] = max(highest[0], worker.inspect(lambda: worker.engines[0].load))
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        statuses = [finished(sfn, arn, timeout=30)["status"] for arn in executions]
        sampling.set()
        sampler.join()

    assert statuses == ["SUCCEEDED"] * 6
    assert highest[0] == 2
    runs = aws.client("glue").get_job_runs(JobName="Capped")["JobRuns"]
    starts = sorted(run["StartedOn"] for run in runs)
    assert (starts[2] - starts[0]).total_seconds() >= 0.9  # the third waited for a slot


def test_a_worker_stops_cleanly_with_nothing_to_do(aws: Emulator) -> None:
    sfn = aws.client("stepfunctions")
    activity = sfn.create_activity(name="Idle")["activityArn"]

    with running_worker(config("glue", activity)) as worker:
        wait_until(lambda: aws.faults.calls["states:GetActivityTask"] >= 4)
        summary = worker.stop()

    assert summary["runners"][0]["received"] == 0
