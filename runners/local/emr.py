"""Amazon EMR steps as AWS runs them: queued per cluster, timed, cancellable.

What moto lacks and this adds (Amazon EMR API reference,
https://docs.aws.amazon.com/emr/latest/APIReference/):
- a step's state follows the wall clock (moto: the first step RUNNING and every other
  PENDING forever). Its ``RunBehaviour`` is chosen by a fragment of its name or of its
  arguments: PENDING, RUNNING, then COMPLETED / FAILED (with ``FailureDetails``) /
  CANCELLED / INTERRUPTED;
- steps run in the order they were added, at most ``StepConcurrencyLevel`` at a time
  (default 1): a step stays PENDING until one before it ends ("Amazon EMR executes each
  step in the order listed", AddJobFlowSteps);
- ``ActionOnFailure`` CANCEL_AND_WAIT: a failed step "Cancels any pending steps"
  (StepConfig), and is refused on a cluster whose ``StepConcurrencyLevel`` is above 1
  ("The step is not submitted and the action fails with a message that the
  ActionOnFailure setting is not valid");
- ``Status.Timeline``: ``CreationDateTime``, ``StartDateTime`` once it runs,
  ``EndDateTime`` once it ends; ``FailureDetails`` (``Reason``, ``Message``,
  ``LogFile``) for a failed step ("In the case where the service cannot successfully
  determine the root cause of the failure, it returns "Unknown Error" as a reason");
- ``AddJobFlowSteps`` only on a cluster "in one of the following states: STARTING,
  BOOTSTRAPPING, RUNNING, or WAITING" (``ValidationException`` "A job flow that is
  shutting down, terminated, or finished may not be modified."), an unknown cluster
  answered ``ValidationException`` (moto: HTTP 500), and at most 256 active steps;
- ``ListSteps``: newest first ("in reverse order"), at most 10 ``StepIds`` ("You can
  specify a maximum of 10 stepIDs"), 50 steps a page with ``Marker`` ("The maximum number
  of steps that a single ListSteps action returns is 50"), ``StepStates`` filter, and
  ``InvalidRequestException`` for an unknown cluster (moto: HTTP 500);
- ``CancelSteps`` (not in moto): up to 256 ids; a PENDING step is CANCELLED at once, a
  RUNNING one goes CANCEL_PENDING, then CANCELLED ("you can cancel steps that are in a
  PENDING or RUNNING state"); each id is answered in ``CancelStepsInfoList`` with
  ``Status`` SUBMITTED, or FAILED and a ``Reason`` (a step that had already ended, or an
  unknown id; the wording of the reason is the emulator's).

Not emulated: the cluster's own state following its steps (moto keeps it RUNNING once
steps are added, and never ends a cluster when its last step does), TERMINATE_CLUSTER
on a failed step, steps of a cluster terminated while they run, and a change of
``StepConcurrencyLevel`` applying only to steps not yet started.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from moto.core.responses import ActionResult
from moto.emr.exceptions import InvalidRequestException, ValidationException
from moto.emr.models import Cluster, Step
from moto.emr.responses import ElasticMapReduceResponse

from runners.local.athena import AthenaQueryBehaviours

# Which RunBehaviour a new step follows, by a fragment of its name or arguments (later
# rules win). final_state: COMPLETED (or SUCCEEDED), FAILED, CANCELLED, INTERRUPTED;
# error_message is a failed step's FailureDetails.Message.
BEHAVIOURS = AthenaQueryBehaviours()
MAX_STEP_IDS = 10  # ListSteps
PAGE = 50  # ListSteps
MAX_CANCEL = 256  # CancelSteps
MAX_ACTIVE = 256  # PENDING, RUNNING and CANCEL_PENDING steps of a cluster
ACTIVE = frozenset({"PENDING", "RUNNING", "CANCEL_PENDING"})
ENDED = frozenset({"COMPLETED", "FAILED", "CANCELLED", "INTERRUPTED"})
MODIFIABLE = frozenset({"STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING"})
QUEUED_SECONDS = 0.1  # the least time a step is PENDING
CANCEL_PENDING_SECONDS = 0.5  # a running step interrupted, before it is CANCELLED
UNKNOWN_REASON = "Unknown Error"
_NAMES = {"SUCCEEDED": "COMPLETED"}
_lock = threading.Lock()
_order = itertools.count()


class EmulatedStep(Step):  # type: ignore[misc]
    """A moto step whose state is read off its cluster's schedule."""

    def __init__(self, cluster: Cluster, config: Mapping[str, Any]) -> None:
        jar_step = dict(config.get("HadoopJarStep") or {})
        super().__init__(
            state="PENDING",
            name=config.get("Name", ""),
            hadoop_jar_step=jar_step,
            action_on_failure=config.get("ActionOnFailure") or "TERMINATE_CLUSTER",
        )
        self.cluster = cluster
        self.main_class: str | None = jar_step.get("MainClass")
        self.created_at = time.time()
        self.sequence = next(_order)
        self.behaviour = BEHAVIOURS.for_query(" ".join([self.name, *self.args]))
        self.cancelled_at: float | None = None

    @property
    def state(self) -> str:
        return plan_of(self).state(time.time())

    @state.setter
    def state(self, value: str) -> None:
        """moto sets a state when it makes a step; the schedule decides instead."""


