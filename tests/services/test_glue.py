"""The Glue runner against the emulator's Glue, through aiobotocore as the worker uses it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from runners.engine.runner import RUNNING, Failed, Job, Succeeded, TaskStart
from runners.errors import RunnerInputError, TaskFailure, TryLater
from runners.local import Emulator, RunBehaviour
from runners.services.glue import TASK_KEY_ARGUMENT, GlueJobRunner, GlueJobSpec
from tests.aio import AioLoop
from tests.engine.test_end_to_end import glue_job
from tests.helpers import wait_until

KEY = "a" * 64


@pytest.fixture
def runner(aws: Emulator, aio_loop: AioLoop) -> Iterator[GlueJobRunner]:
    client = aio_loop.client("glue", aws.endpoint_url, aws.client_env())
    logs = aio_loop.client("logs", aws.endpoint_url, aws.client_env())
    yield GlueJobRunner(client._client, default_capacity=None, logs=logs._client)
    client.close()
    logs.close()


def run(aio_loop: AioLoop, coroutine: Any) -> Any:
    return aio_loop.run(coroutine)


def test_input_is_validated_field_by_field() -> None:
    runner = GlueJobRunner(glue=None, default_capacity=10)
    spec = runner.parse(
        {
            "GlueJobName": "J",
            "Arguments": {"--day": "1"},
            "Timeout": 30,
            "NotifyDelayAfter": 5,
            "SecurityConfiguration": "sec",
            "Unrelated": {"ignored": True},
        }
    )
    assert spec == GlueJobSpec("J", {"--day": "1"}, 10.0, None, None, 30, "sec", 5)
    assert (
        runner.parse({"GlueJobName": "J", "WorkerType": "G.1X", "NumberOfWorkers": 4}).max_capacity
        is None
    )
    assert runner.parse({"GlueJobName": "J", "GlueJobCapacity": "2"}).max_capacity == 2.0
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "GlueJobName"),
        ({"GlueJobName": ""}, "GlueJobName"),
        ({"GlueJobName": "J", "Arguments": {"--n": 1}}, "Arguments"),
        ({"GlueJobName": "J", "Arguments": {TASK_KEY_ARGUMENT: "x"}}, "Arguments"),
        ({"GlueJobName": "J", "GlueJobCapacity": "lots"}, "GlueJobCapacity"),
        ({"GlueJobName": "J", "GlueJobCapacity": True}, "GlueJobCapacity"),
        ({"GlueJobName": "J", "WorkerType": "G.1X"}, "WorkerType"),
        (
            {"GlueJobName": "J", "GlueJobCapacity": 2, "WorkerType": "G.1X", "NumberOfWorkers": 2},
            "GlueJobCapacity",
        ),
        ({"GlueJobName": "J", "Timeout": 1.5}, "Timeout"),
        ({"GlueJobName": "J" * 300}, "GlueJobName"),
    ]
    for document, field in cases:
        with pytest.raises(RunnerInputError) as raised:
            runner.parse(document)
        assert raised.value.field == field, document


def test_start_marks_the_run_so_a_search_finds_it(
    aws: Emulator, aio_loop: AioLoop, runner: GlueJobRunner
) -> None:
    glue_job(aws, "J", RunBehaviour(duration=30), max_concurrent=5)
    spec = runner.parse({"GlueJobName": "J", "Arguments": {"--day": "1"}})

    first = run(aio_loop, runner.start(spec, TaskStart(KEY, 0.0)))
    found = run(aio_loop, runner.find(spec, TaskStart(KEY, 0.0)))
    other = run(aio_loop, runner.find(spec, TaskStart("b" * 64, 0.0)))

    assert (found, other) == (first, None)
    runs = aws.client("glue").get_job_runs(JobName="J")["JobRuns"]
    assert len(runs) == 1
    assert runs[0]["Arguments"] == {"--day": "1", TASK_KEY_ARGUMENT: KEY}


def test_start_refusals_are_classified(
    aws: Emulator, aio_loop: AioLoop, runner: GlueJobRunner
) -> None:
    glue_job(aws, "One", RunBehaviour(duration=30))
    spec = runner.parse({"GlueJobName": "One"})
    missing_spec = runner.parse({"GlueJobName": "Missing"})
    run(aio_loop, runner.start(spec, TaskStart(KEY, 0.0)))

    with pytest.raises(ClientError) as busy:
        run(aio_loop, runner.start(spec, TaskStart("b" * 64, 0.0)))
    with pytest.raises(ClientError) as unknown:
        run(aio_loop, runner.start(missing_spec, TaskStart(KEY, 0.0)))
    later = runner.refused(spec, busy.value)
    missing = runner.refused(missing_spec, unknown.value)

    assert isinstance(later, TryLater)
    assert later.error == "GlueConcurrentRunsExceededError"
    assert isinstance(missing, RunnerInputError)
    assert missing.field == "GlueJobName"
    assert isinstance(missing, TaskFailure)


def started(
    aio_loop: AioLoop, runner: GlueJobRunner, spec: GlueJobSpec, count: int, tag: str = ""
) -> list[Job[GlueJobSpec]]:
    """``count`` runs started by the runner, each for a task of its own."""
    keys = [f"{tag}{n}".rjust(64, "0") for n in range(count)]
    return [Job(spec, run(aio_loop, runner.start(spec, TaskStart(key, 0.0)))) for key in keys]


def start_others(aws: Emulator, job_name: str, count: int) -> None:
    """Runs of the same job that are not the runner's."""
    glue = aws.client("glue")
    for _ in range(count):
        glue.start_job_run(JobName=job_name)


