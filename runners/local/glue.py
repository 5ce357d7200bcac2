"""Glue job runs as AWS runs them: chosen duration and outcome, concurrency, stopping.

What moto lacks and this adds (AWS Glue API reference, "Job runs" and "Crawlers"):
- a run's state follows a wall-clock timeline chosen per job (``RunBehaviour``), ending
  SUCCEEDED, FAILED / ERROR / TIMEOUT with an ``ErrorMessage``, or STOPPED;
- ``ConcurrentRunsExceededException`` once ``MaxConcurrentRuns`` runs are active, checked
  atomically (moto counts only STARTING/RUNNING and races concurrent starts);
- ``BatchStopJobRun`` (not in moto): STOPPING, then STOPPED;
- a FAILED / ERROR / TIMEOUT run leaves its last lines in CloudWatch Logs
  ``/aws-glue/jobs/error``, in a stream named after the run id ("system logs, Spark
  daemon logs, and user AWS Glue Logger logs are written to the /aws-glue/jobs/error
  log group", Logging for AWS Glue jobs; moto writes none);
- ``GetJobRuns`` newest first, ``MaxResults`` 1-200 (moto: oldest first);
- crawls follow timelines too: the crawler is RUNNING, then STOPPING, then READY, and
  ``LastCrawl`` reports the latest finished crawl as SUCCEEDED, FAILED (with its
  ``ErrorMessage``) or CANCELLED (moto: crawl states, completed on first read);
  ``StopCrawler`` answers ``CrawlerNotRunningException`` / ``CrawlerStoppingException``;
  ``GetCrawlerMetrics`` (not in moto) reports the last crawl's runtime and tables;
- the EventBridge events AWS Glue sends ("Automating AWS Glue with EventBridge"):
  "Glue Job State Change" when a run ends SUCCEEDED, FAILED, TIMEOUT or STOPPED, and
  "Glue Crawler State Change" when a crawl is Started, Succeeded or Failed, at the
  moment it happens (``service_events``).
"""

from __future__ import annotations

import functools
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from moto.core.responses import ActionResult
from moto.glue.exceptions import (
    ConcurrentRunsExceededException,
    CrawlerNotRunningException,
    CrawlerRunningException,
    GlueClientError,
    InvalidInputException,
)
from moto.glue.models import FakeCrawl, FakeCrawler, FakeJob, FakeJobRun
from moto.glue.responses import GlueResponse
from moto.logs.models import logs_backends

from runners.local import service_events
from runners.local.service_events import ServiceEvent
from runners.local.timeline import RunBehaviour, Timeline

ACTIVE_STATES = frozenset({"STARTING", "RUNNING", "STOPPING", "WAITING"})
ERROR_STATES = frozenset({"FAILED", "ERROR", "TIMEOUT"})
DEFAULT_LOG_GROUP = "/aws-glue/jobs"
ERROR_LOG_GROUP = f"{DEFAULT_LOG_GROUP}/error"
_STOPPING = ("STOPPING", 0.2)
_MAX_STOP_BATCH = 25
_MAX_PAGE = 200


# A behaviour for every run, or one chosen per run from the run's arguments (a real
# job's duration depends on what it is asked to process).
BehaviourChoice = RunBehaviour | Callable[[Mapping[str, str]], RunBehaviour]


class GlueRunBehaviours:
    """Which ``RunBehaviour`` each job's new runs follow (``default`` for unnamed jobs)."""

    def __init__(self) -> None:
        self.default = RunBehaviour()
        self._by_job: dict[str, BehaviourChoice] = {}

    def set(self, job_name: str, behaviour: BehaviourChoice) -> None:
        self._by_job[job_name] = behaviour

    def for_job(self, job_name: str, arguments: Mapping[str, str] | None = None) -> RunBehaviour:
        choice = self._by_job.get(job_name, self.default)
        return choice if isinstance(choice, RunBehaviour) else choice(arguments or {})

    def clear(self) -> None:
        self.default = RunBehaviour()
        self._by_job.clear()


