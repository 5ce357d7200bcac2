"""``python -m runners jobs``: what the runners are tracking, for the engineer on call.

Works on the job table directly (AWS or the emulator, through the standard AWS
variables): list the tracked tasks, show one, release a lease a stuck worker holds, or
fail a task with a named error so its state machine's ``Catch`` takes over. A task
token is never printed, only its hash.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from runners.engine.engine import RELEASED
from runners.engine.records import Outcome, Status, TaskRecord
from runners.engine.runner import Failed, Job, Succeeded
from runners.engine.store import DynamoStore
from runners.errors import ConfigError, RunnerInputError
from runners.logs import token_hash
from runners.retry import error_code

# A record the operator closes is kept this long (the runners' default retention_days).
RETENTION_SECONDS = 7 * 24 * 3600
# The owner of a record an operator closed.
OPERATOR = "operator"
# The task id's first 12 characters are the token hash the logs show as ``token``.
COLUMNS = ("task", "runner", "status", "owner", "lease_left", "age", "run_id")


class TaskNotFoundError(ConfigError):
    """No record with that task id (exit code 2, like any bad argument)."""


@dataclass(frozen=True)
class Row:
    record: TaskRecord
    now: float
    live: dict[str, Any] | None = None  # the job's status now (``show`` only)

    def as_dict(self) -> dict[str, Any]:
        record = self.record
        active = record.status is not Status.DONE
        return {
            "task_id": record.task_id,
            "runner": record.runner,
            "status": record.status.value,
            "outcome": record.outcome.value if record.outcome else None,
            "error": record.error,
            "owner": record.owner,
            "lease_left_seconds": round(record.lease_expires_at - self.now, 1) if active else None,
            "age_seconds": round(self.now - record.created_at, 1),
            "run_id": record.run_id,
            "token_hash": token_hash(record.token),
            "activity_arn": record.activity_arn,
            **({"job": self.live} if self.live is not None else {}),
        }

    def cells(self) -> tuple[str, ...]:
        shown = self.as_dict()
        lease = shown["lease_left_seconds"]
        return (
            self.record.task_id,
            self.record.runner,
            shown["status"] if shown["outcome"] is None else f"DONE/{shown['outcome']}",
            self.record.owner,
            "-" if lease is None else f"{lease:.0f}s",
            f"{shown['age_seconds']:.0f}s",
            self.record.run_id or "-",
        )


@asynccontextmanager
async def open_store(table: str, region: str) -> AsyncIterator[DynamoStore]:
    """The job table, checked first: a missing or foreign table is a ``ConfigError``."""
    config = AioConfig(connect_timeout=5, read_timeout=20, retries={"mode": "standard"})
    async with get_session().create_client("dynamodb", region_name=region, config=config) as db:
        store = DynamoStore(table, region, retention_seconds=RETENTION_SECONDS, client=db)
        store.verify(f"table {table}")
        yield store


async def list_tasks(
    store: DynamoStore,
    status: Status | None,
    runner: str | None,
    limit: int,
    start_after: str | None,
) -> tuple[list[Row], str | None]:
    records, next_key = await store.scan(status, runner, limit, start_after)
    now = time.time()
    return [Row(record, now) for record in records], next_key


async def show_task(store: DynamoStore, task_id: str) -> Row:
    record = await _load(store, task_id)
    return Row(record, time.time(), live=await live_status(record, store.model.Meta.table_name))


async def live_status(record: TaskRecord, table: str) -> dict[str, Any] | None:
    """The job's status as its service reports it now (one status call, the runner's
    own), for a task still open with a job started; why not, where it cannot be had."""
    if record.status is Status.DONE or record.run_id is None:
        return None
    try:
        found = await _on_job(record, table, lambda runner, job: runner.check([job]))
    except (ConfigError, RunnerInputError, ClientError, BotoCoreError) as error:
        return {"state": "UNKNOWN", "why": str(error)[:300]}
    status = found.get(record.run_id)
    if isinstance(status, Succeeded):
        return {"state": "SUCCEEDED", "output": status.output}
    if isinstance(status, Failed):
        return {"state": "FAILED", "error": status.error, "cause": status.cause}
    return {"state": "RUNNING" if status is not None else "NOT FOUND"}


async def _on_job(record: TaskRecord, table: str, act: Callable[[Any, Job[Any]], Any]) -> Any:
    """``act(runner, job)`` with the task's own runner, built as a worker builds it."""
    from runners import settings
    from runners.runtime import open_engines

    config = settings.from_mapping(
        {"runner": record.runner, "activity_arn": record.activity_arn, "table": table}
    )
    async with open_engines([config]) as [engine]:
        job = Job(engine.runner.parse(record.task_input), record.run_id or "")
        return await act(engine.runner, job)


async def release_task(store: DynamoStore, task_id: str) -> Row:
    """Expire the lease now: the next claim by any worker takes the task over. Only
    the lease is written, and only while the owner seen here still holds it."""
    record = await _load(store, task_id)
    if record.status is Status.DONE:
        raise ConfigError(f"task {task_id} is closed already; nothing to release")
    if not await store.expire_lease(record):
        raise ConfigError(f"task {task_id} changed owner or closed meanwhile; look again")
    record.lease_expires_at = RELEASED
    return Row(record, time.time())


async def fail_task(store: DynamoStore, task_id: str, error: str, cause: str) -> Row:
    """Report the task failed with ``error`` (a name its state machine can catch), stop
    its job, and close the record as the operator's: a worker still holding the task
    finds it closed and lets it go."""
    record = await _load(store, task_id)
    if record.status is Status.DONE:
        raise ConfigError(f"task {task_id} is closed already")
    sfn = boto3.client("stepfunctions", region_name=record.activity_arn.split(":")[3])
    try:
        sfn.send_task_failure(
            taskToken=record.token, error=error, cause=json.dumps({"operator": cause})
        )
    except ClientError as refused:
        if error_code(refused) in ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist"):
            raise ConfigError(
                f"task {task_id}: Step Functions had closed it already (reported, timed "
                "out or its execution stopped); its worker closes the record"
            ) from None
        raise
    stopped = await _stop_job(record, store.model.Meta.table_name)
    record.status, record.outcome, record.error = Status.DONE, Outcome.FAILED, error
    record.finished_at = time.time()
    if not await store.close_for(record, OPERATOR):
        raise ConfigError(f"task {task_id} was reported failed, but closed meanwhile")
    return Row(record, time.time(), live={"stopped": stopped} if record.run_id else None)


async def _stop_job(record: TaskRecord, table: str) -> bool | str:
    """Stop the task's job; True, or why it could not be."""
    if record.run_id is None:
        return "no job started"
    try:
        await _on_job(record, table, lambda runner, job: runner.stop(job))
    except (ConfigError, RunnerInputError, ClientError, BotoCoreError) as error:
        return str(error)[:300]
    return True


async def _load(store: DynamoStore, task_id: str) -> TaskRecord:
    record = await store.load(task_id)
    if record is None:
        raise TaskNotFoundError(f"no task {task_id!r} in table {store.model.Meta.table_name}")
    return record


def table_text(rows: list[Row]) -> str:
    """Aligned columns; a ``show`` adds the job's live status beneath."""
    jobs = [
        f"job {row.record.run_id}: {json.dumps(row.live, default=str)}" for row in rows if row.live
    ]
    cells = [tuple(name.upper() for name in COLUMNS), *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    ) + "".join(f"\n{job}" for job in jobs)
