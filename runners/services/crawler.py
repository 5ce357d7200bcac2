"""Glue crawlers: "start the crawler and wait for it" as one Task state.

Step Functions has no ``.sync`` integration for crawlers; users otherwise build two
Lambdas and a Wait/Choice loop per crawler. The task always reports a crawl that began
after the task did: if the crawler is busy with an earlier crawl, the start is retried
(the task heartbeats meanwhile) until that crawl ends and this task's crawl can begin.

A crawler runs one crawl at a time, so once ``StartCrawler`` succeeded, the next time
the crawler is READY its ``LastCrawl`` is this task's crawl. The run id records when
the crawl was started.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from runners.engine.definition import Permission, RunnerContext, RunnerDefinition
from runners.engine.inputs import Fields
from runners.engine.runner import RUNNING, Failed, Job, JobStatus, Runner, TaskStart
from runners.engine.service import EndEvents, Refusals, StateTable, iso
from runners.retry import error_code

# A crawler is busy (RUNNING, STOPPING) or READY; once READY, its last crawl's status
# says how the crawl ended.
BUSY_STATES = frozenset({"RUNNING", "STOPPING"})
STATES = StateTable(
    "glue", "LastCrawlStatus", running=(), succeeded={"SUCCEEDED"}, failed={"FAILED", "CANCELLED"}
)
# A crawl's end is a "Glue Crawler State Change" naming only the crawler (its states
# are capitalised, unlike LastCrawlStatus's).
END_EVENTS = EndEvents(
    "aws.glue",
    "Glue Crawler State Change",
    "state",
    frozenset({"Succeeded", "Failed"}),
    "crawlerName",
)
FAILED_ERROR = "GlueCrawlerFailedError"
BUSY_ERROR = "GlueCrawlerBusyError"
REFUSALS = Refusals(
    try_later={"CrawlerRunningException": BUSY_ERROR},
    input_errors={"EntityNotFoundException": "CrawlerName"},
    failure="GlueCrawlerStartError",
)
_NOT_RUNNING = frozenset({"CrawlerNotRunningException", "CrawlerStoppingException"})
_BATCH = 100  # BatchGetCrawlers / GetCrawlerMetrics take at most 100 names
# Crawl start times come from the service's clock, run ids from ours.
CLOCK_SKEW_SECONDS = 5.0


@dataclass(frozen=True)
class CrawlerSpec:
    crawler_name: str


class GlueCrawlerRunner(Runner[CrawlerSpec]):
    name = "crawler"
    refusals = REFUSALS
    end_events = END_EVENTS

    def __init__(self, glue: Any, clock: Callable[[], float] = time.time) -> None:
        self.glue, self.clock = glue, clock

    def parse(self, document: Mapping[str, Any]) -> CrawlerSpec:
        return CrawlerSpec(Fields(document).required_text("CrawlerName", max_length=255))

    def describe(self, spec: CrawlerSpec) -> dict[str, str]:
        return {"glue_crawler_name": spec.crawler_name}

    def event_key(self, job: Job[CrawlerSpec]) -> str:
        return job.spec.crawler_name

    async def start(self, spec: CrawlerSpec, task: TaskStart) -> str:
        started_at = self.clock()
        await self.glue.start_crawler(Name=spec.crawler_name)
        return f"{started_at:.6f}"

    async def find(self, spec: CrawlerSpec, task: TaskStart) -> str | None:
        """A crawl that began after the task arrived (an earlier attempt's, after a crash)."""
        crawler = (await self.glue.get_crawler(Name=spec.crawler_name))["Crawler"]
        not_before = task.received_at - CLOCK_SKEW_SECONDS
        if crawler["State"] in BUSY_STATES:
            began = self.clock() - crawler.get("CrawlElapsedTime", 0) / 1000
            return f"{began:.6f}" if began >= not_before else None
        last = crawler.get("LastCrawl") or {}
        began_at = last.get("StartTime")
        if began_at is not None and began_at.timestamp() >= not_before:
            return f"{began_at.timestamp():.6f}"
        return None

    async def check(self, jobs: Sequence[Job[CrawlerSpec]]) -> Mapping[str, JobStatus]:
        names = sorted({job.spec.crawler_name for job in jobs})
        crawlers = await self._crawlers(names)
        done = {name for name, crawler in crawlers.items() if crawler["State"] not in BUSY_STATES}
        metrics = await self._metrics(sorted(done))
        statuses: dict[str, JobStatus] = {}
        for job in jobs:
            crawler = crawlers.get(job.spec.crawler_name)
            if crawler is None:
                statuses[job.run_id] = Failed(
                    FAILED_ERROR,
                    {"glue_crawler_name": job.spec.crawler_name, "glue_crawl_status": "NOT_FOUND"},
                )
            else:
                statuses[job.run_id] = self._status(job, crawler, metrics.get(crawler["Name"], {}))
        return statuses

    async def _crawlers(self, names: list[str]) -> dict[str, Mapping[str, Any]]:
        found: dict[str, Mapping[str, Any]] = {}
        for index in range(0, len(names), _BATCH):
            response = await self.glue.batch_get_crawlers(
                CrawlerNames=names[index : index + _BATCH]
            )
            found.update({crawler["Name"]: crawler for crawler in response.get("Crawlers", [])})
        return found

    async def _metrics(self, names: list[str]) -> dict[str, Mapping[str, Any]]:
        found: dict[str, Mapping[str, Any]] = {}
        for index in range(0, len(names), _BATCH):
            response = await self.glue.get_crawler_metrics(
                CrawlerNameList=names[index : index + _BATCH]
            )
            found.update({m["CrawlerName"]: m for m in response.get("CrawlerMetricsList", [])})
        return found

    def _status(
        self, job: Job[CrawlerSpec], crawler: Mapping[str, Any], metrics: Mapping[str, Any]
    ) -> JobStatus:
        last = crawler.get("LastCrawl") or {}
        began_at = last.get("StartTime")
        started = float(job.run_id) - CLOCK_SKEW_SECONDS
        if crawler["State"] in BUSY_STATES or began_at is None or began_at.timestamp() < started:
            return RUNNING
        return STATES.status(
            last.get("Status"),
            output=lambda: output(crawler, metrics),
            error=FAILED_ERROR,
            cause=lambda: failure(crawler),
        )

    async def stop(self, job: Job[CrawlerSpec]) -> None:
        try:
            await self.glue.stop_crawler(Name=job.spec.crawler_name)
        except ClientError as error:
            if error_code(error) not in _NOT_RUNNING:
                raise


def output(crawler: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    last = crawler.get("LastCrawl") or {}
    return {
        "GlueCrawlerName": crawler["Name"],
        "GlueCrawlStatus": last.get("Status"),
        "GlueCrawlStartedOn": iso(last.get("StartTime")),
        "GlueCrawlDurationSeconds": metrics.get("LastRuntimeSeconds"),
        "GlueCrawlerTablesCreated": metrics.get("TablesCreated", 0),
        "GlueCrawlerTablesUpdated": metrics.get("TablesUpdated", 0),
        "GlueCrawlerTablesDeleted": metrics.get("TablesDeleted", 0),
        "GlueCrawlLogGroup": last.get("LogGroup"),
        "GlueCrawlLogStream": last.get("LogStream"),
    }


def failure(crawler: Mapping[str, Any]) -> dict[str, Any]:
    """The failure cause: the crawl, AWS's error message and where its log is."""
    last = crawler.get("LastCrawl") or {}
    return {
        "glue_crawler_name": crawler["Name"],
        "glue_crawl_status": last.get("Status"),
        "glue_crawl_error_msg": last.get("ErrorMessage", ""),
        "glue_crawl_log_group": last.get("LogGroup"),
        "glue_crawl_log_stream": last.get("LogStream"),
    }


async def build(context: RunnerContext[Any]) -> GlueCrawlerRunner:
    return GlueCrawlerRunner(await context.client("glue"))


RUNNER = RunnerDefinition(
    name="crawler",
    title="Crawler",
    description="runs a Glue crawler and waits for its crawl",
    build=build,
    sdk_retries="none",  # StartCrawler has no idempotency token
    permissions=(
        Permission(
            ("glue:StartCrawler", "glue:GetCrawler", "glue:BatchGetCrawlers", "glue:StopCrawler"),
            ("arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}:crawler/*",),
        ),
        Permission(("glue:GetCrawlerMetrics",), ("*",)),  # accepts no resource ARN
    ),
    states=STATES,
    completion_events=END_EVENTS,
    function="crawlerrunner",
)
