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
from datetime import UTC, datetime
from typing import Any

from pynamodb.attributes import (
    JSONAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
)
from pynamodb.exceptions import DeleteError, PutError, UpdateError
from pynamodb.models import Model

from runners.engine.store import ensure_table
from runners.retry import error_code
from runners.waits.model import Arrival, Matcher

WAITING, RELEASING, RELEASED = "WAITING", "RELEASING", "RELEASED"
_CONDITION_FAILED = "ConditionalCheckFailedException"
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
    """Synchronous (PynamoDB); async callers run it on a thread."""

    def __init__(self, table: str, region: str, retention_seconds: float = 7 * 86_400) -> None:
        meta = type("Meta", (WaitItemModel.Meta,), {"table_name": table, "region": region})
        self.model: type[WaitItemModel] = type(
            f"WaitItemModel_{table}", (WaitItemModel,), {"Meta": meta, "__module__": __name__}
        )
        self.retention = retention_seconds

    def create_table(self) -> None:
        ensure_table(self.model)

    # Arrivals ----------------------------------------------------------------------

    def record_arrival(self, arrival: Arrival) -> Arrival:
        """Keep the newest arrival of a key; duplicates and older events change nothing.
        Returns the arrival now on record."""
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
            expires_at=_datetime(arrival.event_time + self.retention),
        )
        try:
            item.save(
                condition=self.model.item.does_not_exist() | (self.model.order < _order(arrival))
            )
        except PutError as error:
            if error_code(error) != _CONDITION_FAILED:
                raise
            return _arrival(
                self.model.get(arrival.bucket, _ARRIVAL + arrival.key, consistent_read=True)
            )
        return arrival

    def arrivals(self, bucket: str, key_prefix: str = "") -> list[Arrival]:
        return [
            _arrival(item)
            for item in self.model.query(
                bucket, self.model.item.startswith(_ARRIVAL + key_prefix), consistent_read=True
            )
        ]

    # Waiters -----------------------------------------------------------------------

    def add_waiter(self, waiter: Waiter) -> Waiter:
        """Store a waiter once; a repeated add returns the one on record."""
        try:
            self._to_model(waiter).save(condition=self.model.item.does_not_exist())
        except PutError as error:
            if error_code(error) != _CONDITION_FAILED:
                raise
            stored = self.get_waiters([(waiter.bucket, waiter.wait_id)])
            return stored[waiter.wait_id]
        return waiter

    def waiting(self, bucket: str) -> list[Waiter]:
        return [
            self._waiter(item)
            for item in self.model.query(
                bucket,
                self.model.item.startswith(_WAIT),
                filter_condition=self.model.status == WAITING,
                consistent_read=True,
            )
        ]

    def get_waiters(self, keys: list[tuple[str, str]]) -> dict[str, Waiter]:
        items = self.model.batch_get(
            [(bucket, _WAIT + wait_id) for bucket, wait_id in keys], consistent_read=True
        )
        return {waiter.wait_id: waiter for waiter in map(self._waiter, items)}

    def claim(self, waiter: Waiter, claimant: str, arrival: Arrival) -> Waiter | None:
        """WAITING -> RELEASING for ``claimant``; None if someone else got there first."""
        return self._transition(
            waiter,
            self.model.status == WAITING,
            status=RELEASING,
            claimant=claimant,
            claimed_at=time.time(),
            arrival=_arrival_dict(arrival),
            expires_at=_datetime(time.time() + self.retention),
        )

    def unclaim(self, waiter: Waiter, claimant: str) -> None:
        """Give a claim back (the release could not be sent; let a retry try again)."""
        self._transition(
            waiter,
            self.model.claimant == claimant,
            status=WAITING,
            claimant=None,
            claimed_at=None,
            arrival=None,
            expires_at=None,
        )

    def mark_released(self, waiter: Waiter, claimant: str) -> None:
        self._transition(waiter, self.model.claimant == claimant, status=RELEASED)

    def remove_waiter(self, waiter: Waiter) -> None:
        """Drop a wait nobody needs any more, unless a release is under way."""
        try:
            self.model(waiter.bucket, _WAIT + waiter.wait_id).delete(
                condition=self.model.status == WAITING
            )
        except DeleteError as error:
            if error_code(error) != _CONDITION_FAILED:
                raise

    def _transition(self, waiter: Waiter, condition: Any, **changes: Any) -> Waiter | None:
        item = self.model(waiter.bucket, _WAIT + waiter.wait_id)
        actions = [
            getattr(self.model, name).set(value)
            if value is not None
            else getattr(self.model, name).remove()
            for name, value in changes.items()
        ]
        try:
            item.update(actions=actions, condition=condition)
        except UpdateError as error:
            if error_code(error) == _CONDITION_FAILED:
                return None
            raise
        return self._waiter(item)

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


def _arrival_dict(arrival: Arrival) -> dict[str, Any]:
    return asdict(arrival)


def _order(arrival: Arrival) -> str:
    """A string that sorts arrivals of one key by S3's sequencer (or the event time)."""
    if arrival.sequencer:
        return "s" + arrival.sequencer.rjust(64, "0")
    return f"t{arrival.event_time:020.6f}"


def _datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)
