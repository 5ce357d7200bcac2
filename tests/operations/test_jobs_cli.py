"""``python -m runners jobs`` against the emulator, run as an operator runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from runners.engine.records import Status, TaskRecord, task_id_for
from runners.engine.store import DynamoStore
from runners.local import Emulator, RunBehaviour
from runners.logs import token_hash
from tests.aio import AioLoop
from tests.engine.test_end_to_end import glue_job
from tests.helpers import create_machine, finished, wait_until
from tests.workers import config, running_worker

TABLE = "glue-tasks"


def jobs(aws: Emulator, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runners", "jobs", "--table", TABLE, *arguments],
        env={**os.environ, **aws.client_env()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def tracked(
    aws: Emulator, aio_loop: AioLoop, job_store: Callable[..., DynamoStore]
) -> list[dict[str, Any]]:
    """Three tasks a worker has stored: real tokens from real executions."""
    sfn = aws.client("stepfunctions")
    activity = sfn.create_activity(name="glue")["activityArn"]
    machine = create_machine(
        sfn,
        "tracked",
        {
            "StartAt": "Work",
            "States": {"Work": {"Type": "Task", "Resource": activity, "End": True}},
        },
    )
    store = job_store(TABLE, retention_seconds=600)
    tasks = []
    for n in range(3):
        execution = sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]
        token = sfn.get_activity_task(activityArn=activity)["taskToken"]
        now = time.time()
        record = TaskRecord(
            task_id_for(token),
            token,
            activity,
            "glue",
            {"GlueJobName": f"job-{n}"},
            owner="worker-a",
            lease_expires_at=now + 120,
            created_at=now,
            status=Status.RUNNING,
            run_id=f"jr_{n}",
        )
        aio_loop.run(store.create(record))
        tasks.append({"record": record, "execution": execution})
    return tasks


def test_list_shows_every_task_with_its_token_hash_never_its_token(
    aws: Emulator, tracked: list[dict[str, Any]]
) -> None:
    shown = jobs(aws, "list")
    as_json = json.loads(jobs(aws, "--json", "list").stdout)

    assert shown.returncode == 0, shown.stderr
    for task in tracked:
        record = task["record"]
        assert record.task_id in shown.stdout
        assert record.token not in shown.stdout + json.dumps(as_json)
    assert {t["token_hash"] for t in as_json["tasks"]} == {
        token_hash(task["record"].token) for task in tracked
    }
    assert {t["run_id"] for t in as_json["tasks"]} == {"jr_0", "jr_1", "jr_2"}
    assert all(100 < t["lease_left_seconds"] <= 120 for t in as_json["tasks"])
    assert shown.stdout.splitlines()[0].split()[:3] == ["TASK", "RUNNER", "STATUS"]


def test_list_pages_and_filters(aws: Emulator, tracked: list[dict[str, Any]]) -> None:
    first = json.loads(jobs(aws, "--json", "list", "--limit", "2").stdout)
    rest = json.loads(jobs(aws, "--json", "list", "--after", first["next"]).stdout)
    whole = json.loads(jobs(aws, "--json", "list", "--limit", "3").stdout)
    done = json.loads(jobs(aws, "--json", "list", "--status", "DONE").stdout)
    running = json.loads(jobs(aws, "--json", "list", "--status", "RUNNING").stdout)
    other = json.loads(jobs(aws, "--json", "list", "--runner", "athena").stdout)
    glue = json.loads(jobs(aws, "--json", "list", "--runner", "glue").stdout)

    assert len(first["tasks"]) == 2
    ids = {t["task_id"] for t in first["tasks"] + rest["tasks"]}
    assert ids == {task["record"].task_id for task in tracked}
    assert rest["next"] is None
    assert (len(whole["tasks"]), whole["next"]) == (3, None)  # exactly a page: no "more"
    assert done["tasks"] == []
    assert len(running["tasks"]) == 3
    assert other["tasks"] == []
    assert len(glue["tasks"]) == 3


def test_release_expires_the_lease_at_once(aws: Emulator, tracked: list[dict[str, Any]]) -> None:
    task_id = tracked[0]["record"].task_id

    released = jobs(aws, "--json", "release", task_id)
    shown = json.loads(jobs(aws, "--json", "show", task_id).stdout)["tasks"][0]

    assert released.returncode == 0, released.stderr
    assert shown["lease_left_seconds"] < 0
    assert shown["owner"] == "worker-a"  # the next claim, by any worker, takes it over


def test_fail_reports_a_named_error_and_closes_the_record(
    aws: Emulator, tracked: list[dict[str, Any]]
) -> None:
    task = tracked[1]
    task_id = task["record"].task_id

    failed = jobs(aws, "fail", task_id, "--error", "OperatorStopped", "--cause", "bad data")
    again = jobs(aws, "fail", task_id, "--error", "OperatorStopped")
    done = finished(aws.client("stepfunctions"), task["execution"])
    shown = json.loads(jobs(aws, "--json", "show", task_id).stdout)["tasks"][0]

    assert failed.returncode == 0, failed.stderr
    assert done["status"] == "FAILED"
    assert done["error"] == "OperatorStopped"
    assert json.loads(done["cause"]) == {"operator": "bad data"}
    assert (shown["status"], shown["outcome"], shown["error"]) == (
        "DONE",
        "FAILED",
        "OperatorStopped",
    )
    assert again.returncode == 2
    assert "closed already" in again.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("show", "nope"), "no task 'nope'"),
        (("list", "--status", "LOST"), "invalid choice"),
        (("list", "--limit", "0"), "must be at least 1"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_code_2(
    aws: Emulator, tracked: list[dict[str, Any]], arguments: tuple[str, ...], message: str
) -> None:
    result = jobs(aws, *arguments)

    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_table_is_a_configuration_error(aws: Emulator) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runners", "jobs", "--table", "Nope", "list"],
        env={**os.environ, **aws.client_env()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert result.stderr.startswith("configuration error: table Nope")
    assert len(result.stderr.strip().splitlines()) == 1


def test_show_adds_the_jobs_status_as_its_service_reports_it_now(
    aws: Emulator,
    aio_loop: AioLoop,
    tracked: list[dict[str, Any]],
    job_store: Callable[..., DynamoStore],
) -> None:
    glue_job(aws, "Nightly", RunBehaviour(duration=30.0))
    run_id = aws.client("glue").start_job_run(JobName="Nightly")["JobRunId"]
    record = tracked[2]["record"]
    record.task_input, record.run_id = {"GlueJobName": "Nightly"}, run_id
    assert aio_loop.run(job_store(TABLE, retention_seconds=600).save(record))

    shown = json.loads(jobs(aws, "--json", "show", record.task_id).stdout)["tasks"][0]
    as_text = jobs(aws, "show", record.task_id).stdout

    assert shown["job"] == {"state": "RUNNING"}
    assert f'job {run_id}: {{"state": "RUNNING"}}' in as_text


def test_fail_stops_a_live_workers_job_and_the_worker_lets_the_task_go(
    aws: Emulator, aio_loop: AioLoop
) -> None:
    sfn = aws.client("stepfunctions")
    activity = sfn.create_activity(name="glue-live")["activityArn"]
    glue_job(aws, "Slow", RunBehaviour(duration=60.0))
    machine = create_machine(
        sfn,
        "live",
        {
            "StartAt": "Work",
            "States": {"Work": {"Type": "Task", "Resource": activity, "End": True}},
        },
    )
    execution = sfn.start_execution(stateMachineArn=machine, input='{"GlueJobName": "Slow"}')

    with running_worker(config("glue", activity, table=TABLE)):
        held = wait_until(
            lambda: (
                (t := json.loads(jobs(aws, "--json", "list").stdout)["tasks"])
                and t[0]["run_id"]
                and t[0]
            )
        )
        failed = jobs(aws, "--json", "fail", held["task_id"], "--error", "OperatorStopped")
        done = finished(sfn, execution["executionArn"])
        run = wait_until(
            lambda: (
                (
                    r := aws.client("glue").get_job_run(JobName="Slow", RunId=held["run_id"])[
                        "JobRun"
                    ]
                )["JobRunState"]
                == "STOPPED"
                and r
            )
        )
        time.sleep(1.0)  # the worker's checks see the run stopped and meet a closed task
        shown = json.loads(jobs(aws, "--json", "show", held["task_id"]).stdout)["tasks"][0]

    assert failed.returncode == 0, failed.stderr
    assert json.loads(failed.stdout)["tasks"][0]["job"] == {"stopped": True}
    assert (done["status"], done["error"]) == ("FAILED", "OperatorStopped")
    assert run["JobRunState"] == "STOPPED"
    assert (shown["status"], shown["error"], shown["owner"]) == (
        "DONE",
        "OperatorStopped",
        "operator",
    )
