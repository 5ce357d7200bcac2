"""Glue job runs on the emulator, through boto3 and aiobotocore.

Quotes are from the AWS Glue API reference, "Job runs"
(https://docs.aws.amazon.com/glue/latest/dg/aws-glue-api-jobs-runs.html).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from runners.local import Emulator, RunBehaviour
from runners.local.glue import limit_to_timeout
from tests.conftest import ClientFactory
from tests.helpers import error_code, wait_until


@pytest.fixture
def glue(client: ClientFactory) -> Any:
    return client("glue")


def create_job(glue: Any, name: str = "ProcessSales", max_concurrent: int = 1) -> str:
    glue.create_job(
        Name=name,
        Role="arn:aws:iam::123456789012:role/Glue",
        Command={"Name": "glueetl", "ScriptLocation": "s3://scripts/process.py"},
        ExecutionProperty={"MaxConcurrentRuns": max_concurrent},
    )
    return name


def run_state(glue: Any, job: str, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = glue.get_job_run(JobName=job, RunId=run_id)["JobRun"]
    return run


def test_a_run_succeeds_at_its_wall_clock_time_however_rarely_read(
    aws: Emulator, glue: Any
) -> None:
    """A run lasting 1 s reads RUNNING during that second and SUCCEEDED on the first
    read after it, with no reads in between (moto alone advances one step per read)."""
    job = create_job(glue)
    aws.glue_runs.set(job, RunBehaviour(duration=1.0))
    run_id = glue.start_job_run(JobName=job)["JobRunId"]
    time.sleep(0.5)
    running = run_state(glue, job, run_id)

    time.sleep(1.0)
    done = run_state(glue, job, run_id)

    assert running["JobRunState"] == "RUNNING"
    assert "CompletedOn" not in running
    assert done["JobRunState"] == "SUCCEEDED"
    assert done["CompletedOn"] >= done["StartedOn"]
    assert done["ExecutionTime"] in {0, 1}


def test_a_run_can_take_a_duration_chosen_from_its_arguments(aws: Emulator, glue: Any) -> None:
    """Runs of one job last as long as what they are asked to process: a behaviour can be
    chosen per run from the run's ``Arguments`` (the job's defaults merged in)."""
    job = create_job(glue, max_concurrent=2)
    aws.glue_runs.set(job, lambda args: RunBehaviour(duration=float(args["--seconds"])))
    short = glue.start_job_run(JobName=job, Arguments={"--seconds": "0.3"})["JobRunId"]
    long = glue.start_job_run(JobName=job, Arguments={"--seconds": "30"})["JobRunId"]

    wait_until(lambda: run_state(glue, job, short)["JobRunState"] == "SUCCEEDED", timeout=5)

    assert run_state(glue, job, long)["JobRunState"] == "RUNNING"


@pytest.mark.parametrize("final_state", ["FAILED", "ERROR", "TIMEOUT"])
def test_a_run_can_end_in_an_error_state_with_a_message(
    aws: Emulator, glue: Any, final_state: str
) -> None:
    """JobRun.ErrorMessage: "An error message associated with this job run." """
    job = create_job(glue)
    aws.glue_runs.set(
        job,
        RunBehaviour(
            duration=0.2, final_state=final_state, error_message="AnalysisException: no such table"
        ),
    )
    run_id = glue.start_job_run(JobName=job)["JobRunId"]

    run = wait_until(
        lambda: (r := run_state(glue, job, run_id))["JobRunState"] == final_state and r
    )

    assert run["ErrorMessage"] == "AnalysisException: no such table"


def test_the_default_behaviour_succeeds_after_a_second(aws: Emulator, glue: Any) -> None:
    job = create_job(glue)
    run_id = glue.start_job_run(JobName=job)["JobRunId"]

    assert run_state(glue, job, run_id)["JobRunState"] in {"STARTING", "RUNNING"}
    wait_until(lambda: run_state(glue, job, run_id)["JobRunState"] == "SUCCEEDED", timeout=3)


def test_max_concurrent_runs_is_enforced_atomically(aws: Emulator, glue: Any) -> None:
    """ExecutionProperty.MaxConcurrentRuns: "The maximum number of concurrent runs
    allowed for the job." StartJobRun errors: "ConcurrentRunsExceededException: Too many
    jobs are being run concurrently." Ten simultaneous starts against a limit of 3."""
    job = create_job(glue, max_concurrent=3)
    aws.glue_runs.set(job, RunBehaviour(duration=5))

    def try_start(_: int) -> str:
        try:
            glue.start_job_run(JobName=job)
        except ClientError as error:
            return error_code(error)
        return "started"

    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = list(pool.map(try_start, range(10)))

    assert outcomes.count("started") == 3
    assert outcomes.count("ConcurrentRunsExceededException") == 7


