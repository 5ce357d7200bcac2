"""Step Functions activity tasks for moto's state-machine interpreter.

moto's interpreter (taken from LocalStack) already knows the shape of an activity
``Task`` state, but moto never hands executions its activities, has no
``GetActivityTask``, and leaves several AWS rules out. This module adds, each against
the AWS Step Functions API reference:

- ``GetActivityTask`` long-polls (60 s unless the emulator is started with a shorter
  wait) and then returns no task; every scheduled task goes to exactly one poller;
  ``ActivityStarted`` records the worker name; unknown activities answer
  ``ActivityDoesNotExist``;
- activities made with ``CreateActivity`` (idempotent, as on AWS) are visible to
  running executions;
- ``SendTaskHeartbeat`` works whether or not the state sets ``HeartbeatSeconds``;
  ``HeartbeatSeconds`` and ``TimeoutSeconds`` fail the task with
  ``States.HeartbeatTimeout`` / ``States.Timeout`` so ``Retry`` and ``Catch`` act on it;
- once a task is closed (reported, timed out, execution stopped or ended)
  ``SendTaskSuccess`` / ``SendTaskFailure`` / ``SendTaskHeartbeat`` answer
  ``TaskTimedOut``; a token never issued answers ``InvalidToken``;
- ``SendTaskFailure`` keeps its ``cause`` (moto drops it);
- task tokens are opaque text of several hundred characters, as AWS's are (moto: a
  36-character UUID); the API accepts tokens of up to 2,048 characters;
- ``StartExecution`` without a name gets a generated UUID name;
- ``DescribeExecution`` returns an output that is a JSON string as JSON;
- service integrations (``arn:aws:states:::sns:publish``...) call this emulator, not
  moto's default port.

One lock per task decides between a report and a timeout, so the two can never both
win: the task's own deadlines replace the interpreter's generic state timeout.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.core.common_models import BackendDict
from moto.core.exceptions import AWSError
from moto.stepfunctions import responses as sfn_responses
from moto.stepfunctions.models import Activity as MotoActivity
from moto.stepfunctions.parser import models as parser_models
from moto.stepfunctions.parser.api import (
    ActivityScheduledEventDetails,
    ActivityStartedEventDetails,
    ActivitySucceededEventDetails,
    ActivityTimedOutEventDetails,
    ExecutionFailedEventDetails,
    HistoryEventExecutionDataDetails,
    HistoryEventType,
)
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
    StatesErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import (
    Timeout,
    TimeoutSeconds,
)
from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
from moto.stepfunctions.parser.asl.component.program.program import Program
from moto.stepfunctions.parser.asl.component.state.exec.state_task import (
    state_task_factory,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_activitiy import (
    StateTaskActivity,
)
from moto.stepfunctions.parser.asl.component.state.state_props import StateProps
from moto.stepfunctions.parser.asl.eval.callback.callback import (
    CallbackOutcome,
    CallbackOutcomeFailure,
    CallbackOutcomeFailureError,
    CallbackOutcomeSuccess,
)
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.utils import boto_client
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str
from moto.stepfunctions.parser.models import StepFunctionsParserBackend
from moto.stepfunctions.responses import StepFunctionResponse

from runners.local import redrive

_LOG = logging.getLogger(__name__)
DEFAULT_POLL_SECONDS = 60.0
# How often a waiting task notices that its execution ended for a reason it was not told
# about (a failed Parallel branch, the execution's own timeout). Stops and reports are
# delivered at once.
_FRAME_CHECK_SECONDS = 1.0
# Task tokens as AWS issues them: opaque base64 of several hundred characters.
TOKEN_PREFIX = "AQB4AAAAKgAAAAMAAAAAAAAAA"
TOKEN_BYTES = 512


class Settings:
    """Process-wide: moto's backends are process-wide too."""

    poll_seconds: float = DEFAULT_POLL_SECONDS
    port: int = 5000  # where service integrations (sns:publish, ...) call back


def _service_port() -> str:
    return str(Settings.port)


# Errors as AWS names them (moto's own classes would serialise without an error type).
class TaskTimedOut(AWSError):  # type: ignore[misc]
    TYPE = "TaskTimedOut"


class InvalidToken(AWSError):  # type: ignore[misc]
    TYPE = "InvalidToken"


class InvalidOutput(AWSError):  # type: ignore[misc]
    TYPE = "InvalidOutput"


class ActivityDoesNotExist(AWSError):  # type: ignore[misc]
    TYPE = "ActivityDoesNotExist"


class _ActivityTimedOut(TimeoutError):
    def __init__(self, error: str, cause: str) -> None:
        super().__init__(cause)
        self.error, self.cause = error, cause


