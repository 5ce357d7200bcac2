"""Exceptions, named for what the caller can do about them."""

from __future__ import annotations

import json
from typing import Any


class RunnerError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(RunnerError):
    """The configuration cannot work: fix it before the worker can start."""


class TaskFailure(RunnerError):
    """Fail this task with a named error a state machine can ``Catch`` or ``Retry``."""

    def __init__(self, error: str, cause: str | dict[str, Any]) -> None:
        self.error = error
        self.cause = cause if isinstance(cause, str) else json.dumps(cause, default=str)
        super().__init__(f"{error}: {self.cause}")


class RunnerInputError(TaskFailure):
    """The task input is invalid: the state machine must send different input."""

    def __init__(self, field: str, problem: str) -> None:
        self.field, self.problem = field, problem
        super().__init__("RunnerInputError", {"field": field, "problem": problem})


class TryLater(RunnerError):
    """The job cannot start yet (a concurrency limit): keep the task and retry the start
    until the start deadline, then fail it with ``error``."""

    def __init__(self, error: str, reason: str) -> None:
        self.error, self.reason = error, reason
        super().__init__(reason)
