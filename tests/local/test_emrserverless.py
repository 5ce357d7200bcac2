"""EMR Serverless job runs on the emulator, through boto3 and aiobotocore.

Quotes are from the Amazon EMR Serverless API reference
(https://docs.aws.amazon.com/emr-serverless/latest/APIReference/) and user guide
("Job run states", "Application states", "Understanding application behavior").
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from runners.local import Emulator, RunBehaviour
from tests.conftest import ClientFactory
from tests.helpers import error_code, wait_until

ROLE = "arn:aws:iam::123456789012:role/EmrServerlessJobRole"
SPARK = {"sparkSubmit": {"entryPoint": "s3://scripts/nightly.py"}}


@pytest.fixture
def emr(client: ClientFactory) -> Any:
    return client("emr-serverless")


def application(aws: Emulator, **settings: Any) -> str:
    created = aws.client("emr-serverless").create_application(
        name="etl", releaseLabel="emr-7.1.0", type="SPARK", **settings
    )
    application_id: str = created["applicationId"]
    return application_id


def start(emr: Any, app: str, driver: dict[str, Any] | None = None, **request: Any) -> str:
    run_id: str = emr.start_job_run(
        applicationId=app, executionRoleArn=ROLE, jobDriver=driver or SPARK, **request
    )["jobRunId"]
    return run_id


def run(emr: Any, app: str, run_id: str) -> dict[str, Any]:
    found: dict[str, Any] = emr.get_job_run(applicationId=app, jobRunId=run_id)["jobRun"]
    return found


def state(emr: Any, app: str, run_id: str) -> str:
    return str(run(emr, app, run_id)["state"])


def test_a_run_moves_through_its_states_on_the_clock_and_reports_its_resources(
    aws: Emulator, emr: Any
) -> None:
    """Job run states: "SUBMITTED ... PENDING - The scheduler is evaluating the job run
    ... SCHEDULED ... RUNNING ... SUCCESS - The job run has completed successfully."
    startedAt: "when the job moved to the RUNNING state"; totalExecutionDurationSeconds:
    "only available for job runs in a COMPLETED, FAILED, or CANCELLED state";
    totalResourceUtilization: "from the time the job starts to execute, until the time
    the job terminates, rounded up to the nearest second"; billedResourceUtilization:
    "a 1-minute minimum usage for workers, plus additional storage over 20 GB per
    worker"."""
    aws.emrserverless_runs.add(
        "nightly",
        RunBehaviour(
            phases=(("SUBMITTED", 0.5), ("PENDING", 0.5), ("SCHEDULED", 0.5), ("RUNNING", 0.5)),
            metrics={"workers": 2, "vCPU": 4, "memoryGB": 16, "storageGB": 50},
        ),
    )
    app = application(aws)
    run_id = start(emr, app, name="nightly")

    seen, running = [state(emr, app, run_id)], run(emr, app, run_id)
    deadline = time.monotonic() + 10
    while seen[-1] != "SUCCESS" and time.monotonic() < deadline:
        time.sleep(0.05)
        seen.append(state(emr, app, run_id))
    done = run(emr, app, run_id)

    assert list(dict.fromkeys(seen)) == ["SUBMITTED", "PENDING", "SCHEDULED", "RUNNING", "SUCCESS"]
    assert "totalResourceUtilization" not in running
    assert "endedAt" not in running
    assert (done["endedAt"] - done["startedAt"]).total_seconds() == pytest.approx(0.5, abs=0.01)
    assert done["totalExecutionDurationSeconds"] == 1  # 0.5 s, rounded up
    assert done["totalResourceUtilization"] == {
        "vCPUHour": 0.002,  # 2 workers x 4 vCPU x 1 s
        "memoryGBHour": 0.009,
        "storageGBHour": 0.028,
    }
    assert done["billedResourceUtilization"] == {
        "vCPUHour": 0.133,  # 2 x 4 x 60 s
        "memoryGBHour": 0.533,
        "storageGBHour": 1.0,  # 2 x (50 - 20) GB x 60 s
    }
    assert (done["name"], done["executionRole"], done["jobDriver"]) == ("nightly", ROLE, SPARK)
    assert done["releaseLabel"] == "emr-7.1.0"


def test_a_failed_run_says_why_in_its_state_details(aws: Emulator, emr: Any) -> None:
    """FAILED: "EMR Serverless failed to submit the job run to the application, or it
    completed unsuccessfully. Refer to StateDetails for additional information about
    this job failure." Behaviours are chosen by the Hive query too."""
    aws.emrserverless_runs.add(
        "broken_table",
        RunBehaviour(duration=0.3, final_state="FAILED", error_message="Table not found"),
    )
    app = application(aws)
    run_id = start(emr, app, {"hive": {"query": "SELECT * FROM broken_table"}})

    wait_until(lambda: state(emr, app, run_id) == "FAILED")
    failed = run(emr, app, run_id)

    assert failed["stateDetails"] == "Table not found"
    assert "totalExecutionDurationSeconds" in failed


