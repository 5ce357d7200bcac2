"""Athena queries: start once per task, check 50 per call, cancel on cancellation.

Idempotency: the task's key is the query's ``ClientRequestToken``, so a repeated start
returns the first query instead of running a second. Queries are parameterised with
``ExecutionParameters``; task input is never interpolated into SQL.
"""

from __future__ import annotations

import asyncio
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
from runners.engine.runner import Job, JobStatus, Runner, TaskStart
from runners.engine.service import EndEvents, Finish, Measure, Refusals, StateTable, iso
from runners.errors import RunnerError, RunnerInputError
from runners.logs import get_logger

STATES = StateTable(
    "athena",
    "QueryExecutionState",
    running={"QUEUED", "RUNNING"},
    succeeded={"SUCCEEDED"},
    failed={"FAILED", "CANCELLED"},
)
# "Monitor Athena query events with EventBridge": every state a query reaches.
END_EVENTS = EndEvents(
    "aws.athena",
    "Athena Query State Change",
    "currentState",
    frozenset({"SUCCEEDED", "FAILED", "CANCELLED"}),
    "queryExecutionId",
)
FAILED_ERROR = "AthenaQueryFailedError"
REFUSALS = Refusals(
    input_errors={"InvalidRequestException": "AthenaQueryString"},
    failure="AthenaQueryStartError",
)
ENCRYPTION_OPTIONS = ("SSE_S3", "SSE_KMS", "CSE_KMS")
BATCH = 50  # BatchGetQueryExecution takes at most 50 ids


@dataclass(frozen=True)
class AthenaQuerySpec:
    query_string: str | None = None
    named_query_id: str | None = None
    database: str | None = None
    catalog: str | None = None
    workgroup: str | None = None
    output_location: str | None = None
    encryption_option: str | None = None
    kms_key: str | None = None
    execution_parameters: list[str] | None = None


