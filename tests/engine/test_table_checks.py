"""A worker never loses a task to a table it cannot use: a table of the wrong shape is a
clear configuration error before any task is polled, and a table that refuses a task
fails that task at once with ``RunnerStoreError``.

The original sample's table (key ``sfn_activity_arn`` + ``glue_job_run_id``, no
``by-lease`` index) is the case a user coming from it meets first: its config file
names that table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runners.engine.store import DynamoStore
from runners.errors import ConfigError
from runners.local import Emulator, Fault, RunBehaviour
from tests.engine.test_end_to_end import glue_job, task_machine
from tests.helpers import finished
from tests.workers import config, running_worker


def original_config(tmp_path: Path, activity: str, table: str) -> Path:
    """The original sample's lambda/gluerunner/gluerunner-config.json, as it ships."""
    path = tmp_path / "gluerunner-config.json"
    path.write_text(
        json.dumps(
            {
                "sfn_activity_arn": activity,
                "sfn_worker_name": "gluerunner",
                "ddb_table": table,
                "ddb_query_limit": 50,
                "glue_job_capacity": 10,
            }
        )
    )
    return path


def create_table(aws: Emulator, name: str, keys: list[tuple[str, str, str]], **extra: Any) -> None:
    aws.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": n, "KeyType": k} for n, _, k in keys],
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t, _ in keys],
        BillingMode="PAY_PER_REQUEST",
        **extra,
    )


def run_worker(aws: Emulator, config_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runners", "worker", "--config", str(config_file)],
        env={**os.environ, **aws.client_env()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_original_samples_table_is_recognised_and_the_worker_says_what_to_do(
    aws: Emulator, tmp_path: Path
) -> None:
    activity = aws.client("stepfunctions").create_activity(name="GlueRunnerActivity")["activityArn"]
    create_table(
        aws,
        "GlueRunnerActiveJobs",
        [("sfn_activity_arn", "S", "HASH"), ("glue_job_run_id", "S", "RANGE")],
    )

    began = time.monotonic()
    result = run_worker(aws, original_config(tmp_path, activity, "GlueRunnerActiveJobs"))

    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()  # one clear line, no traceback
    assert "GlueRunnerActiveJobs" in line
    assert "this is the original sample's table" in line
    assert "give the runner a new table name" in line
    assert time.monotonic() - began < 30
    assert aws.faults.calls["states:GetActivityTask"] == 0  # no task was taken


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda aws: None, "no such table; create it", id="missing"),
        pytest.param(
            lambda aws: create_table(aws, "Jobs", [("task_id", "S", "HASH")]),
            "it has no index by-event",
            id="no-index",
        ),
        pytest.param(
            lambda aws: create_table(aws, "Jobs", [("id", "S", "HASH")]),
            "its key is id (HASH), this version needs task_id (HASH)",
            id="other-key",
        ),
    ],
)
def test_a_table_of_the_wrong_shape_stops_the_worker_before_it_polls(
    aws: Emulator, tmp_path: Path, make: Any, message: str
) -> None:
    activity = aws.client("stepfunctions").create_activity(name="Work")["activityArn"]
    make(aws)
    path = tmp_path / "glue.json"
    path.write_text(json.dumps({"runner": "glue", "activity_arn": activity, "table": "Jobs"}))

    result = run_worker(aws, path)

    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "the glue runner's job table Jobs (us-east-1)" in line
    assert message in line
    assert aws.faults.calls["states:GetActivityTask"] == 0


def test_a_table_without_ttl_is_refused_and_one_with_it_is_accepted(
    aws: Emulator, job_store: Callable[..., DynamoStore]
) -> None:
    store = job_store("Audit", retention_seconds=60)
    dynamodb = aws.client("dynamodb")
    dynamodb.update_time_to_live(
        TableName="Audit", TimeToLiveSpecification={"Enabled": False, "AttributeName": "expires_at"}
    )
    with pytest.raises(ConfigError, match="TTL is not on expires_at"):
        store.verify()
    dynamodb.update_time_to_live(
        TableName="Audit", TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
    )
    store.verify()


def test_a_task_the_table_refuses_fails_at_once_and_the_worker_serves_on(aws: Emulator) -> None:
    """A policy without dynamodb:PutItem: the task fails with RunnerStoreError (its cause
    says which table and why) instead of waiting for its state's timeout, and once the
    policy is fixed the same worker serves the next task."""
    sfn = aws.client("stepfunctions")
    activity = sfn.create_activity(name="GlueRunnerActivity")["activityArn"]
    glue_job(aws, "Nightly", RunBehaviour(duration=0.3))
    machine = task_machine(sfn, "denied", activity, catch="RunnerStoreError")
    denied = aws.faults.add(Fault("dynamodb:PutItem", "deny"))
    refused = sfn.start_execution(stateMachineArn=machine, input='{"GlueJobName": "Nightly"}')[
        "executionArn"
    ]

    with running_worker(config("glue", activity)) as worker:
        began = time.monotonic()
        caught = finished(sfn, refused, timeout=20)
        waited = time.monotonic() - began
        aws.faults.remove(denied)
        served = sfn.start_execution(stateMachineArn=machine, input='{"GlueJobName": "Nightly"}')[
            "executionArn"
        ]
        done = finished(sfn, served, timeout=20)
        counters = worker.counters

    error = json.loads(caught["output"])["error"]
    assert error["Error"] == "RunnerStoreError"
    cause = json.loads(error["Cause"])
    assert (cause["table"], cause["error"]) == ("glue-tasks", "AccessDeniedException")
    assert waited < 10
    assert json.loads(done["output"])["GlueJobRunState"] == "SUCCEEDED"
    assert aws.faults.calls["glue:StartJobRun"] == 1  # only for the stored task
    assert counters["store_errors"] == 1


def test_a_lambda_tick_checks_its_table_before_it_polls(
    aws: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runners.handlers import gluerunner
    from tests.handlers.test_lambda import SCHEDULED_EVENT, Context

    activity = aws.client("stepfunctions").create_activity(name="Work")["activityArn"]
    monkeypatch.setenv("RUNNERS_GLUE_ACTIVITY_ARN", activity)
    monkeypatch.setenv("RUNNERS_GLUE_TABLE", "NotThere")

    with pytest.raises(ConfigError, match=r"job table NotThere .* no such table"):
        gluerunner.handler(SCHEDULED_EVENT, Context("request-1", timeout_seconds=18))

    assert aws.faults.calls["states:GetActivityTask"] == 0
