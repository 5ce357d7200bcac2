"""``RedriveExecution`` and execution status-change events for moto's interpreter.

moto 5.2.5 has neither. This module adds, against the AWS Step Functions API reference
(RedriveExecution, DescribeExecution, ListExecutions) and the EventBridge event
reference ("Step Functions Execution Status Change"):

- ``RedriveExecution`` restarts a ``FAILED``, ``ABORTED`` or ``TIMED_OUT`` Standard
  execution whose stop was less than 14 days ago, under the same ARN, with the same
  input and definition; states that completed are not run again (their recorded output
  and transition are replayed without history events), so a ``Parallel`` state runs
  again only its unsuccessful branches, and an execution that failed in a ``Fail``
  state fails there again. The history goes on with an ``ExecutionRedriven`` event.
  Other executions answer ``ExecutionNotRedrivable``; an unknown one
  ``ExecutionDoesNotExist``; a repeated ``clientToken`` returns the first answer.
- ``DescribeExecution`` carries ``redriveCount``, ``redriveDate``, ``redriveStatus``
  and ``redriveStatusReason``; ``ListExecutions`` items carry ``redriveCount`` and
  ``redriveDate``; a ``TIMED_OUT`` execution has its ``stopDate`` (moto leaves it out).
- ``GetExecutionHistory`` honours ``reverseOrder`` and pages by ``maxResults``;
- an execution that ends puts a "Step Functions Execution Status Change" event on the
  default bus (source ``aws.states``), so rules deliver it as on AWS.

Known difference: inside an inline ``Map`` iteration nothing is replayed (AWS reruns
only the failed iterations; here a failed ``Map`` runs every iteration again).
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from moto.core.exceptions import AWSError
from moto.events.models import events_backends
from moto.stepfunctions.parser.api import ExecutionStatus, HistoryEventType
from moto.stepfunctions.parser.asl.component.state.state import CommonStateField
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.eval.program_state import ProgramEnded, ProgramRunning
from moto.stepfunctions.parser.backend.execution import (
    BaseExecutionWorkerCommunication,
    Execution,
)
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
from moto.stepfunctions.responses import StepFunctionResponse

# "You can redrive executions ... within 14 days of the execution's stop"
REDRIVABLE_DAYS = 14
REDRIVABLE = {ExecutionStatus.FAILED, ExecutionStatus.ABORTED, ExecutionStatus.TIMED_OUT}
STATUS_CHANGE = "Step Functions Execution Status Change"


class ExecutionNotRedrivable(AWSError):  # type: ignore[misc]
    TYPE = "ExecutionNotRedrivable"


@dataclass(frozen=True)
class Completed:
    """What a state left behind when it completed: its output, and the state it went to
    (None: it ended its branch or the execution)."""

    output: Any
    next_state: str | None


@dataclass
class Ledger:
    """The completed states of one execution, keyed by (state name, visit number).
    State names are unique in a state machine, and each branch runs its states in
    order, so the n-th visit of a state is the same step in every attempt."""

    completed: dict[tuple[str, int], Completed] = field(default_factory=dict)
    visits: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def visit(self, state: str) -> tuple[tuple[str, int], Completed | None]:
        with self.lock:
            self.visits[state] = self.visits.get(state, 0) + 1
            key = (state, self.visits[state])
            return key, self.completed.get(key)

    def record(self, key: tuple[str, int], completed: Completed) -> None:
        with self.lock:
            self.completed[key] = completed

    def new_attempt(self) -> None:
        with self.lock:
            self.visits.clear()


@dataclass
class Redrives:
    """Redrive bookkeeping an execution carries."""

    count: int = 0
    date: datetime.datetime | None = None
    client_token: str | None = None


_LEDGERS: dict[str, Ledger] = {}
_LEDGERS_LOCK = threading.Lock()


def _ledger(env: Environment) -> Ledger | None:
    context = env.states.context_object.context_object_data
    if context.get("Map") is not None:
        return None  # iterations run concurrently: their visit order is not stable
    arn = context["Execution"]["Id"]
    with _LEDGERS_LOCK:
        return _LEDGERS.setdefault(arn, Ledger())


def forget_all() -> None:
    """The backend was reset: its executions are gone."""
    with _LEDGERS_LOCK:
        _LEDGERS.clear()


# Replaying completed states -------------------------------------------------------

_state_eval = CommonStateField.eval


def _eval_state(self: CommonStateField, env: Environment) -> None:
    ledger = _ledger(env)
    if ledger is None:
        _state_eval(self, env)
        return
    key, completed = ledger.visit(self.name)
    if completed is not None:
        env.states.reset(input_value=copy.deepcopy(completed.output))
        if completed.next_state is None:
            env.set_ended()
        else:
            env.next_state_name = completed.next_state
        return
    _state_eval(self, env)
    state = env.program_state()
    if isinstance(state, ProgramRunning):
        ledger.record(key, Completed(copy.deepcopy(env.states.get_input()), env.next_state_name))
    elif isinstance(state, ProgramEnded):
        ledger.record(key, Completed(copy.deepcopy(env.states.get_input()), None))


# RedriveExecution -----------------------------------------------------------------


class _RedriveWorker(ExecutionWorker):  # type: ignore[misc]
    """Runs the program again in a fresh environment that keeps the execution's
    history: it opens with ``ExecutionRedriven`` instead of ``ExecutionStarted``."""

    def __init__(self, previous: Environment, redrive_count: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._previous, self._redrive_count = previous, redrive_count

    def _execution_logic(self) -> None:
        program = self._get_evaluation_entrypoint()
        self.env = self._get_evaluation_environment()
        self.env.event_manager = self._previous.event_manager
        self.env.event_manager.add_event(
            context=self.env.event_history_context,
            event_type=HistoryEventType.ExecutionRedriven,
            event_details=EventDetails(
                executionRedrivenEventDetails={"redriveCount": self._redrive_count}
            ),
            update_source_event_id=False,
        )
        program.eval(self.env)
        self._execution_communication.terminated()


def redrives(execution: Execution) -> Redrives:
    found: Redrives | None = getattr(execution, "redrives", None)
    if found is None:
        found = Redrives()
        execution.redrives = found
    return found


def not_redrivable_reason(execution: Execution, now: datetime.datetime) -> str | None:
    """Why AWS would refuse to redrive this execution (None: it may be redriven)."""
    status = execution.exec_status
    if status not in REDRIVABLE:
        return f"Execution is {status.value} and cannot be redriven."
    if execution.sm_type != "STANDARD":
        return "Express executions cannot be redriven."
    stopped = execution.stop_date or now
    if now - stopped > datetime.timedelta(days=REDRIVABLE_DAYS):
        return "Execution redrivable period exceeded."
    return None


def redrive_execution(execution: Execution, client_token: str | None) -> datetime.datetime:
    state = redrives(execution)
    if client_token is not None and client_token == state.client_token and state.date:
        return state.date  # "If you don't specify a client token ... idempotent"
    now = datetime.datetime.now(tz=datetime.UTC)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # the API's precision
    reason = not_redrivable_reason(execution, now)
    if reason is not None:
        raise ExecutionNotRedrivable(reason)
    state.count, state.date, state.client_token = state.count + 1, now, client_token
    previous = execution.exec_worker.env
    with _LEDGERS_LOCK:
        _LEDGERS.setdefault(execution.exec_arn, Ledger()).new_attempt()
    worker = _RedriveWorker(
        previous,
        state.count,
        evaluation_details=execution.exec_worker._evaluation_details,
        exec_comm=execution._get_start_execution_worker_comm(),
        cloud_watch_logging_session=execution._cloud_watch_logging_session,
        activity_store=execution._activity_store,
    )
    execution.exec_worker = worker
    execution.exec_status, execution.stop_date = ExecutionStatus.RUNNING, None
    execution.error = execution.cause = execution.output = None
    worker.start()
    return now


def redrive_response(self: StepFunctionResponse) -> str:
    execution = self.stepfunction_backend.describe_execution(self._get_param("executionArn"))
    date = redrive_execution(execution, self._get_param("clientToken"))
    return json.dumps({"redriveDate": date.timestamp()})


# Descriptions ---------------------------------------------------------------------


def redrive_fields(execution: Execution) -> dict[str, Any]:
    state = redrives(execution)
    reason = not_redrivable_reason(execution, datetime.datetime.now(tz=datetime.UTC))
    fields: dict[str, Any] = {
        "redriveCount": state.count,
        "redriveStatus": "REDRIVABLE" if reason is None else "NOT_REDRIVABLE",
    }
    if reason is not None:
        fields["redriveStatusReason"] = reason
    if state.date is not None:
        fields["redriveDate"] = state.date
    return fields


def describe_fields(execution: Execution, description: dict[str, Any]) -> None:
    description.update(redrive_fields(execution))
    if execution.exec_status == ExecutionStatus.TIMED_OUT:
        description["stopDate"] = execution.stop_date


_list_executions = StepFunctionResponse.list_executions


def list_executions(self: StepFunctionResponse) -> Any:
    response = _list_executions(self)
    backend = self.stepfunction_backend
    for item in response.result["executions"]:
        execution = backend.describe_execution(item["executionArn"])
        state = redrives(execution)
        item["redriveCount"] = state.count
        if state.date is not None:
            item["redriveDate"] = state.date
        if execution.exec_status == ExecutionStatus.TIMED_OUT:
            item["stopDate"] = execution.stop_date
    return response


_get_execution_history = StepFunctionResponse.get_execution_history


def get_execution_history(self: StepFunctionResponse) -> Any:
    """GetExecutionHistory ``reverseOrder``: "Lists events in descending order of their
    timeStamp"; ``maxResults`` / ``nextToken`` page the events (moto ignores all three;
    without ``maxResults`` every event comes in one page, where AWS pages by 100)."""
    response = _get_execution_history(self)
    found = response.result["events"]
    if self._get_param("reverseOrder"):
        found.reverse()
    limit = self._get_int_param("maxResults")
    if limit:
        start = int(self._get_param("nextToken") or 0)
        response.result["events"] = found[start : start + limit]
        if start + limit < len(found):
            response.result["nextToken"] = str(start + limit)
    return response


# Status-change events -------------------------------------------------------------

_terminated = BaseExecutionWorkerCommunication.terminated


def _terminated_with_event(self: BaseExecutionWorkerCommunication) -> None:
    _terminated(self)
    # An event is best effort on AWS too; the execution has ended either way.
    with contextlib.suppress(Exception):
        _put_status_change(self.execution)


def status_change_detail(execution: Execution) -> dict[str, Any]:
    """The event's ``detail``, as the EventBridge reference shows it."""
    fields = redrive_fields(execution)
    output = execution.output
    return {
        "executionArn": execution.exec_arn,
        "stateMachineArn": execution.state_machine_arn,
        "name": execution.name,
        "status": execution.exec_status.value,
        "startDate": _millis(execution.start_date),
        "stopDate": _millis(execution.stop_date),
        "input": json.dumps(execution.input_data),
        "output": None if output is None else json.dumps(output),
        "inputDetails": {"included": True},
        "outputDetails": None if output is None else {"included": True},
        "error": execution.error,
        "cause": execution.cause,
        "redriveCount": fields["redriveCount"],
        "redriveDate": _millis(fields.get("redriveDate")),
        "redriveStatus": fields["redriveStatus"],
        "redriveStatusReason": fields.get("redriveStatusReason"),
    }


def _put_status_change(execution: Execution) -> None:
    backend = events_backends[execution.account_id][execution.region_name]
    backend.put_events(
        [
            {
                "Source": "aws.states",
                "DetailType": STATUS_CHANGE,
                "Detail": json.dumps(status_change_detail(execution)),
                "Resources": [execution.exec_arn],
                "EventBusName": "default",
            }
        ]
    )


def _millis(date: datetime.datetime | None) -> int | None:
    return None if date is None else int(date.timestamp() * 1000)


def install() -> None:
    CommonStateField.eval = _eval_state
    BaseExecutionWorkerCommunication.terminated = _terminated_with_event
    StepFunctionResponse.redrive_execution = redrive_response
    StepFunctionResponse.list_executions = list_executions
    StepFunctionResponse.get_execution_history = get_execution_history
