"""What a service runner provides to the engine.

A runner knows one AWS service and nothing about Step Functions or DynamoDB: it
validates input, starts a job idempotently, checks many jobs at once, stops one, and
turns a finished job into an output or a named failure. What the service refuses at a
start is read by the engine from the runner's ``refusals`` table.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from botocore.exceptions import ClientError

from runners.engine.service import (
    RUNNING,
    EndEvents,
    Failed,
    JobStatus,
    Refusals,
    Running,
    Succeeded,
)
from runners.errors import RunnerError
from runners.retry import is_retryable

# The statuses live with the state tables that produce them; runners import them here.
__all__ = [
    "RUNNING",
    "Failed",
    "Job",
    "JobStatus",
    "Runner",
    "Running",
    "SpecT",
    "Succeeded",
    "TaskStart",
]

SpecT = TypeVar("SpecT")


@dataclass(frozen=True)
class TaskStart:
    """What a start knows about its task."""

    key: str  # the task's idempotency key (64 hex characters)
    received_at: float  # when the task arrived (epoch seconds)


@dataclass(frozen=True)
class Job(Generic[SpecT]):
    """A started job: its validated input and the service's run id."""

    spec: SpecT
    run_id: str


class Runner(ABC, Generic[SpecT]):
    name: ClassVar[str]
    # Check a job right after it starts: it may be done at once (the awaited object
    # is already there).
    settles_at_start: ClassVar[bool] = False
    # Starting again with the same key returns the same job (Athena's
    # ClientRequestToken): an ambiguous start is simply retried. Otherwise the engine
    # searches with ``find`` before it starts again, so such runners must implement it.
    idempotent_start: ClassVar[bool] = False
    # What a refused start means: try later, bad input, or a named failure.
    refusals: ClassVar[Refusals] = Refusals()
    # The events the service sends when a job ends (None: it sends none; only checks).
    end_events: ClassVar[EndEvents | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.idempotent_start and cls.find is Runner.find and not _is_abstract(cls):
            raise TypeError(
                f"{cls.__name__}: a runner whose start is not idempotent must implement "
                "find(), or a crash after a start would start its job twice"
            )

    @abstractmethod
    def parse(self, document: Mapping[str, Any]) -> SpecT:
        """Validate task input; raise ``RunnerInputError`` naming the field."""

    @abstractmethod
    def describe(self, spec: SpecT) -> dict[str, str]:
        """Fields that identify the job in logs and failure causes (job name, query...)."""

    @abstractmethod
    async def start(self, spec: SpecT, task: TaskStart) -> str:
        """Start the job, marked with ``task.key`` so ``find`` can tell it, and return
        its run id. A ``ClientError`` the service answers is read with ``refusals``."""

    async def find(self, spec: SpecT, task: TaskStart) -> str | None:
        """The run an earlier start made for the task (after a crash or an ambiguous
        failure), if any. For an idempotent start, starting again is how to find it."""
        try:
            return await self.start(spec, task)
        except ClientError as error:
            if is_retryable(error):
                raise
            raise self.refused(spec, error) from error

    def refused(self, spec: SpecT, error: ClientError) -> RunnerError:
        """What a refused start means for the task."""
        return self.refusals.refusal(error, self.describe(spec))

    @abstractmethod
    async def check(self, jobs: Sequence[Job[SpecT]]) -> Mapping[str, JobStatus]:
        """The status of every job, by run id, in as few calls as the service allows.
        A job missing from the answer is checked again next cycle."""

    @abstractmethod
    async def stop(self, job: Job[SpecT]) -> None:
        """Stop a job whose task was cancelled (the execution stopped or timed out)."""

    # Completion events: the service's EventBridge events say when its runs end, so a
    # task can be reported at once instead of at the next check. A runner whose service
    # sends none keeps both defaults and is only ever checked.

    def event_key(self, job: Job[SpecT]) -> str:
        """What the service's state-change events call the job: its run id unless they
        name it otherwise (a crawl's events name only its crawler)."""
        return job.run_id

    def ended(self, event: Mapping[str, Any]) -> str | None:
        """The ``event_key`` of the job an EventBridge event says has ended, or None
        (another service's event, a state that is not an end). The event only prompts
        a check: the outcome reported is always the one the service's status call
        gives (events are best effort and carry few of the output's fields)."""
        return self.end_events.key_of(event) if self.end_events is not None else None


def _is_abstract(cls: type) -> bool:
    # ABCMeta sets __abstractmethods__ only after __init_subclass__ has run.
    return any(
        getattr(getattr(cls, name, None), "__isabstractmethod__", False) for name in dir(cls)
    )
