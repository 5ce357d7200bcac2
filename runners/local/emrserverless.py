"""EMR Serverless job runs as AWS runs them.

What moto lacks and this adds (Amazon EMR Serverless API reference and user guide,
"Job run states"):
- a run's ``state`` follows a wall-clock timeline chosen per run (``RunBehaviour``, by a
  fragment of its name, entry point, arguments or Hive query): SUBMITTED, PENDING,
  SCHEDULED, RUNNING, then SUCCESS / FAILED (with ``stateDetails``: "Refer to
  StateDetails for additional information about this job failure") / CANCELLED (moto:
  SUCCESS at once);
- ``clientToken``, "The client idempotency token of the job run to start": the same
  token on the same application returns the first run (moto starts another);
- ``CancelJobRun``: CANCELLING ("The CancelJobRun API has requested job run
  cancellation ... EMR Serverless is trying to cancel the job"), then CANCELLED; a run
  that has ended is not cancellable and the call answers ``ValidationException``
  (moto marks any run CANCELLED);
- figures that follow the timeline: ``startedAt`` ("when the job moved to the RUNNING
  state"), ``endedAt``, ``totalExecutionDurationSeconds`` ("only available for job runs
  in a COMPLETED, FAILED, or CANCELLED state"), ``totalResourceUtilization`` ("from the
  time the job starts to execute, until the time the job terminates, rounded up to the
  nearest second") and ``billedResourceUtilization`` ("a 1-minute minimum usage for
  workers, plus additional storage over 20 GB per worker"), from the run's workers;
- auto-start: "An application by default is configured to auto-start on job
  submission"; with auto-start off, an application that is not STARTED ("The application
  only accepts jobs when it's in this state") refuses the run with ``ConflictException``
  ("conflict in the current state of the resource"; AWS does not document which of
  StartJobRun's errors it answers);
- ``ListJobRuns`` filtered by up to 8 ``states`` ("if this filter contains multiple
  states, the resulting list will be grouped by the state"), ``maxResults`` 1 to 50,
  paged with ``nextToken``, newest first within a state;
- ``ResourceNotFoundException`` with HTTP 404, as the API model declares (moto: 400).

Not emulated: ``executionTimeoutMinutes`` cancelling a run (at least 5 minutes, too long
for tests), retry policies and attempts, STREAMING mode, QUEUED (no concurrency limit).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from moto.core.exceptions import JsonRESTError
from moto.core.responses import ActionResult
from moto.emrserverless.models import EMRServerlessBackend
from moto.emrserverless.responses import EMRServerlessResponse
from moto.emrserverless.utils import random_job_id

from runners.local.athena import AthenaQueryBehaviours
from runners.local.timeline import RunBehaviour, Timeline

FINAL = frozenset({"SUCCESS", "FAILED", "CANCELLED"})
MAX_PAGE = 50
MAX_STATES = 8
CANCELLING = ("CANCELLING", 1.0)
# RunBehaviour speaks of every service's runs; these are EMR Serverless's names.
_NAMES = {"SUCCEEDED": "SUCCESS"}
# The workers a run holds unless its behaviour's metrics say otherwise.
_WORKER = {"workers": 1, "vCPU": 4, "memoryGB": 16, "storageGB": 20}
_FREE_STORAGE_GB = 20
_BILLED_MINIMUM_SECONDS = 60
_lock = threading.Lock()


# Which RunBehaviour a new run follows, by a fragment of its name, entry point, arguments
# or query (later rules win). metrics size the run's workers: workers, and per worker
# vCPU, memoryGB, storageGB.
BEHAVIOURS = AthenaQueryBehaviours()


class _Error(JsonRESTError):  # type: ignore[misc]
    def __init__(self, status: int, code: str, message: str) -> None:
        self.code = status
        super().__init__(code, message)


def _validation(message: str) -> _Error:
    return _Error(400, "ValidationException", message)


def _not_found(message: str) -> _Error:
    return _Error(404, "ResourceNotFoundException", message)


@dataclass
class EmulatedJobRun:
    application_id: str
    id: str
    arn: str
    request: dict[str, Any]
    timeline: Timeline
    behaviour: RunBehaviour
    created_at: float = field(default_factory=time.time)
    cancelled: bool = False

    def state(self, now: float) -> str:
        return self.timeline.state(now)


def _runs(backend: EMRServerlessBackend) -> dict[tuple[str, str], EmulatedJobRun]:
    """Runs by (application, run id); on the backend, so a reset forgets them."""
    runs: dict[tuple[str, str], EmulatedJobRun] = backend.__dict__.setdefault("_emulated", {})
    return runs


def _tokens(backend: EMRServerlessBackend) -> dict[tuple[str, str], str]:
    tokens: dict[tuple[str, str], str] = backend.__dict__.setdefault("_client_tokens", {})
    return tokens


def _run_text(request: dict[str, Any]) -> str:
    """What a behaviour rule's fragment is looked for in."""
    driver = request.get("jobDriver") or {}
    spark, hive = driver.get("sparkSubmit") or {}, driver.get("hive") or {}
    parts = [
        request.get("name") or "",
        spark.get("entryPoint") or "",
        *(spark.get("entryPointArguments") or []),
        spark.get("sparkSubmitParameters") or "",
        hive.get("query") or "",
        hive.get("initQueryFile") or "",
    ]
    return " ".join(str(part) for part in parts)


