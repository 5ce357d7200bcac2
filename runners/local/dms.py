"""AWS DMS replication tasks as AWS runs them: each start of a task is a run on the clock.

What moto lacks and this adds (AWS Database Migration Service API reference,
``ReplicationTask``, ``StartReplicationTask``, ``StopReplicationTask``,
``DescribeReplicationTasks``):
- a created task is "creating", then "ready" (moto: "creating" forever);
- each start follows a wall-clock timeline chosen by a fragment of the task's identifier
  (``RunBehaviour``): "starting", "running", then "stopped" with the ``StopReason`` of a
  task that reached its end ("Stop Reason FULL_LOAD_ONLY_FINISHED" for a full load,
  "Stop Reason STOPPED_AT_SERVER_TIME" / "..._AT_COMMIT_TIME" for a ``CdcStopPosition``,
  "Stop Reason STOPPED_AFTER_FULL_LOAD" / "..._AFTER_CACHED_EVENTS" for a task whose
  settings stop it after its full load), or "failed" / "stopped" with
  ``LastFailureMessage`` and "Stop Reason FATAL_ERROR" (moto: "running" at once, for
  ever). A CDC task given no stop position never stops on its own: it keeps "running";
- ``ReplicationTaskStartDate`` and ``ReplicationTaskStats`` (progress, elapsed time,
  tables loaded / loading / queued / errored, start, stop and full-load dates) follow
  the timeline (moto: fixed figures);
- ``InvalidResourceStateFault`` for starting a task that is not stopped, failed or
  ready, for ``resume-processing`` / ``reload-target`` on a task never run
  ("resume-processing is only available for previously executed tasks"), and for
  ``start-replication`` on a task that has run ("start-replication is the only valid
  action that can be used for the first time a task ... is run"; DMS refuses it later:
  hashicorp/terraform-provider-aws#24047 had to resume such tasks instead);
  ``InvalidParameterCombinationException`` for ``CdcStartTime`` with
  ``CdcStartPosition`` ("Specifying both values results in an error");
- ``StopReplicationTask``: "stopping", then "stopped" with "Stop Reason NORMAL" (the
  reference names no reason for a stop by request; NORMAL is the one "with no
  additional information"); ``InvalidResourceStateFault`` for a task not running;
- ``DescribeReplicationTasks`` pages with ``Marker`` (``MaxRecords`` "Minimum 20, maximum
  100"), honours ``WithoutSettings`` and answers ``ResourceNotFoundFault`` when no task
  matches the filters (moto: no paging, an empty list).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from moto.dms.exceptions import (
    DmsClientError,
    InvalidParameterCombinationException,
    InvalidResourceStateFault,
    ResourceNotFoundFault,
)
from moto.dms.models import FakeReplicationTask
from moto.dms.responses import DatabaseMigrationServiceResponse
from moto.dms.utils import filter_tasks

from runners.local.athena import AthenaQueryBehaviours
from runners.local.timeline import RunBehaviour, Timeline

# Which RunBehaviour a new start follows, by a fragment of the task identifier (later
# rules win). final_state: "stopped" (or SUCCEEDED) - the task reached its end;
# "failed"; "stopped" with error_message - stopped by an error. metrics: TablesLoaded
# (the tables a full load loads, default 1), TablesErrored (on failure, default 1).
BEHAVIOURS = AthenaQueryBehaviours()
CREATING_SECONDS = 0.2
STOPPING_SECONDS = 0.3
MIN_PAGE, MAX_PAGE = 20, 100
STARTABLE = frozenset({"ready", "stopped", "failed"})
STOPPABLE = frozenset({"starting", "running"})
FINISHED_FULL_LOAD = "Stop Reason FULL_LOAD_ONLY_FINISHED"
STOPPED_ON_REQUEST = "Stop Reason NORMAL"
STOPPED_BY_ERROR = "Stop Reason FATAL_ERROR"
_AT_STOP_POSITION = {
    "server_time": "Stop Reason STOPPED_AT_SERVER_TIME",
    "commit_time": "Stop Reason STOPPED_AT_COMMIT_TIME",
}
_lock = threading.Lock()


class InvalidParameterValueException(DmsClientError):  # type: ignore[misc]
    def __init__(self, message: str) -> None:
        super().__init__("InvalidParameterValueException", message)


@dataclass
class EmulatedRun:
    """One start of a replication task."""

    behaviour: RunBehaviour
    timeline: Timeline
    started_at: float
    fresh_start_at: float
    end_reason: str  # the StopReason once it reaches its end of its own
    start_type: str
    loading_at: float  # when the full load began (the end of "starting")
    cdc: dict[str, str] = field(default_factory=dict)
    stopped_at: float | None = None  # when a StopReplicationTask arrived

    def status(self, now: float) -> str:
        return self.timeline.state(now)

    def work_ended_at(self, now: float) -> float | None:
        """When loading stopped: a stop request, or the end of a run that ends."""
        if self.stopped_at is not None:
            return self.stopped_at
        if self.timeline.final_state == "running":
            return None
        return self.timeline.completed_at(now)

    def stop_reason(self, now: float) -> str | None:
        status = self.status(now)
        if status not in ("stopped", "failed"):
            return None
        if self.stopped_at is not None:
            return STOPPED_ON_REQUEST
        return STOPPED_BY_ERROR if self.failure() else self.end_reason

    def failure(self) -> str | None:
        if self.stopped_at is not None:
            return None
        if self.timeline.final_state == "failed":
            return self.behaviour.error_message or "Last Error Task failed. Stop Reason FATAL_ERROR"
        if self.timeline.final_state == "stopped" and self.behaviour.error_message:
            return self.behaviour.error_message
        return None


def _run(task: FakeReplicationTask) -> EmulatedRun | None:
    run: EmulatedRun | None = task.__dict__.get("_run")
    return run


def _created_at(task: FakeReplicationTask) -> float:
    return float(task.creation_date.replace(tzinfo=UTC).timestamp())


def task_status(task: FakeReplicationTask) -> str:
    """moto's own status only says "deleting"; the rest is read off the clock."""
    if task.__dict__.get("_moto_status") == "deleting":
        return "deleting"
    run, now = _run(task), time.time()
    if run is not None:
        return run.status(now)
    return "creating" if now < _created_at(task) + CREATING_SECONDS else "ready"


