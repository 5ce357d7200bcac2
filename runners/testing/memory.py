"""The engine's two outside parts in memory: a job store and an activity.

They keep the same contracts as DynamoDB and Step Functions (conditional writes by
owner, lease claims; a closed task answers "closed" to heartbeats and reports), so an
engine or a runner can be unit-tested in milliseconds.
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from runners.engine.activity import ActivityTask, TaskReports
from runners.engine.records import Status, TaskRecord

ACTIVITY_ARN = "arn:aws:states:us-east-1:123456789012:activity:Memory"


class MemoryStore:
    """The job store contract (``runners.engine.store.JobStore``) in memory."""

    def __init__(self) -> None:
        self._records: dict[str, TaskRecord] = {}
        self._lock = threading.Lock()

    async def create(self, record: TaskRecord) -> TaskRecord:
        with self._lock:
            existing = self._records.setdefault(record.task_id, copy.deepcopy(record))
            return copy.deepcopy(existing)

    async def save(self, record: TaskRecord) -> bool:
        with self._lock:
            current = self._records.get(record.task_id)
            if current is None or current.owner != record.owner:
                return False
            self._records[record.task_id] = copy.deepcopy(record)
            return True

    async def claim_expired(
        self, group: str, owner: str, lease_until: float, now: float
    ) -> list[TaskRecord]:
        claimed = []
        with self._lock:
            for record in self._records.values():
                if (
                    record.activity_arn == group
                    and record.status != Status.DONE
                    and record.lease_expires_at < now
                ):
                    record.owner, record.lease_expires_at = owner, lease_until
                    claimed.append(copy.deepcopy(record))
        return claimed

    async def load(self, task_id: str) -> TaskRecord | None:
        with self._lock:
            record = self._records.get(task_id)
            return copy.deepcopy(record) if record else None

    async def find_open(self, event_key: str) -> list[str]:
        with self._lock:
            return [
                record.task_id
                for record in self._records.values()
                if record.event_key == event_key and record.status != Status.DONE
            ]

    async def take(self, task_id: str, owner: str, lease_until: float) -> TaskRecord | None:
        with self._lock:
            record = self._records.get(task_id)
            if record is None or record.status != Status.RUNNING:
                return None
            record.owner, record.lease_expires_at = owner, lease_until
            return copy.deepcopy(record)

    def records(self) -> list[TaskRecord]:
        with self._lock:
            return [copy.deepcopy(record) for record in self._records.values()]


@dataclass
class Report:
    """What a task was told: ``success`` with ``output``, or ``failure`` with ``error``."""

    kind: str
    output: dict[str, Any] | None = None
    error: str | None = None
    cause: str | None = None


@dataclass
class MemoryTask:
    input: str
    open: bool = True
    heartbeats: int = 0
    reports: list[Report] = field(default_factory=list)


class MemoryChannel(TaskReports):
    """An activity in memory: ``submit`` schedules a task, ``close`` stops its execution,
    and every heartbeat and report is kept for the test to read.

    Reports go through the engine's own ``TaskReports`` (size guard, truncation, "task
    closed" answers); only the Step Functions calls underneath are in memory."""

    def __init__(self, activity_arn: str = ACTIVITY_ARN) -> None:
        super().__init__(client=self)
        self.activity_arn = activity_arn
        self.tasks: dict[str, MemoryTask] = {}
        self._pending: deque[str] = deque()
        self._lock = threading.Lock()

    def submit(self, task_input: str) -> str:
        """Schedule a task; returns its token (opaque and long, as AWS's are)."""
        token = "AAAA" + secrets.token_urlsafe(600)
        with self._lock:
            self.tasks[token] = MemoryTask(task_input)
            self._pending.append(token)
        return token

    def close(self, token: str) -> None:
        """The execution stopped: the task answers "closed" from now on."""
        with self._lock:
            self.tasks[token].open = False

    async def poll(self) -> ActivityTask | None:
        with self._lock:
            if not self._pending:
                return None
            token = self._pending.popleft()
            return ActivityTask(token, self.tasks[token].input)

    # Step Functions' task calls, as TaskReports makes them ---------------------------

    async def send_task_heartbeat(self, taskToken: str) -> None:
        with self._lock:
            task = self._open(taskToken)
            task.heartbeats += 1

    async def send_task_success(self, taskToken: str, output: str) -> None:
        self._report(taskToken, Report("success", output=json.loads(output)))

    async def send_task_failure(self, taskToken: str, error: str, cause: str) -> None:
        self._report(taskToken, Report("failure", error=error, cause=cause))

    def _report(self, token: str, report: Report) -> None:
        with self._lock:
            task = self._open(token)
            task.reports.append(report)
            task.open = False  # a reported task is closed, as on AWS

    def _open(self, token: str) -> MemoryTask:
        task = self.tasks.get(token)
        if task is None or not task.open:
            code = "InvalidToken" if task is None else "TaskTimedOut"
            raise ClientError({"Error": {"Code": code, "Message": "task closed"}}, "SendTask")
        return task