def test_a_finished_run_frees_its_slot(aws: Emulator, glue: Any) -> None:
    job = create_job(glue)
    # Long enough that the second start always comes while the first run is active,
    # however busy the machine (0.3 s was overtaken once on a loaded CI machine).
    aws.glue_runs.set(job, RunBehaviour(duration=2.0))
    glue.start_job_run(JobName=job)
    with pytest.raises(ClientError) as raised:
        glue.start_job_run(JobName=job)
    assert error_code(raised.value) == "ConcurrentRunsExceededException"

    time.sleep(2.1)

    assert glue.start_job_run(JobName=job)["JobRunId"]


def test_batch_stop_job_run_stops_running_runs(aws: Emulator, glue: Any) -> None:
    """BatchStopJobRun: "Stops one or more job runs for a specified job definition."
    SuccessfulSubmissions: "A list of the JobRuns that were successfully submitted for
    stopping." Errors: "A list of the errors that were encountered in trying to stop
    JobRuns, including the JobRunId for which each error was encountered"."""
    job = create_job(glue)
    aws.glue_runs.set(job, RunBehaviour(duration=30))
    run_id = glue.start_job_run(JobName=job)["JobRunId"]

    response = glue.batch_stop_job_run(JobName=job, JobRunIds=[run_id, "jr_unknown"])

    assert response["SuccessfulSubmissions"] == [{"JobName": job, "JobRunId": run_id}]
    assert [(e["JobRunId"], e["ErrorDetail"]["ErrorCode"]) for e in response["Errors"]] == [
        ("jr_unknown", "EntityNotFoundException")
    ]
    assert run_state(glue, job, run_id)["JobRunState"] == "STOPPING"
    wait_until(lambda: run_state(glue, job, run_id)["JobRunState"] == "STOPPED", timeout=3)


def test_batch_stop_reports_a_run_that_already_finished(aws: Emulator, glue: Any) -> None:
    job = create_job(glue)
    aws.glue_runs.set(job, RunBehaviour(duration=0.1))
    run_id = glue.start_job_run(JobName=job)["JobRunId"]
    time.sleep(0.2)

    response = glue.batch_stop_job_run(JobName=job, JobRunIds=[run_id])

    assert response["SuccessfulSubmissions"] == []
    assert response["Errors"][0]["JobRunId"] == run_id
    assert run_state(glue, job, run_id)["JobRunState"] == "SUCCEEDED"


def test_get_job_runs_lists_newest_first_in_pages(aws: Emulator, glue: Any) -> None:
    """GetJobRuns: "GetJobRuns returns the job runs in chronological order, with the
    newest jobs returned first." MaxResults: "Minimum value of 1. Maximum value of
    200." """
    job = create_job(glue, max_concurrent=10)
    aws.glue_runs.set(job, RunBehaviour(duration=0.1))
    started = [glue.start_job_run(JobName=job)["JobRunId"] for _ in range(5)]

    first = glue.get_job_runs(JobName=job, MaxResults=3)
    rest = glue.get_job_runs(JobName=job, MaxResults=3, NextToken=first["NextToken"])

    listed = [run["Id"] for run in first["JobRuns"] + rest["JobRuns"]]
    assert listed == list(reversed(started))
    assert "NextToken" not in rest
    with pytest.raises(ClientError) as raised:
        glue.get_job_runs(JobName=job, MaxResults=201)
    assert error_code(raised.value) == "InvalidInputException"


def test_a_run_longer_than_its_timeout_ends_in_timeout() -> None:
    """StartJobRun Timeout: "The JobRun timeout in minutes. This is the maximum time
    that a job run can consume resources before it is terminated and enters TIMEOUT
    status." (checked on the behaviour a run gets, not by waiting minutes)."""
    limited = limit_to_timeout(RunBehaviour(duration=3600), timeout_minutes=2)

    assert (limited.final_state, limited.duration) == ("TIMEOUT", 120)
    assert limited.error_message
    assert limit_to_timeout(RunBehaviour(duration=30), timeout_minutes=2).final_state == (
        "SUCCEEDED"
    )


# Crawlers ----------------------------------------------------------------------------


