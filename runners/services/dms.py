"""AWS DMS replication tasks: start one, wait until it stops, stop it on cancellation.

A replication task is a long-lived resource started again each night, so a run is one
start of it: its run id is ``<task ARN>#<start, epoch milliseconds>``, and a described
state counts for a run only once the task's ``ReplicationTaskStartDate`` says it is that
start, never the stopped state of the night before.

The task's migration type is read before each start (one describe): a full load stops
on its own; CDC never does, so a ``cdc`` or ``full-load-and-cdc`` task is refused unless
the input gives a ``CdcStopPosition`` (or the task's settings stop it after its full
load). "stopped" is a success only with a ``StopReason`` saying the task reached that
end. ``StartReplicationTask`` has no idempotency token: the client must not resend it
(no SDK retries), and ``find`` recognises an earlier start by its date.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from runners.engine.definition import (
    DeployParameter,
    Permission,
    RunnerContext,
    RunnerDefinition,
)
from runners.engine.inputs import Fields
from runners.engine.runner import RUNNING, Failed, Job, JobStatus, Runner, Succeeded, TaskStart
from runners.engine.service import Phase, Refusals, StateTable, iso
from runners.errors import RunnerInputError
from runners.retry import error_code

# DMS's Status is a free string: these are the values the API reference lists for
# ReplicationTask.Status. "stopped" succeeds only with a finished StopReason (_status).
STATES = StateTable(
    "dms",
    "ReplicationTask.Status",
    running={"creating", "modifying", "moving", "running", "starting", "stopping", "testing"},
    succeeded={"stopped"},
    failed={"deleting", "failed", "failed-move", "ready"},
)
# StopReasons of a task that reached the end it was asked to reach (API reference,
# ReplicationTask.StopReason); any other stop (NORMAL: stopped on request, errors,
# low memory...) fails the run.
FINISHED_REASONS = frozenset(
    f"Stop Reason {reason}"
    for reason in (
        "FULL_LOAD_ONLY_FINISHED",
        "STOPPED_AFTER_FULL_LOAD",
        "STOPPED_AFTER_CACHED_EVENTS",
        "STOPPED_AT_SERVER_TIME",
        "STOPPED_AT_COMMIT_TIME",
    )
)
FAILED_ERROR = "DmsTaskFailedError"
BUSY_ERROR = "DmsTaskBusyError"
REFUSALS = Refusals(
    # The task is running (or being created, modified, moved): wait, as for Glue's
    # concurrency limit.
    try_later={"InvalidResourceStateFault": BUSY_ERROR},
    input_errors={
        "ResourceNotFoundFault": "ReplicationTaskArn",
        "InvalidParameterValueException": "$",
        "InvalidParameterCombinationException": "$",
    },
    failure="DmsTaskStartError",
)
START_TYPES = ("start-replication", "resume-processing", "reload-target")
_TASK_ARN = re.compile(r"^arn:aws[a-z-]*:dms:[a-z0-9-]+:\d{12}:task:[A-Za-z0-9-]{1,255}$")
_STOP_POSITION = re.compile(r"^(server_time|commit_time):\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
# The reference documents no limit on a filter's values; 50 ARNs a call always fit in
# one page (MaxRecords: "Minimum 20, maximum 100").
ARNS_PER_CALL = 50
PAGE = 100
DESCRIBE_CONCURRENCY = 10
STATS = (
    "FullLoadProgressPercent",
    "ElapsedTimeMillis",
    "TablesLoaded",
    "TablesLoading",
    "TablesQueued",
    "TablesErrored",
)


@dataclass(frozen=True)
class ReplicationSpec:
    task_arn: str
    start_type: str | None = None  # None: chosen by the task (see start_type_for)
    cdc_start_time: datetime | None = None
    cdc_start_position: str | None = None
    cdc_stop_position: str | None = None

    def start_request(self, start_type: str) -> dict[str, Any]:
        request: dict[str, Any] = {
            "ReplicationTaskArn": self.task_arn,
            "StartReplicationTaskType": start_type,
        }
        request.update({name: value for name, value in self._cdc().items() if value is not None})
        return request

    def _cdc(self) -> dict[str, Any]:
        return {
            "CdcStartTime": self.cdc_start_time,
            "CdcStartPosition": self.cdc_start_position,
            "CdcStopPosition": self.cdc_stop_position,
        }

    def start_type_for(self, task: Mapping[str, Any]) -> str:
        """The input's type, or: start-replication for a task's first run (the only type
        DMS accepts then), and for a task that has run, reload-target (a fresh full
        load) or, for a cdc task, resume-processing (from where it stopped)."""
        has_run = _has_run(task)
        if self.start_type is not None:
            if (self.start_type == "start-replication") == has_run:
                when = "first run" if self.start_type == "start-replication" else "later runs"
                raise RunnerInputError(
                    "StartReplicationTaskType",
                    f"{self.start_type} is only for a task's {when}; this task has "
                    f"{'run before' if has_run else 'never run'}",
                )
            return self.start_type
        if not has_run:
            return "start-replication"
        return "resume-processing" if task.get("MigrationType") == "cdc" else "reload-target"

    def check_against(self, task: Mapping[str, Any]) -> None:
        """What only the task can tell: does it stop on its own, do the CDC fields apply."""
        migration = task.get("MigrationType")
        if migration == "full-load":
            for name, value in self._cdc().items():
                if value is not None:
                    raise RunnerInputError(name, "applies to cdc tasks; this is a full-load task")
        elif not self.cdc_stop_position and not _stops_after_full_load(task):
            raise RunnerInputError(
                "CdcStopPosition",
                f"the task's migration type is {migration}: change data capture never "
                "stops on its own; give CdcStopPosition (server_time:... or commit_time:...)",
            )


@dataclass(frozen=True)
class RunId:
    """One start of one task."""

    task_arn: str
    started_ms: int

    def __str__(self) -> str:
        return f"{self.task_arn}#{self.started_ms}"

    @classmethod
    def parse(cls, run_id: str) -> RunId:
        arn, _, started = run_id.rpartition("#")
        return cls(arn, int(started))


class DmsReplicationRunner(Runner[ReplicationSpec]):
    name = "dms"
    idempotent_start = False  # StartReplicationTask has no idempotency token
    refusals = REFUSALS

    def __init__(self, client: Any, clock_margin_seconds: float = 5.0) -> None:
        self.client = client
        # How far AWS's clock may trail ours: a start dated this much before the task
        # arrived (or before the run's own date) still counts as the task's.
        self.margin_ms = int(clock_margin_seconds * 1000)

    def parse(self, document: Mapping[str, Any]) -> ReplicationSpec:
        fields = Fields(document)
        arn = fields.required_text("ReplicationTaskArn", max_length=2048)
        if not _TASK_ARN.match(arn):
            raise RunnerInputError("ReplicationTaskArn", "must be a DMS replication task ARN")
        start_time = fields.text("CdcStartTime", max_length=64)
        start_position = fields.text("CdcStartPosition", max_length=1024)
        if start_time and start_position:
            raise RunnerInputError("CdcStartPosition", "give it or CdcStartTime, not both")
        stop_position = fields.text("CdcStopPosition", max_length=64)
        if stop_position and not _STOP_POSITION.match(stop_position):
            raise RunnerInputError(
                "CdcStopPosition", "must be server_time:YYYY-MM-DDTHH:MM:SS or commit_time:..."
            )
        return ReplicationSpec(
            task_arn=arn,
            start_type=fields.choice("StartReplicationTaskType", START_TYPES),
            cdc_start_time=_timestamp("CdcStartTime", start_time),
            cdc_start_position=start_position,
            cdc_stop_position=stop_position,
        )

    def describe(self, spec: ReplicationSpec) -> dict[str, str]:
        return {
            "dms_replication_task_arn": spec.task_arn,
            "dms_start_type": spec.start_type or "chosen by the task",
        }

    async def start(self, spec: ReplicationSpec, task: TaskStart) -> str:
        described = await self._task(spec.task_arn, settings=True)
        spec.check_against(described)
        request = spec.start_request(spec.start_type_for(described))
        sent_ms = int(time.time() * 1000)
        response = await self.client.start_replication_task(**request)
        started = _epoch_ms(response.get("ReplicationTask", {}).get("ReplicationTaskStartDate"))
        return str(RunId(spec.task_arn, started or sent_ms))

    async def find(self, spec: ReplicationSpec, task: TaskStart) -> str | None:
        """The start an earlier attempt made for this task, if any.

        It relies on the task's ``ReplicationTaskStartDate``: a start dated at or after
        the moment the task arrived (less the clock margin) is taken as this task's own.
        A start made before (someone else's run, which made this task wait as busy) is
        not. The limit: a start someone else makes after the task arrived, while this
        task's own start attempts failed without taking effect, would be taken for this
        task's (DMS keeps no marker of who started a task).
        """
        described = await self._task_if_any(spec.task_arn)
        if described is None or not self._started_since(described, task.received_at * 1000):
            return None  # no task (so no start), or only earlier starts
        return str(RunId(spec.task_arn, _epoch_ms(described["ReplicationTaskStartDate"]) or 0))

    def _started_since(self, task: Mapping[str, Any], since_ms: float) -> bool:
        """Whether the described start is one made at ``since_ms`` or later."""
        started = _epoch_ms(task.get("ReplicationTaskStartDate"))
        return started is not None and started >= since_ms - self.margin_ms

    async def _task_if_any(self, arn: str) -> dict[str, Any] | None:
        try:
            return await self._task(arn, settings=False)
        except RunnerInputError:
            return None
        except ClientError as error:
            if error_code(error) == "ResourceNotFoundFault":
                return None
            raise

    async def _task(self, arn: str, settings: bool) -> dict[str, Any]:
        response = await self.client.describe_replication_tasks(
            Filters=[{"Name": "replication-task-arn", "Values": [arn]}],
            WithoutSettings=not settings,
        )
        tasks = response.get("ReplicationTasks") or []
        if not tasks:
            raise RunnerInputError("ReplicationTaskArn", f"no replication task {arn}")
        task: dict[str, Any] = tasks[0]
        return task

    async def check(self, jobs: Sequence[Job[ReplicationSpec]]) -> Mapping[str, JobStatus]:
        """One ``DescribeReplicationTasks`` per 50 tasks, filtered by their ARNs."""
        arns = sorted({RunId.parse(job.run_id).task_arn for job in jobs})
        limit = asyncio.Semaphore(DESCRIBE_CONCURRENCY)

        async def described(chunk: list[str]) -> list[dict[str, Any]]:
            async with limit:
                return await self._describe(chunk)

        chunks = [arns[i : i + ARNS_PER_CALL] for i in range(0, len(arns), ARNS_PER_CALL)]
        answers = await asyncio.gather(*(described(chunk) for chunk in chunks))
        tasks = {task["ReplicationTaskArn"]: task for answer in answers for task in answer}
        return {job.run_id: self._status(job.run_id, tasks.get(_arn(job))) for job in jobs}

    async def _describe(self, arns: list[str]) -> list[dict[str, Any]]:
        """The tasks among ``arns`` that exist (DMS refuses a filter that matches none)."""
        found: list[dict[str, Any]] = []
        marker: str | None = None
        while True:
            request: dict[str, Any] = {
                "Filters": [{"Name": "replication-task-arn", "Values": arns}],
                "MaxRecords": PAGE,
                "WithoutSettings": True,
            }
            if marker:
                request["Marker"] = marker
            try:
                response = await self.client.describe_replication_tasks(**request)
            except ClientError as error:
                if error_code(error) == "ResourceNotFoundFault":
                    return found
                raise
            found.extend(response.get("ReplicationTasks") or [])
            marker = response.get("Marker")
            if not marker:
                return found

    def _status(self, run_id: str, task: Mapping[str, Any] | None) -> JobStatus:
        run = RunId.parse(run_id)
        if task is None:
            return Failed(FAILED_ERROR, _gone(run))
        if not self._started_since(task, run.started_ms):
            return RUNNING  # what is described is an earlier start: this one is not seen yet
        phase = STATES.phase(task.get("Status"))
        if phase is Phase.SUCCEEDED and task.get("StopReason") in FINISHED_REASONS:
            return Succeeded(output(task))
        if phase is Phase.RUNNING:
            return RUNNING
        return Failed(FAILED_ERROR, failure(task))

    async def stop(self, job: Job[ReplicationSpec]) -> None:
        """Stop the task, if what runs is still this job's start."""
        run = RunId.parse(job.run_id)
        task = await self._task_if_any(run.task_arn)
        if task is None or not self._started_since(task, run.started_ms):
            return  # the task is gone, or this start is not described yet
        if task.get("Status") in ("stopped", "failed"):
            return
        try:
            await self.client.stop_replication_task(ReplicationTaskArn=run.task_arn)
        except ClientError as error:
            if error_code(error) not in ("InvalidResourceStateFault", "ResourceNotFoundFault"):
                raise  # InvalidResourceStateFault: it stopped meanwhile


def _arn(job: Job[ReplicationSpec]) -> str:
    return RunId.parse(job.run_id).task_arn


def _has_run(task: Mapping[str, Any]) -> bool:
    return bool(task.get("ReplicationTaskStartDate")) or task.get("Status") in ("stopped", "failed")


def _stops_after_full_load(task: Mapping[str, Any]) -> bool:
    """A full-load-and-cdc task whose settings stop it once its full load is done."""
    if task.get("MigrationType") != "full-load-and-cdc":
        return False
    try:
        settings = json.loads(task.get("ReplicationTaskSettings") or "{}")
    except ValueError:
        return False
    full_load = settings.get("FullLoadSettings") if isinstance(settings, dict) else None
    if not isinstance(full_load, dict):
        return False
    return bool(
        full_load.get("StopTaskCachedChangesApplied")
        or full_load.get("StopTaskCachedChangesNotApplied")
    )


def _timestamp(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise RunnerInputError(name, "must be an ISO 8601 time (2026-12-01T02:00:00)") from None


def _epoch_ms(value: Any) -> int | None:
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else None


def _iso(value: Any) -> str | None:
    return iso(value) if isinstance(value, datetime) else None


def output(task: Mapping[str, Any]) -> dict[str, Any]:
    """The task output: which task, how it stopped, when, and its table figures."""
    stats = task.get("ReplicationTaskStats") or {}
    return {
        "DmsReplicationTaskArn": task["ReplicationTaskArn"],
        "DmsReplicationTaskIdentifier": task.get("ReplicationTaskIdentifier"),
        "DmsStatus": task.get("Status"),
        "DmsStopReason": task.get("StopReason"),
        "DmsMigrationType": task.get("MigrationType"),
        "DmsStartedAt": _iso(task.get("ReplicationTaskStartDate")),
        "DmsStoppedAt": _iso(stats.get("StopDate")),
        "DmsFullLoadStartedAt": _iso(stats.get("FullLoadStartDate")),
        "DmsFullLoadFinishedAt": _iso(stats.get("FullLoadFinishDate")),
        **{f"Dms{name}": stats.get(name) for name in STATS},
    }


def failure(task: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "dms_replication_task_arn": task["ReplicationTaskArn"],
        "dms_replication_task_identifier": task.get("ReplicationTaskIdentifier"),
        "dms_status": task.get("Status"),
        "dms_stop_reason": task.get("StopReason", ""),
        "dms_last_failure_message": task.get("LastFailureMessage", ""),
    }


def _gone(run: RunId) -> dict[str, Any]:
    return {
        "dms_replication_task_arn": run.task_arn,
        "dms_status": "not found",
        "dms_stop_reason": "",
        "dms_last_failure_message": "the replication task no longer exists",
    }


async def build(context: RunnerContext[Any]) -> DmsReplicationRunner:
    return DmsReplicationRunner(await context.client("dms"))


RUNNER = RunnerDefinition(
    name="dms",
    title="Dms",
    description="starts an AWS DMS replication task and waits until it stops",
    build=build,
    sdk_retries="none",  # StartReplicationTask has no idempotency token
    permissions=(
        Permission(
            ("dms:StartReplicationTask", "dms:StopReplicationTask"),
            ("arn:${AWS::Partition}:dms:${AWS::Region}:${AWS::AccountId}:task:${DmsTaskIds}",),
        ),
        # The service authorization reference lists no resource type for
        # DescribeReplicationTasks: it accepts only "*".
        Permission(("dms:DescribeReplicationTasks",), ("*",)),
    ),
    parameters=(
        DeployParameter(
            "DmsTaskIds",
            "the replication tasks (resource ids, the end of their ARNs) the runner may "
            "start and stop; * for all",
            "*",
        ),
    ),
    states=STATES,
)
