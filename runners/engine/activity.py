"""One activity, as the engine sees Step Functions: poll, heartbeat, report.

Long polls hold their HTTP connections for up to 60 s, so they use a client of their
own (read timeout above the poll, pool larger than the number of polls); heartbeats
and reports use another, so they never queue behind a poll.

A heartbeat or report answered ``TaskTimedOut``, ``InvalidToken`` or
``TaskDoesNotExist`` means the task is closed (the execution stopped, timed out, or
the task was already reported): methods return False instead of raising.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ClientError

from runners.retry import error_code

CLOSED_TASK_CODES = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})
MAX_OUTPUT_BYTES = 262_144  # SendTaskSuccess output: 256 KiB
MAX_ERROR_CHARS = 256
MAX_CAUSE_CHARS = 32_768


@dataclass(frozen=True)
class ActivityTask:
    token: str
    input: str


class TaskReports:
    """Heartbeats and reports for task tokens, whoever holds them: the engine, or the
    object-created Lambda releasing a wait. Output over Step Functions' 256 KiB fails
    the task with ``RunnerOutputError`` instead of being refused."""

    def __init__(self, client: Any) -> None:
        self._client = client

    async def heartbeat(self, token: str) -> bool:
        return await self._send("send_task_heartbeat", taskToken=token)

    async def succeed(self, token: str, output: dict[str, Any]) -> bool:
        document = json.dumps(output, default=str)
        if len(document.encode()) > MAX_OUTPUT_BYTES:
            return await self.fail(
                token,
                "RunnerOutputError",
                f"task output is {len(document.encode())} bytes; Step Functions accepts "
                f"{MAX_OUTPUT_BYTES}",
            )
        return await self._send("send_task_success", taskToken=token, output=document)

    async def fail(self, token: str, error: str, cause: str) -> bool:
        return await self._send(
            "send_task_failure",
            taskToken=token,
            error=error[:MAX_ERROR_CHARS],
            cause=cause[:MAX_CAUSE_CHARS],
        )

    async def _send(self, operation: str, **arguments: Any) -> bool:
        try:
            await getattr(self._client, operation)(**arguments)
        except ClientError as error:
            if error_code(error) in CLOSED_TASK_CODES:
                return False
            raise
        return True


class Channel(Protocol):
    """One activity as the engine uses it (``runners.testing`` has one in memory)."""

    activity_arn: str

    async def poll(self) -> ActivityTask | None: ...
    async def heartbeat(self, token: str) -> bool: ...
    async def succeed(self, token: str, output: dict[str, Any]) -> bool: ...
    async def fail(self, token: str, error: str, cause: str) -> bool: ...


class ActivityChannel(TaskReports):
    def __init__(self, poll_client: Any, client: Any, activity_arn: str, worker_name: str) -> None:
        super().__init__(client)
        self._poll_client = poll_client
        self.activity_arn, self.worker_name = activity_arn, worker_name

    async def poll(self) -> ActivityTask | None:
        response = await self._poll_client.get_activity_task(
            activityArn=self.activity_arn, workerName=self.worker_name
        )
        token = response.get("taskToken")
        return ActivityTask(token, response.get("input") or "{}") if token else None
