"""The parts every service runner shares, declared as data: which states end a job,
what a refused start means, and how times are written in task output.

One table per service and nothing else classifies its states (Airflow's Glue states are
classified in three places that disagree; here a test holds each table to the service's
own list of states).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from botocore.exceptions import ClientError

from runners.errors import RunnerError, RunnerInputError, TaskFailure, TryLater
from runners.logs import get_logger
from runners.retry import error_code


@dataclass(frozen=True)
class Running:
    """Not finished yet: keep checking (and heartbeating)."""


@dataclass(frozen=True)
class Measure:
    """A figure the service reports for a finished job, published as a metric (the
    engine publishes what runners measure without knowing what it means)."""

    name: str
    value: float
    unit: str = "None"  # a CloudWatch unit name: "Bytes", "Seconds", "Count"...


@dataclass(frozen=True)
class Finish:
    """When the service says the job ended (epoch seconds; None: it does not say), and
    what it used."""

    ended_at: float | None = None
    usage: tuple[Measure, ...] = ()


NO_FINISH = Finish()


@dataclass(frozen=True)
class Succeeded:
    output: dict[str, Any]
    # The outcome already reached the task by another path (the object-created
    # Lambda released a wait): close the record without reporting again.
    reported: bool = False
    finish: Finish = NO_FINISH


@dataclass(frozen=True)
class Failed:
    error: str
    cause: dict[str, Any]
    finish: Finish = NO_FINISH


JobStatus = Running | Succeeded | Failed
RUNNING = Running()


class Phase(Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class StateTable:
    """Every state of a service's job, classified once.

    ``service`` and ``shape`` name the state's enumeration in the service's API model
    (botocore), so a test can tell when AWS adds a state the table does not know.
    """

    service: str
    shape: str
    running: frozenset[str]
    succeeded: frozenset[str]
    failed: frozenset[str]

    def __init__(
        self,
        service: str,
        shape: str,
        *,
        running: Iterable[str],
        succeeded: Iterable[str],
        failed: Iterable[str],
    ) -> None:
        sets = [frozenset(running), frozenset(succeeded), frozenset(failed)]
        overlap = (sets[0] & sets[1]) | (sets[0] & sets[2]) | (sets[1] & sets[2])
        if overlap:
            raise ValueError(f"{shape}: {', '.join(sorted(overlap))} classified twice")
        object.__setattr__(self, "service", service)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "running", sets[0])
        object.__setattr__(self, "succeeded", sets[1])
        object.__setattr__(self, "failed", sets[2])

    @property
    def states(self) -> frozenset[str]:
        return self.running | self.succeeded | self.failed

    def phase(self, state: str | None) -> Phase:
        """An unknown state (AWS added one) keeps the job running, with a warning: a
        job is never reported on a guess."""
        if state in self.succeeded:
            return Phase.SUCCEEDED
        if state in self.failed:
            return Phase.FAILED
        if state not in self.running:
            get_logger(service=self.service).warning(
                "unknown state; treated as running", shape=self.shape, state=state
            )
        return Phase.RUNNING

    def status(
        self,
        state: str | None,
        *,
        output: Callable[[], dict[str, Any]],
        error: str,
        cause: Callable[[], dict[str, Any]],
        finish: Callable[[], Finish] = lambda: NO_FINISH,
    ) -> JobStatus:
        """The job's status from its state; ``output``, ``cause`` and ``finish`` are
        called only for the outcome reached (a running job may not have the fields they
        read yet)."""
        phase = self.phase(state)
        if phase is Phase.SUCCEEDED:
            return Succeeded(output(), finish=finish())
        if phase is Phase.FAILED:
            return Failed(error, cause(), finish=finish())
        return RUNNING


@dataclass(frozen=True)
class EndEvents:
    """The EventBridge events a service sends when one of its jobs ends, declared once:
    the runner reads its events with ``key_of``, the runner's stack routes them with
    ``pattern``, and a test holds the states to the service's state table."""

    source: str  # "aws.glue"
    detail_type: str  # "Glue Job State Change"
    state_field: str  # the detail field with the state reached ("state")
    ended: frozenset[str]  # the states that end a job
    key_field: str  # the detail field naming the job ("jobRunId")

    @property
    def pattern(self) -> dict[str, Any]:
        return {
            "source": [self.source],
            "detail-type": [self.detail_type],
            "detail": {self.state_field: sorted(self.ended)},
        }

    def key_of(self, event: Mapping[str, Any]) -> str | None:
        """The job an event says ended, or None for any other event (one of another
        service, a state that is not an end, a malformed one)."""
        detail = event.get("detail")
        if (
            event.get("source") != self.source
            or event.get("detail-type") != self.detail_type
            or not isinstance(detail, Mapping)
            or detail.get(self.state_field) not in self.ended
        ):
            return None
        key = detail.get(self.key_field)
        return key if isinstance(key, str) and key else None


@dataclass(frozen=True)
class Refusals:
    """What a start the service refused (a non-retryable error) means for the task.

    ``try_later``: error code -> the error the task fails with once the start has been
    refused past ``start_timeout_seconds`` (a concurrency limit that will pass).
    ``input_errors``: error code -> the input field to blame (``$``: the whole input).
    Any other refusal fails the task with ``failure``, its cause naming the job.
    """

    try_later: Mapping[str, str] = field(default_factory=dict)
    input_errors: Mapping[str, str] = field(default_factory=dict)
    failure: str = "RunnerStartError"

    def refusal(self, error: ClientError, job: Mapping[str, str]) -> RunnerError:
        code = error_code(error)
        message = str(error.response.get("Error", {}).get("Message") or error)
        if code in self.try_later:
            return TryLater(self.try_later[code], message)
        if code in self.input_errors:
            return RunnerInputError(self.input_errors[code], message)
        return TaskFailure(self.failure, {**job, "error": code, "message": message})


def iso(value: datetime | None) -> str | None:
    """Times in task output: ISO-8601, as Step Functions' own integrations write them."""
    return value.isoformat() if value is not None else None
