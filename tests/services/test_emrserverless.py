"""The EMR Serverless runner: input, start, checks, failures and stops, through
aiobotocore on the emulator, and end to end through the worker."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from runners.engine.runner import RUNNING, Failed, Job, Succeeded, TaskStart
from runners.errors import RunnerInputError, TaskFailure, TryLater
from runners.local import Emulator, Fault, RunBehaviour
from runners.services.emrserverless import (
    GET_AT_MOST,
    EmrServerlessJobRunner,
    EmrServerlessOptions,
    JobRunSpec,
)
from tests.aio import AioLoop
from tests.engine.test_end_to_end import task_machine
from tests.helpers import finished, wait_until
from tests.workers import config, running_worker

ROLE = "arn:aws:iam::123456789012:role/EmrServerlessJobRole"
SPARK = {"sparkSubmit": {"entryPoint": "s3://scripts/nightly.py"}}


def emr_calls(aws: Emulator) -> Counter[str]:
    return aws.faults.service_calls("emr-serverless")


@pytest.fixture
def runner(aws: Emulator, aio_loop: AioLoop) -> Iterator[EmrServerlessJobRunner]:
    client = aio_loop.client("emr-serverless", aws.endpoint_url, aws.client_env())
    yield EmrServerlessJobRunner(client._client, EmrServerlessOptions(None, ROLE))
    client.close()


def application(aws: Emulator, **settings: Any) -> str:
    created = aws.client("emr-serverless").create_application(
        name="etl", releaseLabel="emr-7.1.0", type="SPARK", **settings
    )
    application_id: str = created["applicationId"]
    return application_id


def state(aws: Emulator, job: Job[JobRunSpec]) -> str:
    run = aws.client("emr-serverless").get_job_run(
        applicationId=job.spec.application_id, jobRunId=job.run_id
    )["jobRun"]
    return str(run["state"])


def started(
    aio_loop: AioLoop, runner: EmrServerlessJobRunner, spec: JobRunSpec, key: str
) -> Job[JobRunSpec]:
    """A run started for a task whose key begins with ``key``."""
    return Job(spec, aio_loop.run(runner.start(spec, TaskStart(key.ljust(64, "0"), 0.0))))


def test_input_is_validated_field_by_field() -> None:
    runner = EmrServerlessJobRunner(None, EmrServerlessOptions("app1", ROLE))
    spark = {
        "sparkSubmit": {
            "entryPoint": "s3://scripts/nightly.py",
            "entryPointArguments": ["--day", "2026-12-01"],
            "sparkSubmitParameters": "--conf spark.executor.cores=4",
        }
    }
    overrides = {"monitoringConfiguration": {"s3MonitoringConfiguration": {"logUri": "s3://l/"}}}
    spec = runner.parse(
        {
            "JobDriver": spark,
            "ConfigurationOverrides": overrides,
            "Name": "nightly",
            "ExecutionTimeoutMinutes": 60,
            "Tags": {"team": "data"},
        }
    )
    assert spec == JobRunSpec("app1", ROLE, spark, overrides, "nightly", 60, {"team": "data"})
    request = spec.start_request("k" * 64)
    assert (request["clientToken"], request["applicationId"], request["tags"]) == (
        "k" * 64,
        "app1",
        {"team": "data"},
    )
    hive = runner.parse({"ApplicationId": "app2", "JobDriver": {"hive": {"query": "SELECT 1"}}})
    assert (hive.application_id, hive.job_driver) == ("app2", {"hive": {"query": "SELECT 1"}})
    assert "name" not in hive.start_request("k")
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "JobDriver"),
        ({"JobDriver": {"pig": {}}}, "JobDriver"),
        ({"JobDriver": {**SPARK, "hive": {"query": "q"}}}, "JobDriver"),
        ({"JobDriver": {"sparkSubmit": "s3://x.py"}}, "JobDriver.sparkSubmit"),
        ({"JobDriver": {"sparkSubmit": {}}}, "JobDriver.sparkSubmit.entryPoint"),
        (
            {"JobDriver": {"sparkSubmit": {"entryPoint": "x", "args": []}}},
            "JobDriver.sparkSubmit.args",
        ),
        (
            {"JobDriver": {"sparkSubmit": {"entryPoint": "x", "entryPointArguments": [1]}}},
            "JobDriver.sparkSubmit.entryPointArguments",
        ),
        ({"JobDriver": {"hive": {"query": " "}}}, "JobDriver.hive.query"),
        ({"JobDriver": {"hive": {"query": "q", "parameters": 3}}}, "JobDriver.hive.parameters"),
        ({"JobDriver": SPARK, "ApplicationId": "App-1"}, "ApplicationId"),
        ({"JobDriver": SPARK, "ExecutionRoleArn": "EmrRole"}, "ExecutionRoleArn"),
        ({"JobDriver": SPARK, "ConfigurationOverrides": []}, "ConfigurationOverrides"),
        ({"JobDriver": SPARK, "ConfigurationOverrides": {"spark": {}}}, "ConfigurationOverrides"),
        ({"JobDriver": SPARK, "ExecutionTimeoutMinutes": 0}, "ExecutionTimeoutMinutes"),
        ({"JobDriver": SPARK, "ExecutionTimeoutMinutes": 1.5}, "ExecutionTimeoutMinutes"),
        ({"JobDriver": SPARK, "Tags": {"team": 1}}, "Tags"),
        ({"JobDriver": SPARK, "Tags": {"k" * 129: "v"}}, f"Tags.{'k' * 64}"),
        ({"JobDriver": SPARK, "Name": ""}, "Name"),
    ]
    for document, field in cases:
        with pytest.raises(RunnerInputError) as raised:
            runner.parse(document)
        assert raised.value.field == field, document
    for given, missing in (
        ("ApplicationId", "ExecutionRoleArn"),
        ("ExecutionRoleArn", "ApplicationId"),
    ):
        with pytest.raises(RunnerInputError) as no_default:
            EmrServerlessJobRunner(None).parse({"JobDriver": SPARK, given: "app1"})
        assert no_default.value.field == missing


def test_a_start_with_the_same_task_key_runs_one_job(
    aws: Emulator, aio_loop: AioLoop, runner: EmrServerlessJobRunner
) -> None:
    spec = runner.parse({"ApplicationId": application(aws), "JobDriver": SPARK})

    first = aio_loop.run(runner.start(spec, TaskStart("a" * 64, 0.0)))
    again = aio_loop.run(runner.find(spec, TaskStart("a" * 64, 0.0)))

    assert first == again
    assert emr_calls(aws)["StartJobRun"] == 2
    listed = aws.client("emr-serverless").list_job_runs(applicationId=spec.application_id)
    assert [run["id"] for run in listed["jobRuns"]] == [first]


def test_a_refused_start_is_bad_input_a_later_try_or_a_named_failure(
    aws: Emulator, aio_loop: AioLoop, runner: EmrServerlessJobRunner
) -> None:
    """An unknown application names ApplicationId; an application not STARTED whose
    auto-start is off is tried again until the start deadline; a role of another account
    cannot be passed."""
    manual = application(aws, autoStartConfiguration={"enabled": False})
    aws.client("emr-serverless").stop_application(applicationId=manual)
    other_account = "arn:aws:iam::210987654321:role/Theirs"
    task = TaskStart("r" * 64, 0.0)

    def refusal(document: dict[str, Any]) -> BaseException:
        with pytest.raises((TaskFailure, TryLater)) as raised:
            aio_loop.run(runner.find(runner.parse({"JobDriver": SPARK, **document}), task))
        return raised.value

    unknown = refusal({"ApplicationId": "nosuchapp"})
    stopped = refusal({"ApplicationId": manual})
    denied = refusal({"ApplicationId": application(aws), "ExecutionRoleArn": other_account})

    assert isinstance(unknown, RunnerInputError)
    assert unknown.field == "ApplicationId"
    assert isinstance(stopped, TryLater)
    assert stopped.error == "EmrServerlessApplicationNotStartedError"
    assert isinstance(denied, TaskFailure)
    assert denied.error == "EmrServerlessJobStartError"
    assert json.loads(denied.cause)["error"] == "AccessDeniedException"


def test_many_runs_are_checked_by_listing_the_active_ones(
    aws: Emulator, aio_loop: AioLoop, runner: EmrServerlessJobRunner
) -> None:
    aws.emrserverless_runs.add("slow", RunBehaviour(duration=30))
    aws.emrserverless_runs.add("quick", RunBehaviour(duration=0.1))
    busy, quiet = application(aws), application(aws)
    slow, quick = (
        runner.parse({"ApplicationId": busy, "JobDriver": SPARK, "Name": name})
        for name in ("slow", "quick")
    )
    jobs = [started(aio_loop, runner, slow, f"s{n}") for n in range(20)]
    jobs.append(started(aio_loop, runner, quick, "q"))
    alone = runner.parse({"ApplicationId": quiet, "JobDriver": SPARK, "Name": "slow"})
    jobs += [started(aio_loop, runner, alone, f"a{n}") for n in range(2)]
    wait_until(lambda: state(aws, jobs[20]) == "SUCCESS")
    aws.faults.calls.clear()

    statuses = aio_loop.run(runner.check(jobs))

    assert all(statuses[job.run_id] is RUNNING for job in jobs[:20] + jobs[21:])
    assert isinstance(statuses[jobs[20].run_id], Succeeded)
    assert emr_calls(aws)["ListJobRuns"] == 1  # the busy application's
    assert emr_calls(aws)["GetJobRun"] == 3  # the ended one, the quiet two
    aws.faults.calls.clear()
    few = aio_loop.run(runner.check(jobs[:GET_AT_MOST]))
    assert len(few) == GET_AT_MOST
    assert emr_calls(aws) == {"GetJobRun": GET_AT_MOST}


def test_runs_buried_under_other_active_runs_cost_at_most_twice_reading_them(
    aws: Emulator, aio_loop: AioLoop, runner: EmrServerlessJobRunner
) -> None:
    """The application's other users started 250 runs after these 4: listing stops after
    4 pages (ours would be on the sixth) and the 4 are read one by one. Every run is
    RUNNING from its start: the listing groups runs by state, so runs passing through
    SUBMITTED..SCHEDULED while the 250 are started would move ours up a page."""
    aws.emrserverless_runs.add("slow", RunBehaviour(duration=60, phases=(("RUNNING", 60.0),)))
    app = application(aws)
    spec = runner.parse({"ApplicationId": app, "JobDriver": SPARK, "Name": "slow"})
    ours = [started(aio_loop, runner, spec, f"o{n}") for n in range(4)]
    others = aws.client("emr-serverless")
    for n in range(250):
        others.start_job_run(
            applicationId=app, executionRoleArn=ROLE, jobDriver=SPARK, name=f"slow-{n}"
        )
    aws.faults.calls.clear()

    statuses = aio_loop.run(runner.check(ours))

    assert all(statuses[job.run_id] is RUNNING for job in ours)
    assert emr_calls(aws) == {"ListJobRuns": 4, "GetJobRun": 4}


def test_a_run_that_succeeds_reports_its_resources(
    aws: Emulator, aio_loop: AioLoop, runner: EmrServerlessJobRunner
) -> None:
    aws.emrserverless_runs.add("nightly", RunBehaviour(duration=0.3, metrics={"workers": 3}))
    spec = runner.parse({"ApplicationId": application(aws), "JobDriver": SPARK})
    job = started(aio_loop, runner, spec, "n")
    wait_until(lambda: state(aws, job) == "SUCCESS")

    status = aio_loop.run(runner.check([job]))[job.run_id]

    assert isinstance(status, Succeeded)
    output = status.output
    assert (output["EmrServerlessJobRunId"], output["EmrServerlessJobRunState"]) == (
        job.run_id,
        "SUCCESS",
    )
    assert output["EmrServerlessApplicationId"] == spec.application_id
    assert output["EmrServerlessTotalExecutionDurationSeconds"] == 1
    assert output["EmrServerlessTotalResourceUtilization"]["vCPUHour"] == 0.003  # 3 x 4 x 1 s
    assert output["EmrServerlessBilledResourceUtilization"]["vCPUHour"] == 0.2  # 3 x 4 x 60 s
    assert output["EmrServerlessEndedAt"] >= output["EmrServerlessStartedAt"]
    assert output["EmrServerlessCreatedAt"].endswith("+00:00")
    json.dumps(output)  # a task output is JSON


@pytest.mark.parametrize("final", ["FAILED", "CANCELLED"])
def test_a_failed_or_cancelled_run_fails_with_its_state_details(
    aws: Emulator, aio_loop: AioLoop, runner: EmrServerlessJobRunner, final: str
) -> None:
    aws.emrserverless_runs.add(
        "broken", RunBehaviour(duration=0.2, final_state=final, error_message="ExitCode: 1")
    )
    spec = runner.parse(
        {"ApplicationId": application(aws), "JobDriver": SPARK, "Name": "broken-report"}
    )
    job = started(aio_loop, runner, spec, "f")
    wait_until(lambda: state(aws, job) == final)

    status = aio_loop.run(runner.check([job]))[job.run_id]

    assert isinstance(status, Failed)
    assert status.error == "EmrServerlessJobFailedError"
    assert status.cause == {
        "emrserverless_application_id": spec.application_id,
        "emrserverless_job_run_id": job.run_id,
        "emrserverless_job_run_name": "broken-report",
        "emrserverless_job_run_state": final,
        "emrserverless_state_details": "ExitCode: 1",
    }


def test_stopping_cancels_a_running_run_and_ignores_an_ended_one(
    aws: Emulator, aio_loop: AioLoop, runner: EmrServerlessJobRunner
) -> None:
    aws.emrserverless_runs.add("slow", RunBehaviour(duration=30))
    aws.emrserverless_runs.add("quick", RunBehaviour(duration=0.05))
    app = application(aws)
    slow, quick = (
        runner.parse({"ApplicationId": app, "JobDriver": SPARK, "Name": name})
        for name in ("slow", "quick")
    )
    running = started(aio_loop, runner, slow, "s")
    done = started(aio_loop, runner, quick, "d")
    wait_until(lambda: state(aws, done) == "SUCCESS")

    aio_loop.run(runner.stop(running))
    aio_loop.run(runner.stop(done))

    assert state(aws, running) in ("CANCELLING", "CANCELLED")
    wait_until(lambda: state(aws, running) == "CANCELLED")
    assert emr_calls(aws)["CancelJobRun"] == 2


def emrserverless_flow(
    aws: Emulator, document: dict[str, Any], **task: Any
) -> tuple[Any, str, str]:
    sfn = aws.client("stepfunctions")
    activity = sfn.create_activity(name="EmrServerlessRunnerActivity")["activityArn"]
    machine = task_machine(sfn, "emrserverless", activity, catch="EmrServerlessJobFailedError")
    execution = sfn.start_execution(stateMachineArn=machine, input=json.dumps(document))[
        "executionArn"
    ]
    return sfn, activity, execution


def worker_config(activity: str, app: str, **overrides: Any) -> Any:
    return config(
        "emrserverless",
        activity,
        emrserverless_application_id=app,
        emrserverless_execution_role_arn=ROLE,
        **overrides,
    )


def test_a_run_succeeds_end_to_end_and_its_failure_can_be_caught(aws: Emulator) -> None:
    aws.emrserverless_runs.add("nightly", RunBehaviour(duration=0.5))
    aws.emrserverless_runs.add("broken", RunBehaviour(duration=0.3, final_state="FAILED"))
    app = application(aws)
    sfn, activity, good = emrserverless_flow(aws, {"JobDriver": SPARK, "Name": "nightly"})
    bad = sfn.start_execution(
        stateMachineArn=sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"],
        input=json.dumps({"JobDriver": {"hive": {"query": "SELECT broken"}}}),
    )["executionArn"]

    with running_worker(worker_config(activity, app)):
        succeeded, caught = finished(sfn, good, timeout=20), finished(sfn, bad, timeout=20)

    assert succeeded["status"] == "SUCCEEDED"
    output = json.loads(succeeded["output"])
    assert (output["EmrServerlessJobRunState"], output["EmrServerlessApplicationId"]) == (
        "SUCCESS",
        app,
    )
    assert "EmrServerlessTotalResourceUtilization" in output
    assert caught["status"] == "SUCCEEDED"  # through the Catch
    error = json.loads(caught["output"])["error"]
    assert error["Error"] == "EmrServerlessJobFailedError"
    assert json.loads(error["Cause"])["emrserverless_job_run_state"] == "FAILED"
    assert emr_calls(aws)["StartJobRun"] == 2


def test_a_stopped_execution_cancels_its_run(aws: Emulator) -> None:
    aws.emrserverless_runs.add("long", RunBehaviour(duration=60))
    app = application(aws)
    sfn, activity, execution = emrserverless_flow(aws, {"JobDriver": SPARK, "Name": "long"})

    with running_worker(worker_config(activity, app, heartbeat_interval_seconds=0.5)):
        wait_until(lambda: emr_calls(aws)["StartJobRun"] == 1)
        sfn.stop_execution(executionArn=execution)
        wait_until(lambda: emr_calls(aws)["CancelJobRun"] == 1, timeout=15)

    [listed] = aws.client("emr-serverless").list_job_runs(applicationId=app)["jobRuns"]
    assert listed["state"] in ("CANCELLING", "CANCELLED")


def test_a_start_whose_answer_was_lost_runs_one_job(aws: Emulator) -> None:
    """EMR Serverless took the run and the answer was lost (HTTP 500): the start is sent
    again with the same clientToken, which returns the same run."""
    app = application(aws)
    aws.faults.add(Fault("emr-serverless:StartJobRun", "lost", limit=2))
    aws.emrserverless_runs.add("nightly", RunBehaviour(duration=0.3))
    sfn, activity, execution = emrserverless_flow(aws, {"JobDriver": SPARK, "Name": "nightly"})

    with running_worker(worker_config(activity, app)):
        done = finished(sfn, execution, timeout=30)

    assert done["status"] == "SUCCEEDED"
    assert emr_calls(aws)["StartJobRun"] >= 3
    assert len(aws.client("emr-serverless").list_job_runs(applicationId=app)["jobRuns"]) == 1


def test_bad_input_fails_the_task_with_runner_input_error_naming_the_field(
    aws: Emulator,
) -> None:
    app = application(aws)
    driver = {"sparkSubmit": {"entryPoint": "s3://x.py", "entrypointArguments": []}}
    sfn, activity, execution = emrserverless_flow(aws, {"JobDriver": driver})

    with running_worker(worker_config(activity, app)):
        done = finished(sfn, execution)

    assert done["status"] == "FAILED"
    assert done["error"] == "RunnerInputError"
    assert json.loads(done["cause"])["field"] == "JobDriver.sparkSubmit.entrypointArguments"
    assert emr_calls(aws)["StartJobRun"] == 0
