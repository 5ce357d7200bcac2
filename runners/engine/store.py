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
from collections.abc import Awaitable
from typing import Any, Protocol

from botocore.exceptions import ClientError
from pynamodb.attributes import (
    JSONAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
)
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action, Update
from pynamodb.indexes import GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from runners.engine.dynamo import (
    CONDITION_FAILED,
    bind,
    ensure_table,
    epoch_datetime,
    verify_table,
)
from runners.engine.records import Outcome, Status, TaskRecord
from runners.retry import error_code


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


def create_job_table(table: str, region: str) -> None:
    """Create a job table unless it exists (local use; deployed stacks create theirs)."""
    ensure_table(bind(TaskRecordModel, table, region))


class DynamoStore:
    """Task records in DynamoDB. The PynamoDB model is the one schema: it serializes the
    items and builds every condition, update and key expression; the requests go out
    through the worker's aiobotocore client on the event loop. (Handed to a thread,
    each write cost about 0.6 ms of CPU more, and a task writes its record four times.)
    """

    def __init__(
        self,
        table: str,
        region: str,
        retention_seconds: float,
        client: Any,
        page_size: int = 100,
    ) -> None:
        self.model = bind(TaskRecordModel, table, region)
        self.table = table
        self._client = client  # aiobotocore's DynamoDB client, in the table's region
        self._retention = retention_seconds
        self._page_size = page_size

    def verify(self, role: str = "the job table") -> None:
        """``ConfigError`` unless the table has this version's key, index and TTL."""
        verify_table(self.model, role)

    async def create(self, record: TaskRecord) -> TaskRecord:
        if await self._put(self._to_model(record), self.model.task_id.does_not_exist()):
            return record
        existing = await self.load(record.task_id)
        assert existing is not None
        return existing

    async def save(self, record: TaskRecord) -> bool:
        return await self._put(self._to_model(record), self.model.owner == record.owner)

    async def claim_expired(
        self, group: str, owner: str, lease_until: float, now: float
    ) -> list[TaskRecord]:
        keys = await self._keys(
            _ByLease.Meta.index_name,
            (self.model.lease_group == group) & (self.model.lease_expires_at < now),
        )
        claimed = await asyncio.gather(
            *(self._claim(task_id, owner, lease_until, now) for task_id in keys)
        )
        return [record for record in claimed if record is not None]

    async def _claim(
        self, task_id: str, owner: str, lease_until: float, now: float
    ) -> TaskRecord | None:
        expired = (self.model.lease_expires_at < now) & self.model.lease_group.exists()
        record = await self._update(task_id, self._lease(owner, lease_until), expired)
        if record is not None:
            return record
        # Another worker was faster, the task finished meanwhile, or this claim took
        # effect and only its answer was lost (the SDK's retry then meets its own
        # write): the lease it set tells which.
        return await self._own_lease(task_id, owner, lease_until)

    async def find_open(self, event_key: str) -> list[str]:
        return await self._keys(_ByEvent.Meta.index_name, self.model.event_key == event_key)

    async def take(self, task_id: str, owner: str, lease_until: float) -> TaskRecord | None:
        running = (self.model.status == Status.RUNNING.value) & self.model.lease_group.exists()
        record = await self._update(task_id, self._lease(owner, lease_until), running)
        if record is not None:
            return record
        # Not running any more, or this take took effect and only its answer was lost.
        return await self._own_lease(task_id, owner, lease_until)

    async def scan(
        self,
        status: Status | None = None,
        runner: str | None = None,
        limit: int = 50,
        start_after: str | None = None,
    ) -> tuple[list[TaskRecord], str | None]:
        """One page of records (operator use: a scan reads the whole table), with the
        key to continue after, or None on the last page."""
        condition: Condition | None = None
        if status is not None:
            condition = self.model.status == status.value
        if runner is not None:
            by_runner = self.model.runner == runner
            condition = by_runner if condition is None else condition & by_runner
        request: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
        if condition is not None:
            request.update(_expressions(condition=condition, key="FilterExpression"))
        start = {"task_id": {"S": start_after}} if start_after else None
        found: list[TaskRecord] = []
        while True:
            page = await self._client.scan(
                **request, **({"ExclusiveStartKey": start} if start else {})
            )
            for item in page.get("Items", []):
                if len(found) == limit:  # one more exists: there is a next page
                    return found, found[-1].task_id
                found.append(self._to_record(self.model.from_raw_data(item)))
            start = page.get("LastEvaluatedKey")
            if not start:
                return found, None

    async def expire_lease(self, record: TaskRecord) -> bool:
        """Expire an open record's lease now, only while ``record.owner`` still holds it
        (operator use: nothing else in the record is written)."""
        held = (self.model.owner == record.owner) & self.model.lease_group.exists()
        expire: list[Action] = [self.model.lease_expires_at.set(0.0)]
        return await self._update(record.task_id, expire, held) is not None

    async def close_for(self, record: TaskRecord, closer: str) -> bool:
        """Close an open record as ``closer`` (operator use), only while ``record.owner``
        still holds it. The owner changes, so a worker still holding the task fails its
        next write and lets the task go instead of writing it back open."""
        record.owner, previous = closer, record.owner
        held = (self.model.owner == previous) & self.model.lease_group.exists()
        return await self._put(self._to_model(record), held)

    async def load(self, task_id: str) -> TaskRecord | None:
        answer = await self._client.get_item(
            TableName=self.table, Key=self._key(task_id), ConsistentRead=True
        )
        item = answer.get("Item")
        return None if item is None else self._to_record(self.model.from_raw_data(item))

    # Requests ----------------------------------------------------------------------

    def _lease(self, owner: str, lease_until: float) -> list[Action]:
        return [self.model.owner.set(owner), self.model.lease_expires_at.set(lease_until)]

    async def _own_lease(self, task_id: str, owner: str, lease_until: float) -> TaskRecord | None:
        record = await self.load(task_id)
        if record and record.owner == owner and record.lease_expires_at == lease_until:
            return record
        return None

    @staticmethod
    def _key(task_id: str) -> dict[str, Any]:
        return {"task_id": {"S": task_id}}

    async def _put(self, item: TaskRecordModel, condition: Condition) -> bool:
        """A conditional PutItem: False when its condition did not hold."""
        request = {"TableName": self.table, "Item": item.serialize(), **_expressions(condition)}
        return await _unless_refused(self._client.put_item(**request)) is not None

    async def _update(
        self, task_id: str, actions: list[Action], condition: Condition
    ) -> TaskRecord | None:
        """A conditional UpdateItem: the record as it is now, or None when the
        condition did not hold."""
        answer = await _unless_refused(
            self._client.update_item(
                TableName=self.table,
                Key=self._key(task_id),
                ReturnValues="ALL_NEW",
                **_expressions(condition, Update(*actions)),
            )
        )
        if answer is None:
            return None
        return self._to_record(self.model.from_raw_data(answer["Attributes"]))

    async def _keys(self, index: str, keys: Condition) -> list[str]:
        """The task ids an index holds under ``keys``, every page of them."""
        request = {
            "TableName": self.table,
            "IndexName": index,
            "Limit": self._page_size,
            **_expressions(condition=keys, key="KeyConditionExpression"),
        }
        found: list[str] = []
        start: dict[str, Any] | None = None
        while True:
            page = await self._client.query(
                **request, **({"ExclusiveStartKey": start} if start else {})
            )
            found += [item["task_id"]["S"] for item in page.get("Items", [])]
            start = page.get("LastEvaluatedKey")
            if not start:
                return found

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


def _expressions(
    condition: Condition, update: Update | None = None, key: str = "ConditionExpression"
) -> dict[str, Any]:
    """A request's expressions, as PynamoDB serializes them (names and values shared)."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    request: dict[str, Any] = {key: condition.serialize(names, values)}
    if update is not None:
        request["UpdateExpression"] = update.serialize(names, values)
    request["ExpressionAttributeNames"] = {placeholder: name for name, placeholder in names.items()}
    if values:
        request["ExpressionAttributeValues"] = values
    return request


async def _unless_refused(write: Awaitable[dict[str, Any]]) -> dict[str, Any] | None:
    """A conditional write's answer, or None when its condition did not hold, so
    callers speak of who holds the item instead of catching the SDK's errors."""
    try:
        return await write
    except ClientError as error:
        if error_code(error) != CONDITION_FAILED:
            raise
        return None