class _TaskAbandoned(RuntimeError):
    """The execution stopped or ended while the task was open."""


class ActivityTask:
    """One scheduled activity task: its token, its deadlines and its single outcome."""

    def __init__(
        self,
        token: str,
        task_input: str,
        execution_arn: str,
        frame: Environment,
        timeout: float | None,
        heartbeat: float | None,
    ) -> None:
        self.token, self.input, self.execution_arn = token, task_input, execution_arn
        self.timeout, self.heartbeat = timeout, heartbeat
        self.worker_name: str | None = None
        self._frame = frame
        self._cond = threading.Condition()
        self._scheduled_at = time.monotonic()
        self._started_at: float | None = None
        self._beat_at = 0.0
        self._outcome: CallbackOutcome | None = None
        self._closed = False

    def _open(self) -> bool:
        return not self._closed and self._frame.is_running()

    def try_start(self, worker_name: str | None) -> bool:
        """Hand the task to a poller; False if it closed while queued."""
        with self._cond:
            if not self._open():
                return False
            self._started_at = self._beat_at = time.monotonic()
            self.worker_name = worker_name
            self._cond.notify_all()
            return True

    def beat(self) -> None:
        with self._cond:
            self._ensure_open()
            self._beat_at = time.monotonic()
            self._cond.notify_all()

    def complete(self, outcome: CallbackOutcome) -> None:
        with self._cond:
            self._ensure_open()
            self._outcome, self._closed = outcome, True
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _ensure_open(self) -> None:
        if self._started_at is None or not self._open():
            raise TaskTimedOut("Task Timed Out: 'Provided task does not exist anymore'")

    def wait_started(self) -> None:
        with _WATCHER.watching(self), self._cond:
            while self._started_at is None:
                self._wait_until(self._deadline_before_start())

    def wait_outcome(self) -> CallbackOutcome:
        with _WATCHER.watching(self), self._cond:
            while self._outcome is None:
                self._wait_until(self._deadline_after_start())
            return self._outcome

    def wake_if_abandoned(self) -> None:
        if not self._frame.is_running():
            with self._cond:
                self._cond.notify_all()

    def _deadline_before_start(self) -> tuple[float, str]:
        if self.timeout is None:
            return float("inf"), ""
        return self._scheduled_at + self.timeout, StatesErrorNameType.StatesTimeout.to_name()

    def _deadline_after_start(self) -> tuple[float, str]:
        assert self._started_at is not None
        deadlines = [(float("inf"), "")]
        if self.timeout is not None:
            deadlines.append(
                (self._started_at + self.timeout, StatesErrorNameType.StatesTimeout.to_name())
            )
        if self.heartbeat is not None:
            deadlines.append(
                (
                    self._beat_at + self.heartbeat,
                    StatesErrorNameType.StatesHeartbeatTimeout.to_name(),
                )
            )
        return min(deadlines)

    def _wait_until(self, deadline: tuple[float, str]) -> None:
        """Wait for a change; close the task and raise if it timed out or was abandoned."""
        when, error = deadline
        if self._outcome is not None:
            return
        if not self._open():
            self._closed = True
            raise _TaskAbandoned("The execution is no longer running")
        remaining = when - time.monotonic()
        if remaining <= 0:
            self._closed = True
            raise _ActivityTimedOut(error, f"The activity task timed out ({error}).")
        self._cond.wait(None if remaining == float("inf") else remaining)


class _FrameWatcher:
    """One thread wakes every waiting task whose execution ended for a reason the task
    was not told about. (Each task waking on its own timer instead would wake thousands
    of threads a second when thousands of tasks wait.)"""

    def __init__(self) -> None:
        self._tasks: set[ActivityTask] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextmanager
    def watching(self, task: ActivityTask) -> Iterator[None]:
        with self._lock:
            self._tasks.add(task)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="emulator-frame-watcher", daemon=True
                )
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._tasks.discard(task)

    def _run(self) -> None:
        while True:
            time.sleep(_FRAME_CHECK_SECONDS)
            with self._lock:
                tasks = list(self._tasks)
            for task in tasks:
                task.wake_if_abandoned()


_WATCHER = _FrameWatcher()


