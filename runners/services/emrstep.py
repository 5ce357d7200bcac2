"""Amazon EMR steps: add one to a running cluster, wait for it, cancel it on a stop.

Idempotency: ``AddJobFlowSteps`` has no idempotency token, so every step's name ends
with the task's key (``<StepName> [runners:<key>]``); before a retried or recovered
start, the cluster's steps created since the task arrived are searched for it (newest
first), so a crash or a lost answer never adds a second step. The EMR client must not
resend a start by itself (no SDK retries): the engine retries, searching first.
Checks: one ``ListSteps`` per cluster for up to 10 steps (its ``StepIds`` limit).
The run id is ``<cluster id>/<step id>``: a step is only known with its cluster, and the
run id holds both whatever default cluster a later worker is configured with.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from runners.engine.definition import (
    DeployParameter,
    Permission,
    RunnerContext,
    RunnerDefinition,
)
from runners.engine.inputs import Fields
from runners.engine.runner import Failed, Job, JobStatus, Runner, TaskStart
from runners.engine.service import Refusals, StateTable, iso
from runners.errors import RunnerError, RunnerInputError, TryLater
from runners.logs import get_logger
from runners.retry import error_code

STATES = StateTable(
    "emr",
    "StepState",
    running={"PENDING", "CANCEL_PENDING", "RUNNING"},
    succeeded={"COMPLETED"},
    failed={"CANCELLED", "FAILED", "INTERRUPTED"},
)
FAILED_ERROR = "EmrStepFailedError"
START_ERROR = "EmrStepStartError"
BUSY_ERROR = "EmrActiveStepsExceededError"
# An unknown cluster ("Specified job flow ID does not exist.") and one that has ended
# ("A job flow that is shutting down, terminated, or finished may not be modified.") are
# both ValidationException: the task fails with START_ERROR, which a state machine can
# catch (to make a cluster, say). Throttling and 5xx are retried by the engine.
REFUSALS = Refusals(failure=START_ERROR)
# AddJobFlowSteps refuses a cluster's 257th active step with a ValidationException too:
# that one passes once steps end.
_TOO_MANY_ACTIVE = "Maximum number of active steps"
DEFAULT_JAR = "command-runner.jar"
ACTIONS_ON_FAILURE = ("CONTINUE", "CANCEL_AND_WAIT")
MAX_NAME = 256  # StepConfig.Name
MAX_JAR_STEP_CHARS = 10_240  # "The string values passed into HadoopJarStep ... 10240"
MAX_ARGS = 1_000
LIST_IDS = 10  # ListSteps: "You can specify a maximum of 10 stepIDs"
CHECK_CONCURRENCY = 10
# A step the task made cannot be older than the task (less this, for clock skew).
CLOCK_SKEW = timedelta(minutes=5)


def task_marker(key: str) -> str:
    """The end of the name of every step a task adds."""
    return f" [runners:{key}]"


MAX_STEP_NAME = MAX_NAME - len(task_marker("0" * 64))


@dataclass(frozen=True)
class StepSpec:
    cluster_id: str
    step_name: str
    jar: str = DEFAULT_JAR
    args: tuple[str, ...] = ()
    main_class: str | None = None
    properties: tuple[tuple[str, str], ...] = ()
    action_on_failure: str = "CONTINUE"

    def start_request(self, key: str) -> dict[str, Any]:
        jar_step: dict[str, Any] = {"Jar": self.jar, "Args": list(self.args)}
        if self.main_class:
            jar_step["MainClass"] = self.main_class
        if self.properties:
            jar_step["Properties"] = [{"Key": k, "Value": v} for k, v in self.properties]
        step = {
            "Name": self.step_name + task_marker(key),
            "ActionOnFailure": self.action_on_failure,
            "HadoopJarStep": jar_step,
        }
        return {"JobFlowId": self.cluster_id, "Steps": [step]}


@dataclass(frozen=True)
class EmrStepOptions:
    emr_cluster_id: str | None = None  # the cluster of steps whose input names none


class EmrStepRunner(Runner[StepSpec]):
    name = "emrstep"
    refusals = REFUSALS

    def __init__(self, emr: Any, defaults: EmrStepOptions | None = None) -> None:
        self.emr = emr
        self.defaults = defaults or EmrStepOptions()

    def parse(self, document: Mapping[str, Any]) -> StepSpec:
        fields = Fields(document)
        cluster_id = fields.text("ClusterId", max_length=MAX_NAME) or self.defaults.emr_cluster_id
        if not cluster_id:
            raise RunnerInputError("ClusterId", "is required (no default cluster is configured)")
        spec = StepSpec(
            cluster_id=cluster_id,
            step_name=fields.required_text("StepName", max_length=MAX_STEP_NAME),
            jar=fields.text("Jar", max_length=MAX_JAR_STEP_CHARS) or DEFAULT_JAR,
            args=tuple(fields.string_list("Args", MAX_ARGS) or ()),
            main_class=fields.text("MainClass", max_length=MAX_JAR_STEP_CHARS),
            properties=tuple(sorted(fields.string_map("Properties").items())),
            action_on_failure=_action_on_failure(fields),
        )
        _check_jar_step_size(spec)
        return spec

    def describe(self, spec: StepSpec) -> dict[str, str]:
        return {"emr_cluster_id": spec.cluster_id, "emr_step_name": spec.step_name}

    def refused(self, spec: StepSpec, error: ClientError) -> RunnerError:
        message = str(error.response.get("Error", {}).get("Message") or "")
        if error_code(error) == "ValidationException" and message.startswith(_TOO_MANY_ACTIVE):
            return TryLater(BUSY_ERROR, message)
        return super().refused(spec, error)

    async def start(self, spec: StepSpec, task: TaskStart) -> str:
        response = await self.emr.add_job_flow_steps(**spec.start_request(task.key))
        return f"{spec.cluster_id}/{response['StepIds'][0]}"

    async def find(self, spec: StepSpec, task: TaskStart) -> str | None:
        """The step an earlier attempt added for this task, if any."""
        name = spec.step_name + task_marker(task.key)
        async for step in self._steps_since(spec.cluster_id, task.received_at):
            if step.get("Name") == name:
                return f"{spec.cluster_id}/{step['Id']}"
        return None

    async def _steps_since(self, cluster_id: str, received_at: float) -> AsyncIterator[Any]:
        """The cluster's steps, newest first, down to the first one older than the task."""
        oldest = datetime.fromtimestamp(received_at, tz=UTC) - CLOCK_SKEW
        marker: str | None = None
        while True:
            request: dict[str, Any] = {"ClusterId": cluster_id}
            if marker:
                request["Marker"] = marker
            response = await self.emr.list_steps(**request)
            for step in response.get("Steps", []):
                created = step.get("Status", {}).get("Timeline", {}).get("CreationDateTime")
                if isinstance(created, datetime) and created < oldest:
                    return
                yield step
            marker = response.get("Marker")
            if not marker:
                return

    async def check(self, jobs: Sequence[Job[StepSpec]]) -> Mapping[str, JobStatus]:
        by_cluster: dict[str, list[str]] = defaultdict(list)
        for job in jobs:
            cluster_id, step_id = _ids(job.run_id)
            by_cluster[cluster_id].append(step_id)
        batches = [
            (cluster_id, steps[i : i + LIST_IDS])
            for cluster_id, steps in by_cluster.items()
            for i in range(0, len(steps), LIST_IDS)
        ]
        limit = asyncio.Semaphore(CHECK_CONCURRENCY)

        async def listed(cluster_id: str, step_ids: list[str]) -> dict[str, JobStatus]:
            async with limit:
                return await self._check_batch(cluster_id, step_ids)

        answers = await asyncio.gather(*(listed(c, ids) for c, ids in batches))
        return {run_id: status for answer in answers for run_id, status in answer.items()}

    async def _check_batch(self, cluster_id: str, step_ids: list[str]) -> dict[str, JobStatus]:
        """Up to 10 steps of one cluster in one ``ListSteps``. A cluster EMR no longer
        knows fails its steps: they can never be seen to end."""
        try:
            response = await self.emr.list_steps(ClusterId=cluster_id, StepIds=step_ids)
        except ClientError as error:
            if error_code(error) != "InvalidRequestException":
                raise
            cause = {
                "emr_cluster_id": cluster_id,
                "error": error_code(error),
                "message": str(error),
            }
            return {
                f"{cluster_id}/{step_id}": Failed(FAILED_ERROR, {**cause, "emr_step_id": step_id})
                for step_id in step_ids
            }
        return {
            f"{cluster_id}/{step['Id']}": _status(cluster_id, step)
            for step in response.get("Steps", [])
            if step.get("Id") in step_ids
        }

    async def stop(self, job: Job[StepSpec]) -> None:
        """SEND_INTERRUPT (EMR's default) lets the step's process end cleanly. A step that
        has already ended is answered FAILED: there is nothing to stop."""
        cluster_id, step_id = _ids(job.run_id)
        response = await self.emr.cancel_steps(
            ClusterId=cluster_id, StepIds=[step_id], StepCancellationOption="SEND_INTERRUPT"
        )
        for info in response.get("CancelStepsInfoList", []):
            if info.get("Status") == "FAILED":
                get_logger(service="emr").info(
                    "step not cancelled", run_id=job.run_id, reason=info.get("Reason")
                )