def _timeline(behaviour: RunBehaviour, now: float) -> Timeline:
    if behaviour.phases is not None:
        phases = list(behaviour.phases)
    else:
        step = min(0.1, behaviour.duration * 0.1)
        phases = [
            ("SUBMITTED", step),
            ("PENDING", step),
            ("SCHEDULED", step),
            ("RUNNING", max(0.0, behaviour.duration - 3 * step)),
        ]
    final = _NAMES.get(behaviour.final_state, behaviour.final_state)
    return Timeline(phases, final, now)


def _check_application(backend: EMRServerlessBackend, application_id: str) -> None:
    """An application that is not STARTED auto-starts on submission, unless told not to."""
    application = backend.applications.get(application_id)
    if application is None:
        raise _not_found(f"Application {application_id} does not exist")
    if application.state == "TERMINATED":
        raise _validation(f"Application {application_id} is terminated. Cannot start job run.")
    if application.state == "STARTED":
        return
    if not (application.auto_start_configuration or {}).get("enabled", True):
        raise _Error(
            409,
            "ConflictException",
            f"Application {application_id} is in {application.state} state and auto-start "
            "is disabled; it accepts job runs only when STARTED",
        )
    application.state = "STARTED"


def _check_request(backend: EMRServerlessBackend, request: dict[str, Any]) -> None:
    role = str(request.get("executionRoleArn") or "")
    if role.split(":")[4:5] != [backend.account_id]:
        raise _Error(400, "AccessDeniedException", "Cross-account pass role is not allowed.")
    timeout = request.get("executionTimeoutMinutes")
    if timeout is not None and int(timeout) < 5:
        raise _validation("RunTimeout must be at least 5 minutes.")
    if not request.get("jobDriver"):
        raise _validation("jobDriver must be specified")


def start_job_run(self: EMRServerlessResponse) -> ActionResult:
    backend: EMRServerlessBackend = self.emrserverless_backend
    application_id = str(self._get_param("applicationId"))
    names = (
        "executionRoleArn",
        "jobDriver",
        "configurationOverrides",
        "tags",
        "executionTimeoutMinutes",
        "name",
    )
    request = {name: self._get_param(name) for name in names}
    token = str(self._get_param("clientToken") or "")
    with _lock:
        # A repeated start finds its run whatever became of the application since.
        known = _tokens(backend).get((application_id, token))
        run = _runs(backend)[(application_id, known)] if known else None
        if run is None:
            _check_application(backend, application_id)
            _check_request(backend, request)
            run = _new_run(backend, application_id, request)
            if token:
                _tokens(backend)[(application_id, token)] = run.id
    return ActionResult({"applicationId": application_id, "jobRunId": run.id, "arn": run.arn})


def _new_run(
    backend: EMRServerlessBackend, application_id: str, request: dict[str, Any]
) -> EmulatedJobRun:
    behaviour = BEHAVIOURS.for_query(_run_text(request))
    run_id, now = random_job_id(), time.time()
    application = backend.applications[application_id]
    request["releaseLabel"] = application.release_label
    request["createdBy"] = f"arn:aws:iam::{backend.account_id}:root"
    run = EmulatedJobRun(
        application_id=application_id,
        id=run_id,
        arn=f"{application.arn}/jobruns/{run_id}",
        request=request,
        timeline=_timeline(behaviour, now),
        behaviour=behaviour,
        created_at=now,
    )
    _runs(backend)[(application_id, run_id)] = run
    return run


def _run(self: EMRServerlessResponse) -> EmulatedJobRun:
    application_id = str(self._get_param("applicationId"))
    run_id = str(self._get_param("jobRunId"))
    run = _runs(self.emrserverless_backend).get((application_id, run_id))
    if run is None:
        raise _not_found(f"Job run {run_id} does not exist")
    return run


def get_job_run(self: EMRServerlessResponse) -> ActionResult:
    return ActionResult({"jobRun": job_run(_run(self), time.time())})


def job_run(run: EmulatedJobRun, now: float) -> dict[str, Any]:
    """The ``JobRun`` structure at one instant."""
    state, request = run.state(now), run.request
    body: dict[str, Any] = {
        "applicationId": run.application_id,
        "jobRunId": run.id,
        "arn": run.arn,
        "createdBy": request["createdBy"],
        "createdAt": _datetime(run.created_at),
        "updatedAt": _datetime(run.timeline.last_change_at(now)),
        "executionRole": request["executionRoleArn"],
        "state": state,
        "stateDetails": _state_details(run, state),
        "releaseLabel": request["releaseLabel"],
        "jobDriver": request["jobDriver"],
        "executionTimeoutMinutes": request["executionTimeoutMinutes"] or 720,
        "mode": "BATCH",
        "attempt": 1,
    }
    optional = {name: request[name] for name in ("name", "configurationOverrides", "tags")}
    body.update({name: value for name, value in optional.items() if value})
    started = _entered(run.timeline, "RUNNING")
    if started is not None and started <= now:
        body["startedAt"] = _datetime(started)
    ended = run.timeline.completed_at(now)
    if ended is not None:
        body.update(_finished(run, ended))
    return body