class ActivityQueue:
    """The tasks scheduled on one activity, waiting for pollers."""

    def __init__(self) -> None:
        self._tasks: deque[ActivityTask] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, task: ActivityTask) -> None:
        with self._cond:
            self._tasks.append(task)
            self._cond.notify()

    def take(self, wait_seconds: float, worker_name: str | None) -> ActivityTask | None:
        """Long-poll: the oldest open task, or None after ``wait_seconds``."""
        deadline = time.monotonic() + wait_seconds
        with self._cond:
            while not self._closed:
                while self._tasks:
                    task = self._tasks.popleft()
                    if task.try_start(worker_name):
                        return task
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
        return None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class EmulatedStepFunctionsBackend(StepFunctionsParserBackend):  # type: ignore[misc]
    """moto's interpreter backend plus activity queues and a task-token registry."""

    def __init__(self, region_name: str, account_id: str) -> None:
        super().__init__(region_name, account_id)
        self.activity_queues: dict[str, ActivityQueue] = {}
        self.activity_tasks: dict[str, ActivityTask] = {}
        self._tasks_lock = threading.Lock()

    def reset(self) -> None:
        self._close_everything()
        redrive.forget_all()
        super().reset()

    def _close_everything(self) -> None:
        for queue in list(self.activity_queues.values()):
            queue.close()
        for task in list(self.activity_tasks.values()):
            task.close()

    # Activities -------------------------------------------------------------------

    def create_activity(
        self,
        name: str,
        tags: list[dict[str, str]] | None = None,
        encryption_configuration: dict[str, Any] | None = None,
    ) -> MotoActivity:
        """Idempotent by name, as on AWS ("CreateActivity is an idempotent API")."""
        arn = self._activity_arn(name)
        if arn in self.activities:
            return self.activities[arn]
        activity = super().create_activity(name, tags, encryption_configuration)
        self.activity_queues[activity.arn] = ActivityQueue()
        return activity

    def delete_activity(self, activity_arn: str) -> None:
        super().delete_activity(activity_arn)
        queue = self.activity_queues.pop(activity_arn, None)
        if queue is not None:
            queue.close()

    def _activity_arn(self, name: str) -> str:
        return f"arn:{self.partition}:states:{self.region_name}:{self.account_id}:activity:{name}"

    def get_activity_task(self, activity_arn: str, worker_name: str | None) -> ActivityTask | None:
        self._validate_activity_arn(activity_arn)
        queue = self.activity_queues.get(activity_arn)
        if queue is None:
            raise ActivityDoesNotExist(f"Activity Does Not Exist: '{activity_arn}'")
        return queue.take(Settings.poll_seconds, worker_name)

    def schedule(self, activity_arn: str, task: ActivityTask) -> bool:
        """Called by the interpreter; False when the activity does not exist."""
        queue = self.activity_queues.get(activity_arn)
        if queue is None:
            return False
        with self._tasks_lock:
            self.activity_tasks[task.token] = task
        queue.put(task)
        return True

    # Task reports -----------------------------------------------------------------

    def send_task_success(self, task_token: str, outcome: str) -> None:
        task = self.activity_tasks.get(task_token)
        if task is None:
            return super().send_task_success(task_token, outcome)  # type: ignore[no-any-return]
        try:
            json.loads(outcome)
        except (TypeError, ValueError) as error:
            raise InvalidOutput(f"Invalid Output: '{error}'") from error
        task.complete(CallbackOutcomeSuccess(callback_id=task_token, output=outcome))
        return None

    def send_task_failure(
        self, task_token: str, error: str | None = None, cause: str | None = None
    ) -> None:
        task = self.activity_tasks.get(task_token)
        if task is None:
            return super().send_task_failure(task_token, error, cause)  # type: ignore[no-any-return]
        task.complete(CallbackOutcomeFailure(callback_id=task_token, error=error, cause=cause))
        return None

    def send_task_heartbeat(self, task_token: str) -> None:
        task = self.activity_tasks.get(task_token)
        if task is None:
            return super().send_task_heartbeat(task_token)  # type: ignore[no-any-return]
        task.beat()
        return None

    # Executions -------------------------------------------------------------------

    def start_execution(
        self,
        state_machine_arn: str,
        name: str | None = None,
        execution_input: str | None = None,
        trace_header: str | None = None,
    ) -> Any:
        return super().start_execution(
            state_machine_arn, name or str(uuid.uuid4()), execution_input, trace_header
        )

    def stop_execution(self, execution_arn: str) -> Any:
        execution = super().stop_execution(execution_arn)
        for task in list(self.activity_tasks.values()):
            if task.execution_arn == execution_arn:
                task.close()
        return execution


BACKENDS: BackendDict = BackendDict(EmulatedStepFunctionsBackend, "stepfunctions")


def backend_for_arn(arn: str) -> EmulatedStepFunctionsBackend:
    """The backend that owns an ARN (``arn:<partition>:states:<region>:<account>:...``)."""
    _arn, _partition, _service, region, account = arn.split(":", 5)[:5]
    backend: EmulatedStepFunctionsBackend = BACKENDS[account][region]
    return backend


