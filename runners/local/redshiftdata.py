"""Amazon Redshift Data API statements as AWS runs them.

What moto lacks and this adds (Amazon Redshift Data API reference):
- a statement's ``Status`` follows a wall-clock timeline chosen per SQL text
  (``RunBehaviour``): SUBMITTED, PICKED, STARTED, then FINISHED / FAILED (with
  ``Error``) / ABORTED (moto: STARTED forever);
- ``ClientToken`` makes ``ExecuteStatement`` idempotent ("A unique, case-sensitive
  identifier that you provide to ensure the idempotency of the request"): the same token
  returns the first statement (moto ignores it);
- ``WorkgroupName`` (serverless) as well as ``ClusterIdentifier``, one of them required;
  ``Database`` required; ``StatementName``;
- ``BatchExecuteStatement`` (not in moto): 1 to 40 SQL statements run in order, each a
  sub-statement ``<Id>:<n>`` in ``SubStatements``; the batch fails with the first
  sub-statement that fails;
- ``ListStatements`` (not in moto): filtered by ``Status`` ("By default, only finished
  statements are shown"; ``ALL`` for every status) and by a ``StatementName`` prefix,
  ``MaxResults`` up to 100, paged with ``NextToken``; newest first (the reference states
  no order, and runners relies on none);
- ``DescribeStatement`` figures that follow the timeline: ``Duration`` in nanoseconds,
  ``ResultRows``/``ResultSize`` (-1 until the statement finishes), ``HasResultSet``;
- ``CancelStatement`` aborts a statement that has not finished, and answers
  ``ValidationException`` for one that has ("Could not cancel a query that is already in
  FINISHED state").
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from moto.redshiftdata.exceptions import ResourceNotFoundException, ValidationException
from moto.redshiftdata.responses import RedshiftDataAPIServiceResponse

from runners.local.athena import AthenaQueryBehaviours
from runners.local.timeline import RunBehaviour, Timeline

MAX_BATCH = 40
MAX_PAGE = 100
FINAL = frozenset({"FINISHED", "FAILED", "ABORTED"})
# RunBehaviour speaks of every service's runs; these are the Data API's names.
_NAMES = {"SUCCEEDED": "FINISHED", "CANCELLED": "ABORTED"}
# Which RunBehaviour a new statement follows, by a fragment of its SQL (later rules win).
# metrics: ResultRows, ResultSize (bytes), HasResultSet (1 or 0).
BEHAVIOURS = AthenaQueryBehaviours()
_lock = threading.Lock()


@dataclass
class EmulatedStatement:
    id: str
    sqls: list[str]
    request: dict[str, Any]
    timelines: list[Timeline]
    behaviours: list[RunBehaviour]
    created_at: float = field(default_factory=time.time)
    batch: bool = False

    def sub_statuses(self, now: float) -> list[str]:
        """A batch runs its statements one after another; once one fails or is
        aborted, the rest are aborted."""
        statuses, stopped = [], False
        for timeline in self.timelines:
            state = "ABORTED" if stopped else timeline.state(now)
            stopped = stopped or state in ("FAILED", "ABORTED")
            statuses.append(state)
        return statuses

    def status(self, now: float) -> str:
        statuses = self.sub_statuses(now)
        for final in ("FAILED", "ABORTED"):
            if final in statuses:
                return final
        if all(state == "FINISHED" for state in statuses):
            return "FINISHED"
        return statuses[0] if statuses[0] in ("SUBMITTED", "PICKED") else "STARTED"

    def updated_at(self, now: float) -> float:
        return max(timeline.last_change_at(now) for timeline in self.timelines)


def _backend_statements(response: RedshiftDataAPIServiceResponse) -> dict[str, EmulatedStatement]:
    backend = response.redshiftdata_backend
    statements: dict[str, EmulatedStatement] = backend.__dict__.setdefault("_emulated", {})
    return statements


def _tokens(response: RedshiftDataAPIServiceResponse) -> dict[str, str]:
    backend = response.redshiftdata_backend
    tokens: dict[str, str] = backend.__dict__.setdefault("_client_tokens", {})
    return tokens


def _start(response: RedshiftDataAPIServiceResponse, sqls: list[str], batch: bool) -> str:
    cluster = response._get_param("ClusterIdentifier")
    workgroup = response._get_param("WorkgroupName")
    database = response._get_param("Database")
    if bool(cluster) == bool(workgroup):
        raise ValidationException("Either ClusterIdentifier or WorkgroupName must be specified")
    if not database:
        raise ValidationException("Database must be specified")
    token = response._get_param("ClientToken")
    with _lock:
        tokens = _tokens(response)
        if token and token in tokens:
            return tokens[token]
        behaviours = [BEHAVIOURS.for_query(sql) for sql in sqls]
        now = time.time()
        timelines = _timelines(behaviours, now)
        statement = EmulatedStatement(
            id=str(uuid.uuid4()),
            sqls=sqls,
            request={
                "ClusterIdentifier": cluster,
                "WorkgroupName": workgroup,
                "Database": database,
                "DbUser": response._get_param("DbUser"),
                "SecretArn": response._get_param("SecretArn"),
                "StatementName": response._get_param("StatementName"),
                "QueryParameters": response._get_param("Parameters"),
            },
            timelines=timelines,
            behaviours=behaviours,
            created_at=now,
            batch=batch,
        )
        _backend_statements(response)[statement.id] = statement
        if token:
            tokens[token] = statement.id
    return statement.id


def _timelines(behaviours: list[RunBehaviour], now: float) -> list[Timeline]:
    """Each statement of a batch starts when the one before it ends."""
    timelines, start = [], now
    for behaviour in behaviours:
        timeline = behaviour.timeline("SUBMITTED", started_at=start)
        if behaviour.phases is None:
            queued = min(0.1, behaviour.duration * 0.1)
            timeline.phases = [
                ("SUBMITTED", queued),
                ("PICKED", queued),
                ("STARTED", max(0.0, behaviour.duration - 2 * queued)),
            ]
        timeline.final_state = _NAMES.get(timeline.final_state, timeline.final_state)
        timelines.append(timeline)
        start += sum(seconds for _, seconds in timeline.phases)
    return timelines


def _statement(response: RedshiftDataAPIServiceResponse) -> EmulatedStatement:
    statement_id = str(response._get_param("Id") or "")
    statement = _backend_statements(response).get(statement_id.split(":", maxsplit=1)[0])
    if statement is None:
        raise ResourceNotFoundException()
    return statement


def _started(response: RedshiftDataAPIServiceResponse, statement_id: str) -> str:
    statement = _backend_statements(response)[statement_id]
    body = {
        "Id": statement.id,
        "CreatedAt": statement.created_at,
        "Database": statement.request["Database"],
    }
    for name in ("ClusterIdentifier", "WorkgroupName", "DbUser", "SecretArn"):
        if statement.request[name]:
            body[name] = statement.request[name]
    return json.dumps(body)


def execute_statement(self: RedshiftDataAPIServiceResponse) -> str:
    sql = self._get_param("Sql")
    if not sql:
        raise ValidationException("Sql must be specified")
    return _started(self, _start(self, [sql], batch=False))


def batch_execute_statement(self: RedshiftDataAPIServiceResponse) -> str:
    sqls = self._get_param("Sqls") or []
    if not 1 <= len(sqls) <= MAX_BATCH:
        raise ValidationException(f"Sqls must hold 1 to {MAX_BATCH} statements")
    return _started(self, _start(self, list(sqls), batch=True))


def describe_statement(self: RedshiftDataAPIServiceResponse) -> str:
    statement, now = _statement(self), time.time()
    if ":" in str(self._get_param("Id")):
        index = int(str(self._get_param("Id")).split(":")[1]) - 1
        return json.dumps(_sub_statement(statement, index, now))
    return json.dumps(description(statement, now))


def description(statement: EmulatedStatement, now: float) -> dict[str, Any]:
    """``DescribeStatement``'s answer at one instant."""
    status = statement.status(now)
    subs = [_sub_statement(statement, i, now) for i in range(len(statement.sqls))]
    finished = status == "FINISHED"
    result: dict[str, Any] = {
        "Id": statement.id,
        "Status": status,
        "CreatedAt": statement.created_at,
        "UpdatedAt": statement.updated_at(now),
        "Duration": sum(sub["Duration"] for sub in subs if sub["Duration"] > 0) or -1,
        "HasResultSet": subs[-1]["HasResultSet"] if finished else False,
        "ResultRows": subs[-1]["ResultRows"] if finished else -1,
        "ResultSize": subs[-1]["ResultSize"] if finished else -1,
        "RedshiftPid": 1073815778,
        "RedshiftQueryId": 0 if statement.batch else 5671,
        "Database": statement.request["Database"],
    }
    if statement.batch:
        result["SubStatements"] = subs
    else:
        result["QueryString"] = statement.sqls[0]
    errors = [sub["Error"] for sub in subs if sub.get("Error")]
    if errors:
        result["Error"] = errors[0]
    for name in ("ClusterIdentifier", "WorkgroupName", "DbUser", "SecretArn", "QueryParameters"):
        if statement.request[name]:
            result[name] = statement.request[name]
    return result


