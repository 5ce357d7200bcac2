"""One contract, two stores: DynamoDB (through PynamoDB, on the emulator) and memory."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from runners.engine.records import Outcome, Status, TaskRecord, task_id_for
from runners.engine.store import DynamoStore, JobStore
from runners.local import Emulator
from runners.local.faults import Fault
from runners.testing import MemoryStore

GROUP = "arn:aws:states:us-east-1:123456789012:activity:Work"


@pytest.fixture(params=["dynamodb", "memory"])
def store(request: pytest.FixtureRequest, aws: Emulator) -> Iterator[JobStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    dynamo = DynamoStore("tasks", "us-east-1", retention_seconds=3600, page_size=100)
    dynamo.create_table()
    yield dynamo
    dynamo.close()


def record(n: int, owner: str = "a", lease: float = 100.0, group: str = GROUP) -> TaskRecord:
    token = f"token-{n}"
    return TaskRecord(
        task_id=task_id_for(token),
        token=token,
        activity_arn=group,
        runner="glue",
        task_input={"GlueJobName": "J", "n": n},
        owner=owner,
        lease_expires_at=lease,
        created_at=1.0,
    )


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_create_keeps_the_first_record(store: JobStore) -> None:
    first = run(store.create(record(1, owner="a")))
    second = run(store.create(record(1, owner="b")))

    assert first.owner == second.owner == "a"
    loaded = run(store.load(first.task_id))
    assert loaded == first


def test_only_the_owner_can_save(store: JobStore) -> None:
    mine = run(store.create(record(1, owner="a", lease=10.0)))
    mine.status, mine.run_id = Status.RUNNING, "jr_1"
    assert run(store.save(mine))

    [theirs] = run(store.claim_expired(GROUP, "b", lease_until=200.0, now=50.0))
    mine.error = "late write"

    assert not run(store.save(mine))
    assert theirs.owner == "b"
    assert theirs.run_id == "jr_1"
    assert run(store.load(mine.task_id)).error is None


def test_claims_take_only_expired_active_records_of_the_group(store: JobStore) -> None:
    run(store.create(record(1, lease=10.0)))
    run(store.create(record(2, lease=90.0)))
    run(store.create(record(3, lease=10.0, group=GROUP + "Other")))
    done = run(store.create(record(4, lease=10.0)))
    done.status, done.outcome, done.finished_at = Status.DONE, Outcome.SUCCEEDED, 20.0
    run(store.save(done))

    claimed = run(store.claim_expired(GROUP, "b", lease_until=150.0, now=50.0))
    again = run(store.claim_expired(GROUP, "c", lease_until=150.0, now=60.0))

    assert [r.task_input["n"] for r in claimed] == [1]
    assert (claimed[0].owner, claimed[0].lease_expires_at) == ("b", 150.0)
    assert again == []


def test_finished_records_leave_the_lease_index_and_expire(aws: Emulator) -> None:
    store = DynamoStore("audit", "us-east-1", retention_seconds=7 * 86400)
    store.create_table()
    done = run(store.create(record(1, lease=10.0)))
    done.status, done.outcome, done.finished_at = Status.DONE, Outcome.FAILED, 1000.0
    run(store.save(done))

    item = store.model.get(done.task_id)
    store.close()

    assert item.lease_group is None
    assert item.expires_at.timestamp() == 1000.0 + 7 * 86400
    assert aws.client("dynamodb").describe_time_to_live(TableName="audit")[
        "TimeToLiveDescription"
    ] == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


def test_claims_page_through_any_number_of_orphans(aws: Emulator) -> None:
    store = DynamoStore("many", "us-east-1", retention_seconds=60, page_size=25)
    store.create_table()
    for n in range(120):
        run(store.create(record(n, lease=10.0)))
    aws.faults.calls.clear()

    claimed = run(store.claim_expired(GROUP, "b", lease_until=500.0, now=50.0))
    store.close()

    assert len(claimed) == 120
    assert aws.faults.calls["dynamodb:Query"] == 5
    assert aws.faults.calls["dynamodb:Scan"] == 0


def test_records_round_trip(store: JobStore) -> None:
    original = dataclasses.replace(
        record(7),
        status=Status.DONE,
        run_id="q-1",
        started_at=2.5,
        finished_at=9.0,
        outcome=Outcome.CANCELLED,
        error="E",
    )

    run(store.create(original))

    assert run(store.load(original.task_id)) == original


def test_a_claim_whose_answer_was_lost_is_still_taken(aws: Emulator) -> None:
    # The update took effect but its answer was lost, so the SDK sends it again and the
    # second attempt fails its condition (UpdateItem: ConditionalCheckFailedException
    # "The conditional request failed"). Without a look at the record the claim would
    # sit unused until its own lease ran out.
    store = DynamoStore("tasks", "us-east-1", retention_seconds=3600, page_size=100)
    store.create_table()
    run(store.create(record(1, owner="a", lease=10.0)))
    aws.faults.add(Fault("dynamodb:UpdateItem", "lost", limit=1))
    try:
        claimed = run(store.claim_expired(GROUP, "b", lease_until=200.0, now=50.0))
    finally:
        store.close()

    assert [(r.owner, r.lease_expires_at) for r in claimed] == [("b", 200.0)]
    assert aws.faults.calls["dynamodb:UpdateItem"] == 2