def create_crawler(glue: Any, name: str = "SalesCrawler") -> str:
    glue.create_crawler(
        Name=name,
        Role="arn:aws:iam::123456789012:role/Glue",
        DatabaseName="sales",
        Targets={"S3Targets": [{"Path": "s3://d/sales/"}]},
    )
    return name


def crawler(glue: Any, name: str) -> dict[str, Any]:
    found: dict[str, Any] = glue.get_crawler(Name=name)["Crawler"]
    return found


def test_a_crawl_runs_then_stops_then_reports_its_last_crawl(aws: Emulator, glue: Any) -> None:
    """Crawler.State: "Indicates whether the crawler is running, or whether a run is
    pending." LastCrawlInfo.Status: "Status of the last crawl. Valid Values: SUCCEEDED |
    CANCELLED | FAILED". StartCrawler: "If the crawler is already running, returns a
    CrawlerRunningException." """
    name = create_crawler(glue)
    aws.glue_crawls.set(name, RunBehaviour(duration=0.5, metrics={"TablesCreated": 2}))
    glue.start_crawler(Name=name)

    running = crawler(glue, name)
    with pytest.raises(ClientError) as raised:
        glue.start_crawler(Name=name)
    finished = wait_until(lambda: (c := crawler(glue, name))["State"] == "READY" and c)

    assert running["State"] == "RUNNING"
    assert "LastCrawl" not in running
    assert error_code(raised.value) == "CrawlerRunningException"
    assert finished["LastCrawl"]["Status"] == "SUCCEEDED"
    metrics = glue.get_crawler_metrics(CrawlerNameList=[name])["CrawlerMetricsList"][0]
    assert metrics["TablesCreated"] == 2
    assert 0.5 <= metrics["LastRuntimeSeconds"] <= 1.0


def test_a_failed_crawl_carries_its_error_message(aws: Emulator, glue: Any) -> None:
    """LastCrawlInfo.ErrorMessage: "If an error occurred, the error information about the
    last crawl." """
    name = create_crawler(glue)
    aws.glue_crawls.set(
        name,
        RunBehaviour(
            duration=0.2,
            final_state="FAILED",
            error_message="Insufficient Lake Formation permission",
        ),
    )
    glue.start_crawler(Name=name)

    last = wait_until(lambda: crawler(glue, name).get("LastCrawl"))

    assert (last["Status"], last["ErrorMessage"]) == (
        "FAILED",
        "Insufficient Lake Formation permission",
    )


def test_stop_crawler_cancels_and_answers_like_aws(aws: Emulator, glue: Any) -> None:
    """StopCrawler: "If the specified crawler is running, stops the crawl." Errors:
    "CrawlerNotRunningException: The specified crawler is not running." and
    "CrawlerStoppingException: The specified crawler is stopping." """
    name = create_crawler(glue)
    aws.glue_crawls.set(name, RunBehaviour(duration=60))
    with pytest.raises(ClientError) as idle:
        glue.stop_crawler(Name=name)
    glue.start_crawler(Name=name)

    glue.stop_crawler(Name=name)
    with pytest.raises(ClientError) as stopping:
        glue.stop_crawler(Name=name)
    last = wait_until(lambda: crawler(glue, name).get("LastCrawl"))

    assert error_code(idle.value) == "CrawlerNotRunningException"
    assert error_code(stopping.value) == "CrawlerStoppingException"
    assert last["Status"] == "CANCELLED"


def test_a_failed_run_leaves_its_last_lines_in_the_error_log_group(
    aws: Emulator, glue: Any, client: ClientFactory
) -> None:
    """Logging for AWS Glue jobs: "system logs, Spark daemon logs, and user AWS Glue
    Logger logs are written to the /aws-glue/jobs/error log group", in streams named
    after the job run id; JobRun.LogGroupName: "This name can be /aws-glue/jobs/"."""
    job = create_job(glue)
    aws.glue_runs.set(job, RunBehaviour(duration=0.2, final_state="FAILED", error_message="oom"))
    run_id = glue.start_job_run(JobName=job)["JobRunId"]

    run = wait_until(lambda: (r := run_state(glue, job, run_id))["JobRunState"] == "FAILED" and r)
    events = client("logs").get_log_events(
        logGroupName="/aws-glue/jobs/error", logStreamName=run_id, startFromHead=False
    )["events"]

    assert run["LogGroupName"] == "/aws-glue/jobs"
    assert [event["message"] for event in events][-1] == "oom"
    assert events[-1]["timestamp"] <= run["CompletedOn"].timestamp() * 1000