def test_many_runs_of_one_job_are_checked_with_get_job_runs(
    aws: Emulator, aio_loop: AioLoop, runner: GlueJobRunner
) -> None:
    glue_job(aws, "Wide", RunBehaviour(duration=0.5), max_concurrent=300)
    glue_job(aws, "Narrow", RunBehaviour(duration=30))
    wide = runner.parse({"GlueJobName": "Wide"})
    narrow = runner.parse({"GlueJobName": "Narrow"})
    jobs = started(aio_loop, runner, wide, 250) + started(aio_loop, runner, narrow, 1, "n")
    wait_until(
        lambda: (
            aws.client("glue").get_job_run(JobName="Wide", RunId=jobs[249].run_id)["JobRun"][
                "JobRunState"
            ]
            == "SUCCEEDED"
        )
    )
    aws.faults.calls.clear()

    statuses = run(aio_loop, runner.check(jobs))

    assert len(statuses) == 251
    assert all(isinstance(statuses[job.run_id], Succeeded) for job in jobs[:250])
    assert statuses[jobs[-1].run_id] is RUNNING
    assert aws.faults.calls["glue:GetJobRuns"] == 2
    assert aws.faults.calls["glue:GetJobRun"] == 1


@pytest.mark.parametrize(
    ("older", "others", "newer", "pages", "one_by_one"),
    [
        # 30 runs behind 400 others sit on page 3: paging there is cheaper than 30 calls.
        pytest.param(30, 400, 0, 3, 0, id="paged-to"),
        # Page 1 finds the newest run; the two oldest sit on page 4. With two missing, two
        # more pages are worth reading; after them, one call each is the cheaper way.
        pytest.param(2, 650, 1, 3, 2, id="fetched-one-by-one"),
    ],
)
def test_runs_buried_under_newer_ones_cost_at_most_twice_the_cheapest_way(
    aws: Emulator,
    aio_loop: AioLoop,
    runner: GlueJobRunner,
    older: int,
    others: int,
    newer: int,
    pages: int,
    one_by_one: int,
) -> None:
    # GetJobRuns lists a job's runs newest first, 200 to a page (API reference, GetJobRuns).
    glue_job(aws, "Busy", RunBehaviour(duration=30), max_concurrent=1000)
    spec = runner.parse({"GlueJobName": "Busy"})
    ours = started(aio_loop, runner, spec, older)
    start_others(aws, "Busy", others)
    ours += started(aio_loop, runner, spec, newer, "newest")
    aws.faults.calls.clear()

    statuses = run(aio_loop, runner.check(ours))

    assert all(statuses[job.run_id] is RUNNING for job in ours)
    assert aws.faults.calls["glue:GetJobRuns"] == pages
    assert aws.faults.calls["glue:GetJobRun"] == one_by_one


