"""Athena query executions as AWS runs them.

What moto lacks and this adds (Amazon Athena API reference):
- ``ClientRequestToken`` is idempotent: "If another StartQueryExecution request is
  received, the same response is returned and another query is not created. An error is
  returned if a parameter, such as QueryString, has changed." (moto starts a new query);
- ``BatchGetQueryExecution`` (not in moto): 1 to 50 ids, unknown ones reported in
  ``UnprocessedQueryExecutionIds``;
- a query's state follows a wall-clock timeline chosen per query text
  (``RunBehaviour``): QUEUED, RUNNING, then SUCCEEDED / FAILED (with ``AthenaError`` and
  ``StateChangeReason``) / CANCELLED; explicit phases can show a transient error
  ("For queries that experience certain transient errors, the state transitions from
  RUNNING back to QUEUED. The FAILED state is always terminal with no automatic retry",
  ``QueryExecutionStatus``);
- statistics that follow the timeline, and ``InvalidRequestException`` for unknown
  query and named-query ids;
- a query with no result location, neither its own nor its workgroup's, is refused
  (``ResultConfiguration.OutputLocation``: "If none of them is set, Athena issues an
  error that no output location is provided"; moto runs it);
- "Athena Query State Change" events on the default EventBridge bus as a query
  "transitions states" ("Monitor Athena query events with EventBridge"): QUEUED, RUNNING,
  then SUCCEEDED / FAILED / CANCELLED, each when it happens (``service_events``), with
  a growing ``sequenceNumber``.
"""

from __future__ import annotations

import functools
import json
import time
from typing import Any

from moto.athena.models import AthenaBackend, Execution
from moto.athena.responses import AthenaResponse
from moto.core.exceptions import JsonRESTError

from runners.local import service_events
from runners.local.service_events import ServiceEvent
from runners.local.timeline import RunBehaviour, Timeline

MAX_BATCH = 50
_DDL_PREFIXES = ("ALTER", "CREATE", "DESCRIBE", "DROP", "MSCK", "SHOW")


class InvalidRequestException(JsonRESTError):  # type: ignore[misc]
    """Athena's client error, as its JSON protocol carries it (moto's does not parse)."""

    code = 400

    def __init__(self, message: str) -> None:
        super().__init__("InvalidRequestException", message)


class AthenaQueryBehaviours:
    """Which ``RunBehaviour`` a new query follows, by a fragment of its text."""

    def __init__(self) -> None:
        self.default = RunBehaviour()
        self._rules: list[tuple[str, RunBehaviour]] = []

    def add(self, query_contains: str, behaviour: RunBehaviour) -> None:
        """Later rules win over earlier ones."""
        self._rules.insert(0, (query_contains, behaviour))

    def for_query(self, query: str) -> RunBehaviour:
        return next((b for fragment, b in self._rules if fragment in query), self.default)

    def clear(self) -> None:
        self.default = RunBehaviour()
        self._rules.clear()


BEHAVIOURS = AthenaQueryBehaviours()


class EmulatedQueryExecution(Execution):  # type: ignore[misc]
    """A moto query execution whose state is read off its timeline."""

    timeline: Timeline
    behaviour: RunBehaviour

    @property
    def status(self) -> str:
        return self.timeline.state()

    @status.setter
    def status(self, value: str) -> None:
        self.timeline.stop(value)

    def advance(self) -> None:
        """Reads do not move the query; the clock does."""


def _not_found(query_execution_id: str) -> InvalidRequestException:
    return InvalidRequestException(f"QueryExecution {query_execution_id} was not found")


def _client_tokens(backend: AthenaBackend) -> dict[str, tuple[str, str]]:
    """Token -> (query id, request fingerprint); lives on the backend so a reset clears it."""
    tokens: dict[str, tuple[str, str]] = backend.__dict__.setdefault("_client_tokens", {})
    return tokens


