"""Live progress of an execution, read from its history as Step Functions records it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class TaskRow:
    """One Task state as the summary shows it."""

    state: str
    kind: str = ""
    reference: str = ""
    result: str = ""
    seconds: float | None = None


@dataclass
class Follower:
    """Turns new history events into progress lines and summary rows."""

    sfn: Any
    execution_arn: str
    started: datetime | None = None
    ended: datetime | None = None
    status: str = "RUNNING"
    rows: dict[str, TaskRow] = field(default_factory=dict)
    _seen: int = 0
    _state_of: dict[int, str] = field(default_factory=dict)
    _entered: dict[str, datetime] = field(default_factory=dict)
    _outcome: dict[str, dict[str, Any]] = field(default_factory=dict)

    def poll(self) -> list[str]:
        """Lines for the events recorded since the last poll."""
        lines = []
        for event in self._new_events():
            line = self._describe(event)
            if line:
                lines.append(f"{self._offset(event['timestamp']):6.1f}s  {line}")
        return lines

    @property
    def duration(self) -> float:
        if self.started is None or self.ended is None:
            return 0.0
        return (self.ended - self.started).total_seconds()

    def _new_events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        request: dict[str, Any] = {"executionArn": self.execution_arn, "maxResults": 1000}
        while True:
            page = self.sfn.get_execution_history(**request)
            events.extend(page["events"])
            if not page.get("nextToken"):
                break
            request["nextToken"] = page["nextToken"]
        fresh = [event for event in events if event["id"] > self._seen]
        if fresh:
            self._seen = fresh[-1]["id"]
        return fresh

    def _offset(self, when: datetime) -> float:
        if self.started is None:
            self.started = when
        return (when - self.started).total_seconds()

    def _describe(self, event: dict[str, Any]) -> str | None:
        kind, event_id = event["type"], event["id"]
        if kind.endswith("StateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            self._state_of[event_id] = name
            self._entered[name] = event["timestamp"]
            return f"-> {name}"
        state = self._state_of.get(event.get("previousEventId", -1), "")
        self._state_of[event_id] = state
        if kind == "ActivitySucceeded":
            self._outcome[state] = json.loads(event["activitySucceededEventDetails"]["output"])
        elif kind in {"ActivityFailed", "ActivityTimedOut"}:
            details = next(value for key, value in event.items() if key.endswith("Details"))
            self._outcome[state] = {"error": details.get("error"), "cause": details.get("cause")}
            return f"x  {state:<32} {self._finish(state, event['timestamp'])}".rstrip()
        elif kind == "TaskSucceeded":
            self._outcome[state] = {"notified": True}
        elif kind.endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            return f"<- {name:<32} {self._finish(name, event['timestamp'])}".rstrip()
        elif kind == "ExecutionRedriven":
            self.status, self.ended = "RUNNING", None
            count = event["executionRedrivenEventDetails"]["redriveCount"]
            return f"execution redriven (redrive {count}): only unsuccessful states run again"
        elif kind.startswith("Execution") and kind != "ExecutionStarted":
            self.status = kind.removeprefix("Execution").upper()
            self.ended = event["timestamp"]
            return f"execution {self.status.lower()}"
        return None

    def _finish(self, state: str, exited: datetime) -> str:
        """A short account of what a Task state did, kept for the summary too."""
        outcome = self._outcome.pop(state, None)
        if outcome is None:
            return ""
        waited = (exited - self._entered.get(state, exited)).total_seconds()
        row = describe_outcome(state, outcome, waited)
        self.rows[state] = row
        return f"{row.kind:<8} {row.reference}  {row.result}".rstrip()


def describe_outcome(state: str, outcome: dict[str, Any], waited: float) -> TaskRow:
    """What a Task state's result says, whichever runner produced it."""
    for key, describe in _DESCRIBERS:
        if key in outcome:
            return describe(state, outcome, waited)
    return TaskRow(state, "task", "", "DONE", waited)


# The members of the runners' failure causes that carry the service's own message.
_CAUSE_MESSAGES = ("error_msg", "problem", "StateChangeReason", "failure_message")


def _failed(state: str, outcome: dict[str, Any], waited: float) -> TaskRow:
    cause = outcome.get("cause") or ""
    try:
        details = json.loads(cause)
    except ValueError:
        details = {}
    if isinstance(details, dict):  # the runners' causes carry the service's message
        cause = next(
            (str(v) for k, v in details.items() if k.endswith(_CAUSE_MESSAGES) and v),
            cause,
        )
    return TaskRow(state, "failed", _short(cause), outcome["error"], waited)


