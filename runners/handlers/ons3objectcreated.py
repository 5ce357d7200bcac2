"""``runners.handlers.ons3objectcreated.handler``: release the waits an object ends.

Accepts S3 notifications (one or many records), the same records wrapped in SQS or SNS
messages, and EventBridge "Object Created" events. For every arrival it records the
arrival, then releases each matching waiter it can claim. It never long-polls: with
nobody waiting it returns after one write and one query.

Configuration: ``RUNNERS_WAIT_TABLE`` (the wait table), ``AWS_REGION``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from runners import logs
from runners.engine.activity import TaskReports
from runners.engine.store import DynamoStore
from runners.waits.model import Arrival, arrivals_in
from runners.waits.table import Waiter, WaitTable


class Releaser:
    """Releases the waiters one arrival ends. Task tokens are read from the waiter's job
    table through the job store, and reports go through the engine's ``TaskReports``
    (its 256 KiB guard included)."""

    def __init__(
        self, waits: WaitTable, reports: TaskReports, dynamodb: Any, region: str, claimant: str
    ) -> None:
        self.waits, self.reports, self.region, self.claimant = waits, reports, region, claimant
        self.dynamodb = dynamodb  # aiobotocore's client, for the job tables
        self._stores: dict[str, DynamoStore] = {}
        self.log = logs.get_logger(component="ons3objectcreated")

    async def arrived(self, arrival: Arrival) -> int:
        """Record the arrival, then release every waiter it satisfies; returns how many."""
        recorded = await self.waits.record_arrival(arrival)
        released = 0
        for waiter in await self.waits.waiting(recorded.bucket):
            if (
                waiter.matcher.matches(recorded.bucket, recorded.key)
                and recorded.event_time >= waiter.not_before
            ):
                released += await self._release(waiter, recorded)
        self.log.info("object arrived", bucket=recorded.bucket, key=recorded.key, released=released)
        return released

    async def _release(self, waiter: Waiter, arrival: Arrival) -> bool:
        claimed = await self.waits.claim(waiter, self.claimant, arrival)
        if claimed is None:
            return False  # another releaser won the claim
        try:
            await self._send(waiter, arrival)
        except Exception:
            await self.waits.unclaim(waiter, self.claimant)  # let the retried event try again
            raise
        await self.waits.mark_released(waiter, self.claimant)
        return True

    async def _send(self, waiter: Waiter, arrival: Arrival) -> None:
        record = await self._store(waiter.job_table).load(waiter.wait_id)
        if record is None:
            raise LookupError(f"no task {waiter.wait_id} in {waiter.job_table}")
        token = logs.token_hash(record.token)
        if await self.reports.succeed(record.token, arrival.output(waiter.activity_arn)):
            self.log.info("wait released", token=token, activity=waiter.activity_arn)
        else:
            self.log.info("wait was already closed", token=token)

    def _store(self, table: str) -> DynamoStore:
        if table not in self._stores:
            self._stores[table] = DynamoStore(
                table, self.region, retention_seconds=0, client=self.dynamodb
            )
        return self._stores[table]


def handler(event: Mapping[str, Any], context: Any) -> dict[str, int]:
    logs.configure_once(os.environ.get("RUNNERS_LOG_LEVEL", "INFO"), json_output=True)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    claimant = f"lambda:{getattr(context, 'aws_request_id', 'local')}"
    arrivals = list(arrivals_in(event))
    released = asyncio.run(
        _release_all(arrivals, os.environ["RUNNERS_WAIT_TABLE"], region, claimant)
    )
    return {"arrivals": len(arrivals), "released": released}


async def _release_all(arrivals: list[Arrival], wait_table: str, region: str, claimant: str) -> int:
    config = AioConfig(retries={"mode": "standard", "max_attempts": 5})
    session = get_session()
    async with (
        session.create_client("stepfunctions", region_name=region, config=config) as sfn,
        session.create_client("dynamodb", region_name=region, config=config) as dynamodb,
    ):
        waits = WaitTable(wait_table, region)
        releaser = Releaser(waits, TaskReports(sfn), dynamodb, region, claimant)
        try:
            return sum([await releaser.arrived(arrival) for arrival in arrivals])
        finally:
            waits.close()
