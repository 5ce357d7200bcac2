"""The EMR step runner: input, start and search, checks, failures and stops, through
aiobotocore on the emulator, and end to end through the worker."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from runners.engine.runner import RUNNING, Failed, Job, Succeeded, TaskStart
from runners.errors import RunnerInputError, TaskFailure, TryLater
from runners.local import Emulator, Fault, RunBehaviour
from runners.services.emrstep import (
    MAX_STEP_NAME,
    EmrStepOptions,
    EmrStepRunner,
    StepSpec,
    task_marker,
)
from tests.aio import AioLoop
from tests.engine.test_end_to_end import task_machine
from tests.helpers import finished, wait_until
from tests.local.test_emr import make_cluster
from tests.workers import config, running_worker

KEY = "a" * 64


@pytest.fixture
def runner(aws: Emulator, aio_loop: AioLoop) -> Iterator[EmrStepRunner]:
    client = aio_loop.client("emr", aws.endpoint_url, aws.client_env())
    yield EmrStepRunner(client._client)
    client.close()


@pytest.fixture
def cluster(aws: Emulator) -> str:
    return make_cluster(aws.client("emr"))


def started(
    aio_loop: AioLoop, runner: EmrStepRunner, spec: StepSpec, count: int, tag: str = ""
) -> list[Job[StepSpec]]:
    """``count`` steps added by the runner, each for a task of its own."""
    keys = [f"{tag}{n}".rjust(64, "0") for n in range(count)]
    return [Job(spec, aio_loop.run(runner.start(spec, TaskStart(k, 0.0)))) for k in keys]


def step_state(aws: Emulator, run_id: str) -> str:
    cluster_id, step_id = run_id.split("/")
    step = aws.client("emr").describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]
    state: str = step["Status"]["State"]
    return state


def test_input_is_validated_field_by_field() -> None:
    runner = EmrStepRunner(None, EmrStepOptions(emr_cluster_id="j-DEFAULT"))
    spec = runner.parse(
        {
            "StepName": "daily sales",
            "Args": ["spark-submit", "s3://code/sales.py"],
            "Properties": {"b": "2", "a": "1"},
        }
    )
    assert spec == StepSpec(
        cluster_id="j-DEFAULT",
        step_name="daily sales",
        jar="command-runner.jar",
        args=("spark-submit", "s3://code/sales.py"),
        properties=(("a", "1"), ("b", "2")),
        action_on_failure="CONTINUE",
    )
    [request] = spec.start_request(KEY)["Steps"]
    assert request["Name"] == "daily sales" + task_marker(KEY)
    assert request["HadoopJarStep"]["Properties"] == [
        {"Key": "a", "Value": "1"},
        {"Key": "b", "Value": "2"},
    ]
    full = runner.parse({"StepName": "n" * MAX_STEP_NAME, "ClusterId": "j-OTHER"})
    assert len(full.start_request(KEY)["Steps"][0]["Name"]) == 256  # StepConfig.Name's limit
    assert runner.parse({"StepName": "s", "ActionOnFailure": "CANCEL_AND_WAIT"}).cluster_id == (
        "j-DEFAULT"
    )
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "StepName"),
        ({"StepName": "n" * (MAX_STEP_NAME + 1)}, "StepName"),
        ({"StepName": "s", "ActionOnFailure": "TERMINATE_CLUSTER"}, "ActionOnFailure"),
        ({"StepName": "s", "ActionOnFailure": "TERMINATE_JOB_FLOW"}, "ActionOnFailure"),
        ({"StepName": "s", "ActionOnFailure": "STOP"}, "ActionOnFailure"),
        ({"StepName": "s", "Args": "spark-submit"}, "Args"),
        ({"StepName": "s", "Args": ["x" * 10_300]}, "Args"),
        ({"StepName": "s", "Properties": {"a": 1}}, "Properties"),
        ({"StepName": "s", "Jar": ""}, "Jar"),
        ({"StepName": "s", "ClusterId": 7}, "ClusterId"),
    ]
    for document, field in cases:
        with pytest.raises(RunnerInputError) as raised:
            runner.parse(document)
        assert raised.value.field == field, document
    with pytest.raises(RunnerInputError) as missing:
        EmrStepRunner(None).parse({"StepName": "s"})
    assert missing.value.field == "ClusterId"


def test_start_marks_the_step_so_a_search_finds_it(
    aws: Emulator, aio_loop: AioLoop, runner: EmrStepRunner, cluster: str
) -> None:
    aws.emr_steps.default = RunBehaviour(duration=30)
    spec = runner.parse({"ClusterId": cluster, "StepName": "load"})
    others = started(aio_loop, runner, spec, 60, tag="o")  # more than a ListSteps page

    first = aio_loop.run(runner.start(spec, TaskStart(KEY, time.time())))
    newer = started(aio_loop, runner, spec, 3, tag="n")
    found = aio_loop.run(runner.find(spec, TaskStart(KEY, time.time())))
    other = aio_loop.run(runner.find(spec, TaskStart("b" * 64, 0.0)))
    oldest = aio_loop.run(runner.find(spec, TaskStart("o0".rjust(64, "0"), 0.0)))
    # A task that arrived after the step was added cannot have added it: the search
    # stops at the steps older than the task.
    later = aio_loop.run(runner.find(spec, TaskStart(KEY, time.time() + 3600)))

    assert (found, other, later) == (first, None, None)
    assert first.startswith(f"{cluster}/s-")
    assert len(newer) == 3
    assert oldest == others[0].run_id  # found on the second page


def test_start_refusals_are_classified(
    aws: Emulator, aio_loop: AioLoop, runner: EmrStepRunner, cluster: str
) -> None:
    """An ended or unknown cluster fails the task with EmrStepStartError; a cluster full
    of active steps is tried again later."""
    emr = aws.client("emr")
    ended = make_cluster(emr)
    emr.terminate_job_flows(JobFlowIds=[ended])
    aws.emr_steps.default = RunBehaviour(duration=30)
    emr.add_job_flow_steps(
        JobFlowId=cluster,
        Steps=[{"Name": f"s{n}", "HadoopJarStep": {"Jar": "j"}} for n in range(256)],
    )
    refusals = []
    for cluster_id in (ended, "j-UNKNOWN", cluster):
        spec = runner.parse({"ClusterId": cluster_id, "StepName": "load"})
        with pytest.raises(ClientError) as refused:
            aio_loop.run(runner.start(spec, TaskStart(KEY, 0.0)))
        refusals.append(runner.refused(spec, refused.value))
    gone, unknown, busy = refusals

    assert isinstance(gone, TaskFailure)
    assert not isinstance(gone, RunnerInputError)
    assert gone.error == "EmrStepStartError"
    cause = json.loads(gone.cause)
    assert (cause["emr_cluster_id"], cause["error"]) == (ended, "ValidationException")
    assert "may not be modified" in cause["message"]
    assert isinstance(unknown, TaskFailure)
    assert unknown.error == "EmrStepStartError"
    assert isinstance(busy, TryLater)
    assert busy.error == "EmrActiveStepsExceededError"


def test_many_steps_are_checked_ten_a_call_per_cluster(
    aws: Emulator, aio_loop: AioLoop, runner: EmrStepRunner, cluster: str
) -> None:
    aws.emr_steps.add("long", RunBehaviour(duration=30))
    aws.emr_steps.add("short", RunBehaviour(duration=0.2))
    other = make_cluster(aws.client("emr"))
    short = runner.parse({"ClusterId": other, "StepName": "short"})
    long = runner.parse({"ClusterId": cluster, "StepName": "long"})
    jobs = started(aio_loop, runner, long, 25) + started(aio_loop, runner, short, 3, "x")
    wait_until(lambda: step_state(aws, jobs[-1].run_id) == "COMPLETED")
    aws.faults.calls.clear()

    statuses = aio_loop.run(runner.check(jobs))

    assert set(statuses) == {job.run_id for job in jobs}
    assert all(statuses[job.run_id] is RUNNING for job in jobs[:25])  # PENDING and RUNNING
    assert all(isinstance(statuses[job.run_id], Succeeded) for job in jobs[25:])
    assert aws.faults.calls["elasticmapreduce:ListSteps"] == 3 + 1  # 25 = 10 + 10 + 5, and 3
    assert aws.faults.calls["elasticmapreduce:DescribeStep"] == 0


def test_a_completed_step_reports_what_it_ran_and_when(
    aws: Emulator, aio_loop: AioLoop, runner: EmrStepRunner, cluster: str
) -> None:
    aws.emr_steps.add("sales.py", RunBehaviour(duration=0.3))
    spec = runner.parse(
        {
            "ClusterId": cluster,
            "StepName": "sales",
            "Args": ["spark-submit", "s3://code/sales.py"],
            "MainClass": "org.example.Main",
        }
    )
    [job] = started(aio_loop, runner, spec, 1)
    wait_until(lambda: step_state(aws, job.run_id) == "COMPLETED")

    status = aio_loop.run(runner.check([job]))[job.run_id]

    assert isinstance(status, Succeeded)
    output = status.output
    assert (output["EmrClusterId"], output["EmrStepState"]) == (cluster, "COMPLETED")
    assert f"{cluster}/{output['EmrStepId']}" == job.run_id
    assert output["EmrStepName"] == "sales" + task_marker("0" * 64)
    assert (output["EmrStepJar"], output["EmrStepMainClass"]) == (
        "command-runner.jar",
        "org.example.Main",
    )
    assert output["EmrStepArgs"] == ["spark-submit", "s3://code/sales.py"]
    assert output["EmrStepCreatedAt"] <= output["EmrStepStartedAt"] < output["EmrStepEndedAt"]


@pytest.mark.parametrize("final", ["FAILED", "CANCELLED", "INTERRUPTED"])
def test_a_step_that_did_not_complete_fails_with_its_details(
    aws: Emulator, aio_loop: AioLoop, runner: EmrStepRunner, cluster: str, final: str
) -> None:
    aws.emr_steps.add(
        "broken", RunBehaviour(duration=0.2, final_state=final, error_message="exitCode 1")
    )
    spec = runner.parse({"ClusterId": cluster, "StepName": "broken"})
    [job] = started(aio_loop, runner, spec, 1)
    wait_until(lambda: step_state(aws, job.run_id) == final)

    status = aio_loop.run(runner.check([job]))[job.run_id]

    assert isinstance(status, Failed)
    assert status.error == "EmrStepFailedError"
    cause = status.cause
    assert (cause["emr_cluster_id"], cause["emr_step_state"]) == (cluster, final)
    assert job.run_id.endswith(cause["emr_step_id"])
    if final == "FAILED":
        assert (cause["emr_failure_reason"], cause["emr_failure_message"]) == (
            "Unknown Error",
            "exitCode 1",
        )
        assert cause["emr_failure_log_file"].endswith(f"/steps/{cause['emr_step_id']}/stderr.gz")


def test_steps_of_a_cluster_emr_no_longer_knows_fail(
    aio_loop: AioLoop, runner: EmrStepRunner
) -> None:
    spec = runner.parse({"ClusterId": "j-GONE", "StepName": "s"})
    job = Job(spec, "j-GONE/s-LOST")

    status = aio_loop.run(runner.check([job]))[job.run_id]

    assert isinstance(status, Failed)
    assert (status.error, status.cause["error"]) == (
        "EmrStepFailedError",
        "InvalidRequestException",
    )


def test_stopping_cancels_a_running_step_and_ignores_a_finished_one(
    aws: Emulator, aio_loop: AioLoop, runner: EmrStepRunner, cluster: str
) -> None:
    aws.emr_steps.add("quick", RunBehaviour(duration=0.2))
    aws.emr_steps.add("slow", RunBehaviour(duration=30))
    quick = runner.parse({"ClusterId": cluster, "StepName": "quick"})
    slow = runner.parse({"ClusterId": cluster, "StepName": "slow"})
    [done] = started(aio_loop, runner, quick, 1)
    [running] = started(aio_loop, runner, slow, 1, "s")
    wait_until(lambda: step_state(aws, running.run_id) == "RUNNING")

    aio_loop.run(runner.stop(running))
    aio_loop.run(runner.stop(done))

    wait_until(lambda: step_state(aws, running.run_id) == "CANCELLED")
    assert step_state(aws, done.run_id) == "COMPLETED"
    assert aws.faults.calls["elasticmapreduce:CancelSteps"] == 2


def emr_flow(aws: Emulator, document: dict[str, Any], **task: Any) -> tuple[Any, str, str, str]:
    """A state machine of one EMR step task (failures caught), an execution of it."""
    sfn = aws.client("stepfunctions")
    activity = sfn.create_activity(name="EmrStepRunnerActivity")["activityArn"]
    machine = task_machine(sfn, "emrstep", activity, catch="EmrStepFailedError", **task)
    execution = sfn.start_execution(stateMachineArn=machine, input=json.dumps(document))[
        "executionArn"
    ]
    return sfn, activity, machine, execution


def test_a_step_runs_end_to_end_and_its_failure_can_be_caught(aws: Emulator, cluster: str) -> None:
    aws.emr_steps.add("sales", RunBehaviour(duration=0.5))
    aws.emr_steps.add("broken", RunBehaviour(duration=0.3, final_state="FAILED"))
    sfn, activity, machine, good = emr_flow(aws, {"ClusterId": cluster, "StepName": "sales"})
    bad = sfn.start_execution(
        stateMachineArn=machine, input=json.dumps({"ClusterId": cluster, "StepName": "broken"})
    )["executionArn"]

    with running_worker(config("emrstep", activity)):
        succeeded, caught = finished(sfn, good, timeout=20), finished(sfn, bad, timeout=20)

    assert succeeded["status"] == "SUCCEEDED"
    output = json.loads(succeeded["output"])
    assert (output["EmrStepState"], output["EmrClusterId"]) == ("COMPLETED", cluster)
    assert caught["status"] == "SUCCEEDED"  # through the Catch
    error = json.loads(caught["output"])["error"]
    assert error["Error"] == "EmrStepFailedError"
    assert json.loads(error["Cause"])["emr_failure_reason"] == "Unknown Error"
    assert aws.faults.calls["elasticmapreduce:AddJobFlowSteps"] == 2


def test_a_stopped_execution_cancels_its_step(aws: Emulator, cluster: str) -> None:
    aws.emr_steps.add("long", RunBehaviour(duration=60))
    sfn, activity, _, execution = emr_flow(aws, {"ClusterId": cluster, "StepName": "long"})

    with running_worker(config("emrstep", activity, heartbeat_interval_seconds=0.5)):
        wait_until(lambda: aws.faults.calls["elasticmapreduce:AddJobFlowSteps"] == 1)
        sfn.stop_execution(executionArn=execution)
        wait_until(lambda: aws.faults.calls["elasticmapreduce:CancelSteps"] == 1, timeout=15)

    [listed] = aws.client("emr").list_steps(ClusterId=cluster)["Steps"]
    assert listed["Status"]["State"] in ("CANCEL_PENDING", "CANCELLED")


def test_a_start_whose_answer_was_lost_adds_one_step(aws: Emulator, cluster: str) -> None:
    """EMR added the step and the answer was lost (HTTP 500): AddJobFlowSteps has no
    idempotency token, so the worker searches for the step named with the task's key
    instead of adding another."""
    aws.faults.add(Fault("elasticmapreduce:AddJobFlowSteps", "lost", limit=1))
    aws.emr_steps.add("nightly", RunBehaviour(duration=0.3))
    sfn, activity, _, execution = emr_flow(aws, {"ClusterId": cluster, "StepName": "nightly"})

    with running_worker(config("emrstep", activity)):
        done = finished(sfn, execution, timeout=30)

    assert done["status"] == "SUCCEEDED"
    assert aws.faults.calls["elasticmapreduce:AddJobFlowSteps"] == 1  # never sent again
    assert aws.faults.calls["elasticmapreduce:ListSteps"] >= 2  # the search, the check
    assert len(aws.client("emr").list_steps(ClusterId=cluster)["Steps"]) == 1


def test_bad_input_fails_the_task_with_runner_input_error_naming_the_field(
    aws: Emulator, cluster: str
) -> None:
    sfn, activity, _, execution = emr_flow(
        aws, {"ClusterId": cluster, "StepName": "s", "ActionOnFailure": "TERMINATE_CLUSTER"}
    )

    with running_worker(config("emrstep", activity)):
        done = finished(sfn, execution)

    assert done["status"] == "FAILED"
    assert done["error"] == "RunnerInputError"
    assert json.loads(done["cause"])["field"] == "ActionOnFailure"
    assert aws.faults.calls["elasticmapreduce:AddJobFlowSteps"] == 0