def _sub_statement(statement: EmulatedStatement, index: int, now: float) -> dict[str, Any]:
    if not 0 <= index < len(statement.sqls):
        raise ResourceNotFoundException()
    timeline, behaviour = statement.timelines[index], statement.behaviours[index]
    status = statement.sub_statuses(now)[index]
    finished = status == "FINISHED"
    sub: dict[str, Any] = {
        "Id": f"{statement.id}:{index + 1}",
        "Status": status,
        "QueryString": statement.sqls[index],
        "CreatedAt": statement.created_at,
        "UpdatedAt": timeline.last_change_at(now),
        "Duration": int(timeline.seconds_in("STARTED", now) * 1e9) if status in FINAL else -1,
        "HasResultSet": bool(behaviour.metrics.get("HasResultSet", 0)) if finished else False,
        "ResultRows": behaviour.metrics.get("ResultRows", 0) if finished else -1,
        "ResultSize": behaviour.metrics.get("ResultSize", 0) if finished else -1,
        "RedshiftQueryId": 5671 + index,
    }
    if status == "FAILED":
        sub["Error"] = behaviour.error_message or "ERROR: statement failed"
    return sub


def cancel_statement(self: RedshiftDataAPIServiceResponse) -> str:
    statement, now = _statement(self), time.time()
    status = statement.status(now)
    if status in FINAL:
        raise ValidationException(
            f"Could not cancel a query that is already in {status} state with ID: {statement.id}"
        )
    for timeline in statement.timelines:
        timeline.stop("ABORTED")
    return json.dumps({"Status": True})