@dataclass(frozen=True)
class Plan:
    """When a step starts and ends, as its cluster's queue and cancellations make it."""

    created: float
    start: float | None  # None: cancelled before it ran
    end: float
    final: str
    cancel_at: float | None = None  # a running step being cancelled from then

    def state(self, now: float) -> str:
        if now >= self.end:
            return self.final
        if self.start is None or now < self.start:
            return "PENDING"
        if self.cancel_at is not None and now >= self.cancel_at:
            return "CANCEL_PENDING"
        return "RUNNING"


def _steps(cluster: Cluster) -> list[EmulatedStep]:
    return [step for step in cluster.steps if isinstance(step, EmulatedStep)]


def plan_of(step: EmulatedStep) -> Plan:
    return schedule(_steps(step.cluster), step.cluster.step_concurrency_level)[step.id]


def schedule(steps: Iterable[EmulatedStep], concurrency: int) -> dict[str, Plan]:
    """Every step's plan: in order, each waits for a free slot of ``concurrency``."""
    slots = [0.0] * max(1, int(concurrency or 1))
    halted_at: float | None = None  # a CANCEL_AND_WAIT step failed then
    plans: dict[str, Plan] = {}
    for step in sorted(steps, key=lambda s: s.sequence):
        slot = heapq.heappop(slots)
        start = max(step.created_at + QUEUED_SECONDS, slot)
        stops = [step.cancelled_at] if step.cancelled_at is not None else []
        if halted_at is not None and step.created_at <= halted_at:
            stops.append(halted_at)
        if stops and min(stops) <= start:
            plans[step.id] = Plan(step.created_at, None, min(stops), "CANCELLED")
            heapq.heappush(slots, slot)
            continue
        plan = _ran(step, start)
        plans[step.id] = plan
        heapq.heappush(slots, plan.end)
        if plan.final == "FAILED" and step.action_on_failure == "CANCEL_AND_WAIT":
            halted_at = plan.end if halted_at is None else min(halted_at, plan.end)
    return plans


def _ran(step: EmulatedStep, start: float) -> Plan:
    end = start + max(0.0, step.behaviour.duration - QUEUED_SECONDS)
    final = _NAMES.get(step.behaviour.final_state, step.behaviour.final_state)
    if step.cancelled_at is not None and step.cancelled_at < end:
        return Plan(
            step.created_at,
            start,
            step.cancelled_at + CANCEL_PENDING_SECONDS,
            "CANCELLED",
            cancel_at=step.cancelled_at,
        )
    return Plan(step.created_at, start, end, final)


def add_steps(self: Cluster, steps: list[Any]) -> list[Step]:
    """Replaces ``Cluster.add_steps`` (AddJobFlowSteps and RunJobFlow's ``Steps``)."""
    added = [EmulatedStep(self, _plain(step)) for step in steps]
    self.steps.extend(added)
    if getattr(self, "state", None) in MODIFIABLE:  # not yet set while RunJobFlow makes it
        self.state = "RUNNING"
    return added


def _plain(value: Any) -> Any:
    """moto's parsed parameters answer to snake_case names too; keep AWS's own."""
    return value.original_dict() if hasattr(value, "original_dict") else value


def _cluster(response: ElasticMapReduceResponse, cluster_id: str | None) -> Cluster | None:
    cluster: Cluster | None = response.backend.clusters.get(cluster_id or "")
    return cluster


def _known_cluster(response: ElasticMapReduceResponse) -> Cluster:
    cluster_id = response._get_param("ClusterId")
    cluster = _cluster(response, cluster_id)
    if cluster is None:
        raise InvalidRequestException(f"Cluster id '{cluster_id}' is not valid.")
    return cluster


def add_job_flow_steps(self: ElasticMapReduceResponse) -> ActionResult:
    cluster = _cluster(self, self._get_param("JobFlowId"))
    if cluster is None:
        raise ValidationException("Specified job flow ID does not exist.")
    if cluster.state not in MODIFIABLE:
        raise ValidationException(
            "A job flow that is shutting down, terminated, or finished may not be modified."
        )
    configs = [_plain(step) for step in self._get_param("Steps", [])]
    _check_action_on_failure(cluster, configs)
    with _lock:
        now = time.time()
        plans = schedule(_steps(cluster), cluster.step_concurrency_level)
        active = sum(1 for plan in plans.values() if plan.state(now) in ACTIVE)
        if active + len(configs) > MAX_ACTIVE:
            raise ValidationException(
                "Maximum number of active steps(State = 'Running', 'Pending' or "
                "'Cancel_Pending') for cluster exceeded."
            )
        added = add_steps(cluster, configs)
    return ActionResult({"StepIds": [step.id for step in added]})