def test_the_same_client_token_returns_the_same_run(aws: Emulator, emr: Any) -> None:
    """clientToken: "The client idempotency token of the job run to start.\""""
    app = application(aws)

    first = start(emr, app, clientToken="a" * 64)
    again = start(emr, app, clientToken="a" * 64)
    other = start(emr, app, clientToken="b" * 64)

    assert first == again != other
    listed = emr.list_job_runs(applicationId=app)["jobRuns"]
    assert sorted(item["id"] for item in listed) == sorted([first, other])
    assert aws.faults.service_calls("emr-serverless")["StartJobRun"] == 3


def test_cancelling_passes_through_cancelling_and_an_ended_run_is_not_cancellable(
    aws: Emulator, emr: Any
) -> None:
    """CANCELLING: "The CancelJobRun API has requested job run cancellation ... EMR
    Serverless is trying to cancel the job in the application and release the
    resources"; CANCELLED: "The job run was cancelled successfully". CancelJobRun
    answers ValidationException (one of its three errors) for a run that has ended: the
    OpenSearch EMR Serverless client handles it as "JobRun is not in a cancellable
    state" (opensearch-project/sql#2577)."""
    aws.emrserverless_runs.add("long", RunBehaviour(duration=60))
    aws.emrserverless_runs.add("short", RunBehaviour(duration=0.2))
    app = application(aws)
    running = start(emr, app, name="long")
    ended = start(emr, app, name="short")
    wait_until(lambda: state(emr, app, running) == "RUNNING")
    wait_until(lambda: state(emr, app, ended) == "SUCCESS")

    answer = emr.cancel_job_run(applicationId=app, jobRunId=running)
    right_after = state(emr, app, running)
    wait_until(lambda: state(emr, app, running) == "CANCELLED")
    with pytest.raises(ClientError) as raised:
        emr.cancel_job_run(applicationId=app, jobRunId=ended)

    assert (answer["applicationId"], answer["jobRunId"]) == (app, running)
    assert right_after == "CANCELLING"
    assert run(emr, app, running)["stateDetails"]
    assert error_code(raised.value) == "ValidationException"
    assert state(emr, app, ended) == "SUCCESS"


def test_list_job_runs_filters_by_state_groups_by_state_and_pages_by_fifty(
    aws: Emulator, emr: Any
) -> None:
    """ListJobRuns: states, "An optional filter for job run states. Note that if this
    filter contains multiple states, the resulting list will be grouped by the state"
    (at most 8); maxResults: "Valid Range: Minimum value of 1. Maximum value of 50.\""""
    aws.emrserverless_runs.add("long", RunBehaviour(duration=60))
    aws.emrserverless_runs.add("short", RunBehaviour(duration=0.05))
    app = application(aws)
    long_runs = [start(emr, app, name=f"long-{n}") for n in range(52)]
    short = start(emr, app, name="short")
    wait_until(lambda: state(emr, app, short) == "SUCCESS")
    wait_until(lambda: all(state(emr, app, r) == "RUNNING" for r in long_runs[-2:]))

    first = emr.list_job_runs(applicationId=app, states=["RUNNING"])
    second = emr.list_job_runs(applicationId=app, states=["RUNNING"], nextToken=first["nextToken"])
    grouped = emr.list_job_runs(applicationId=app, states=["SUCCESS", "RUNNING"], maxResults=3)

    assert len(first["jobRuns"]) == 50
    assert "nextToken" not in second
    assert {r["id"] for r in first["jobRuns"] + second["jobRuns"]} == set(long_runs)
    assert [r["state"] for r in grouped["jobRuns"]] == ["SUCCESS", "RUNNING", "RUNNING"]
    assert grouped["jobRuns"][0]["id"] == short
    for bad in ({"maxResults": 51}, {"states": ["RUNNING"] * 9}):
        with pytest.raises(ClientError) as raised:
            emr.list_job_runs(applicationId=app, **bad)
        assert error_code(raised.value) == "ValidationException"


def test_an_application_auto_starts_on_submission_unless_told_not_to(
    aws: Emulator, emr: Any
) -> None:
    """ "Auto-start — An application by default is configured to auto-start on job
    submission. You can turn this feature off." STARTED: "The application only accepts
    jobs when it's in this state." ConflictException: "The request could not be processed
    because of conflict in the current state of the resource.\""""
    setup = aws.client("emr-serverless")
    auto, manual = application(aws), application(aws, autoStartConfiguration={"enabled": False})
    for app in (auto, manual):
        setup.stop_application(applicationId=app)

    start(emr, auto)
    with pytest.raises(ClientError) as raised:
        start(emr, manual)

    assert setup.get_application(applicationId=auto)["application"]["state"] == "STARTED"
    assert error_code(raised.value) == "ConflictException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    setup.start_application(applicationId=manual)
    assert start(emr, manual)


def test_unknown_applications_and_runs_are_not_found(aws: Emulator, emr: Any) -> None:
    """ResourceNotFoundException: "The specified resource was not found." HTTP Status
    Code: 404."""
    app = application(aws)
    calls: list[Any] = [
        lambda: start(emr, "nosuchapp"),
        lambda: emr.get_job_run(applicationId=app, jobRunId="nosuchrun"),
        lambda: emr.cancel_job_run(applicationId=app, jobRunId="nosuchrun"),
    ]
    for call in calls:
        with pytest.raises(ClientError) as raised:
            call()
        assert error_code(raised.value) == "ResourceNotFoundException"
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
