"""Amazon Redshift Data API statements: run SQL on a cluster or a serverless workgroup
and wait for it, as one Task state (Step Functions has no ``.sync`` for the Data API).

Idempotency: the task's key is the statement's ``ClientToken``, so a repeated start
returns the first statement. Values reach SQL only as named ``Parameters`` (``:name``).
Checks: a few statements are described one by one; many are found among the active
statements (``ListStatements`` by status, 100 a page), and only those no longer active
are described, for their result.
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
from runners.engine.runner import RUNNING, Job, JobStatus, Runner, TaskStart
from runners.engine.service import Refusals, StateTable, iso
from runners.errors import ConfigError, RunnerInputError
from runners.retry import error_code

STATES = StateTable(
    "redshift-data",
    "StatementStatusString",  # a statement's states (StatusString adds the filter ALL)
    running={"SUBMITTED", "PICKED", "STARTED"},
    succeeded={"FINISHED"},
    failed={"FAILED", "ABORTED"},
)
FAILED_ERROR = "RedshiftStatementFailedError"
REFUSALS = Refusals(
    try_later={
        "ActiveStatementsExceededException": "RedshiftActiveStatementsExceededError",
        "ActiveSessionsExceededException": "RedshiftActiveStatementsExceededError",
    },
    input_errors={"ValidationException": "$", "ResourceNotFoundException": "$"},
    failure="RedshiftStatementStartError",
)
MAX_SQLS = 40  # BatchExecuteStatement
MAX_SQL_CHARS = 100_000  # the Data API's largest statement (100 KB)
LIST_PAGE = 100  # ListStatements' largest page
# Up to this many statements are described one by one; more are found by listing the
# active ones (three statuses, usually one page each).
DESCRIBE_AT_MOST = 3
DESCRIBE_CONCURRENCY = 10


@dataclass(frozen=True)
class StatementSpec:
    sqls: tuple[str, ...]
    batch: bool
    database: str
    cluster_identifier: str | None = None
    workgroup_name: str | None = None
    secret_arn: str | None = None
    db_user: str | None = None
    parameters: tuple[tuple[str, str], ...] = ()
    statement_name: str | None = None

    def start_request(self, key: str) -> dict[str, Any]:
        request: dict[str, Any] = {"Database": self.database, "ClientToken": key}
        if self.batch:
            request["Sqls"] = list(self.sqls)
        else:
            request["Sql"] = self.sqls[0]
        optional = {
            "ClusterIdentifier": self.cluster_identifier,
            "WorkgroupName": self.workgroup_name,
            "SecretArn": self.secret_arn,
            "DbUser": self.db_user,
            "StatementName": self.statement_name,
        }
        request.update({name: value for name, value in optional.items() if value})
        if self.parameters:
            request["Parameters"] = [{"name": n, "value": v} for n, v in self.parameters]
        return request


@dataclass(frozen=True)
class RedshiftOptions:
    """Defaults for statements whose input does not say."""

    redshift_database: str | None = None
    redshift_cluster_identifier: str | None = None
    redshift_workgroup: str | None = None
    redshift_secret_arn: str | None = None
    redshift_db_user: str | None = None

    def __post_init__(self) -> None:
        if self.redshift_cluster_identifier and self.redshift_workgroup:
            raise ConfigError(
                "redshift_workgroup: give it or redshift_cluster_identifier, not both"
            )


class RedshiftStatementRunner(Runner[StatementSpec]):
    name = "redshift"
    idempotent_start = True  # ClientToken: a repeated start returns the first statement
    refusals = REFUSALS

    def __init__(self, client: Any, defaults: RedshiftOptions | None = None) -> None:
        self.client = client
        self.defaults = defaults or RedshiftOptions()

    def parse(self, document: Mapping[str, Any]) -> StatementSpec:
        fields, defaults = Fields(document), self.defaults
        sql = fields.text("Sql", max_length=MAX_SQL_CHARS)
        sqls = fields.string_list("Sqls", MAX_SQLS)
        if (sql is None) == (sqls is None):
            raise RunnerInputError("Sql", "give Sql (one statement) or Sqls (a batch)")
        for index, text in enumerate(sqls or []):
            if not text.strip() or len(text) > MAX_SQL_CHARS:
                raise RunnerInputError(
                    f"Sqls[{index}]", "must be SQL text of 100,000 characters at most"
                )
        cluster = fields.text("ClusterIdentifier", max_length=63)
        workgroup = fields.text("WorkgroupName", max_length=128)
        if cluster and workgroup:
            raise RunnerInputError("WorkgroupName", "give it or ClusterIdentifier, not both")
        if not cluster and not workgroup:
            cluster = defaults.redshift_cluster_identifier
            workgroup = defaults.redshift_workgroup
        if not cluster and not workgroup:
            raise RunnerInputError("ClusterIdentifier", "is required (or WorkgroupName)")
        database = fields.text("Database", max_length=127) or defaults.redshift_database
        if not database:
            raise RunnerInputError("Database", "is required")
        return StatementSpec(
            sqls=(sql,) if sql is not None else tuple(sqls or ()),
            batch=sqls is not None,
            database=database,
            cluster_identifier=cluster,
            workgroup_name=workgroup,
            secret_arn=fields.text("SecretArn", max_length=2048) or defaults.redshift_secret_arn,
            db_user=fields.text("DbUser", max_length=128) or defaults.redshift_db_user,
            parameters=tuple(_parameters(fields)),
            statement_name=fields.text("StatementName", max_length=500),
        )

    def describe(self, spec: StatementSpec) -> dict[str, str]:
        target = spec.cluster_identifier or spec.workgroup_name or ""
        return {"redshift_database": spec.database, "redshift_target": target}

    async def start(self, spec: StatementSpec, task: TaskStart) -> str:
        request = spec.start_request(task.key)
        if spec.batch:
            response = await self.client.batch_execute_statement(**request)
        else:
            response = await self.client.execute_statement(**request)
        return str(response["Id"])

    async def check(self, jobs: Sequence[Job[StatementSpec]]) -> Mapping[str, JobStatus]:
        ids = [job.run_id for job in jobs]
        active = await self._active() if len(ids) > DESCRIBE_AT_MOST else set()
        limit = asyncio.Semaphore(DESCRIBE_CONCURRENCY)

        async def describe(statement_id: str) -> tuple[str, JobStatus]:
            async with limit:
                answer = await self.client.describe_statement(Id=statement_id)
            return statement_id, self._status(answer)

        described = await asyncio.gather(*(describe(i) for i in ids if i not in active))
        return {**dict.fromkeys(active & set(ids), RUNNING), **dict(described)}

    async def _active(self) -> set[str]:
        """Ids of the role's statements still running, whatever their database."""
        found: set[str] = set()
        for status in sorted(STATES.running):
            token: str | None = None
            while True:
                request: dict[str, Any] = {"Status": status, "MaxResults": LIST_PAGE}
                if token:
                    request["NextToken"] = token
                response = await self.client.list_statements(**request)
                found.update(item["Id"] for item in response.get("Statements", []))
                token = response.get("NextToken")
                if not token:
                    break
        return found

    def _status(self, statement: Mapping[str, Any]) -> JobStatus:
        return STATES.status(
            statement.get("Status"),
            output=lambda: output(statement),
            error=FAILED_ERROR,
            cause=lambda: failure(statement),
        )

    async def stop(self, job: Job[StatementSpec]) -> None:
        try:
            await self.client.cancel_statement(Id=job.run_id)
        except ClientError as error:
            if error_code(error) != "ValidationException":  # it had finished already
                raise