def _action_on_failure(fields: Fields) -> str:
    """A task's step may stop its cluster's queue, never the cluster: TERMINATE_CLUSTER
    would end every other pipeline's steps on it."""
    value = fields.text("ActionOnFailure", max_length=32)
    if value in ("TERMINATE_CLUSTER", "TERMINATE_JOB_FLOW"):
        raise RunnerInputError(
            "ActionOnFailure", f"{value} is refused: a task must not terminate its cluster"
        )
    if value is not None and value not in ACTIONS_ON_FAILURE:
        raise RunnerInputError("ActionOnFailure", f"must be one of {', '.join(ACTIONS_ON_FAILURE)}")
    return value or "CONTINUE"


def _check_jar_step_size(spec: StepSpec) -> None:
    strings = [spec.jar, spec.main_class or "", *spec.args]
    strings += [text for pair in spec.properties for text in pair]
    if sum(len(text) for text in strings) > MAX_JAR_STEP_CHARS:
        raise RunnerInputError(
            "Args", f"Jar, MainClass, Args and Properties exceed {MAX_JAR_STEP_CHARS} characters"
        )


def _ids(run_id: str) -> tuple[str, str]:
    cluster_id, _, step_id = run_id.rpartition("/")
    return cluster_id, step_id


def _status(cluster_id: str, step: Mapping[str, Any]) -> JobStatus:
    return STATES.status(
        step.get("Status", {}).get("State"),
        output=lambda: output(cluster_id, step),
        error=FAILED_ERROR,
        cause=lambda: failure(cluster_id, step),
    )