class AthenaQueryRunner(Runner[AthenaQuerySpec]):
    name = "athena"
    idempotent_start = True  # ClientRequestToken: a repeated start returns the first query
    refusals = REFUSALS
    end_events = END_EVENTS

    def __init__(
        self,
        athena: Any,
        default_output_location: str | None = None,
        default_workgroup: str | None = None,
    ) -> None:
        self.athena = athena
        self.default_output_location = default_output_location
        self.default_workgroup = default_workgroup
        self.log = get_logger(runner=self.name)

    def parse(self, document: Mapping[str, Any]) -> AthenaQuerySpec:
        fields = Fields(document)
        named = fields.text("AthenaNamedQuery", max_length=128)
        query = fields.text("AthenaQueryString", max_length=262_144)
        database = fields.text("AthenaDatabase", max_length=255)
        if named and query:
            raise RunnerInputError("AthenaNamedQuery", "give it or AthenaQueryString, not both")
        if not named and not query:
            raise RunnerInputError("AthenaQueryString", "is required (or AthenaNamedQuery)")
        if query and not database:
            raise RunnerInputError("AthenaDatabase", "is required with AthenaQueryString")
        output = fields.text("AthenaResultOutputLocation") or self.default_output_location
        if output is not None and not output.startswith("s3://"):
            raise RunnerInputError("AthenaResultOutputLocation", "must be an s3:// URI")
        encryption = fields.choice("AthenaResultEncryptionOption", ENCRYPTION_OPTIONS)
        kms_key = fields.text("AthenaResultKmsKey", max_length=2048)
        if encryption in {"SSE_KMS", "CSE_KMS"} and not kms_key:
            raise RunnerInputError("AthenaResultKmsKey", f"is required with {encryption}")
        parameters = fields.string_list("ExecutionParameters", 1000)
        for index, parameter in enumerate(parameters or []):
            problem = _not_one_value(parameter)
            if problem:
                raise RunnerInputError(f"ExecutionParameters[{index}]", problem)
        return AthenaQuerySpec(
            query_string=query,
            named_query_id=named,
            database=database,
            catalog=fields.text("AthenaCatalog", max_length=256),
            workgroup=fields.text("AthenaWorkGroup", max_length=128) or self.default_workgroup,
            output_location=output,
            encryption_option=encryption,
            kms_key=kms_key,
            execution_parameters=parameters,
        )

    def describe(self, spec: AthenaQuerySpec) -> dict[str, str]:
        if spec.named_query_id:
            return {"named_query": spec.named_query_id}
        return {"database": spec.database or ""}

    async def start(self, spec: AthenaQuerySpec, task: TaskStart) -> str:
        request = await self._start_request(spec, task.key)
        response = await self.athena.start_query_execution(**request)
        return str(response["QueryExecutionId"])

    def refused(self, spec: AthenaQuerySpec, error: ClientError) -> RunnerError:
        """A refused named query blames AthenaNamedQuery, not the query it stands for."""
        refusal = super().refused(spec, error)
        if isinstance(refusal, RunnerInputError) and spec.named_query_id:
            return RunnerInputError("AthenaNamedQuery", refusal.problem)
        return refusal

    async def _start_request(self, spec: AthenaQuerySpec, key: str) -> dict[str, Any]:
        query, database = spec.query_string, spec.database
        if spec.named_query_id:
            named = (await self.athena.get_named_query(NamedQueryId=spec.named_query_id))[
                "NamedQuery"
            ]
            query, database = named["QueryString"], named.get("Database")
        request: dict[str, Any] = {"QueryString": query, "ClientRequestToken": key}
        context = {
            name: value
            for name, value in (("Database", database), ("Catalog", spec.catalog))
            if value
        }
        if context:
            request["QueryExecutionContext"] = context
        result: dict[str, Any] = {}
        if spec.output_location:
            result["OutputLocation"] = spec.output_location
        if spec.encryption_option:
            result["EncryptionConfiguration"] = {"EncryptionOption": spec.encryption_option}
            if spec.kms_key:
                result["EncryptionConfiguration"]["KmsKey"] = spec.kms_key
        if result:
            request["ResultConfiguration"] = result
        if spec.workgroup:
            request["WorkGroup"] = spec.workgroup
        if spec.execution_parameters:
            request["ExecutionParameters"] = spec.execution_parameters
        return request

    async def check(self, jobs: Sequence[Job[AthenaQuerySpec]]) -> Mapping[str, JobStatus]:
        ids = [job.run_id for job in jobs]
        batches = [ids[i : i + BATCH] for i in range(0, len(ids), BATCH)]
        responses = await asyncio.gather(
            *(self.athena.batch_get_query_execution(QueryExecutionIds=batch) for batch in batches)
        )
        statuses: dict[str, JobStatus] = {}
        for response in responses:
            for execution in response.get("QueryExecutions", []):
                statuses[execution["QueryExecutionId"]] = self._status(execution)
            for unprocessed in response.get("UnprocessedQueryExecutionIds", []):
                self.log.warning(
                    "query not processed",
                    query_id=unprocessed.get("QueryExecutionId"),
                    error=unprocessed.get("ErrorMessage"),
                )
        return statuses

    def _status(self, execution: Mapping[str, Any]) -> JobStatus:
        """FAILED is final: "For queries that experience certain transient errors, the
        state transitions from RUNNING back to QUEUED. The FAILED state is always terminal
        with no automatic retry" (``QueryExecutionStatus``). ``AthenaError.Retryable`` in
        the cause tells a state machine whether resubmitting may help."""
        return STATES.status(
            execution.get("Status", {}).get("State"),
            output=lambda: output(execution),
            error=FAILED_ERROR,
            cause=lambda: output(execution),
            finish=lambda: finish(execution),
        )

    async def stop(self, job: Job[AthenaQuerySpec]) -> None:
        await self.athena.stop_query_execution(QueryExecutionId=job.run_id)


def output(execution: Mapping[str, Any]) -> dict[str, Any]:
    """The task output (and failure cause): the original sample's keys, ISO-8601 times,
    plus the result location and engine statistics."""
    status = execution.get("Status", {})
    statistics = execution.get("Statistics", {})
    result: dict[str, Any] = {
        "AthenaQueryString": execution.get("Query"),
        "AthenaQueryExecutionId": execution["QueryExecutionId"],
        "AthenaQueryExecutionState": status.get("State"),
        "AthenaQueryExecutionStateChangeReason": status.get("StateChangeReason", ""),
        "AthenaQuerySubmissionDateTime": iso(status.get("SubmissionDateTime")),
        "AthenaQueryCompletionDateTime": iso(status.get("CompletionDateTime")),
        "AthenaQueryEngineExecutionTimeInMillis": statistics.get("EngineExecutionTimeInMillis", 0),
        "AthenaQueryDataScannedInBytes": statistics.get("DataScannedInBytes", 0),
        "AthenaQueryTotalExecutionTimeInMillis": statistics.get("TotalExecutionTimeInMillis", 0),
        "AthenaQueryResultLocation": execution.get("ResultConfiguration", {}).get("OutputLocation"),
        "AthenaWorkGroup": execution.get("WorkGroup"),
    }
    error = status.get("AthenaError")
    if error:
        result["AthenaError"] = error
    return result


