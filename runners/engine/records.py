"""The durable record of one activity task, from receipt to report."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    STARTING = "STARTING"  # stored; the job may or may not have been started
    RUNNING = "RUNNING"  # the job's run id is stored
    # Its end is being reported. Marked (conditionally) before a report only where a
    # completion event may report too: whoever marks first reports, the other lets go.
    REPORTING = "REPORTING"
    DONE = "DONE"  # reported (or closed); kept for audit until its TTL


class Outcome(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"  # the execution stopped or timed out first


def task_id_for(token: str) -> str:
    """The record key and the job's idempotency key: derived from the task token, so
    every worker computes the same one, and long enough for Athena's
    ``ClientRequestToken`` (32 to 128 characters)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class TaskRecord:
    task_id: str
    token: str
    activity_arn: str
    runner: str
    task_input: dict[str, Any]
    owner: str
    lease_expires_at: float
    created_at: float
    status: Status = Status.STARTING
    run_id: str | None = None
    # What the service's completion events call the job (``Runner.event_key``): the
    # completion handler finds the record by it while the record is open.
    event_key: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    outcome: Outcome | None = None
    error: str | None = None

    @property
    def key(self) -> str:
        return self.task_id