def output(cluster_id: str, step: Mapping[str, Any]) -> dict[str, Any]:
    """The task output: the step, its outcome, its times and what it ran."""
    status, config = step.get("Status", {}), step.get("Config", {})
    timeline = status.get("Timeline", {})
    result: dict[str, Any] = {
        "EmrClusterId": cluster_id,
        "EmrStepId": step["Id"],
        "EmrStepName": step.get("Name"),
        "EmrStepState": status.get("State"),
        "EmrStepCreatedAt": _iso(timeline.get("CreationDateTime")),
        "EmrStepStartedAt": _iso(timeline.get("StartDateTime")),
        "EmrStepEndedAt": _iso(timeline.get("EndDateTime")),
        "EmrStepJar": config.get("Jar"),
        "EmrStepArgs": list(config.get("Args", [])),
    }
    if config.get("MainClass"):
        result["EmrStepMainClass"] = config["MainClass"]
    return result


def failure(cluster_id: str, step: Mapping[str, Any]) -> dict[str, Any]:
    status = step.get("Status", {})
    details = status.get("FailureDetails", {})
    return {
        "emr_cluster_id": cluster_id,
        "emr_step_id": step["Id"],
        "emr_step_name": step.get("Name"),
        "emr_step_state": status.get("State"),
        "emr_failure_reason": details.get("Reason", ""),
        "emr_failure_message": details.get("Message", ""),
        "emr_failure_log_file": details.get("LogFile", ""),
        "emr_state_change_message": status.get("StateChangeReason", {}).get("Message", ""),
    }


def _iso(value: Any) -> str | None:
    return iso(value) if isinstance(value, datetime) else None


async def build(context: RunnerContext[EmrStepOptions]) -> EmrStepRunner:
    return EmrStepRunner(await context.client("emr"), context.options)


RUNNER = RunnerDefinition(
    name="emrstep",
    title="EmrStep",
    description="adds a step to a running EMR cluster and waits for it",
    build=build,
    options=EmrStepOptions,
    sdk_retries="none",  # AddJobFlowSteps has no idempotency token
    permissions=(
        Permission(
            (
                "elasticmapreduce:AddJobFlowSteps",
                "elasticmapreduce:ListSteps",
                "elasticmapreduce:CancelSteps",
            ),
            (
                "arn:${AWS::Partition}:elasticmapreduce:${AWS::Region}:${AWS::AccountId}"
                ":cluster/${EmrClusters}",
            ),
        ),
    ),
    parameters=(
        DeployParameter(
            "EmrClusters",
            "the clusters steps may be added to: a cluster id, or * for any",
            "*",
        ),
        DeployParameter(
            "EmrClusterId",
            "default cluster for steps whose input names none; empty for none",
            "",
            "emr_cluster_id",
        ),
    ),
    states=STATES,
)