def finish(execution: Mapping[str, Any]) -> Finish:
    """When the query completed, and the bytes it scanned (what Athena bills)."""
    completed = execution.get("Status", {}).get("CompletionDateTime")
    ended_at = completed.timestamp() if isinstance(completed, datetime) else None
    scanned = execution.get("Statistics", {}).get("DataScannedInBytes")
    usage = () if scanned is None else (Measure("AthenaBytesScanned", float(scanned), "Bytes"),)
    return Finish(ended_at, usage)


def _not_one_value(parameter: str) -> str | None:
    """Why a parameter cannot be one value, or None. Athena places each parameter where
    its ``?`` stands ("help prevent SQL injection"); a statement separator or a comment
    outside quotes can only be an attempt to reach past that place."""
    quote: str | None = None
    index = 0
    while index < len(parameter):
        char = parameter[index]
        if quote:
            if char == quote:
                if parameter[index + 1 : index + 2] == quote:  # '' or "" inside quotes
                    index += 1
                else:
                    quote = None
        elif char in "'\"":
            quote = char
        elif char == ";":
            return "holds a statement separator (;) outside quotes"
        elif parameter.startswith(("--", "/*"), index):
            return "holds an SQL comment outside quotes"
        index += 1
    if quote:
        return f"has an unterminated {quote}-quoted text"
    return None


@dataclass(frozen=True)
class AthenaOptions:
    athena_output_location: str | None = None  # s3:// results for queries that set none
    athena_workgroup: str | None = None  # the workgroup for queries that set none


async def build(context: RunnerContext[AthenaOptions]) -> AthenaQueryRunner:
    return AthenaQueryRunner(
        await context.client("athena"),
        default_output_location=context.options.athena_output_location,
        default_workgroup=context.options.athena_workgroup,
    )


_ACCOUNT = "${AWS::Region}:${AWS::AccountId}"
RUNNER = RunnerDefinition(
    name="athena",
    title="Athena",
    description="runs an Athena query and waits for it",
    build=build,
    options=AthenaOptions,
    permissions=(
        Permission(
            (
                "athena:StartQueryExecution",
                "athena:GetQueryExecution",
                "athena:BatchGetQueryExecution",
                "athena:StopQueryExecution",
                "athena:GetNamedQuery",
            ),
            (f"arn:${{AWS::Partition}}:athena:{_ACCOUNT}:workgroup/${{AthenaWorkGroup}}",),
        ),
        # Queries read the Glue Data Catalog with the caller's permissions.
        Permission(
            ("glue:GetDatabase", "glue:GetTable", "glue:GetPartition", "glue:GetPartitions"),
            (
                f"arn:${{AWS::Partition}}:glue:{_ACCOUNT}:catalog",
                f"arn:${{AWS::Partition}}:glue:{_ACCOUNT}:database/*",
                f"arn:${{AWS::Partition}}:glue:{_ACCOUNT}:table/*/*",
            ),
        ),
        Permission(
            ("s3:GetBucketLocation", "s3:ListBucket"),
            (
                "arn:${AWS::Partition}:s3:::${AthenaResultsBucketName}",
                "arn:${AWS::Partition}:s3:::${AthenaDataBucketName}",
            ),
        ),
        Permission(
            ("s3:GetObject", "s3:PutObject"),
            ("arn:${AWS::Partition}:s3:::${AthenaResultsBucketName}/*",),
        ),
        Permission(("s3:GetObject",), ("arn:${AWS::Partition}:s3:::${AthenaDataBucketName}/*",)),
    ),
    parameters=(
        DeployParameter(
            "AthenaWorkGroup", "the workgroup queries run in", "primary", "athena_workgroup"
        ),
        DeployParameter("AthenaResultsBucketName", "the bucket query results are written to"),
        DeployParameter("AthenaDataBucketName", "the bucket the queried tables live in"),
    ),
    states=STATES,
    completion_events=END_EVENTS,
    function="athenarunner",
)