BEHAVIOURS = GlueRunBehaviours()
CRAWLS = GlueRunBehaviours()  # by crawler name
_start_lock = threading.Lock()
_log_lock = threading.Lock()
_CRAWL_STOPPING = ("STOPPING", 0.3)
# ListCrawls names a crawl's states differently from LastCrawl.
_CRAWL_STATE = {"SUCCEEDED": "COMPLETED", "CANCELLED": "STOPPED"}
# "Glue Job State Change" severity and message by final state, as the reference's
# examples show them (a FAILED run's message is its error). AWS documents no event for
# ERROR (a trigger starting a deleted job), so none is sent.
_JOB_EVENTS = {
    "SUCCEEDED": ("INFO", "Job run succeeded"),
    "FAILED": ("ERROR", "Job run failed"),
    "TIMEOUT": ("WARN", "Job run timed out"),
    "STOPPED": ("INFO", "Job run stopped"),
}
# "Glue Crawler State Change" states; a stopped (CANCELLED) crawl has no documented event.
_CRAWL_EVENTS = {"SUCCEEDED": "Succeeded", "FAILED": "Failed"}


class EmulatedJobRun(FakeJobRun):  # type: ignore[misc]
    """A moto job run whose state is read off its timeline instead of moto's ticks."""

    timeline: Timeline
    error_message: str | None
    log_home: tuple[str, str]  # account and region whose CloudWatch Logs it writes to

    @property
    def status(self) -> str:
        return self.timeline.state()

    def advance(self) -> None:
        """Reads do not move the run; the clock does."""

    def stop(self) -> bool:
        return self.timeline.stop("STOPPED", stopping=_STOPPING)

    def as_dict(self) -> dict[str, Any]:
        now = time.time()
        run: dict[str, Any] = super().as_dict()
        state = self.timeline.state(now)
        run["JobRunState"] = state
        run["LastModifiedOn"] = _datetime(self.timeline.last_change_at(now))
        run["ExecutionTime"] = int(self.timeline.seconds_in("RUNNING", now))
        completed_at = self.timeline.completed_at(now)
        if completed_at is None:
            run.pop("CompletedOn", None)
        else:
            run["CompletedOn"] = _datetime(completed_at)
        if state in ERROR_STATES and self.error_message:
            run["ErrorMessage"] = self.error_message
        # JobRun.LogGroupName: "This name can be /aws-glue/jobs/, in which case the
        # default encryption is NONE" (moto answers "test/log").
        run["LogGroupName"] = DEFAULT_LOG_GROUP
        if state in ERROR_STATES and completed_at is not None:
            self._write_error_log(completed_at)
        return run

    def _write_error_log(self, completed_at: float) -> None:
        """The driver's last words, in ``/aws-glue/jobs/error``, stream = run id, as a
        failed run leaves them; written the first time the run is seen failed (every
        reader reads the run before its logs)."""
        with _log_lock:
            if getattr(self, "_logged", True):
                return
            self._logged = True
        account, region = self.log_home
        logs = logs_backends[account][region]
        if ERROR_LOG_GROUP not in logs.groups:
            logs.create_log_group(ERROR_LOG_GROUP, {})
        logs.create_log_stream(ERROR_LOG_GROUP, self.job_run_id)
        at = int(completed_at * 1000)
        lines = [
            f"Job run {self.job_run_id} of {self.job_name} started",
            "Traceback (most recent call last):",
            '  File "/tmp/job.py", line 12, in <module>',
            f"{self.error_message or 'Job failed'}",
        ]
        logs.put_log_events(
            ERROR_LOG_GROUP,
            self.job_run_id,
            [{"timestamp": at - len(lines) + n, "message": line} for n, line in enumerate(lines)],
        )


