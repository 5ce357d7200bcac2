"""Waiting for data end to end: real S3 notifications from the emulator feed the
object-created handler while the real worker serves the wait activities."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter
from typing import Any

import pytest

from runners.local import Call, Emulator
from runners.settings import RunnerConfig
from runners.waits.table import WaitTable
from tests.helpers import create_machine, events, finished, wait_until
from tests.waits.notifications import Delivery, Notifications
from tests.workers import config, running_worker

BUCKET = "etl-source-data"
WAIT_TABLE = "runners-waits"


@pytest.fixture
def waits_env(aws: Emulator, monkeypatch: pytest.MonkeyPatch) -> WaitTable:
    aws.client("s3").create_bucket(Bucket=BUCKET)
    monkeypatch.setenv("RUNNERS_WAIT_TABLE", WAIT_TABLE)
    table = WaitTable(WAIT_TABLE, "us-east-1")
    table.create_table()
    return table


def wait_config(activity: str, **overrides: Any) -> RunnerConfig:
    return config(
        "s3wait",
        activity,
        table="wait-tasks",
        wait_table=WAIT_TABLE,
        wait_bucket=BUCKET,
        **overrides,
    )


def wait_machine(sfn: Any, name: str, activity: str) -> str:
    return create_machine(
        sfn,
        name,
        {
            "StartAt": "Wait",
            "States": {
                "Wait": {"Type": "Task", "Resource": activity, "TimeoutSeconds": 120, "End": True}
            },
        },
    )


def start(sfn: Any, machine: str, payload: dict[str, Any] | None = None) -> str:
    arn: str = sfn.start_execution(stateMachineArn=machine, input=json.dumps(payload or {}))[
        "executionArn"
    ]
    return arn


def accepted_releases(aws: Emulator) -> Counter[str]:
    """Successful SendTaskSuccess calls by token, recorded as the emulator serves them."""
    accepted: Counter[str] = Counter()

    def record(call: Call) -> None:
        if call.status == 200:
            accepted[call.json()["taskToken"]] += 1

    aws.faults.on_call("states:SendTaskSuccess", record)
    return accepted


@pytest.fixture
def sfn(aws: Emulator) -> Any:
    return aws.client("stepfunctions")


@pytest.fixture
def sales_activity(sfn: Any) -> str:
    arn: str = sfn.create_activity(name=f"{BUCKET}-SalesPipeline_QuickSightSample.csv")[
        "activityArn"
    ]
    return arn


@pytest.mark.parametrize("delivery", ["s3", "sqs", "eventbridge"])
def test_a_file_that_landed_first_releases_the_wait_at_once(
    aws: Emulator, waits_env: WaitTable, sfn: Any, sales_activity: str, delivery: Delivery
) -> None:
    notifications = Notifications(aws, BUCKET, delivery)
    aws.client("s3").put_object(
        Bucket=BUCKET, Key="SalesPipeline_QuickSightSample.csv", Body=b"Date,Salesperson\n"
    )
    assert notifications.deliver(wait_seconds=1) >= 1
    assert notifications.released == 0  # nobody waits yet: the arrival is recorded

    execution = start(sfn, wait_machine(sfn, "first", sales_activity))
    with running_worker(wait_config(sales_activity)):
        done = finished(sfn, execution)

    assert done["status"] == "SUCCEEDED"
    output = json.loads(done["output"])
    assert (output["S3BucketName"], output["S3Key"], output["SFNActivityArn"]) == (
        BUCKET,
        "SalesPipeline_QuickSightSample.csv",
        sales_activity,
    )
    assert output["S3ObjectSize"] == 17
    assert output["S3ObjectETag"]
    assert output["S3EventTime"]


@pytest.mark.parametrize("delivery", ["s3", "sqs", "eventbridge"])
def test_a_waiting_execution_is_released_by_the_handler(
    aws: Emulator, waits_env: WaitTable, sfn: Any, sales_activity: str, delivery: Delivery
) -> None:
    accepted = accepted_releases(aws)
    execution = start(sfn, wait_machine(sfn, "after", sales_activity))

    # Checks far apart, so the release comes from the handler, not the worker's checks
    # (an EventBridge delivery runs the handler in a new interpreter: seconds on a loaded
    # machine).
    interval = 6.0
    with (
        running_worker(wait_config(sales_activity, check_interval_seconds=interval)) as worker,
        Notifications(aws, BUCKET, delivery) as notifications,
    ):
        wait_until(lambda: worker.idle_tasks() == 1)  # started, and found nothing yet
        aws.client("s3").put_object(
            Bucket=BUCKET, Key="SalesPipeline_QuickSightSample.csv", Body=b"x"
        )
        done = finished(sfn, execution)
        time.sleep(interval + 0.5)  # a check cycle: it sees the release, does not report
        counters = worker.counters

    assert done["status"] == "SUCCEEDED"
    assert notifications.released == 1
    assert sum(accepted.values()) == 1
    assert aws.faults.calls["states:SendTaskSuccess"] == 1
    assert (counters["succeeded"], len(worker.engines[0].in_flight)) == (1, 0)


def test_waits_and_arrivals_at_the_same_moment_release_every_wait_exactly_once(
    aws: Emulator, waits_env: WaitTable, sfn: Any
) -> None:
    """Executions start and files land at random moments relative to each other."""
    rounds = 24
    activity = sfn.create_activity(name="NamedWaits")["activityArn"]
    machine = wait_machine(sfn, "races", activity)
    accepted = accepted_releases(aws)
    s3 = aws.client("s3")
    rng = random.Random(7)
    executions: dict[int, str] = {}

    def wait_for(n: int) -> None:
        time.sleep(rng.random() * 0.3)
        executions[n] = start(sfn, machine, {"S3Key": f"incoming/part-{n}.csv"})

    def land(n: int) -> None:
        time.sleep(rng.random() * 0.3)
        s3.put_object(Bucket=BUCKET, Key=f"incoming/part-{n}.csv", Body=b"x")

    with (
        running_worker(wait_config(activity, pollers=8, check_interval_seconds=1.0)),
        Notifications(aws, BUCKET, "sqs") as notifications,
    ):
        actions = [(wait_for, n) for n in range(rounds)] + [(land, n) for n in range(rounds)]
        rng.shuffle(actions)
        threads = [threading.Thread(target=action, args=(n,)) for action, n in actions]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        statuses = [finished(sfn, executions[n], timeout=30)["status"] for n in range(rounds)]

    assert statuses == ["SUCCEEDED"] * rounds  # no release lost
    assert sorted(accepted.values()) == [1] * rounds  # none released twice
    assert aws.faults.calls["states:SendTaskSuccess"] == rounds  # nor even tried twice
    for n in range(rounds):
        assert len(events(sfn, executions[n], "ActivitySucceeded")) == 1
        assert json.loads(finished(sfn, executions[n])["output"])["S3Key"] == (
            f"incoming/part-{n}.csv"
        )
    assert notifications.released <= rounds


def test_duplicate_and_out_of_order_events_are_harmless(
    aws: Emulator, waits_env: WaitTable, sfn: Any, sales_activity: str
) -> None:
    s3 = aws.client("s3")
    notifications = Notifications(aws, BUCKET, "sqs")
    key = "SalesPipeline_QuickSightSample.csv"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"old")
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"newer")
    while notifications.deliver():
        pass
    older, newer = [b for b in notifications.bodies if "Records" in b]
    from runners.handlers import ons3objectcreated

    # Redeliver the newer event twice and the older one last.
    for body in (newer, newer, older):
        ons3objectcreated.handler(notifications.event_for(body), None)
    [recorded] = asyncio.run(waits_env.arrivals(BUCKET))
    newer_etag = s3.head_object(Bucket=BUCKET, Key=key)["ETag"].strip('"')

    execution = start(sfn, wait_machine(sfn, "dupes", sales_activity))
    with running_worker(wait_config(sales_activity)):
        done = finished(sfn, execution)

    assert recorded.etag == newer_etag
    assert json.loads(done["output"])["S3ObjectETag"] == newer_etag


@pytest.mark.parametrize("delivery", ["sqs", "eventbridge"])
def test_keys_with_spaces_and_non_ascii_characters(
    aws: Emulator, waits_env: WaitTable, sfn: Any, delivery: Delivery
) -> None:
    key = "inbound/Sales data é/ファイル 1+2.csv"
    activity = sfn.create_activity(name="Exact")["activityArn"]
    execution = start(
        sfn, wait_machine(sfn, "unicode", activity), {"S3Bucket": BUCKET, "S3Key": key}
    )

    with running_worker(wait_config(activity)), Notifications(aws, BUCKET, delivery):
        wait_until(lambda: asyncio.run(waits_env.waiting(BUCKET)))
        aws.client("s3").put_object(Bucket=BUCKET, Key=key, Body=b"x")
        done = finished(sfn, execution)

    assert json.loads(done["output"])["S3Key"] == key


def test_an_object_nobody_waits_for_returns_quickly(aws: Emulator, waits_env: WaitTable) -> None:
    notifications = Notifications(aws, BUCKET, "s3")
    aws.client("s3").put_object(Bucket=BUCKET, Key="unrelated/file.txt", Body=b"x")
    while not notifications.bodies or "Records" not in notifications.bodies[-1]:
        assert notifications.deliver(wait_seconds=1)
    from runners.handlers import ons3objectcreated

    began = time.monotonic()
    result = ons3objectcreated.handler(notifications.event_for(notifications.bodies[-1]), None)

    assert result == {"arrivals": 1, "released": 0}
    assert time.monotonic() - began < 1.0
    assert aws.faults.calls["states:GetActivityTask"] == 0


def test_several_executions_waiting_for_one_object_are_all_released(
    aws: Emulator, waits_env: WaitTable, sfn: Any, sales_activity: str
) -> None:
    machine = wait_machine(sfn, "many", sales_activity)
    executions = [start(sfn, machine) for _ in range(4)]

    with running_worker(wait_config(sales_activity)), Notifications(aws, BUCKET, "sqs"):
        wait_until(lambda: len(asyncio.run(waits_env.waiting(BUCKET))) == 4)
        aws.client("s3").put_object(
            Bucket=BUCKET, Key="SalesPipeline_QuickSightSample.csv", Body=b"x"
        )
        statuses = [finished(sfn, arn)["status"] for arn in executions]

    assert statuses == ["SUCCEEDED"] * 4


def test_a_prefix_rule_and_an_old_file(aws: Emulator, waits_env: WaitTable, sfn: Any) -> None:
    """A configured prefix/suffix rule; an arrival older than the wait's window does not
    release it, a new one does."""
    activity = sfn.create_activity(name="DailyExtract")["activityArn"]
    notifications = Notifications(aws, BUCKET, "sqs")
    aws.client("s3").put_object(Bucket=BUCKET, Key="daily/extract-old.csv", Body=b"x")
    while notifications.deliver(wait_seconds=1):
        pass
    time.sleep(1.1)
    execution = start(sfn, wait_machine(sfn, "rule", activity), {"MaxAgeSeconds": 1})

    with (
        running_worker(wait_config(activity, wait_prefix="daily/", wait_suffix=".csv")),
        notifications,
    ):
        wait_until(lambda: asyncio.run(waits_env.waiting(BUCKET)))
        time.sleep(0.5)
        assert sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"
        aws.client("s3").put_object(Bucket=BUCKET, Key="daily/extract-new.csv", Body=b"x")
        done = finished(sfn, execution)

    assert json.loads(done["output"])["S3Key"] == "daily/extract-new.csv"


@pytest.fixture
def original_flow(aws: Emulator, waits_env: WaitTable, sfn: Any) -> dict[str, str]:
    """The original sample's flow: wait for sales data ∥ wait for marketing data, each
    then a Glue job, then a join job; inputs as JSON strings in Pass states."""
    glue = aws.client("glue")
    for job in ("ProcessSalesData", "ProcessMarketingData", "JoinMarketingAndSalesData"):
        glue.create_job(
            Name=job,
            Role="arn:aws:iam::123456789012:role/Glue",
            Command={"Name": "glueetl", "ScriptLocation": f"s3://scripts/{job}.py"},
        )
    arns = {
        name: sfn.create_activity(name=name)["activityArn"]
        for name in (
            "GlueRunnerActivity",
            f"{BUCKET}-SalesPipeline_QuickSightSample.csv",
            f"{BUCKET}-MarketingData_QuickSightSample.csv",
        )
    }
    glue_arn = arns["GlueRunnerActivity"]

    def branch(data: str, job: str) -> dict[str, Any]:
        return {
            "StartAt": f"Wait For {data} Data",
            "States": {
                f"Wait For {data} Data": {
                    "Type": "Task",
                    "Resource": arns[
                        f"{BUCKET}-{'SalesPipeline' if data == 'Sales' else 'MarketingData'}"
                        "_QuickSightSample.csv"
                    ],
                    "Next": f"Prep for Process {data} Data",
                },
                f"Prep for Process {data} Data": {
                    "Type": "Pass",
                    "Result": json.dumps({"GlueJobName": job}),
                    "Next": f"Process {data} Data",
                },
                f"Process {data} Data": {"Type": "Task", "Resource": glue_arn, "End": True},
            },
        }

    machine = create_machine(
        sfn,
        "MarketingAndSalesETLOrchestrator",
        {
            "StartAt": "Pre-process",
            "States": {
                "Pre-process": {"Type": "Pass", "Next": "Start Parallel Glue Jobs"},
                "Start Parallel Glue Jobs": {
                    "Type": "Parallel",
                    "Branches": [
                        branch("Sales", "ProcessSalesData"),
                        branch("Marketing", "ProcessMarketingData"),
                    ],
                    "Next": "Prep For Joining Marketing And Sales Data",
                    "Catch": [{"ErrorEquals": ["GlueJobFailedError"], "Next": "Fallback"}],
                },
                "Prep For Joining Marketing And Sales Data": {
                    "Type": "Pass",
                    "Result": json.dumps({"GlueJobName": "JoinMarketingAndSalesData"}),
                    "Next": "Join Marketing And Sales Data",
                },
                "Join Marketing And Sales Data": {
                    "Type": "Task",
                    "Resource": glue_arn,
                    "End": True,
                    "Catch": [{"ErrorEquals": ["GlueJobFailedError"], "Next": "Fallback"}],
                },
                "Fallback": {
                    "Type": "Pass",
                    "Result": "This is a fallback from an ETL job failure.",
                    "End": True,
                },
            },
        },
    )
    return {"machine": machine, **arns}


@pytest.mark.parametrize("timing", ["before", "after"])
@pytest.mark.parametrize("order", [("Sales", "Marketing"), ("Marketing", "Sales")])
def test_the_original_two_branch_flow_completes(
    aws: Emulator, sfn: Any, original_flow: dict[str, str], order: tuple[str, str], timing: str
) -> None:
    files = {
        "Sales": "SalesPipeline_QuickSightSample.csv",
        "Marketing": "MarketingData_QuickSightSample.csv",
    }
    s3 = aws.client("s3")
    configs = [
        config("glue", original_flow["GlueRunnerActivity"], table="glue-tasks"),
        *(wait_config(original_flow[f"{BUCKET}-{files[name]}"]) for name in order),
    ]

    def upload() -> None:
        for name in order:
            s3.put_object(Bucket=BUCKET, Key=files[name], Body=b"Date\n")

    with running_worker(*configs), Notifications(aws, BUCKET, "sqs"):
        if timing == "before":
            upload()
            time.sleep(0.5)
        execution = start(sfn, original_flow["machine"])
        if timing == "after":
            wait_until(lambda: len(events(sfn, execution, "ActivityStarted")) == 2)
            upload()
        done = finished(sfn, execution, timeout=30)

    assert done["status"] == "SUCCEEDED"
    runs = {
        job: aws.client("glue").get_job_runs(JobName=job)["JobRuns"]
        for job in ("ProcessSalesData", "ProcessMarketingData", "JoinMarketingAndSalesData")
    }
    assert {job: len(found) for job, found in runs.items()} == {
        "ProcessSalesData": 1,
        "ProcessMarketingData": 1,
        "JoinMarketingAndSalesData": 1,
    }
    assert json.loads(done["output"])["GlueJobName"] == "JoinMarketingAndSalesData"