def _set_status(task: FakeReplicationTask, value: str) -> None:
    task.__dict__["_moto_status"] = value


def _settings(task: FakeReplicationTask) -> dict[str, Any]:
    try:
        settings = json.loads(task.replication_task_settings or "{}")
    except ValueError:
        return {}
    return settings if isinstance(settings, dict) else {}


def _end_reason(task: FakeReplicationTask, stop_position: str | None) -> str | None:
    """The StopReason of a run that reaches its end, or None for one that never ends."""
    if stop_position:
        return _AT_STOP_POSITION[stop_position.split(":", 1)[0]]
    if task.migration_type == "full-load":
        return FINISHED_FULL_LOAD
    full_load = _settings(task).get("FullLoadSettings") or {}
    if task.migration_type == "full-load-and-cdc":
        if full_load.get("StopTaskCachedChangesApplied"):
            return "Stop Reason STOPPED_AFTER_CACHED_EVENTS"
        if full_load.get("StopTaskCachedChangesNotApplied"):
            return "Stop Reason STOPPED_AFTER_FULL_LOAD"
    return None  # CDC goes on until it is stopped


def _timeline(behaviour: RunBehaviour, ends: bool, now: float) -> Timeline:
    final = {"SUCCEEDED": "stopped"}.get(behaviour.final_state, behaviour.final_state.lower())
    if final == "stopped" and not behaviour.error_message and not ends:
        final = "running"
    if behaviour.phases is not None:
        return Timeline(list(behaviour.phases), final, now)
    starting = min(0.2, behaviour.duration * 0.1)
    return Timeline(
        [("starting", starting), ("running", behaviour.duration - starting)], final, now
    )


def _check_start(task: FakeReplicationTask, start_type: str, cdc: dict[str, str]) -> None:
    status = task_status(task)
    if status not in STARTABLE:
        raise InvalidResourceStateFault(
            f"Replication task {task.id} is in {status} state and cannot be started"
        )
    if start_type != "start-replication" and _run(task) is None:
        raise InvalidResourceStateFault(
            f"{start_type} is only available for previously executed tasks ({task.id})"
        )
    if start_type == "start-replication" and _run(task) is not None:
        raise InvalidResourceStateFault(
            "Start Type : START_REPLICATION, valid only for tasks running for the first time"
        )
    if "CdcStartTime" in cdc and "CdcStartPosition" in cdc:
        raise InvalidParameterCombinationException(
            "Use either CdcStartTime or CdcStartPosition, not both"
        )
    stop = cdc.get("CdcStopPosition")
    if stop is not None and stop.split(":", 1)[0] not in _AT_STOP_POSITION:
        raise InvalidParameterValueException(
            "CdcStopPosition must be server_time:<time> or commit_time:<time>"
        )


def start_replication_task(self: DatabaseMigrationServiceResponse) -> str:
    backend = self.dms_backend
    task = backend.replication_tasks.get(self._get_param("ReplicationTaskArn"))
    if task is None:
        raise ResourceNotFoundFault("Replication task could not be found.")
    start_type = self._get_param("StartReplicationTaskType") or "start-replication"
    cdc = {
        name: str(self._get_param(name))
        for name in ("CdcStartTime", "CdcStartPosition", "CdcStopPosition")
        if self._get_param(name) is not None
    }
    with _lock:
        _check_start(task, start_type, cdc)
        previous, now = _run(task), time.time()
        behaviour = BEHAVIOURS.for_query(task.id)
        reason = _end_reason(task, cdc.get("CdcStopPosition"))
        fresh = previous.fresh_start_at if previous and start_type == "resume-processing" else now
        timeline = _timeline(behaviour, reason is not None, now)
        task.__dict__["_run"] = EmulatedRun(
            behaviour=behaviour,
            timeline=timeline,
            started_at=now,
            fresh_start_at=fresh,
            end_reason=reason or "",
            start_type=start_type,
            loading_at=now + timeline.seconds_in("starting", now + behaviour.duration),
            cdc=cdc,
        )
    return json.dumps({"ReplicationTask": task.to_dict()})


