"""Amazon EMR Serverless job runs: a Spark or Hive job on an application, as one Task
state, waited for by the worker instead of a ``.sync`` integration's polling.

Idempotency: the task's key is the run's ``clientToken``, so a repeated start returns
the first run. Checks: a few runs of an application are read one by one
(``GetJobRun``, at most ten at once); for more, the application's active runs are
listed (``ListJobRuns`` filtered by the active states, 50 a page) and only those no
longer active are read, for their outcome and resource figures. The job driver's entry
point and query are sensitive in the API model and are never logged.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import botocore.session
from botocore.exceptions import ClientError
from botocore.validate import ParamValidator

from runners.engine.definition import (
    DeployParameter,
    Permission,
    RunnerContext,
    RunnerDefinition,
)
from runners.engine.inputs import Fields
from runners.engine.runner import RUNNING, Job, JobStatus, Runner, TaskStart
from runners.engine.service import Refusals, StateTable, iso
from runners.errors import RunnerInputError
from runners.retry import error_code

STATES = StateTable(
    "emr-serverless",
    "JobRunState",
    running={"SUBMITTED", "PENDING", "SCHEDULED", "RUNNING", "CANCELLING", "QUEUED"},
    succeeded={"SUCCESS"},
    failed={"FAILED", "CANCELLED"},
)
FAILED_ERROR = "EmrServerlessJobFailedError"
NOT_STARTED_ERROR = "EmrServerlessApplicationNotStartedError"
REFUSALS = Refusals(
    # An application not STARTED whose auto-start is off: it may be started meanwhile.
    try_later={"ConflictException": NOT_STARTED_ERROR},
    input_errors={"ResourceNotFoundException": "ApplicationId", "ValidationException": "$"},
    failure="EmrServerlessJobStartError",
)
LIST_PAGE = 50  # ListJobRuns' largest page
GET_AT_MOST = 3  # runs of one application read one by one; more are listed first
GET_CONCURRENCY = 10
APPLICATION_ID = re.compile(r"^[0-9a-z]{1,64}$")
ROLE_ARN = re.compile(r"^arn:aws[a-zA-Z0-9-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
MAX_TAGS = 200
MAX_TIMEOUT_MINUTES = 1_000_000
# The job driver's members: (name, kind, longest), as the API model declares them.
DRIVERS: dict[str, tuple[tuple[str, str, int], ...]] = {
    "sparkSubmit": (
        ("entryPoint", "required", 4096),
        ("entryPointArguments", "list", 1024),
        ("sparkSubmitParameters", "text", 102_400),
    ),
    "hive": (
        ("query", "required", 10_280),
        ("initQueryFile", "text", 256),
        ("parameters", "text", 102_400),
    ),
}


@dataclass(frozen=True)
class JobRunSpec:
    application_id: str
    execution_role_arn: str
    job_driver: dict[str, Any]
    configuration_overrides: dict[str, Any] | None = None
    name: str | None = None
    execution_timeout_minutes: int | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def start_request(self, key: str) -> dict[str, Any]:
        request: dict[str, Any] = {
            "applicationId": self.application_id,
            "clientToken": key,
            "executionRoleArn": self.execution_role_arn,
            "jobDriver": self.job_driver,
        }
        optional = {
            "configurationOverrides": self.configuration_overrides,
            "name": self.name,
            "executionTimeoutMinutes": self.execution_timeout_minutes,
            "tags": self.tags,
        }
        request.update({name: value for name, value in optional.items() if value})
        return request


@dataclass(frozen=True)
class EmrServerlessOptions:
    """Defaults for runs whose input does not say."""

    emrserverless_application_id: str | None = None
    emrserverless_execution_role_arn: str | None = None


class EmrServerlessJobRunner(Runner[JobRunSpec]):
    name = "emrserverless"
    idempotent_start = True  # clientToken: a repeated start returns the first run
    refusals = REFUSALS

    def __init__(self, client: Any, defaults: EmrServerlessOptions | None = None) -> None:
        self.client = client
        self.defaults = defaults or EmrServerlessOptions()

    def parse(self, document: Mapping[str, Any]) -> JobRunSpec:
        fields, defaults = Fields(document), self.defaults
        application = fields.text("ApplicationId", max_length=64)
        application = application or defaults.emrserverless_application_id
        if not application:
            raise RunnerInputError("ApplicationId", "is required")
        if not APPLICATION_ID.match(application):
            raise RunnerInputError("ApplicationId", "must be lowercase letters and digits")
        role = fields.text("ExecutionRoleArn", max_length=2048)
        role = role or defaults.emrserverless_execution_role_arn
        if not role:
            raise RunnerInputError("ExecutionRoleArn", "is required")
        if not ROLE_ARN.match(role):
            raise RunnerInputError("ExecutionRoleArn", "must be an IAM role ARN")
        tags = fields.string_map("Tags")
        _check_tags(tags)
        return JobRunSpec(
            application_id=application,
            execution_role_arn=role,
            job_driver=_job_driver(document.get("JobDriver")),
            configuration_overrides=_overrides(document.get("ConfigurationOverrides")),
            name=fields.text("Name", max_length=256),
            execution_timeout_minutes=fields.integer(
                "ExecutionTimeoutMinutes", 1, MAX_TIMEOUT_MINUTES
            ),
            tags=tags,
        )

    def describe(self, spec: JobRunSpec) -> dict[str, str]:
        """The application and the run's name: entry points and queries are sensitive."""
        described = {"emrserverless_application_id": spec.application_id}
        if spec.name:
            described["emrserverless_job_run_name"] = spec.name
        return described

    async def start(self, spec: JobRunSpec, task: TaskStart) -> str:
        response = await self.client.start_job_run(**spec.start_request(task.key))
        return str(response["jobRunId"])

    async def check(self, jobs: Sequence[Job[JobRunSpec]]) -> Mapping[str, JobStatus]:
        by_application: dict[str, list[str]] = defaultdict(list)
        for job in jobs:
            by_application[job.spec.application_id].append(job.run_id)
        limit = asyncio.Semaphore(GET_CONCURRENCY)
        answers = await asyncio.gather(
            *(self._check_application(app, ids, limit) for app, ids in by_application.items())
        )
        return {run_id: status for answer in answers for run_id, status in answer.items()}

    async def _check_application(
        self, application_id: str, run_ids: list[str], limit: asyncio.Semaphore
    ) -> dict[str, JobStatus]:
        """A few runs are read one by one; more are first looked for among the active
        ones, and only those not found there are read."""
        wanted = set(run_ids)
        active = await self._active(application_id, wanted) if len(wanted) > GET_AT_MOST else set()

        async def get(run_id: str) -> tuple[str, JobStatus]:
            async with limit:
                response = await self.client.get_job_run(
                    applicationId=application_id, jobRunId=run_id
                )
            return run_id, self._status(response["jobRun"])

        read = await asyncio.gather(*(get(run_id) for run_id in sorted(wanted - active)))
        return {**dict.fromkeys(active, RUNNING), **dict(read)}

    async def _active(self, application_id: str, wanted: set[str]) -> set[str]:
        """Which of ``wanted`` are still active, from the application's active runs.

        The application may hold many more active runs than this worker's (other users'),
        so paging stops once the pages read are as many as the runs still unseen: each
        of those then costs one ``GetJobRun``, and a check never costs more than twice
        reading every run.
        """
        found: set[str] = set()
        token: str | None = None
        pages = 0
        while True:
            request: dict[str, Any] = {
                "applicationId": application_id,
                "states": sorted(STATES.running),
                "maxResults": LIST_PAGE,
            }
            if token:
                request["nextToken"] = token
            response = await self.client.list_job_runs(**request)
            found.update(run["id"] for run in response.get("jobRuns", []) if run["id"] in wanted)
            pages += 1
            token = response.get("nextToken")
            if not token or pages >= len(wanted - found):
                return found

    def _status(self, run: Mapping[str, Any]) -> JobStatus:
        return STATES.status(
            run.get("state"),
            output=lambda: output(run),
            error=FAILED_ERROR,
            cause=lambda: failure(run),
        )

    async def stop(self, job: Job[JobRunSpec]) -> None:
        try:
            await self.client.cancel_job_run(
                applicationId=job.spec.application_id, jobRunId=job.run_id
            )
        except ClientError as error:
            if error_code(error) != "ValidationException":  # it had ended already
                raise