def _state_details(run: EmulatedJobRun, state: str) -> str:
    if state == "FAILED":
        return run.behaviour.error_message or "Job failed, please check complete logs."
    if state in ("CANCELLING", "CANCELLED") and run.cancelled:
        return "Job run cancelled by the CancelJobRun API."
    if state == "CANCELLED":
        return run.behaviour.error_message or "Job run cancelled."
    return ""


def _entered(timeline: Timeline, state: str) -> float | None:
    """When the run first reached ``state``, had it kept to its phases."""
    at = timeline.started_at
    for phase, seconds in list(timeline.phases):
        if phase == state:
            return at
        at += seconds
    return None


def _finished(run: EmulatedJobRun, ended: float) -> dict[str, Any]:
    started = _entered(run.timeline, "RUNNING")
    executed = math.ceil(ended - started - 1e-9) if started is not None else 0
    worker = {**_WORKER, **run.behaviour.metrics}
    billed = max(executed, _BILLED_MINIMUM_SECONDS) if executed else 0
    return {
        "endedAt": _datetime(ended),
        "totalExecutionDurationSeconds": executed,
        "totalResourceUtilization": _utilization(worker, executed, worker["storageGB"]),
        "billedResourceUtilization": _utilization(
            worker, billed, max(0, worker["storageGB"] - _FREE_STORAGE_GB)
        ),
    }


def _utilization(worker: dict[str, int], seconds: int, storage_gb: int) -> dict[str, float]:
    hours = worker["workers"] * seconds / 3600
    return {
        "vCPUHour": round(worker["vCPU"] * hours, 3),
        "memoryGBHour": round(worker["memoryGB"] * hours, 3),
        "storageGBHour": round(storage_gb * hours, 3),
    }


def _datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def cancel_job_run(self: EMRServerlessResponse) -> ActionResult:
    run, now = _run(self), time.time()
    state = run.state(now)
    if state in FINAL:
        raise _validation(f"Job run {run.id} is not in a cancellable state: {state}")
    if state != "CANCELLING":
        run.cancelled = True
        run.timeline.stop("CANCELLED", stopping=CANCELLING)
    return ActionResult({"applicationId": run.application_id, "jobRunId": run.id})


def list_job_runs(self: EMRServerlessResponse) -> ActionResult:
    application_id = str(self._get_param("applicationId"))
    states: list[str] = list(self._get_param("states") or [])
    page = int(self._get_param("maxResults") or MAX_PAGE)
    if len(states) > MAX_STATES:
        raise _validation(f"states must hold at most {MAX_STATES} states")
    if not 1 <= page <= MAX_PAGE:
        raise _validation(f"maxResults must be between 1 and {MAX_PAGE}")
    start, now = int(self._get_param("nextToken") or 0), time.time()
    matching = _matching(self, application_id, states, now)
    body: dict[str, Any] = {"jobRuns": [_summary(r, now) for r in matching[start : start + page]]}
    if start + page < len(matching):
        body["nextToken"] = str(start + page)
    return ActionResult(body)


def _matching(
    self: EMRServerlessResponse, application_id: str, states: list[str], now: float
) -> list[EmulatedJobRun]:
    """The application's runs in ``states`` (all if none), grouped by state in the
    filter's order, newest first within a state."""
    after = _epoch(self._get_param("createdAtAfter"), default=-math.inf)
    before = _epoch(self._get_param("createdAtBefore"), default=math.inf)
    runs = [
        run
        for (app, _), run in _runs(self.emrserverless_backend).items()
        if app == application_id
        and (not states or run.state(now) in states)
        and after < run.created_at < before
    ]
    order = {state: index for index, state in enumerate(states)}
    runs.sort(key=lambda run: -run.created_at)
    runs.sort(key=lambda run: order.get(run.state(now), 0))
    return runs


def _epoch(value: Any, default: float) -> float:
    """A timestamp filter as moto parsed it (a datetime, UTC when naive) or as sent."""
    if value is None:
        return default
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return float(value)


def _summary(run: EmulatedJobRun, now: float) -> dict[str, Any]:
    full = job_run(run, now)
    summary = {
        name: full[name]
        for name in (
            "applicationId",
            "arn",
            "createdBy",
            "createdAt",
            "updatedAt",
            "executionRole",
            "state",
            "stateDetails",
            "releaseLabel",
            "mode",
            "attempt",
        )
    }
    summary.update(id=run.id, type="Spark" if "sparkSubmit" in full["jobDriver"] else "Hive")
    if "name" in full:
        summary["name"] = full["name"]
    return summary


def install() -> None:
    response = EMRServerlessResponse
    response.start_job_run = start_job_run
    response.get_job_run = get_job_run
    response.cancel_job_run = cancel_job_run
    response.list_job_runs = list_job_runs