def _datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def start_job_run(
    self: FakeJob,
    allocated_capacity: int | None,
    max_capacity: float | None,
    timeout: int | None,
    worker_type: str | None,
    security_configuration: str | None,
    number_of_workers: int | None,
    notification_property: dict[str, int] | None,
    previous_run_id: str | None,
    arguments: dict[str, str] | None,
) -> str:
    """Replaces ``FakeJob.start_job_run``: atomic concurrency check, timed run."""
    with _start_lock:
        limit = self.execution_property.get("MaxConcurrentRuns", 1)
        # Counting is only needed once the job has had as many runs as its limit.
        active = 0
        if len(self.job_runs) >= limit:
            active = sum(1 for run in self.job_runs if run.status in ACTIVE_STATES)
        if active >= limit:
            raise ConcurrentRunsExceededException(
                f"Concurrent runs exceeded for {self.name}: {active} active"
            )
        run = EmulatedJobRun(
            job_name=self.name,
            arguments={
                **self.default_arguments,
                **(arguments or {}),
                **(self.non_overridable_arguments or {}),
            },
            allocated_capacity=allocated_capacity or self.allocated_capacity,
            max_capacity=max_capacity or self.max_capacity,
            timeout=timeout or self.timeout,
            worker_type=worker_type or self.worker_type,
            security_configuration=security_configuration or self.security_configuration,
            number_of_workers=number_of_workers or self.number_of_workers,
            notification_property=notification_property or self.notification_property,
            job_run_id=previous_run_id,
        )
        behaviour = limit_to_timeout(BEHAVIOURS.for_job(self.name, run.arguments), run.timeout)
        run.timeline = behaviour.timeline("STARTING")
        run.error_message = behaviour.error_message
        run.log_home = (self.backend.account_id, self.backend.region_name)
        run._logged = False
        self.job_runs.append(run)
        service_events.EVENTS.watch(
            run.timeline, functools.partial(_job_state_change, run), final_only=True
        )
        return str(run.job_run_id)


def _job_state_change(
    run: EmulatedJobRun, index: int, changes: list[tuple[float, str]]
) -> ServiceEvent | None:
    """The run's "Glue Job State Change", once it ended in a state that has one."""
    at, state = changes[index]
    if state not in _JOB_EVENTS:
        return None
    severity, message = _JOB_EVENTS[state]
    if state == "FAILED" and run.error_message:
        message = run.error_message
    account, region = run.log_home
    detail = {
        "jobName": run.job_name,
        "severity": severity,
        "state": state,
        "jobRunId": run.job_run_id,
        "message": message,
    }
    return ServiceEvent(
        account, region, "aws.glue", service_events.GLUE_JOB_STATE_CHANGE, detail, at
    )


def limit_to_timeout(behaviour: RunBehaviour, timeout_minutes: int | None) -> RunBehaviour:
    """A run longer than its ``Timeout`` (minutes) ends in TIMEOUT, as on AWS."""
    if not timeout_minutes or behaviour.duration <= timeout_minutes * 60:
        return behaviour
    return RunBehaviour(
        duration=timeout_minutes * 60,
        final_state="TIMEOUT",
        error_message=f"Job run timed out after {timeout_minutes} minutes",
    )


def batch_stop_job_run(self: GlueResponse) -> ActionResult:
    job_name = self._get_param("JobName")
    run_ids: list[str] = self._get_param("JobRunIds") or []
    if not 1 <= len(run_ids) <= _MAX_STOP_BATCH:
        raise InvalidInputException(
            "BatchStopJobRun", f"JobRunIds must hold 1 to {_MAX_STOP_BATCH} run ids"
        )
    runs = {run.job_run_id: run for run in self.glue_backend.get_job(job_name).job_runs}
    stopped, errors = [], []
    for run_id in run_ids:
        run = runs.get(run_id)
        if isinstance(run, EmulatedJobRun) and run.stop():
            stopped.append({"JobName": job_name, "JobRunId": run_id})
            continue
        code, message = (
            ("EntityNotFoundException", f"Job run {run_id} not found")
            if run is None
            else ("InvalidInputException", f"Job run {run_id} is {run.status}, not running")
        )
        errors.append(
            {
                "JobName": job_name,
                "JobRunId": run_id,
                "ErrorDetail": {"ErrorCode": code, "ErrorMessage": message},
            }
        )
    return ActionResult({"SuccessfulSubmissions": stopped, "Errors": errors})