def start_query_execution(self: AthenaResponse) -> str:
    backend: AthenaBackend = self.athena_backend
    query = self._get_param("QueryString")
    context = self._get_param("QueryExecutionContext")
    config = self._get_param("ResultConfiguration")
    workgroup = self._get_param("WorkGroup")
    parameters = self._get_param("ExecutionParameters")
    token = self._get_param("ClientRequestToken")
    if workgroup and not backend.get_work_group(workgroup):
        raise InvalidRequestException(f"WorkGroup {workgroup} does not exist")
    if not _output_location(backend, config, workgroup):
        raise InvalidRequestException(
            "No output location provided. An output location is required either through "
            "the Workgroup result configuration setting or as an API input."
        )
    fingerprint = json.dumps([query, context, config, workgroup, parameters], sort_keys=True)
    tokens = _client_tokens(backend)
    if token and token in tokens:
        query_id, first_fingerprint = tokens[token]
        if fingerprint != first_fingerprint:
            raise InvalidRequestException(
                "ClientRequestToken was used before with different request parameters"
            )
        return json.dumps({"QueryExecutionId": query_id})
    execution = _start(backend, query, context, config, workgroup, parameters)
    if token:
        tokens[token] = (execution.id, fingerprint)
    return json.dumps({"QueryExecutionId": execution.id})


def _output_location(
    backend: AthenaBackend, config: dict[str, Any] | None, workgroup: str | None
) -> str | None:
    """The query's result location, or its workgroup's."""
    group = backend.work_groups.get(workgroup or "primary")
    configured = (group.configuration or {}).get("ResultConfiguration", {}) if group else {}
    location: str | None = (config or {}).get("OutputLocation") or configured.get("OutputLocation")
    return location


def _start(
    backend: AthenaBackend,
    query: str,
    context: dict[str, Any] | None,
    config: dict[str, Any] | None,
    workgroup: str | None,
    parameters: list[str] | None,
) -> EmulatedQueryExecution:
    execution = EmulatedQueryExecution(
        query=query,
        context=context,
        config=config,
        workgroup=backend.work_groups.get(workgroup),
        execution_parameters=parameters,
    )
    execution.behaviour = BEHAVIOURS.for_query(query)
    execution.timeline = execution.behaviour.timeline("QUEUED")
    backend.executions[execution.id] = execution
    service_events.EVENTS.watch(
        execution.timeline,
        functools.partial(_query_state_change, execution, backend.account_id, backend.region_name),
    )
    backend._process_ddl(query, context)
    backend._store_predefined_query_results(execution.id)
    return execution


def _query_state_change(
    execution: EmulatedQueryExecution,
    account: str,
    region: str,
    index: int,
    changes: list[tuple[float, str]],
) -> ServiceEvent:
    """The "Athena Query State Change" of the query's ``index``-th state (from 0).

    The reference's example (a SUCCEEDED query after RUNNING) has ``sequenceNumber``
    "3": QUEUED is 1, RUNNING 2. The first event (QUEUED) has no ``previousState``.
    """
    at, state = changes[index]
    detail: dict[str, Any] = {
        "versionId": "0",
        "currentState": state,
        "statementType": statement_type(execution.query),
        "queryExecutionId": execution.id,
        "workgroupName": execution.workgroup.name if execution.workgroup else "primary",
        "sequenceNumber": str(index + 1),
    }
    if index > 0:
        detail["previousState"] = changes[index - 1][1]
    if state == "FAILED":
        detail["athenaError"] = {
            "errorCategory": 2.0,
            "errorType": 1000.0,
            "errorMessage": execution.behaviour.error_message or "Query failed",
            "retryable": False,
        }
    return ServiceEvent(
        account, region, "aws.athena", service_events.ATHENA_QUERY_STATE_CHANGE, detail, at
    )


def statement_type(query: str) -> str:
    """``StatementType``: DDL for the statements that define or describe, else DML."""
    return "DDL" if query.upper().startswith(_DDL_PREFIXES) else "DML"


def get_query_execution(self: AthenaResponse) -> str:
    query_id = self._get_param("QueryExecutionId")
    execution = self.athena_backend.executions.get(query_id)
    if not isinstance(execution, EmulatedQueryExecution):
        raise _not_found(query_id)
    return json.dumps({"QueryExecution": query_execution(execution)})