def stop_replication_task(self: DatabaseMigrationServiceResponse) -> str:
    task = self.dms_backend.replication_tasks.get(self._get_param("ReplicationTaskArn"))
    if task is None:
        raise ResourceNotFoundFault("Replication task could not be found.")
    with _lock:
        run, now = _run(task), time.time()
        status = task_status(task)
        if run is None or status not in STOPPABLE:
            raise InvalidResourceStateFault(f"Replication task {task.id} is not running")
        run.stopped_at = now
        run.timeline = Timeline([("stopping", STOPPING_SECONDS)], "stopped", now)
    return json.dumps({"ReplicationTask": task.to_dict()})


def describe_replication_tasks(self: DatabaseMigrationServiceResponse) -> str:
    page = self._get_int_param("MaxRecords", MAX_PAGE)
    if not MIN_PAGE <= page <= MAX_PAGE:
        raise InvalidParameterValueException(
            f"MaxRecords must be between {MIN_PAGE} and {MAX_PAGE}"
        )
    matching = filter_tasks(
        list(self.dms_backend.replication_tasks.values()), self._get_param("Filters", [])
    )
    if not matching:
        raise ResourceNotFoundFault("No Tasks found matching provided filters")
    start = int(self._get_param("Marker") or 0)
    settings = not self._get_bool_param("WithoutSettings", False)
    body: dict[str, Any] = {
        "ReplicationTasks": [t.to_dict(settings) for t in matching[start : start + page]]
    }
    if start + page < len(matching):
        body["Marker"] = str(start + page)
    return json.dumps(body)


def task_as_dict(task: FakeReplicationTask, settings: bool = True) -> dict[str, Any]:
    """The task as ``DescribeReplicationTasks`` shows it at this instant."""
    now, run = time.time(), _run(task)
    data: dict[str, Any] = {
        "ReplicationTaskIdentifier": task.id,
        "ReplicationTaskArn": task.arn,
        "SourceEndpointArn": task.source_endpoint_arn,
        "TargetEndpointArn": task.target_endpoint_arn,
        "ReplicationInstanceArn": task.replication_instance_arn,
        "MigrationType": task.migration_type,
        "TableMappings": task.table_mappings,
        "Status": task_status(task),
        "ReplicationTaskCreationDate": _created_at(task),
    }
    if settings:
        data["ReplicationTaskSettings"] = task.replication_task_settings
    if run is None:
        return data
    data["ReplicationTaskStartDate"] = run.started_at
    data.update(run.cdc)
    reason, failure = run.stop_reason(now), run.failure()
    if reason:
        data["StopReason"] = reason
    if failure and data["Status"] in ("stopped", "failed"):
        data["LastFailureMessage"] = failure
    data["ReplicationTaskStats"] = _stats(run, now)
    return data


def _stats(run: EmulatedRun, now: float) -> dict[str, Any]:
    """Figures that follow the run: tables load evenly over its duration."""
    ended = run.work_ended_at(now)
    until = min(now, ended) if ended is not None else now
    duration = max(run.behaviour.duration, 1e-6)
    fraction = min(1.0, max(0.0, (until - run.started_at) / duration))
    tables = int(run.behaviour.metrics.get("TablesLoaded", 1))
    failed = run.failure() is not None and run.status(now) in ("stopped", "failed")
    errored = int(run.behaviour.metrics.get("TablesErrored", 1)) if failed else 0
    loaded = max(0, tables - errored) if failed else int(tables * fraction)
    loading = 0 if ended is not None or loaded >= tables else 1
    stats: dict[str, Any] = {
        "FullLoadProgressPercent": int(100 * loaded / tables) if tables else 100,
        "ElapsedTimeMillis": int((until - run.started_at) * 1000),
        "TablesLoaded": loaded,
        "TablesLoading": loading,
        "TablesQueued": max(0, tables - loaded - loading - errored),
        "TablesErrored": errored,
        "FreshStartDate": run.fresh_start_at,
        "StartDate": run.started_at,
        "FullLoadStartDate": run.loading_at,
    }
    if loaded >= tables and not failed:
        stats["FullLoadFinishDate"] = run.started_at + duration
    if ended is not None and run.status(now) in ("stopped", "failed"):
        stats["StopDate"] = run.timeline.completed_at(now) or ended
    return stats


def install() -> None:
    FakeReplicationTask.status = property(task_status, _set_status)
    FakeReplicationTask.to_dict = task_as_dict
    response = DatabaseMigrationServiceResponse
    response.start_replication_task = start_replication_task
    response.stop_replication_task = stop_replication_task
    response.describe_replication_tasks = describe_replication_tasks
