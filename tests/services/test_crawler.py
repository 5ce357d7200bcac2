"""The crawler runner end to end on the emulator: one Task state per crawl."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runners.errors import RunnerInputError
from runners.local import Emulator, RunBehaviour
from runners.services.crawler import GlueCrawlerRunner
from tests.engine.test_end_to_end import glue_job, task_machine
from tests.helpers import create_machine, finished, wait_until
from tests.workers import config, running_worker


@pytest.fixture
def sfn(aws: Emulator) -> Any:
    return aws.client("stepfunctions")


@pytest.fixture
def crawler_activity(sfn: Any) -> str:
    arn: str = sfn.create_activity(name="CrawlerRunnerActivity")["activityArn"]
    return arn


def create_crawler(aws: Emulator, name: str, behaviour: RunBehaviour) -> str:
    aws.client("glue").create_crawler(
        Name=name,
        Role="arn:aws:iam::123456789012:role/Glue",
        DatabaseName="sales",
        Targets={"S3Targets": [{"Path": f"s3://data/{name}/"}]},
    )
    aws.glue_crawls.set(name, behaviour)
    return name


def run_crawl(sfn: Any, activity: str, name: str, machine: str = "crawl") -> str:
    arn: str = sfn.start_execution(
        stateMachineArn=task_machine(sfn, machine, activity),
        input=json.dumps({"CrawlerName": name}),
    )["executionArn"]
    return arn


def test_input_names_the_crawler() -> None:
    runner = GlueCrawlerRunner(glue=None)
    assert runner.parse({"CrawlerName": "c"}).crawler_name == "c"
    with pytest.raises(RunnerInputError) as raised:
        runner.parse({"crawler": "c"})
    assert raised.value.field == "CrawlerName"


def test_a_crawl_succeeds_with_its_tables_and_duration(
    aws: Emulator, sfn: Any, crawler_activity: str
) -> None:
    name = create_crawler(
        aws,
        "SalesCrawler",
        RunBehaviour(duration=1.0, metrics={"TablesCreated": 3, "TablesUpdated": 1}),
    )
    execution = run_crawl(sfn, crawler_activity, name)

    with running_worker(config("crawler", crawler_activity)):
        done = finished(sfn, execution)

    assert done["status"] == "SUCCEEDED"
    output = json.loads(done["output"])
    assert (output["GlueCrawlerName"], output["GlueCrawlStatus"]) == (name, "SUCCEEDED")
    assert (
        output["GlueCrawlerTablesCreated"],
        output["GlueCrawlerTablesUpdated"],
        output["GlueCrawlerTablesDeleted"],
    ) == (3, 1, 0)
    assert 1.0 <= output["GlueCrawlDurationSeconds"] < 2.0
    assert output["GlueCrawlStartedOn"]


def test_a_failed_crawl_fails_with_glue_crawler_failed_error(
    aws: Emulator, sfn: Any, crawler_activity: str
) -> None:
    name = create_crawler(
        aws,
        "Broken",
        RunBehaviour(
            duration=0.3, final_state="FAILED", error_message="Access denied to s3://data/"
        ),
    )
    execution = run_crawl(sfn, crawler_activity, name)

    with running_worker(config("crawler", crawler_activity)):
        done = finished(sfn, execution)

    assert (done["status"], done["error"]) == ("FAILED", "GlueCrawlerFailedError")
    cause = json.loads(done["cause"])
    assert (cause["glue_crawl_status"], cause["glue_crawl_error_msg"]) == (
        "FAILED",
        "Access denied to s3://data/",
    )
    assert cause["glue_crawl_log_group"] == "/aws-glue/crawlers"


def test_a_busy_crawler_finishes_its_crawl_then_runs_the_tasks_own(
    aws: Emulator, sfn: Any, crawler_activity: str
) -> None:
    """The task reports a crawl that began after the task did."""
    glue = aws.client("glue")
    # Long enough that a worker slow to start on a loaded machine still meets it busy.
    name = create_crawler(aws, "Shared", RunBehaviour(duration=4))
    glue.start_crawler(Name=name)  # someone else's crawl, already under way
    execution = run_crawl(sfn, crawler_activity, name)

    with running_worker(config("crawler", crawler_activity)):
        done = finished(sfn, execution, timeout=20)

    assert done["status"] == "SUCCEEDED"
    began = json.loads(done["output"])["GlueCrawlStartedOn"]
    scheduled = sfn.get_execution_history(executionArn=execution)["events"][0]["timestamp"]
    assert began > scheduled.isoformat()
    assert aws.faults.calls["glue:StartCrawler"] >= 3  # one refused, then its own


def test_a_stopped_execution_stops_the_crawler(
    aws: Emulator, sfn: Any, crawler_activity: str
) -> None:
    glue = aws.client("glue")
    name = create_crawler(aws, "Slow", RunBehaviour(duration=60))
    execution = run_crawl(sfn, crawler_activity, name)

    with running_worker(config("crawler", crawler_activity, heartbeat_interval_seconds=0.5)):
        wait_until(lambda: glue.get_crawler(Name=name)["Crawler"]["State"] == "RUNNING")
        sfn.stop_execution(executionArn=execution)
        last = wait_until(
            lambda: glue.get_crawler(Name=name)["Crawler"].get("LastCrawl"), timeout=15
        )

    assert last["Status"] == "CANCELLED"
    assert aws.faults.calls["glue:StopCrawler"] == 1


def test_a_glue_job_then_a_crawler(aws: Emulator, sfn: Any, crawler_activity: str) -> None:
    """The seeds' flow: a Glue job, then a crawler over its output, as two Task states."""
    glue_activity = sfn.create_activity(name="GlueRunnerActivity")["activityArn"]
    glue_job(aws, "ml-lab-notebook-job", RunBehaviour(duration=0.5))
    create_crawler(
        aws, "ml-final-crawler", RunBehaviour(duration=0.5, metrics={"TablesCreated": 1})
    )
    machine = create_machine(
        sfn,
        "job-then-crawler",
        {
            "StartAt": "Find Match Job",
            "States": {
                "Find Match Job": {
                    "Type": "Task",
                    "Resource": glue_activity,
                    "Parameters": {"GlueJobName": "ml-lab-notebook-job"},
                    "ResultPath": "$.job",
                    "Next": "Crawl Dedup Data",
                },
                "Crawl Dedup Data": {
                    "Type": "Task",
                    "Resource": crawler_activity,
                    "Parameters": {"CrawlerName": "ml-final-crawler"},
                    "ResultPath": "$.crawl",
                    "End": True,
                },
            },
        },
    )
    execution = sfn.start_execution(stateMachineArn=machine)["executionArn"]

    with running_worker(config("glue", glue_activity), config("crawler", crawler_activity)):
        done = finished(sfn, execution)

    output = json.loads(done["output"])
    assert done["status"] == "SUCCEEDED"
    assert output["job"]["GlueJobRunState"] == "SUCCEEDED"
    assert (output["crawl"]["GlueCrawlStatus"], output["crawl"]["GlueCrawlerTablesCreated"]) == (
        "SUCCEEDED",
        1,
    )