def batch_get_query_execution(self: AthenaResponse) -> str:
    query_ids: list[str] = self._get_param("QueryExecutionIds") or []
    if not 1 <= len(query_ids) <= MAX_BATCH:
        raise InvalidRequestException(f"QueryExecutionIds must hold 1 to {MAX_BATCH} ids")
    executions = self.athena_backend.executions
    found, unprocessed = [], []
    for query_id in query_ids:
        execution = executions.get(query_id)
        if isinstance(execution, EmulatedQueryExecution):
            found.append(query_execution(execution))
        else:
            unprocessed.append(
                {
                    "QueryExecutionId": query_id,
                    "ErrorCode": "INVALID_INPUT",
                    "ErrorMessage": str(_not_found(query_id).message),
                }
            )
    return json.dumps({"QueryExecutions": found, "UnprocessedQueryExecutionIds": unprocessed})


def stop_query_execution(self: AthenaResponse) -> str:
    query_id = self._get_param("QueryExecutionId")
    execution = self.athena_backend.executions.get(query_id)
    if not isinstance(execution, EmulatedQueryExecution):
        raise _not_found(query_id)
    execution.timeline.stop("CANCELLED")
    return "{}"


def query_execution(execution: EmulatedQueryExecution) -> dict[str, Any]:
    """The ``QueryExecution`` structure, read at one instant."""
    now = time.time()
    timeline = execution.timeline
    state = timeline.state(now)
    status: dict[str, Any] = {"State": state, "SubmissionDateTime": timeline.started_at}
    completed_at = timeline.completed_at(now)
    if completed_at is not None:
        status["CompletionDateTime"] = completed_at
    if state == "FAILED":
        message = execution.behaviour.error_message or "Query failed"
        status["StateChangeReason"] = message
        status["AthenaError"] = {
            "ErrorCategory": 2,
            "ErrorType": 1000,
            "Retryable": False,
            "ErrorMessage": message,
        }
    running_ms = int(timeline.seconds_in("RUNNING", now) * 1000)
    queued_ms = int(timeline.seconds_in("QUEUED", now) * 1000)
    succeeded = state == "SUCCEEDED"
    result: dict[str, Any] = {
        "QueryExecutionId": execution.id,
        "Query": execution.query,
        "StatementType": statement_type(execution.query),
        "ResultConfiguration": execution.config or {},
        "QueryExecutionContext": execution.context or {},
        "Status": status,
        "Statistics": {
            "EngineExecutionTimeInMillis": running_ms,
            "DataScannedInBytes": (
                execution.behaviour.metrics.get("DataScannedInBytes", 0) if succeeded else 0
            ),
            "TotalExecutionTimeInMillis": running_ms + queued_ms,
            "QueryQueueTimeInMillis": queued_ms,
        },
        "WorkGroup": execution.workgroup.name if execution.workgroup else "primary",
        "EngineVersion": {
            "SelectedEngineVersion": "AUTO",
            "EffectiveEngineVersion": "Athena engine version 3",
        },
    }
    if execution.execution_parameters is not None:
        result["ExecutionParameters"] = execution.execution_parameters
    return result


_get_named_query = AthenaResponse.get_named_query


def get_named_query(self: AthenaResponse) -> Any:
    """An unknown id answers InvalidRequestException (moto fails with HTTP 500)."""
    named_query_id = self._get_param("NamedQueryId")
    if self.athena_backend.get_named_query(named_query_id) is None:
        raise InvalidRequestException(f"NamedQuery {named_query_id} was not found")
    return _get_named_query(self)


def install() -> None:
    AthenaResponse.get_named_query = get_named_query
    AthenaResponse.start_query_execution = start_query_execution
    AthenaResponse.get_query_execution = get_query_execution
    AthenaResponse.batch_get_query_execution = batch_get_query_execution
    AthenaResponse.stop_query_execution = stop_query_execution