def _parameters(fields: Fields) -> list[tuple[str, str]]:
    values = fields.string_map("Parameters")
    for name, value in values.items():
        if not name.replace("_", "").isalnum() or not name.isascii():
            raise RunnerInputError(f"Parameters.{name}", "names are letters, digits and _")
        if not value:
            raise RunnerInputError(f"Parameters.{name}", "must not be empty")
    return sorted(values.items())


def output(statement: Mapping[str, Any]) -> dict[str, Any]:
    """The task output: the statement, its outcome and the size of its result."""
    result: dict[str, Any] = {
        "RedshiftStatementId": statement["Id"],
        "RedshiftStatementStatus": statement.get("Status"),
        "RedshiftDatabase": statement.get("Database"),
        "RedshiftClusterIdentifier": statement.get("ClusterIdentifier"),
        "RedshiftWorkgroupName": statement.get("WorkgroupName"),
        "RedshiftHasResultSet": statement.get("HasResultSet", False),
        "RedshiftResultRows": statement.get("ResultRows", -1),
        "RedshiftResultSize": statement.get("ResultSize", -1),
        "RedshiftDurationSeconds": _seconds(statement.get("Duration")),
        "RedshiftCreatedAt": _iso(statement.get("CreatedAt")),
        "RedshiftUpdatedAt": _iso(statement.get("UpdatedAt")),
    }
    if statement.get("SubStatements"):
        result["RedshiftSubStatements"] = [
            {
                "Id": sub["Id"],
                "Status": sub.get("Status"),
                "HasResultSet": sub.get("HasResultSet", False),
                "ResultRows": sub.get("ResultRows", -1),
                "DurationSeconds": _seconds(sub.get("Duration")),
                **({"Error": sub["Error"]} if sub.get("Error") else {}),
            }
            for sub in statement["SubStatements"]
        ]
    return result