def test_a_failed_run_becomes_glue_job_failed_error(
    aws: Emulator, aio_loop: AioLoop, runner: GlueJobRunner
) -> None:
    glue_job(aws, "Fails", RunBehaviour(duration=0.1, final_state="ERROR", error_message="oom"))
    spec = runner.parse({"GlueJobName": "Fails"})
    job = Job(spec, run(aio_loop, runner.start(spec, TaskStart(KEY, 0.0))))
    asyncio.run(asyncio.sleep(0.2))

    status = run(aio_loop, runner.check([job]))[job.run_id]

    assert isinstance(status, Failed)
    assert status.error == "GlueJobFailedError"
    assert status.cause["glue_job_run_state"] == "ERROR"
    assert status.cause["glue_job_run_error_msg"] == "oom"


def test_a_failed_runs_cause_ends_with_its_error_log_and_says_where_the_rest_is(
    aws: Emulator, aio_loop: AioLoop, runner: GlueJobRunner
) -> None:
    glue_job(aws, "Fails", RunBehaviour(duration=0.1, final_state="FAILED", error_message="oom"))
    spec = runner.parse({"GlueJobName": "Fails"})
    job = Job(spec, run(aio_loop, runner.start(spec, TaskStart(KEY, 0.0))))
    asyncio.run(asyncio.sleep(0.2))

    status = run(aio_loop, runner.check([job]))[job.run_id]

    assert isinstance(status, Failed)
    tail = status.cause["glue_job_run_error_log_tail"]
    assert tail.splitlines()[-1] == "oom"
    assert "Traceback (most recent call last):" in tail
    where = status.cause["glue_job_run_error_log"]
    assert (where["group"], where["stream"]) == ("/aws-glue/jobs/error", job.run_id)
    assert where["console"].endswith(
        f"#logsV2:log-groups/log-group/$252Faws-glue$252Fjobs$252Ferror/log-events/{job.run_id}"
    )
    assert aws.faults.calls["logs:GetLogEvents"] == 1


def test_a_missing_error_log_never_holds_the_report_back(
    aws: Emulator, aio_loop: AioLoop, runner: GlueJobRunner
) -> None:
    """A custom log group the runner's role may not read (or logs not yet written): the
    task still fails at once, and its cause says why there is no log tail."""
    glue_job(aws, "Fails", RunBehaviour(duration=0.1, final_state="FAILED", error_message="oom"))
    spec = runner.parse(
        {"GlueJobName": "Fails", "Arguments": {"--custom-logGroup-prefix": "/team/etl"}}
    )
    job = Job(spec, run(aio_loop, runner.start(spec, TaskStart(KEY, 0.0))))
    asyncio.run(asyncio.sleep(0.2))

    status = run(aio_loop, runner.check([job]))[job.run_id]

    assert isinstance(status, Failed)
    assert "glue_job_run_error_log_tail" not in status.cause
    assert status.cause["glue_job_run_error_log"]["group"] == "/team/etl/error"
    assert status.cause["glue_job_run_error_log"]["unavailable"]


def test_a_stopped_run_has_no_error_log_to_read(
    aws: Emulator, aio_loop: AioLoop, runner: GlueJobRunner
) -> None:
    glue_job(aws, "Stops", RunBehaviour(duration=0.1, final_state="STOPPED"))
    spec = runner.parse({"GlueJobName": "Stops"})
    job = Job(spec, run(aio_loop, runner.start(spec, TaskStart(KEY, 0.0))))
    asyncio.run(asyncio.sleep(0.2))

    status = run(aio_loop, runner.check([job]))[job.run_id]

    assert isinstance(status, Failed)
    assert "glue_job_run_error_log" not in status.cause
    assert aws.faults.count("logs:*") == 0