class HeartbeatTimeoutErrorName(StatesErrorName):  # type: ignore[misc]
    """``States.HeartbeatTimeout``, which a ``States.Timeout`` retrier or catcher also
    matches ("States.Timeout: a Task state either ran longer than the TimeoutSeconds
    value, or failed to send a heartbeat for a period longer than the HeartbeatSeconds
    value")."""

    def __init__(self) -> None:
        super().__init__(typ=StatesErrorNameType.StatesHeartbeatTimeout)

    def matches(self, error_name: str | None) -> bool:
        return error_name in {self.error_name, StatesErrorNameType.StatesTimeout.to_name()}


class EmulatedStateTaskActivity(StateTaskActivity):  # type: ignore[misc]
    """An activity ``Task`` state whose task enforces its own deadlines."""

    timeout: Timeout
    task_timeout: Timeout

    def from_state_props(self, state_props: StateProps) -> None:
        super().from_state_props(state_props)
        # The task decides timeouts under its own lock; the generic state timer must not
        # race it, so it gets the "no timeout" default.
        self.task_timeout = self.timeout
        self.timeout = TimeoutSeconds(TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS, is_default=True)

    def _evaluate_with_timeout(self, env: Environment) -> None:
        """moto 5.2.5's ``ExecutionState._evaluate_with_timeout`` without its thread: moto
        runs the task on a thread of its own only to time it out, and this task times
        itself out. (A thread per waiting task would cap the emulator at a few thousand
        waiting executions.)"""
        frame: Environment = env.open_frame()
        frame.states.reset(input_value=env.states.get_input())
        frame.stack = copy.deepcopy(env.stack)
        try:
            self._eval_execution(frame)
        except _TaskAbandoned:
            # Stopped (or ended elsewhere): leave quietly so the execution ends as
            # ABORTED, not as a failure of this state recorded after the fact.
            if env.is_running():
                raise
            return
        finally:
            frame.set_ended()
            env.close_frame(frame)
        output = frame.stack[-1]
        env.stack.append(output)
        if not self._is_language_query_jsonpath():
            env.states.set_result(output)
        if self.assign_decl:
            self.assign_decl.eval(env=env)
        if self.result_selector:
            self.result_selector.eval(env=env)
        if self.result_path:
            self.result_path.eval(env)
        else:
            env.states.reset(input_value=env.stack.pop())

    @staticmethod
    def _seconds(component: Any, env: Environment) -> float:
        component.eval(env=env)
        return float(env.stack.pop())

    def _eval_execution(self, env: Environment) -> None:
        # The input's JSON text, whatever its type: a state whose input is a JSON string
        # (a Pass state's string Result) delivers it encoded, as AWS does (the original
        # sample's runners decode it twice). moto passes a string through raw.
        task_input = to_json_str(self._eval_parameters(env=env))
        activity_arn = self.resource.resource_arn
        task = ActivityTask(
            token=_task_token(env),
            task_input=task_input,
            execution_arn=env.states.context_object.context_object_data["Execution"]["Id"],
            frame=env,
            timeout=(
                None
                if self.task_timeout.is_default_value()
                else self._seconds(self.task_timeout, env)
            ),
            heartbeat=None if self.heartbeat is None else self._seconds(self.heartbeat, env),
        )
        self._record(
            env,
            HistoryEventType.ActivityScheduled,
            activityScheduledEventDetails=self._scheduled_details(activity_arn, task),
        )
        if not backend_for_arn(activity_arn).schedule(activity_arn, task):
            raise FailureEventException(self._missing_activity(env, activity_arn))
        task.wait_started()
        started = ActivityStartedEventDetails()
        if task.worker_name is not None:
            started["workerName"] = task.worker_name
        self._record(env, HistoryEventType.ActivityStarted, activityStartedEventDetails=started)
        outcome = task.wait_outcome()
        if isinstance(outcome, CallbackOutcomeFailure):
            raise CallbackOutcomeFailureError(callback_outcome_failure=outcome)
        assert isinstance(outcome, CallbackOutcomeSuccess)
        env.stack.append(json.loads(outcome.output))
        self._record(
            env,
            HistoryEventType.ActivitySucceeded,
            activitySucceededEventDetails=ActivitySucceededEventDetails(
                output=outcome.output,
                outputDetails=HistoryEventExecutionDataDetails(truncated=False),
            ),
        )

    @staticmethod
    def _record(env: Environment, event_type: HistoryEventType, **details: Any) -> None:
        env.event_manager.add_event(
            context=env.event_history_context,
            event_type=event_type,
            event_details=EventDetails(**details),
        )

    @staticmethod
    def _scheduled_details(activity_arn: str, task: ActivityTask) -> ActivityScheduledEventDetails:
        details = ActivityScheduledEventDetails(
            resource=activity_arn,
            input=task.input,
            inputDetails=HistoryEventExecutionDataDetails(truncated=False),
        )
        if task.timeout is not None:
            details["timeoutInSeconds"] = int(task.timeout)
        if task.heartbeat is not None:
            details["heartbeatInSeconds"] = int(task.heartbeat)
        return details

    @staticmethod
    def _missing_activity(env: Environment, activity_arn: str) -> FailureEvent:
        error = StatesErrorNameType.StatesRuntime.to_name()
        return FailureEvent(
            env=env,
            error_name=StatesErrorName(typ=StatesErrorNameType.StatesRuntime),
            event_type=HistoryEventType.ExecutionFailed,
            event_details=EventDetails(
                executionFailedEventDetails=ExecutionFailedEventDetails(
                    error=error, cause=f"The activity {activity_arn} does not exist."
                )
            ),
        )

    def _from_error(self, env: Environment, ex: Exception) -> FailureEvent:
        if not isinstance(ex, _ActivityTimedOut):
            return super()._from_error(env=env, ex=ex)
        heartbeat = ex.error == StatesErrorNameType.StatesHeartbeatTimeout.to_name()
        return FailureEvent(
            env=env,
            error_name=(
                HeartbeatTimeoutErrorName()
                if heartbeat
                else StatesErrorName(typ=StatesErrorNameType.StatesTimeout)
            ),
            event_type=HistoryEventType.ActivityTimedOut,
            event_details=EventDetails(
                activityTimedOutEventDetails=ActivityTimedOutEventDetails(
                    error=ex.error, cause=ex.cause
                )
            ),
        )