def _job_driver(value: Any) -> dict[str, Any]:
    """Exactly one of ``sparkSubmit`` or ``hive``, each member checked by name."""
    if value is None:
        raise RunnerInputError("JobDriver", "is required")
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in DRIVERS:
        raise RunnerInputError("JobDriver", "must be an object of one sparkSubmit or hive")
    [(kind, body)] = value.items()
    path = f"JobDriver.{kind}"
    if not isinstance(body, dict):
        raise RunnerInputError(path, "must be an object")
    members = {name: (how, longest) for name, how, longest in DRIVERS[kind]}
    for name in body:
        if name not in members:
            raise RunnerInputError(f"{path}.{name}", f"is not one of {', '.join(members)}")
    try:
        driver = {name: _member(body, name, *members[name]) for name in members}
    except RunnerInputError as error:
        raise RunnerInputError(f"{path}.{error.field}", error.problem) from None
    return {kind: {name: found for name, found in driver.items() if found is not None}}


def _member(body: Mapping[str, Any], name: str, how: str, longest: int) -> Any:
    if how != "list":
        return Fields(body).text(name, required=how == "required", max_length=longest)
    if body.get(name) == []:  # no arguments: the API allows an empty list
        return []
    return Fields(body).string_list(name, longest)


def _overrides(value: Any) -> dict[str, Any] | None:
    """Passed through as given, once the API model's validator accepts it (a request
    botocore refuses would fail every start the same way)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RunnerInputError("ConfigurationOverrides", "must be an object")
    report = ParamValidator().validate(value, _model().shape_for("ConfigurationOverrides"))
    if report.has_errors():
        raise RunnerInputError("ConfigurationOverrides", report.generate_report())
    return value


@functools.cache
def _model() -> Any:
    return botocore.session.get_session().get_service_model("emr-serverless")


def _check_tags(tags: Mapping[str, str]) -> None:
    if len(tags) > MAX_TAGS:
        raise RunnerInputError("Tags", f"must hold at most {MAX_TAGS} tags")
    for key, value in tags.items():
        if not 1 <= len(key) <= 128 or len(value) > 256:
            raise RunnerInputError(f"Tags.{key[:64]}", "keys are 1-128 characters, values 256")


def output(run: Mapping[str, Any]) -> dict[str, Any]:
    """The task output: the run, its outcome, and the resources it used and was billed."""
    result: dict[str, Any] = {
        "EmrServerlessApplicationId": run.get("applicationId"),
        "EmrServerlessJobRunId": run.get("jobRunId"),
        "EmrServerlessJobRunArn": run.get("arn"),
        "EmrServerlessJobRunName": run.get("name"),
        "EmrServerlessJobRunState": run.get("state"),
        "EmrServerlessStateDetails": run.get("stateDetails") or "",
        "EmrServerlessReleaseLabel": run.get("releaseLabel"),
        "EmrServerlessCreatedAt": _iso(run.get("createdAt")),
        "EmrServerlessUpdatedAt": _iso(run.get("updatedAt")),
        "EmrServerlessStartedAt": _iso(run.get("startedAt")),
        "EmrServerlessEndedAt": _iso(run.get("endedAt")),
        "EmrServerlessTotalExecutionDurationSeconds": run.get("totalExecutionDurationSeconds"),
    }
    for name, key in (
        ("totalResourceUtilization", "EmrServerlessTotalResourceUtilization"),
        ("billedResourceUtilization", "EmrServerlessBilledResourceUtilization"),
    ):
        if run.get(name):
            result[key] = dict(run[name])
    return result


def failure(run: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "emrserverless_application_id": run.get("applicationId"),
        "emrserverless_job_run_id": run.get("jobRunId"),
        "emrserverless_job_run_name": run.get("name"),
        "emrserverless_job_run_state": run.get("state"),
        "emrserverless_state_details": run.get("stateDetails") or "",
    }


def _iso(value: Any) -> str | None:
    return iso(value) if isinstance(value, datetime) else None


async def build(context: RunnerContext[EmrServerlessOptions]) -> EmrServerlessJobRunner:
    return EmrServerlessJobRunner(await context.client("emr-serverless"), context.options)


_APPLICATION = (
    "arn:${AWS::Partition}:emr-serverless:${AWS::Region}:${AWS::AccountId}"
    ":/applications/${EmrServerlessApplicationId}"
)
RUNNER = RunnerDefinition(
    name="emrserverless",
    title="EmrServerless",
    description="runs an EMR Serverless job run (Spark or Hive) and waits for it",
    build=build,
    options=EmrServerlessOptions,
    permissions=(
        # StartJobRun and ListJobRuns act on the application, the others on its runs.
        Permission(
            ("emr-serverless:StartJobRun", "emr-serverless:ListJobRuns"),
            (_APPLICATION,),
        ),
        Permission(
            ("emr-serverless:GetJobRun", "emr-serverless:CancelJobRun"),
            (f"{_APPLICATION}/jobruns/*",),
        ),
        # A run's execution role is passed to EMR Serverless at its start.
        Permission(("iam:PassRole",), ("${EmrServerlessExecutionRoleArn}",)),
    ),
    parameters=(
        DeployParameter(
            "EmrServerlessApplicationId",
            "the EMR Serverless application job runs may use, and their default",
            option="emrserverless_application_id",
        ),
        DeployParameter(
            "EmrServerlessExecutionRoleArn",
            "the execution role job runs may pass to EMR Serverless, and their default",
            option="emrserverless_execution_role_arn",
        ),
    ),
    states=STATES,
)
