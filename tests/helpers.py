"""Small helpers shared by the test suites."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from botocore.exceptions import ClientError

ROLE_ARN = "arn:aws:iam::123456789012:role/StatesExecutionRole"
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})

T = TypeVar("T")


def wait_until(probe: Callable[[], T | None], timeout: float = 10.0, every: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)


def create_machine(sfn: Any, name: str, definition: dict[str, Any]) -> str:
    arn: str = sfn.create_state_machine(
        name=name, definition=json.dumps(definition), roleArn=ROLE_ARN
    )["stateMachineArn"]
    return arn


def activity_machine(sfn: Any, name: str, activity_arn: str, **task_fields: Any) -> str:
    """A state machine of one activity ``Task`` state with extra fields (timeouts...)."""
    task = {"Type": "Task", "Resource": activity_arn, "End": True, **task_fields}
    return create_machine(sfn, name, {"StartAt": "Work", "States": {"Work": task}})


def finished(sfn: Any, execution_arn: str, timeout: float = 10.0) -> dict[str, Any]:
    """Wait for an execution to end; return its description."""

    def probe() -> dict[str, Any] | None:
        description: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
        return description if description["status"] in TERMINAL else None

    return wait_until(probe, timeout)


def events(sfn: Any, execution_arn: str, event_type: str) -> list[dict[str, Any]]:
    history = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)
    return [event for event in history["events"] if event["type"] == event_type]


def error_code(error: ClientError | BaseException) -> str:
    assert isinstance(error, ClientError), error
    return str(error.response["Error"]["Code"])


def run_python(script: str, timeout: float = 120.0) -> str:
    """What ``script`` prints, run in a fresh interpreter from the repository root (for
    what needs its own process: one emulator runs per process)."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    return done.stdout