# Wire protocol ----------------------------------------------------------------------


def get_activity_task(self: StepFunctionResponse) -> str:
    backend: EmulatedStepFunctionsBackend = self.stepfunction_backend
    task = backend.get_activity_task(self._get_param("activityArn"), self._get_param("workerName"))
    if task is None:
        return "{}"
    return json.dumps({"taskToken": task.token, "input": task.input})


def send_task_failure(self: StepFunctionResponse) -> str:
    self.stepfunction_backend.send_task_failure(
        self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause")
    )
    return "{}"


_describe_execution = StepFunctionResponse.describe_execution


def describe_execution(self: StepFunctionResponse) -> Any:
    """DescribeExecution ``output``: "The JSON output data of the execution." moto passes
    an output that is a JSON string through unencoded; encode it."""
    response = _describe_execution(self)
    execution = self.stepfunction_backend.describe_execution(self._get_param("executionArn"))
    description = response.result
    if isinstance(execution.output, str) and "output" in description:
        description["output"] = json.dumps(execution.output)
    redrive.describe_fields(execution, description)
    return response


_program_eval = Program.eval


def _eval_program(self: Program, env: Environment) -> None:
    """Run an execution without ``TimeoutSeconds`` on its own thread. (moto runs every
    program on a second thread only to time it out: two threads per waiting execution
    would cap the emulator at a few thousand of them.)"""
    if self.timeout_seconds is not None:
        _program_eval(self, env)
        return
    env.next_state_name = self.start_at.start_at_name
    try:
        EvalComponent.eval(self, env)
    except Exception:  # moto's own thread would end the same way: the execution goes on
        _LOG.exception("state machine program failed")


def _task_token(env: Environment) -> str:
    """A token shaped like AWS's: opaque base64 text of several hundred characters (the
    API takes up to 2,048), where moto issues a 36-character UUID."""
    token = TOKEN_PREFIX + base64.b64encode(secrets.token_bytes(TOKEN_BYTES)).decode()
    env.states.context_object.update_task_token()
    env.states.context_object.context_object_data["Task"]["Token"] = token
    return token


def install() -> None:
    redrive.install()
    Program.eval = _eval_program
    boto_client.moto_server_port = _service_port
    parser_models.stepfunctions_parser_backends = BACKENDS
    StepFunctionResponse.describe_execution = describe_execution
    state_task_factory.StateTaskActivity = EmulatedStateTaskActivity
    StepFunctionResponse.get_activity_task = get_activity_task
    StepFunctionResponse.send_task_failure = send_task_failure
    sfn_responses.default_user_config.setdefault("stepfunctions", {})["execute_state_machine"] = (
        True
    )
