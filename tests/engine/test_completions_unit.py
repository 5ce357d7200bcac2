"""The completion path on the real engine with the in-memory store and activity: one
report whatever the order of a worker's periodic check and another worker's event."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

from runners import registry
from runners.engine.completions import MAX_RECEIVES, QueuedEvent, read, sort
from runners.engine.config import EngineConfig
from runners.engine.engine import Engine
from runners.engine.records import Outcome, Status
from runners.engine.service import EndEvents
from runners.errors import ConfigError
from runners.testing import RunnerHarness
from runners.testing.harness import FAST_RETRIES
from tests.engine.test_engine_unit import FakeRunner, JobService, run

ENDS = EndEvents("aws.fake", "Fake Job State Change", "state", frozenset({"DONE"}), "runId")


class EventedRunner(FakeRunner):
    end_events: ClassVar[EndEvents | None] = ENDS


def end_event(run_id: Any, state: str = "DONE") -> dict[str, Any]:
    return {
        "source": "aws.fake",
        "detail-type": "Fake Job State Change",
        "detail": {"state": state, "runId": run_id},
    }


def pair(service: JobService) -> tuple[RunnerHarness[str], Engine[str]]:
    """Worker A (a harness) and worker B sharing its table and activity, both with
    completion events on."""
    a = RunnerHarness(EventedRunner(service), owner="a", completion_events=True)
    b = Engine(a.config, EventedRunner(service), a.channel, a.store, "b", retries=FAST_RETRIES)
    return a, b


@pytest.mark.parametrize("first", ["check", "event", "together"])
def test_a_check_and_an_event_for_the_same_end_report_it_once(first: str) -> None:
    service = JobService()

    async def scenario() -> tuple[int, Any, Engine[str], RunnerHarness[str]]:
        a, b = pair(service)
        token = await a.submit({"JobName": "nightly"})
        service.states["nightly-1"] = "DONE"
        if first == "check":
            await a.engine.check()
            again = await b.complete({"nightly-1"})
            assert again == {"nightly-1"}  # nothing open: tried again, then let go
        elif first == "event":
            assert await b.complete({"nightly-1"}) == set()
            await a.engine.check()
        else:
            await asyncio.gather(a.engine.check(), b.complete({"nightly-1"}))
        return len(a.channel.tasks[token].reports), a.record(token), b, a

    reports, record, b, a = run(scenario())

    assert reports == 1
    assert (record.status, record.outcome) == (Status.DONE, Outcome.SUCCEEDED)
    assert a.engine.counters.succeeded + b.counters.succeeded == 1
    if first == "event":
        assert record.owner == "b"
        assert a.engine.counters.lost == 1  # A let go at its next write
        assert not a.engine.in_flight


def test_one_worker_checking_and_taking_an_event_for_the_same_end_reports_it_once() -> None:
    """The check and the event path of one worker, both back from their status calls
    before either report starts: the task is taken up by one of them only (the
    benchmark once saw two reports here, the second answered TaskTimedOut)."""
    service = JobService()

    async def scenario() -> tuple[list[str], set[str], Any]:
        a = RunnerHarness(EventedRunner(service), owner="a", completion_events=True)
        token = await a.submit({"JobName": "nightly"})
        service.states["nightly-1"] = "DONE"
        sent: list[str] = []  # every report sent, accepted or not
        report = a.channel.send_task_success

        async def counted(taskToken: str, output: str) -> None:
            sent.append(taskToken)
            await report(taskToken=taskToken, output=output)

        a.channel.send_task_success = counted  # type: ignore[method-assign]
        _, again = await asyncio.gather(a.engine.check(), a.engine.complete({"nightly-1"}))
        await a.engine.check()
        return sent, again, a.record(token)

    sent, again, record = run(scenario())

    assert len(sent) == 1
    assert (record.status, record.outcome) == (Status.DONE, Outcome.SUCCEEDED)
    assert again <= {"nightly-1"}  # the event comes back at most (then finds it closed)


def test_an_event_for_a_job_still_running_is_checked_and_tried_again() -> None:
    """Events may run ahead of the status the service answers: the task is not reported
    on the event's word, and the event comes back."""
    service = JobService()

    async def scenario() -> tuple[set[str], int, Any]:
        a, b = pair(service)
        token = await a.submit({"JobName": "nightly"})
        again = await b.complete({"nightly-1"})
        return again, len(a.channel.tasks[token].reports), a.record(token)

    again, reports, record = run(scenario())

    assert again == {"nightly-1"}
    assert reports == 0
    assert (record.status, record.owner) == (Status.RUNNING, "b")  # B checks it now