def list_statements(self: RedshiftDataAPIServiceResponse) -> str:
    wanted = self._get_param("Status") or "FINISHED"
    prefix = self._get_param("StatementName") or ""
    page = int(self._get_param("MaxResults") or MAX_PAGE)
    if not 0 <= page <= MAX_PAGE:
        raise ValidationException(f"MaxResults must be between 0 and {MAX_PAGE}")
    page = page or MAX_PAGE
    start = int(self._get_param("NextToken") or 0)
    now = time.time()
    matching = [
        statement
        for statement in sorted(
            _backend_statements(self).values(), key=lambda s: s.created_at, reverse=True
        )
        if (statement.request["StatementName"] or "").startswith(prefix)
        and (wanted == "ALL" or statement.status(now) == wanted)
    ]
    listed = [_listed(statement, now) for statement in matching[start : start + page]]
    body: dict[str, Any] = {"Statements": listed}
    if start + page < len(matching):
        body["NextToken"] = str(start + page)
    return json.dumps(body)


def _listed(statement: EmulatedStatement, now: float) -> dict[str, Any]:
    item: dict[str, Any] = {
        "Id": statement.id,
        "Status": statement.status(now),
        "CreatedAt": statement.created_at,
        "UpdatedAt": statement.updated_at(now),
        "IsBatchStatement": statement.batch,
    }
    if statement.batch:
        item["QueryStrings"] = statement.sqls
    else:
        item["QueryString"] = statement.sqls[0]
    if statement.request["StatementName"]:
        item["StatementName"] = statement.request["StatementName"]
    return item


def install() -> None:
    response = RedshiftDataAPIServiceResponse
    response.execute_statement = execute_statement
    response.batch_execute_statement = batch_execute_statement
    response.describe_statement = describe_statement
    response.cancel_statement = cancel_statement
    response.list_statements = list_statements
