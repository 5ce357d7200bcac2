"""Where task records live: the job table in DynamoDB (``runners.testing`` has the same
contract in memory for fast unit tests).

Ownership rules, the same for every store:
- every write is conditional on the writer still owning the record, so a worker whose
  lease was taken over can never overwrite the new owner's progress;
- a record whose lease expired can be claimed by any worker with one conditional write;
- active records sit in a sparse index keyed by lease group (the activity) and lease
  expiry, so finding orphans is a query for expired leases, never a scan, paged through
  however many there are; finished records leave the index and expire by TTL;
- running records sit in a second sparse index by what the service's completion events
  call their job, so an event finds its task (whoever holds it) with one query; a
  running record can be taken by the event path with one conditional write, and a
  record marked REPORTING can no longer be taken: one reporter only.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from pynamodb.attributes import (
    JSONAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
)
from pynamodb.expressions.update import Action
from pynamodb.indexes import GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from runners.engine.dynamo import (
    Bridge,
    bind,
    condition_held,
    ensure_table,
    epoch_datetime,
    verify_table,
)
from runners.engine.records import Outcome, Status, TaskRecord


class JobStore(Protocol):
    async def create(self, record: TaskRecord) -> TaskRecord:
        """Store a new record; if the task already has one, return that instead."""
        ...

    async def save(self, record: TaskRecord) -> bool:
        """Write the record if ``record.owner`` still owns it; False if it was taken."""
        ...

    async def claim_expired(
        self, group: str, owner: str, lease_until: float, now: float
    ) -> list[TaskRecord]:
        """Take over every active record of ``group`` whose lease expired before ``now``."""
        ...

    async def load(self, task_id: str) -> TaskRecord | None: ...

    async def find_open(self, event_key: str) -> list[str]:
        """The ids of the open records whose job completion events call ``event_key``."""
        ...

    async def take(self, task_id: str, owner: str, lease_until: float) -> TaskRecord | None:
        """Take a RUNNING record from whoever holds it (a completion event says its job
        ended); None if it is no longer RUNNING (being reported, or done)."""
        ...


class _ByLease(GlobalSecondaryIndex):  # type: ignore[type-arg,no-untyped-call]
    class Meta:
        index_name = "by-lease"
        projection = KeysOnlyProjection()

    lease_group = UnicodeAttribute(hash_key=True)
    lease_expires_at = NumberAttribute(range_key=True)


class _ByEvent(GlobalSecondaryIndex):  # type: ignore[type-arg,no-untyped-call]
    class Meta:
        index_name = "by-event"
        projection = KeysOnlyProjection()

    event_key = UnicodeAttribute(hash_key=True)


class TaskRecordModel(Model):
    """The table's schema. ``lease_group`` is set only while a record is active."""

    class Meta:
        table_name = "runners-tasks"
        billing_mode = "PAY_PER_REQUEST"
        max_pool_connections = 32

    task_id = UnicodeAttribute(hash_key=True)
    token = UnicodeAttribute()
    activity_arn = UnicodeAttribute()
    runner = UnicodeAttribute()
    task_input = JSONAttribute()
    owner = UnicodeAttribute()
    lease_group = UnicodeAttribute(null=True)  # absent once DONE: out of the index
    lease_expires_at = NumberAttribute()
    created_at = NumberAttribute()
    status = UnicodeAttribute()
    run_id = UnicodeAttribute(null=True)
    event_key = UnicodeAttribute(null=True)  # absent once DONE: out of the index
    started_at = NumberAttribute(null=True)
    finished_at = NumberAttribute(null=True)
    outcome = UnicodeAttribute(null=True)
    error = UnicodeAttribute(null=True)
    expires_at = TTLAttribute(null=True)
    by_lease = _ByLease()
    by_event = _ByEvent()