def _check_action_on_failure(cluster: Cluster, configs: list[dict[str, Any]]) -> None:
    if int(cluster.step_concurrency_level or 1) <= 1:
        return
    for config in configs:
        action = config.get("ActionOnFailure") or "TERMINATE_CLUSTER"
        if action != "CONTINUE":
            raise ValidationException(
                f"ActionOnFailure {action} is not valid for a cluster whose "
                "StepConcurrencyLevel is greater than 1; use CONTINUE."
            )


def list_steps(self: ElasticMapReduceResponse) -> ActionResult:
    cluster = _known_cluster(self)
    step_ids: list[str] = list(self._get_param("StepIds", []) or [])
    states = set(self._get_param("StepStates", []) or [])
    if len(step_ids) > MAX_STEP_IDS:
        raise ValidationException(f"You can specify a maximum of {MAX_STEP_IDS} StepIds.")
    now = time.time()
    plans = schedule(_steps(cluster), cluster.step_concurrency_level)
    newest_first = sorted(_steps(cluster), key=lambda s: s.sequence, reverse=True)
    matching = [
        step
        for step in newest_first
        if (not step_ids or step.id in step_ids)
        and (not states or plans[step.id].state(now) in states)
    ]
    start = int(self._get_param("Marker") or 0)
    page = matching[start : start + PAGE]
    result: dict[str, Any] = {"Steps": [summary(step, plans[step.id], now) for step in page]}
    if start + PAGE < len(matching):
        result["Marker"] = str(start + PAGE)
    return ActionResult(result)


def describe_step(self: ElasticMapReduceResponse) -> ActionResult:
    cluster = _known_cluster(self)
    step_id = self._get_param("StepId")
    step = next((s for s in _steps(cluster) if s.id == step_id), None)
    if step is None:
        raise InvalidRequestException(f"Step id '{step_id}' is not valid.")
    plan = schedule(_steps(cluster), cluster.step_concurrency_level)[step.id]
    return ActionResult({"Step": summary(step, plan, time.time())})


def cancel_steps(self: ElasticMapReduceResponse) -> ActionResult:
    cluster = _known_cluster(self)
    step_ids: list[str] = list(self._get_param("StepIds", []) or [])
    if not 1 <= len(step_ids) <= MAX_CANCEL:
        raise ValidationException(f"StepIds must hold 1 to {MAX_CANCEL} step ids.")
    with _lock:
        answers = [_cancel(cluster, step_id) for step_id in step_ids]
    return ActionResult({"CancelStepsInfoList": answers})


def _cancel(cluster: Cluster, step_id: str) -> dict[str, str]:
    step = next((s for s in _steps(cluster) if s.id == step_id), None)
    if step is None:
        return {"StepId": step_id, "Status": "FAILED", "Reason": f"Step {step_id} not found."}
    now = time.time()
    state = schedule(_steps(cluster), cluster.step_concurrency_level)[step.id].state(now)
    if state in ("PENDING", "RUNNING"):
        step.cancelled_at = now
    elif state not in ("CANCEL_PENDING", "CANCELLED"):
        return {
            "StepId": step_id,
            "Status": "FAILED",
            "Reason": f"Step {step_id} is {state} and cannot be cancelled.",
        }
    return {"StepId": step_id, "Status": "SUBMITTED"}


def summary(step: EmulatedStep, plan: Plan, now: float) -> dict[str, Any]:
    """A ``Step`` (DescribeStep) or ``StepSummary`` (ListSteps) at one instant."""
    state = plan.state(now)
    timeline: dict[str, datetime] = {"CreationDateTime": _datetime(plan.created)}
    if plan.start is not None and now >= plan.start:
        timeline["StartDateTime"] = _datetime(plan.start)
    if now >= plan.end:
        timeline["EndDateTime"] = _datetime(plan.end)
    status: dict[str, Any] = {"State": state, "StateChangeReason": {}, "Timeline": timeline}
    if state == "FAILED":
        status["FailureDetails"] = _failure_details(step)
    elif state == "CANCELLED":
        status["StateChangeReason"] = {"Message": "Cancelled by request."}
    config: dict[str, Any] = {
        "Jar": step.jar,
        "Args": list(step.args),
        "Properties": {p["Key"]: p["Value"] for p in step.properties or []},
    }
    if step.main_class:
        config["MainClass"] = step.main_class
    return {
        "Id": step.id,
        "Name": step.name,
        "Config": config,
        "ActionOnFailure": step.action_on_failure,
        "Status": status,
    }


def _failure_details(step: EmulatedStep) -> dict[str, str]:
    details = {
        "Reason": UNKNOWN_REASON,
        "Message": step.behaviour.error_message or "Step failed with exitCode 1.",
    }
    log_uri = (step.cluster.log_uri or "").rstrip("/")
    if log_uri:
        details["LogFile"] = f"{log_uri}/{step.cluster.id}/steps/{step.id}/stderr.gz"
    return details


def _datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def install() -> None:
    Cluster.add_steps = add_steps
    response = ElasticMapReduceResponse
    response.add_job_flow_steps = add_job_flow_steps
    response.list_steps = list_steps
    response.describe_step = describe_step
    response.cancel_steps = cancel_steps