def test_an_event_for_a_task_whose_run_id_is_not_stored_is_tried_again() -> None:
    service = JobService()

    async def scenario() -> set[str]:
        a, b = pair(service)
        await a.submit({"JobName": "nightly"})
        return await b.complete({"nightly-9"})

    assert run(scenario()) == {"nightly-9"}


def test_without_completion_events_a_report_writes_no_mark() -> None:
    """Off, the report path is today's: report, then one write closing the record."""
    service = JobService()
    statuses: list[Status] = []

    async def scenario() -> None:
        async with RunnerHarness(FakeRunner(service)) as harness:
            save = harness.store.save

            async def recording(record: Any) -> bool:
                statuses.append(record.status)
                return await save(record)

            harness.store.save = recording  # type: ignore[method-assign]
            token = await harness.submit({"JobName": "nightly"})
            service.states["nightly-1"] = "DONE"
            await harness.settle(token)

    run(scenario())
    assert Status.REPORTING not in statuses
    assert statuses[-1] is Status.DONE


def test_end_events_name_a_job_only_for_an_end_of_their_own_kind() -> None:
    assert ENDS.key_of(end_event("r-1")) == "r-1"
    assert ENDS.key_of(end_event("r-1", "RUNNING")) is None
    assert ENDS.key_of(end_event(7)) is None
    assert ENDS.key_of(end_event("")) is None
    assert ENDS.key_of({**end_event("r-1"), "source": "aws.other"}) is None
    assert ENDS.key_of({"source": "aws.fake", "detail-type": "Fake Job State Change"}) is None
    assert ENDS.pattern == {
        "source": ["aws.fake"],
        "detail-type": ["Fake Job State Change"],
        "detail": {"state": ["DONE"]},
    }


@pytest.mark.parametrize("name", ["glue", "athena", "crawler"])
def test_each_end_event_state_is_an_end_in_the_runners_state_table(name: str) -> None:
    """The events' states and the status calls' states are the service's two words for
    one thing: an event state must be one the state table ends a job in (a crawl's
    events capitalise what LastCrawlStatus spells in capitals)."""
    definition = registry.get(name)
    ends, states = definition.completion_events, definition.states
    assert ends is not None
    assert states is not None
    terminal = states.succeeded | states.failed
    assert {state.upper() for state in ends.ended} <= terminal


def test_a_message_is_let_go_once_received_too_often_or_when_it_names_nothing() -> None:
    def event(key: str | None, receives: int) -> QueuedEvent:
        return QueuedEvent(f"m{receives}", "r", key, receives)

    events = [event("k", 1), event("k", MAX_RECEIVES), event(None, 1), event("done", 1)]
    done, later = sort(events, again={"k"})
    assert later == [events[0]]
    assert done == events[1:]


@pytest.mark.parametrize("body", ["not json", "[1]", '"text"', "{}"])
def test_a_malformed_message_names_no_job(body: str) -> None:
    runner = EventedRunner(JobService())
    assert read(runner, "m", "r", body, 1).key is None


def test_events_of_runners_without_them_name_nothing() -> None:
    assert FakeRunner(JobService()).ended(end_event("r-1")) is None
    assert EventedRunner(JobService()).ended(end_event("r-1")) == "r-1"


def test_a_lease_shorter_than_two_check_intervals_is_a_config_error() -> None:
    arn = "arn:aws:states:us-east-1:123456789012:activity:A"
    with pytest.raises(ConfigError, match="at least twice check_interval_seconds"):
        EngineConfig(activity_arn=arn, table="t", check_interval_seconds=60, lease_seconds=100)
    assert EngineConfig(activity_arn=arn, table="t", completion_queue_url="q").events_on
