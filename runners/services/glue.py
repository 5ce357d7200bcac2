"""Glue jobs: start once per task, check many runs per call, stop on cancellation.

Idempotency: every run carries the task's key as the job argument
``--runners-task-key``; before a retried or recovered start, recent runs are searched
for it, so a crash between ``StartJobRun`` and storing the run id never starts a
second run. Glue scripts ignore arguments they do not read. ``StartJobRun`` has no
idempotency token, so the Glue client must not resend a start by itself (no SDK
retries): the engine retries, searching first.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runners.engine.definition import (
    DeployParameter,
    Permission,
    RunnerContext,
    RunnerDefinition,
)
from runners.engine.inputs import Fields
from runners.engine.runner import Failed, Job, JobStatus, Runner, TaskStart
from runners.engine.service import EndEvents, Finish, Measure, Refusals, StateTable, iso
from runners.errors import RunnerInputError
from runners.retry import error_code

# DPUs per worker, by WorkerType ("G.1X ... maps to 1 DPU"; Standard: 1).
WORKER_DPUS = {
    "Standard": 1.0,
    "G.025X": 0.25,
    "G.1X": 1.0,
    "G.2X": 2.0,
    "G.4X": 4.0,
    "G.8X": 8.0,
    "G.12X": 12.0,
    "G.16X": 16.0,
    "R.1X": 1.0,
    "R.2X": 2.0,
    "R.4X": 4.0,
    "R.8X": 8.0,
    "Z.2X": 2.0,
}

STATES = StateTable(
    "glue",
    "JobRunState",
    running={"STARTING", "RUNNING", "STOPPING", "WAITING"},
    succeeded={"SUCCEEDED"},
    failed={"FAILED", "STOPPED", "TIMEOUT", "ERROR", "EXPIRED"},
)
# "Automating AWS Glue with EventBridge": a job run's end is one "Glue Job State Change".
END_EVENTS = EndEvents(
    "aws.glue",
    "Glue Job State Change",
    "state",
    frozenset({"SUCCEEDED", "FAILED", "TIMEOUT", "STOPPED"}),
    "jobRunId",
)
TASK_KEY_ARGUMENT = "--runners-task-key"
FAILED_ERROR = "GlueJobFailedError"
CONCURRENCY_ERROR = "GlueConcurrentRunsExceededError"
REFUSALS = Refusals(
    try_later={
        "ConcurrentRunsExceededException": CONCURRENCY_ERROR,
        "ResourceNumberLimitExceededException": CONCURRENCY_ERROR,
    },
    input_errors={
        "EntityNotFoundException": "GlueJobName",
        "InvalidInputException": "$",
        "ValidationException": "$",
    },
    failure="GlueJobStartError",
)
_PAGE = 200
# A failed run's cause carries the end of its error log (STOPPED runs wrote no error).
LOGGED_STATES = frozenset({"FAILED", "ERROR", "TIMEOUT"})
DEFAULT_LOG_GROUP = "/aws-glue/jobs"
LOG_TAIL_LINES = 20
LOG_TAIL_CHARACTERS = 4096


@dataclass(frozen=True)
class GlueJobSpec:
    job_name: str
    arguments: dict[str, str] = field(default_factory=dict)
    max_capacity: float | None = None
    worker_type: str | None = None
    number_of_workers: int | None = None
    timeout_minutes: int | None = None
    security_configuration: str | None = None
    notify_delay_after: int | None = None

    def start_request(self, key: str) -> dict[str, Any]:
        request: dict[str, Any] = {
            "JobName": self.job_name,
            "Arguments": {**self.arguments, TASK_KEY_ARGUMENT: key},
        }
        optional = {
            "MaxCapacity": self.max_capacity,
            "WorkerType": self.worker_type,
            "NumberOfWorkers": self.number_of_workers,
            "Timeout": self.timeout_minutes,
            "SecurityConfiguration": self.security_configuration,
        }
        request.update({name: value for name, value in optional.items() if value is not None})
        if self.notify_delay_after is not None:
            request["NotificationProperty"] = {"NotifyDelayAfter": self.notify_delay_after}
        return request


class GlueJobRunner(Runner[GlueJobSpec]):
    name = "glue"
    refusals = REFUSALS
    end_events = END_EVENTS

    def __init__(
        self,
        glue: Any,
        default_capacity: float | None = None,
        lookup_pages: int = 5,
        logs: Any = None,
    ) -> None:
        self.glue = glue
        self.logs = logs  # CloudWatch Logs: the error log of a failed run
        self.default_capacity = default_capacity
        self.lookup_pages = lookup_pages

    def parse(self, document: Mapping[str, Any]) -> GlueJobSpec:
        fields = Fields(document)
        arguments = fields.string_map("Arguments")
        if TASK_KEY_ARGUMENT in arguments:
            raise RunnerInputError("Arguments", f"{TASK_KEY_ARGUMENT} is reserved for runners")
        capacity = fields.number("GlueJobCapacity", 0.0625, 1000)
        worker_type = fields.text("WorkerType", max_length=32)
        workers = fields.integer("NumberOfWorkers", 1, 100_000)
        if (worker_type is None) != (workers is None):
            raise RunnerInputError("WorkerType", "WorkerType and NumberOfWorkers go together")
        if capacity is not None and worker_type is not None:
            raise RunnerInputError("GlueJobCapacity", "cannot be combined with WorkerType")
        if capacity is None and worker_type is None:
            capacity = self.default_capacity
        return GlueJobSpec(
            job_name=fields.required_text("GlueJobName", max_length=255),
            arguments=arguments,
            max_capacity=capacity,
            worker_type=worker_type,
            number_of_workers=workers,
            timeout_minutes=fields.integer("Timeout", 1, 10_080),
            security_configuration=fields.text("SecurityConfiguration", max_length=255),
            notify_delay_after=fields.integer("NotifyDelayAfter", 1, 10_080),
        )

    def describe(self, spec: GlueJobSpec) -> dict[str, str]:
        return {"glue_job_name": spec.job_name}

    async def start(self, spec: GlueJobSpec, task: TaskStart) -> str:
        response = await self.glue.start_job_run(**spec.start_request(task.key))
        return str(response["JobRunId"])

    async def find(self, spec: GlueJobSpec, task: TaskStart) -> str | None:
        """The run an earlier attempt started for this task, if any (newest first)."""
        pages = 0
        async for page in self._pages(spec.job_name):
            for run in page:
                if (run.get("Arguments") or {}).get(TASK_KEY_ARGUMENT) == task.key:
                    return str(run["Id"])
            pages += 1
            if pages >= self.lookup_pages:
                break
        return None

    async def _pages(self, job_name: str) -> AsyncIterator[list[dict[str, Any]]]:
        """The job's runs, newest first, a page at a time."""
        token: str | None = None
        while True:
            request: dict[str, Any] = {"JobName": job_name, "MaxResults": _PAGE}
            if token:
                request["NextToken"] = token
            response = await self.glue.get_job_runs(**request)
            yield response.get("JobRuns", [])
            token = response.get("NextToken")
            if not token:
                return

    async def check(self, jobs: Sequence[Job[GlueJobSpec]]) -> Mapping[str, JobStatus]:
        by_job: dict[str, list[Job[GlueJobSpec]]] = defaultdict(list)
        for job in jobs:
            by_job[job.spec.job_name].append(job)
        answers = await asyncio.gather(*(self._check_job(group) for group in by_job.values()))
        return {run_id: status for answer in answers for run_id, status in answer.items()}

    async def _check_job(self, jobs: list[Job[GlueJobSpec]]) -> dict[str, JobStatus]:
        """One ``GetJobRun`` for a single run; ``GetJobRuns`` pages for several.

        Paging stops once the pages read past the first ones that could hold every run
        are as many as the runs still missing: each of those then costs one
        ``GetJobRun``, so a run buried under newer ones never costs more than twice the
        cheapest way to reach it.
        """
        wanted = {job.run_id: job for job in jobs}
        found: dict[str, dict[str, Any]] = {}
        if len(jobs) > 1:
            least_pages, pages = -(-len(jobs) // _PAGE), 0
            async for page in self._pages(jobs[0].spec.job_name):
                found.update((run["Id"], run) for run in page if run["Id"] in wanted)
                pages += 1
                missing = len(wanted) - len(found)
                if missing == 0 or pages - least_pages >= missing:
                    break
        for run_id in wanted.keys() - found.keys():
            response = await self.glue.get_job_run(
                JobName=wanted[run_id].spec.job_name, RunId=run_id, PredecessorsIncluded=False
            )
            found[run_id] = response["JobRun"]
        statuses = {run_id: self._status(run) for run_id, run in found.items()}
        failed = [r for r in found.values() if self.logs and r["JobRunState"] in LOGGED_STATES]
        tails = await asyncio.gather(*(self._error_log(run) for run in failed))
        for run, tail in zip(failed, tails, strict=True):
            status = statuses[run["Id"]]
            if isinstance(status, Failed):
                statuses[run["Id"]] = Failed(
                    status.error, {**status.cause, **tail}, finish=status.finish
                )
        return statuses

    async def _error_log(self, run: Mapping[str, Any]) -> dict[str, Any]:
        """The last lines of a failed run's error log, and where the rest is. Glue writes
        them to ``<group>/error`` in streams named after the run id (``<id>-driver`` since
        Glue 5.0). Never in the way of the report: without the log, the cause says why."""
        group = f"{_log_group(run)}/error"
        where: dict[str, Any] = {"group": group, "stream": run["Id"]}
        try:
            streams = await self.logs.describe_log_streams(
                logGroupName=group, logStreamNamePrefix=run["Id"]
            )
            names = [stream["logStreamName"] for stream in streams.get("logStreams", [])]
            if not names:
                return {"glue_job_run_error_log": {**where, "unavailable": "no log stream"}}
            where["stream"] = next((n for n in names if n == f"{run['Id']}-driver"), names[0])
            events = await self.logs.get_log_events(
                logGroupName=group,
                logStreamName=where["stream"],
                startFromHead=False,
                limit=LOG_TAIL_LINES,
            )
        except (ClientError, BotoCoreError) as error:
            code = error_code(error) or type(error).__name__
            return {"glue_job_run_error_log": {**where, "unavailable": code}}
        lines = [event["message"].rstrip("\n") for event in events.get("events", [])]
        return {
            "glue_job_run_error_log_tail": "\n".join(lines)[-LOG_TAIL_CHARACTERS:],
            "glue_job_run_error_log": {**where, "console": _console_link(self.logs, where)},
        }

    def _status(self, run: Mapping[str, Any]) -> JobStatus:
        return STATES.status(
            run["JobRunState"],
            output=lambda: output(run),
            error=FAILED_ERROR,
            cause=lambda: failure(run),
            finish=lambda: finish(run),
        )

    async def stop(self, job: Job[GlueJobSpec]) -> None:
        await self.glue.batch_stop_job_run(JobName=job.spec.job_name, JobRunIds=[job.run_id])


def output(run: Mapping[str, Any]) -> dict[str, Any]:
    """The task output: the original sample's keys, ISO-8601 times, plus usage."""
    result: dict[str, Any] = {
        "GlueJobName": run["JobName"],
        "GlueJobRunId": run["Id"],
        "GlueJobRunState": run["JobRunState"],
        "GlueJobStartedOn": iso(run.get("StartedOn")),
        "GlueJobCompletedOn": iso(run.get("CompletedOn")),
        "GlueJobLastModifiedOn": iso(run.get("LastModifiedOn")),
        "GlueJobExecutionTimeSeconds": run.get("ExecutionTime"),
    }
    if "DPUSeconds" in run:
        result["GlueJobDPUSeconds"] = run["DPUSeconds"]
    return result


def finish(run: Mapping[str, Any]) -> Finish:
    """When the run completed, and its DPU-seconds: Glue's own ``DPUSeconds`` (auto
    scaling, Flex) or else ``ExecutionTime`` x the run's capacity."""
    completed = run.get("CompletedOn")
    ended_at = completed.timestamp() if isinstance(completed, datetime) else None
    dpu_seconds = run.get("DPUSeconds")
    if dpu_seconds is None and run.get("ExecutionTime") is not None:
        capacity = run.get("MaxCapacity") or (
            (run.get("NumberOfWorkers") or 0) * WORKER_DPUS.get(run.get("WorkerType", ""), 0)
        )
        dpu_seconds = run["ExecutionTime"] * capacity if capacity else None
    usage = () if dpu_seconds is None else (Measure("GlueDPUSeconds", float(dpu_seconds)),)
    return Finish(ended_at, usage)


def _log_group(run: Mapping[str, Any]) -> str:
    prefix = (run.get("Arguments") or {}).get("--custom-logGroup-prefix")
    return str(prefix or run.get("LogGroupName") or DEFAULT_LOG_GROUP).rstrip("/")


def _console_link(logs: Any, where: Mapping[str, str]) -> str:
    region = logs.meta.region_name
    escaped = where["group"].replace("/", "$252F")
    return (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#logsV2:log-groups/log-group/{escaped}/log-events/{where['stream']}"
    )


def failure(run: Mapping[str, Any]) -> dict[str, Any]:
    """The failure cause: the run and AWS's error message."""
    return {
        "glue_job_name": run["JobName"],
        "glue_job_run_id": run["Id"],
        "glue_job_run_state": run["JobRunState"],
        "glue_job_run_error_msg": run.get("ErrorMessage", ""),
    }


@dataclass(frozen=True)
class GlueOptions:
    glue_job_capacity: float | None = None  # MaxCapacity for runs that set no capacity


async def build(context: RunnerContext[GlueOptions]) -> GlueJobRunner:
    return GlueJobRunner(
        await context.client("glue"),
        context.options.glue_job_capacity,
        logs=await context.client("logs"),
    )


RUNNER = RunnerDefinition(
    name="glue",
    title="Glue",
    description="runs a Glue job and waits for it",
    build=build,
    options=GlueOptions,
    sdk_retries="none",  # StartJobRun has no idempotency token
    permissions=(
        Permission(
            ("glue:StartJobRun", "glue:GetJobRun", "glue:GetJobRuns", "glue:BatchStopJobRun"),
            ("arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}:job/*",),
        ),
        Permission(
            ("logs:DescribeLogStreams", "logs:GetLogEvents"),
            (
                "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}"
                ":log-group:/aws-glue/jobs/error:*",
            ),
        ),
    ),
    parameters=(
        DeployParameter(
            "GlueJobCapacity",
            "default MaxCapacity for Glue runs that set none; empty for none",
            default="",
            option="glue_job_capacity",
        ),
    ),
    states=STATES,
    completion_events=END_EVENTS,
    function="gluerunner",
)