def get_job_runs(self: GlueResponse) -> ActionResult:
    job = self.glue_backend.get_job(self._get_param("JobName"))
    max_results = self._get_int_param("MaxResults") or _MAX_PAGE
    if not 1 <= max_results <= _MAX_PAGE:
        raise InvalidInputException("GetJobRuns", f"MaxResults must be 1 to {_MAX_PAGE}")
    start = int(self._get_param("NextToken") or 0)
    newest_first = list(reversed(job.job_runs))
    page = newest_first[start : start + max_results]
    result: dict[str, Any] = {"JobRuns": [run.as_dict() for run in page]}
    if start + max_results < len(newest_first):
        result["NextToken"] = str(start + max_results)
    return ActionResult(result)


class CrawlerStoppingException(GlueClientError):  # type: ignore[misc]
    def __init__(self, name: str) -> None:
        super().__init__("CrawlerStoppingException", f"Crawler with name {name} is stopping")


class EmulatedCrawl(FakeCrawl):  # type: ignore[misc]
    """A crawl on a timeline: RUNNING, a short STOPPING, then its final status."""

    timeline: Timeline
    behaviour: RunBehaviour

    @property
    def status(self) -> str:
        state = self.timeline.state()
        return _CRAWL_STATE.get(state, state)

    def advance(self) -> None:
        """Reads do not move the crawl; the clock does."""

    @property
    def runtime_seconds(self) -> float:
        return self.timeline.seconds_in("RUNNING") + self.timeline.seconds_in("STOPPING")


def crawler_state(self: FakeCrawler) -> str:
    """READY, RUNNING or STOPPING, from the latest crawl's timeline."""
    if not self.crawls:
        return "READY"
    phase = self.crawls[-1].timeline.state()
    return phase if phase in {"RUNNING", "STOPPING"} else "READY"


def start_crawler(self: FakeCrawler) -> None:
    with _start_lock:
        if crawler_state(self) != "READY":
            raise CrawlerRunningException(f"Crawler with name {self.name} has already started")
        crawl = EmulatedCrawl(self.name)
        crawl.behaviour = CRAWLS.for_job(self.name)
        crawl.timeline = Timeline(
            [("RUNNING", crawl.behaviour.duration), _CRAWL_STOPPING],
            crawl.behaviour.final_state,
            time.time(),
        )
        self.crawls.append(crawl)
        service_events.EVENTS.watch(
            crawl.timeline, functools.partial(_crawler_state_change, self, crawl)
        )


def _crawler_state_change(
    crawler: FakeCrawler, crawl: EmulatedCrawl, index: int, changes: list[tuple[float, str]]
) -> ServiceEvent | None:
    """The crawl's "Glue Crawler State Change" at its start and at its end, with the fields
    (all strings) of the reference's Started / Succeeded / Failed examples."""
    at, state = changes[index]
    account, region = crawler.backend.account_id, crawler.backend.region_name
    detail: dict[str, str] = {"accountId": account, "crawlerName": crawler.name}
    if index == 0:
        detail |= {"startTime": _iso(at), "state": "Started", "message": "Crawler Started"}
    elif index == len(changes) - 1 and state in _CRAWL_EVENTS:
        detail |= _crawl_outcome(crawl, region, at, _CRAWL_EVENTS[state])
    else:
        return None
    return ServiceEvent(
        account, region, "aws.glue", service_events.GLUE_CRAWLER_STATE_CHANGE, detail, at
    )


