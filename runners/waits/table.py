"""The wait table: where waiting tasks and arrived objects meet.

Items are partitioned by bucket: ``wait#<task key>`` for a waiter, ``arrival#<key>``
for the latest arrival of a key. Both sides write first and read second, with
strongly consistent reads, so of a waiter and an arrival written at the same moment at
least one side sees the other. A release is claimed with one conditional write
(WAITING -> RELEASING), so exactly one side releases; RELEASED records that the
claimant's report went through.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from pynamodb.attributes import (
    JSONAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
)
from pynamodb.models import Model

from runners.engine.dynamo import (
    Bridge,
    bind,
    condition_held,
    ensure_table,
    epoch_datetime,
    verify_table,
)
from runners.waits.model import Arrival, Matcher

WAITING, RELEASING, RELEASED = "WAITING", "RELEASING", "RELEASED"
_WAIT, _ARRIVAL = "wait#", "arrival#"


@dataclass(frozen=True)
class Waiter:
    bucket: str
    wait_id: str  # the task key: also the task record's id in ``job_table``
    activity_arn: str
    job_table: str
    matcher: Matcher
    not_before: float  # arrivals older than this do not release the wait
    status: str = WAITING
    claimant: str | None = None
    claimed_at: float | None = None
    arrival: Arrival | None = None


class WaitItemModel(Model):
    class Meta:
        table_name = "runners-waits"
        billing_mode = "PAY_PER_REQUEST"

    bucket = UnicodeAttribute(hash_key=True)
    item = UnicodeAttribute(range_key=True)
    # waiters
    activity_arn = UnicodeAttribute(null=True)
    job_table = UnicodeAttribute(null=True)
    matcher = JSONAttribute(null=True)
    not_before = NumberAttribute(null=True)
    status = UnicodeAttribute(null=True)
    claimant = UnicodeAttribute(null=True)
    claimed_at = NumberAttribute(null=True)
    arrival = JSONAttribute(null=True)
    # arrivals
    key = UnicodeAttribute(null=True)
    event_time = NumberAttribute(null=True)
    size = NumberAttribute(null=True)
    etag = UnicodeAttribute(null=True)
    version_id = UnicodeAttribute(null=True)
    sequencer = UnicodeAttribute(null=True)
    order = UnicodeAttribute(null=True)
    expires_at = TTLAttribute(null=True)


class WaitTable:
    """The wait table for async callers: PynamoDB runs on a thread bridge, as the job
    store's does."""

    def __init__(
        self,
        table: str,
        region: str,
        retention_seconds: float = 7 * 86_400,
        bridge: Bridge | None = None,
    ) -> None:
        self.model = bind(WaitItemModel, table, region)
        self.retention = retention_seconds
        self._bridge = bridge or Bridge(threads=8, name="waits")

    def close(self) -> None:
        self._bridge.close()

    def create_table(self) -> None:
        ensure_table(self.model)

    def verify(self) -> None:
        verify_table(self.model, "the wait table")

    # Arrivals ----------------------------------------------------------------------

    async def record_arrival(self, arrival: Arrival) -> Arrival:
        """Keep the newest arrival of a key; duplicates and older events change nothing.
        Returns the arrival now on record."""
        return await self._bridge.run(lambda: self._record_arrival(arrival))

    def _record_arrival(self, arrival: Arrival) -> Arrival:
        item = self.model(
            arrival.bucket,
            _ARRIVAL + arrival.key,
            key=arrival.key,
            event_time=arrival.event_time,
            size=arrival.size,
            etag=arrival.etag,
            version_id=arrival.version_id,
            sequencer=arrival.sequencer,
            order=_order(arrival),
            expires_at=epoch_datetime(arrival.event_time + self.retention),
        )
        newer = self.model.item.does_not_exist() | (self.model.order < _order(arrival))
        if condition_held(lambda: item.save(condition=newer)):
            return arrival
        return _arrival(
            self.model.get(arrival.bucket, _ARRIVAL + arrival.key, consistent_read=True)
        )

    async def arrivals(self, bucket: str, key_prefix: str = "") -> list[Arrival]:
        def query() -> list[Arrival]:
            prefix = self.model.item.startswith(_ARRIVAL + key_prefix)
            return [
                _arrival(item) for item in self.model.query(bucket, prefix, consistent_read=True)
            ]

        return await self._bridge.run(query)

    # Waiters -----------------------------------------------------------------------

    async def add_waiter(self, waiter: Waiter) -> Waiter:
        """Store a waiter once; a repeated add returns the one on record."""
        item = self._to_model(waiter)
        new = self.model.item.does_not_exist()
        if await self._bridge.run(lambda: condition_held(lambda: item.save(condition=new))):
            return waiter
        return (await self.get_waiters([(waiter.bucket, waiter.wait_id)]))[waiter.wait_id]

    async def waiting(self, bucket: str) -> list[Waiter]:
        def query() -> list[Waiter]:
            return [
                self._waiter(item)
                for item in self.model.query(
                    bucket,
                    self.model.item.startswith(_WAIT),
                    filter_condition=self.model.status == WAITING,
                    consistent_read=True,
                )
            ]

        return await self._bridge.run(query)

    async def get_waiters(self, keys: list[tuple[str, str]]) -> dict[str, Waiter]:
        def get() -> dict[str, Waiter]:
            items = self.model.batch_get(
                [(bucket, _WAIT + wait_id) for bucket, wait_id in keys], consistent_read=True
            )
            return {waiter.wait_id: waiter for waiter in map(self._waiter, items)}

        return await self._bridge.run(get)

    async def claim(self, waiter: Waiter, claimant: str, arrival: Arrival) -> Waiter | None:
        """WAITING -> RELEASING for ``claimant``; None if someone else got there first."""
        return await self._transition(
            waiter,
            self.model.status == WAITING,
            status=RELEASING,
            claimant=claimant,
            claimed_at=time.time(),
            arrival=asdict(arrival),
            expires_at=epoch_datetime(time.time() + self.retention),
        )

    async def unclaim(self, waiter: Waiter, claimant: str) -> None:
        """Give a claim back (the release could not be sent; let a retry try again)."""
        await self._transition(
            waiter,
            self.model.claimant == claimant,
            status=WAITING,
            claimant=None,
            claimed_at=None,
            arrival=None,
            expires_at=None,
        )

    async def mark_released(self, waiter: Waiter, claimant: str) -> None:
        await self._transition(waiter, self.model.claimant == claimant, status=RELEASED)

    async def remove_waiter(self, waiter: Waiter) -> None:
        """Drop a wait nobody needs any more, unless a release is under way."""
        item = self.model(waiter.bucket, _WAIT + waiter.wait_id)
        waiting = self.model.status == WAITING
        await self._bridge.run(lambda: condition_held(lambda: item.delete(condition=waiting)))

    async def _transition(self, waiter: Waiter, condition: Any, **changes: Any) -> Waiter | None:
        item = self.model(waiter.bucket, _WAIT + waiter.wait_id)
        actions = [
            getattr(self.model, name).set(value)
            if value is not None
            else getattr(self.model, name).remove()
            for name, value in changes.items()
        ]
        changed = await self._bridge.run(
            lambda: condition_held(lambda: item.update(actions=actions, condition=condition))
        )
        return self._waiter(item) if changed else None

    def _to_model(self, waiter: Waiter) -> WaitItemModel:
        return self.model(
            waiter.bucket,
            _WAIT + waiter.wait_id,
            activity_arn=waiter.activity_arn,
            job_table=waiter.job_table,
            matcher=waiter.matcher.as_dict(),
            not_before=waiter.not_before,
            status=waiter.status,
        )

    @staticmethod
    def _waiter(item: WaitItemModel) -> Waiter:
        return Waiter(
            bucket=item.bucket,
            wait_id=item.item.removeprefix(_WAIT),
            activity_arn=item.activity_arn or "",
            job_table=item.job_table or "",
            matcher=Matcher(**(item.matcher or {"bucket": item.bucket})),
            not_before=item.not_before or 0.0,
            status=item.status or WAITING,
            claimant=item.claimant,
            claimed_at=item.claimed_at,
            arrival=Arrival(**item.arrival) if item.arrival else None,
        )


def _arrival(item: WaitItemModel) -> Arrival:
    return Arrival(
        bucket=item.bucket,
        key=item.key or item.item.removeprefix(_ARRIVAL),
        event_time=item.event_time or 0.0,
        size=int(item.size) if item.size is not None else None,
        etag=item.etag,
        version_id=item.version_id,
        sequencer=item.sequencer,
    )


def _order(arrival: Arrival) -> str:
    """A string that sorts arrivals of one key by S3's sequencer (or the event time)."""
    if arrival.sequencer:
        return "s" + arrival.sequencer.rjust(64, "0")
    return f"t{arrival.event_time:020.6f}"