class DynamoStore:
    """Task records in DynamoDB, through PynamoDB on a thread bridge."""

    def __init__(
        self,
        table: str,
        region: str,
        retention_seconds: float,
        page_size: int = 100,
        bridge: Bridge | None = None,
    ) -> None:
        self.model = bind(TaskRecordModel, table, region)
        self._retention = retention_seconds
        self._page_size = page_size
        self._bridge = bridge or Bridge(name="store")

    def close(self) -> None:
        self._bridge.close()

    def create_table(self) -> None:
        """Create the table if missing (local use; deployed stacks create it)."""
        ensure_table(self.model)

    def verify(self, role: str = "the job table") -> None:
        """``ConfigError`` unless the table has this version's key, index and TTL."""
        verify_table(self.model, role)

    async def create(self, record: TaskRecord) -> TaskRecord:
        item = self._to_model(record)
        new = self.model.task_id.does_not_exist()
        if await self._bridge.run(lambda: condition_held(lambda: item.save(condition=new))):
            return record
        existing = await self.load(record.task_id)
        assert existing is not None
        return existing

    async def save(self, record: TaskRecord) -> bool:
        item = self._to_model(record)
        owned = self.model.owner == record.owner
        return await self._bridge.run(lambda: condition_held(lambda: item.save(condition=owned)))

    async def claim_expired(
        self, group: str, owner: str, lease_until: float, now: float
    ) -> list[TaskRecord]:
        keys = await self._bridge.run(
            lambda: [
                item.task_id
                for item in self.model.by_lease.query(
                    group, self.model.lease_expires_at < now, page_size=self._page_size
                )
            ]
        )
        claimed = await asyncio.gather(
            *(self._claim(task_id, owner, lease_until, now) for task_id in keys)
        )
        return [record for record in claimed if record is not None]

    async def _claim(
        self, task_id: str, owner: str, lease_until: float, now: float
    ) -> TaskRecord | None:
        item = self.model(task_id)
        expired = (self.model.lease_expires_at < now) & self.model.lease_group.exists()
        taken: list[Action] = [
            self.model.owner.set(owner),
            self.model.lease_expires_at.set(lease_until),
        ]
        if await self._bridge.run(
            lambda: condition_held(lambda: item.update(actions=taken, condition=expired))
        ):
            return self._to_record(item)
        # Another worker was faster, the task finished meanwhile, or this claim took
        # effect and only its answer was lost (the SDK's retry then meets its own
        # write): the lease it set tells which.
        record = await self.load(task_id)
        if record and record.owner == owner and record.lease_expires_at == lease_until:
            return record
        return None

    async def find_open(self, event_key: str) -> list[str]:
        return await self._bridge.run(
            lambda: [item.task_id for item in self.model.by_event.query(event_key)]
        )

    async def take(self, task_id: str, owner: str, lease_until: float) -> TaskRecord | None:
        item = self.model(task_id)
        running = (self.model.status == Status.RUNNING.value) & self.model.lease_group.exists()
        taken: list[Action] = [
            self.model.owner.set(owner),
            self.model.lease_expires_at.set(lease_until),
        ]
        if await self._bridge.run(
            lambda: condition_held(lambda: item.update(actions=taken, condition=running))
        ):
            return self._to_record(item)
        # Not running any more, or this take took effect and only its answer was lost.
        record = await self.load(task_id)
        if record and record.owner == owner and record.lease_expires_at == lease_until:
            return record
        return None

    async def scan(
        self,
        status: Status | None = None,
        runner: str | None = None,
        limit: int = 50,
        start_after: str | None = None,
    ) -> tuple[list[TaskRecord], str | None]:
        """One page of records (operator use: a scan reads the whole table), with the
        key to continue after, or None on the last page."""
        condition = None
        if status is not None:
            condition = self.model.status == status.value
        if runner is not None:
            by_runner = self.model.runner == runner
            condition = by_runner if condition is None else condition & by_runner
        start = {"task_id": {"S": start_after}} if start_after else None

        def page() -> tuple[list[TaskRecord], str | None]:
            found: list[TaskRecord] = []
            items = self.model.scan(condition, last_evaluated_key=start, consistent_read=True)
            for item in items:
                if len(found) == limit:  # one more exists: there is a next page
                    return found, found[-1].task_id
                found.append(self._to_record(item))
            return found, None

        return await self._bridge.run(page)

    async def expire_lease(self, record: TaskRecord) -> bool:
        """Expire an open record's lease now, only while ``record.owner`` still holds it
        (operator use: nothing else in the record is written)."""
        item = self.model(record.task_id)
        held = (self.model.owner == record.owner) & self.model.lease_group.exists()
        expire: list[Action] = [self.model.lease_expires_at.set(0.0)]
        return await self._bridge.run(
            lambda: condition_held(lambda: item.update(actions=expire, condition=held))
        )

    async def close_for(self, record: TaskRecord, closer: str) -> bool:
        """Close an open record as ``closer`` (operator use), only while ``record.owner``
        still holds it. The owner changes, so a worker still holding the task fails its
        next write and lets the task go instead of writing it back open."""
        record.owner, previous = closer, record.owner
        item = self._to_model(record)
        held = (self.model.owner == previous) & self.model.lease_group.exists()
        return await self._bridge.run(lambda: condition_held(lambda: item.save(condition=held)))

    async def load(self, task_id: str) -> TaskRecord | None:
        try:
            item = await self._bridge.run(lambda: self.model.get(task_id, consistent_read=True))
        except self.model.DoesNotExist:
            return None
        return self._to_record(item)

    def _to_model(self, record: TaskRecord) -> TaskRecordModel:
        active = record.status != Status.DONE
        expires = None if active else (record.finished_at or record.created_at) + self._retention
        return self.model(
            record.task_id,
            token=record.token,
            activity_arn=record.activity_arn,
            runner=record.runner,
            task_input=record.task_input,
            owner=record.owner,
            lease_group=record.activity_arn if active else None,
            lease_expires_at=record.lease_expires_at,
            created_at=record.created_at,
            status=record.status.value,
            run_id=record.run_id,
            event_key=record.event_key if active else None,
            started_at=record.started_at,
            finished_at=record.finished_at,
            outcome=record.outcome.value if record.outcome else None,
            error=record.error,
            expires_at=epoch_datetime(expires),
        )

    @staticmethod
    def _to_record(item: TaskRecordModel) -> TaskRecord:
        return TaskRecord(
            task_id=item.task_id,
            token=item.token,
            activity_arn=item.activity_arn,
            runner=item.runner,
            task_input=item.task_input,
            owner=item.owner,
            lease_expires_at=item.lease_expires_at,
            created_at=item.created_at,
            status=Status(item.status),
            run_id=item.run_id,
            event_key=item.event_key,
            started_at=item.started_at,
            finished_at=item.finished_at,
            outcome=Outcome(item.outcome) if item.outcome else None,
            error=item.error,
        )