def _crawl_outcome(crawl: EmulatedCrawl, region: str, at: float, state: str) -> dict[str, str]:
    link = (
        f"https://console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#logEventViewer:group={crawl.log_group};stream={crawl.log_stream}"
    )
    common = {"state": state, "message": f"Crawler {state}", "cloudWatchLogLink": link}
    if state == "Failed":
        return {**common, "errorMessage": crawl.behaviour.error_message or "Crawl failed"}
    metrics = crawl.behaviour.metrics
    counts = {
        name[0].lower() + name[1:]: str(metrics.get(name, 0))
        for name in (
            "TablesCreated",
            "TablesUpdated",
            "TablesDeleted",
            "PartitionsCreated",
            "PartitionsUpdated",
            "PartitionsDeleted",
        )
    }
    return {
        **common,
        **counts,
        "warningMessage": "N/A",
        "runningTime (sec)": str(int(crawl.runtime_seconds)),
        "completionDate": _iso(at),
    }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stop_crawler(self: FakeCrawler) -> None:
    state = crawler_state(self)
    if state == "READY":
        raise CrawlerNotRunningException(f"Crawler with name {self.name} isn't running")
    if state == "STOPPING":
        raise CrawlerStoppingException(self.name)
    self.crawls[-1].timeline.stop("CANCELLED", stopping=_CRAWL_STOPPING)


_crawler_as_dict = FakeCrawler.as_dict


def crawler_as_dict(self: FakeCrawler) -> dict[str, Any]:
    data: dict[str, Any] = _crawler_as_dict(self)
    data.pop("LastCrawl", None)
    last = _last_finished(self)
    if last is not None:
        data["LastCrawl"] = {
            "Status": last.timeline.final_state,
            "LogGroup": last.log_group,
            "LogStream": last.log_stream,
            "MessagePrefix": last.message_prefix,
            "StartTime": _datetime(last.timeline.started_at),
        }
        if last.timeline.final_state == "FAILED":
            data["LastCrawl"]["ErrorMessage"] = last.behaviour.error_message or "Crawl failed"
    running = self.crawls[-1] if self.crawls and crawler_state(self) != "READY" else None
    data["CrawlElapsedTime"] = int(running.runtime_seconds * 1000) if running else 0
    return data


def _last_finished(crawler: FakeCrawler) -> EmulatedCrawl | None:
    return next((c for c in reversed(crawler.crawls) if c.timeline.is_final()), None)


def get_crawler_metrics(self: GlueResponse) -> ActionResult:
    backend = self.glue_backend
    names = self._get_param("CrawlerNameList") or list(backend.crawlers)
    return ActionResult(
        {"CrawlerMetricsList": [_crawler_metrics(backend.get_crawler(name)) for name in names]}
    )


def _crawler_metrics(crawler: FakeCrawler) -> dict[str, Any]:
    finished = [c for c in crawler.crawls if c.timeline.is_final()]
    last = finished[-1] if finished else None
    running = crawler.crawls[-1] if crawler_state(crawler) != "READY" else None
    tables = last.behaviour.metrics if last else {}
    return {
        "CrawlerName": crawler.name,
        "TimeLeftSeconds": max(0.0, running.behaviour.duration - running.runtime_seconds)
        if running
        else 0.0,
        "StillEstimating": False,
        "LastRuntimeSeconds": last.runtime_seconds if last else 0.0,
        "MedianRuntimeSeconds": statistics.median(c.runtime_seconds for c in finished)
        if finished
        else 0.0,
        "TablesCreated": tables.get("TablesCreated", 0),
        "TablesUpdated": tables.get("TablesUpdated", 0),
        "TablesDeleted": tables.get("TablesDeleted", 0),
    }


def install() -> None:
    FakeCrawler.status = property(crawler_state)
    FakeCrawler.start_crawler = start_crawler
    FakeCrawler.stop_crawler = stop_crawler
    FakeCrawler.as_dict = crawler_as_dict
    GlueResponse.get_crawler_metrics = get_crawler_metrics
    FakeJob.start_job_run = start_job_run
    GlueResponse.batch_stop_job_run = batch_stop_job_run
    GlueResponse.get_job_runs = get_job_runs
