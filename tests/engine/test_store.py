"""One contract, two stores: DynamoDB (requests built by its PynamoDB model, sent by
aiobotocore, on the emulator) and memory."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from runners.engine.records import Outcome, Status, TaskRecord, task_id_for
from runners.engine.store import DynamoStore, JobStore
from runners.local import Emulator
from runners.local.faults import Fault
from runners.testing import MemoryStore
from tests.aio import AioLoop

MakeStore = Callable[..., DynamoStore]
Run = Callable[[Coroutine[Any, Any, Any]], Any]

GROUP = "arn:aws:states:us-east-1:123456789012:activity:Work"


@pytest.fixture(params=["dynamodb", "memory"])
def store(request: pytest.FixtureRequest, job_store: MakeStore) -> JobStore:
    return MemoryStore() if request.param == "memory" else job_store("tasks")


@pytest.fixture
def run(aio_loop: AioLoop) -> Run:
    """Await a store's call on the loop its client belongs to."""
    return aio_loop.run


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


def test_create_keeps_the_first_record(store: JobStore, run: Run) -> None:
    first = run(store.create(record(1, owner="a")))
    second = run(store.create(record(1, owner="b")))

    assert first.owner == second.owner == "a"
    loaded = run(store.load(first.task_id))
    assert loaded == first


def test_only_the_owner_can_save(store: JobStore, run: Run) -> None:
    mine = run(store.create(record(1, owner="a", lease=10.0)))
    mine.status, mine.run_id = Status.RUNNING, "jr_1"
    assert run(store.save(mine))

    [theirs] = run(store.claim_expired(GROUP, "b", lease_until=200.0, now=50.0))
    mine.error = "late write"

    assert not run(store.save(mine))
    assert theirs.owner == "b"
    assert theirs.run_id == "jr_1"
    assert run(store.load(mine.task_id)).error is None


def test_claims_take_only_expired_active_records_of_the_group(store: JobStore, run: Run) -> None:
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


def test_finished_records_leave_the_lease_index_and_expire(
    aws: Emulator, job_store: MakeStore, run: Run
) -> None:
    store = job_store("audit", retention_seconds=7 * 86400)
    done = run(store.create(record(1, lease=10.0)))
    done.status, done.outcome, done.finished_at = Status.DONE, Outcome.FAILED, 1000.0
    run(store.save(done))

    item = store.model.get(done.task_id)

    assert item.lease_group is None
    assert item.expires_at.timestamp() == 1000.0 + 7 * 86400
    assert aws.client("dynamodb").describe_time_to_live(TableName="audit")[
        "TimeToLiveDescription"
    ] == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


def test_claims_page_through_any_number_of_orphans(
    aws: Emulator, job_store: MakeStore, run: Run
) -> None:
    store = job_store("many", retention_seconds=60, page_size=25)
    for n in range(120):
        run(store.create(record(n, lease=10.0)))
    aws.faults.calls.clear()

    claimed = run(store.claim_expired(GROUP, "b", lease_until=500.0, now=50.0))

    assert len(claimed) == 120
    assert aws.faults.calls["dynamodb:Query"] == 5
    assert aws.faults.calls["dynamodb:Scan"] == 0


def test_records_round_trip(store: JobStore, run: Run) -> None:
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


def test_a_claim_whose_answer_was_lost_is_still_taken(
    aws: Emulator, job_store: MakeStore, run: Run
) -> None:
    # The update took effect but its answer was lost, so the SDK sends it again and the
    # second attempt fails its condition (UpdateItem: ConditionalCheckFailedException
    # "The conditional request failed"). Without a look at the record the claim would
    # sit unused until its own lease ran out.
    store = job_store("tasks")
    run(store.create(record(1, owner="a", lease=10.0)))
    aws.faults.add(Fault("dynamodb:UpdateItem", "lost", limit=1))
    claimed = run(store.claim_expired(GROUP, "b", lease_until=200.0, now=50.0))

    assert [(r.owner, r.lease_expires_at) for r in claimed] == [("b", 200.0)]
    assert aws.faults.calls["dynamodb:UpdateItem"] == 2


def test_an_event_key_finds_the_open_records_of_its_job_only(store: JobStore, run: Run) -> None:
    running = dataclasses.replace(record(1), status=Status.RUNNING, run_id="jr_1", event_key="jr_1")
    other = dataclasses.replace(record(2), status=Status.RUNNING, run_id="jr_2", event_key="jr_2")
    closed = dataclasses.replace(record(3), status=Status.RUNNING, run_id="jr_1", event_key="jr_1")
    for each in (running, other, closed):
        run(store.create(each))
    closed.status, closed.outcome = Status.DONE, Outcome.SUCCEEDED
    assert run(store.save(closed))

    assert run(store.find_open("jr_1")) == [running.task_id]
    assert run(store.find_open("jr_9")) == []


def test_a_running_record_is_taken_from_its_holder_and_a_reported_one_is_not(
    store: JobStore, run: Run
) -> None:
    held = run(store.create(dataclasses.replace(record(1, owner="a"), status=Status.RUNNING)))
    reporting = run(
        store.create(dataclasses.replace(record(2, owner="a"), status=Status.REPORTING))
    )

    taken = run(store.take(held.task_id, "b", lease_until=300.0))
    refused = run(store.take(reporting.task_id, "b", lease_until=300.0))

    assert (taken.owner, taken.lease_expires_at, taken.status) == ("b", 300.0, Status.RUNNING)
    assert not run(store.save(held))  # its old holder's next write fails: it lets go
    assert refused is None
    assert run(store.load(reporting.task_id)).owner == "a"


def test_a_take_whose_answer_was_lost_is_still_taken(
    aws: Emulator, job_store: MakeStore, run: Run
) -> None:
    store = job_store("tasks")
    held = run(store.create(dataclasses.replace(record(1, owner="a"), status=Status.RUNNING)))
    aws.faults.add(Fault("dynamodb:UpdateItem", "lost", limit=1))

    taken = run(store.take(held.task_id, "b", lease_until=300.0))

    assert (taken.owner, taken.lease_expires_at) == ("b", 300.0)
    assert aws.faults.calls["dynamodb:UpdateItem"] == 2