def _glue(state: str, outcome: dict[str, Any], _waited: float) -> TaskRow:
    return TaskRow(
        state,
        "glue",
        f"run {outcome['GlueJobRunId'][:16]}...",
        outcome["GlueJobRunState"],
        _between(outcome, "GlueJobStartedOn", "GlueJobCompletedOn"),
    )


def _athena(state: str, outcome: dict[str, Any], _waited: float) -> TaskRow:
    scanned = outcome.get("AthenaQueryDataScannedInBytes") or 0
    return TaskRow(
        state,
        "athena",
        f"query {outcome['AthenaQueryExecutionId'][:8]}... {scanned:,} B scanned",
        outcome["AthenaQueryExecutionState"],
        (outcome.get("AthenaQueryEngineExecutionTimeInMillis") or 0) / 1000,
    )


def _crawler(state: str, outcome: dict[str, Any], _waited: float) -> TaskRow:
    tables = (
        f"tables +{outcome['GlueCrawlerTablesCreated']} "
        f"~{outcome['GlueCrawlerTablesUpdated']} -{outcome['GlueCrawlerTablesDeleted']}"
    )
    return TaskRow(
        state,
        "crawler",
        f"{outcome['GlueCrawlerName']}, {tables}",
        outcome["GlueCrawlStatus"],
        outcome.get("GlueCrawlDurationSeconds"),
    )


def _dms(state: str, outcome: dict[str, Any], _waited: float) -> TaskRow:
    loaded = outcome.get("DmsTablesLoaded")
    tables = f", {loaded} tables loaded" if loaded is not None else ""
    return TaskRow(
        state,
        "dms",
        f"task {outcome['DmsReplicationTaskIdentifier']}{tables}",
        str(outcome.get("DmsStopReason") or outcome["DmsStatus"]).removeprefix("Stop Reason "),
        _between(outcome, "DmsStartedAt", "DmsStoppedAt"),
    )


def _emr_step(state: str, outcome: dict[str, Any], _waited: float) -> TaskRow:
    return TaskRow(
        state,
        "emrstep",
        f"step {outcome['EmrStepId']} on {outcome['EmrClusterId']}",
        outcome["EmrStepState"],
        _between(outcome, "EmrStepStartedAt", "EmrStepEndedAt"),
    )


def _emr_serverless(state: str, outcome: dict[str, Any], _waited: float) -> TaskRow:
    return TaskRow(
        state,
        "emr-sls",
        f"run {outcome['EmrServerlessJobRunId'][:16]}...",
        outcome["EmrServerlessJobRunState"],
        outcome.get("EmrServerlessTotalExecutionDurationSeconds"),
    )


def _redshift(state: str, outcome: dict[str, Any], _waited: float) -> TaskRow:
    rows = outcome.get("RedshiftResultRows")
    counted = f", {rows:,} rows" if isinstance(rows, int) and rows >= 0 else ""
    return TaskRow(
        state,
        "redshift",
        f"statement {outcome['RedshiftStatementId'][:8]}...{counted}",
        outcome["RedshiftStatementStatus"],
        outcome.get("RedshiftDurationSeconds"),
    )


def _arrival(state: str, outcome: dict[str, Any], waited: float) -> TaskRow:
    return TaskRow(
        state,
        "s3wait",
        f"{outcome['S3Key']} ({outcome.get('S3ObjectSize') or 0:,} B)",
        "ARRIVED",
        waited,
    )


def _notification(state: str, _outcome: dict[str, Any], waited: float) -> TaskRow:
    return TaskRow(state, "sns", "failure notification", "PUBLISHED", waited)


_DESCRIBERS: list[tuple[str, Callable[[str, dict[str, Any], float], TaskRow]]] = [
    ("error", _failed),
    ("GlueJobRunId", _glue),
    ("AthenaQueryExecutionId", _athena),
    ("GlueCrawlerName", _crawler),
    ("DmsReplicationTaskArn", _dms),
    ("EmrStepId", _emr_step),
    ("EmrServerlessJobRunId", _emr_serverless),
    ("RedshiftStatementId", _redshift),
    ("S3Key", _arrival),
    ("notified", _notification),
]


def _between(outcome: dict[str, Any], start: str, end: str) -> float | None:
    if not outcome.get(start) or not outcome.get(end):
        return None
    return (
        datetime.fromisoformat(outcome[end]) - datetime.fromisoformat(outcome[start])
    ).total_seconds()


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summary_table(rows: list[TaskRow]) -> list[str]:
    headers = ("State", "Runner", "Job / query / object", "Result", "Time")
    cells = [
        (r.state, r.kind, r.reference, r.result, "" if r.seconds is None else f"{r.seconds:.1f} s")
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in [headers, *cells]) for i in range(len(headers))]
    lines = []
    for row in [headers, *cells]:
        lines.append(
            "  "
            + "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )
    return lines