def failure(statement: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "redshift_statement_id": statement["Id"],
        "redshift_statement_status": statement.get("Status"),
        "redshift_statement_error": statement.get("Error", ""),
        "redshift_database": statement.get("Database"),
        "redshift_target": statement.get("ClusterIdentifier") or statement.get("WorkgroupName"),
    }


def _seconds(nanoseconds: Any) -> float | None:
    return (
        round(nanoseconds / 1e9, 3) if isinstance(nanoseconds, int) and nanoseconds >= 0 else None
    )


def _iso(value: Any) -> str | None:
    return iso(value) if isinstance(value, datetime) else None


async def build(context: RunnerContext[RedshiftOptions]) -> RedshiftStatementRunner:
    return RedshiftStatementRunner(await context.client("redshift-data"), context.options)


_REGION = "${AWS::Region}:${AWS::AccountId}"
RUNNER = RunnerDefinition(
    name="redshift",
    title="Redshift",
    description="runs SQL through the Redshift Data API and waits for it",
    build=build,
    options=RedshiftOptions,
    permissions=(
        Permission(
            ("redshift-data:ExecuteStatement", "redshift-data:BatchExecuteStatement"),
            (
                f"arn:${{AWS::Partition}}:redshift:{_REGION}:cluster:${{RedshiftClusterIdentifier}}",
                f"arn:${{AWS::Partition}}:redshift-serverless:{_REGION}:workgroup/*",
            ),
        ),
        # These accept no resource ARN: the Data API limits them to the statements the
        # caller's role ran.
        Permission(
            (
                "redshift-data:DescribeStatement",
                "redshift-data:ListStatements",
                "redshift-data:CancelStatement",
            ),
            ("*",),
        ),
        # Temporary database credentials, which the Data API gets with the caller's rights.
        Permission(
            ("redshift:GetClusterCredentials", "redshift:GetClusterCredentialsWithIAM"),
            (
                f"arn:${{AWS::Partition}}:redshift:{_REGION}:dbname:${{RedshiftClusterIdentifier}}/*",
                f"arn:${{AWS::Partition}}:redshift:{_REGION}:dbuser:${{RedshiftClusterIdentifier}}/*",
            ),
        ),
        Permission(
            ("redshift-serverless:GetCredentials",),
            (f"arn:${{AWS::Partition}}:redshift-serverless:{_REGION}:workgroup/*",),
        ),
        Permission(
            ("secretsmanager:GetSecretValue",),
            (f"arn:${{AWS::Partition}}:secretsmanager:{_REGION}:secret:${{RedshiftSecretName}}-*",),
        ),
    ),
    parameters=(
        DeployParameter(
            "RedshiftClusterIdentifier",
            "the provisioned cluster statements may run on (none: serverless only)",
            "none",
        ),
        DeployParameter(
            "RedshiftSecretName",
            "the Secrets Manager secret with database credentials (none: IAM credentials)",
            "none",
        ),
        DeployParameter(
            "RedshiftDatabase", "default database; empty for none", "", "redshift_database"
        ),
        DeployParameter(
            "RedshiftWorkgroup",
            "default serverless workgroup; empty for none",
            "",
            "redshift_workgroup",
        ),
    ),
    states=STATES,
)
