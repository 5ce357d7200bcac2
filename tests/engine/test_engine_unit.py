"""The engine on ``runners.testing``: the real engine, an in-memory store and activity, and
a job service in memory behind a small runner. Milliseconds a test, no emulator."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from botocore.exceptions import ClientError

from runners.engine.engine import Engine
from runners.engine.inputs import Fields
from runners.engine.records import Outcome, Status, TaskRecord
from runners.engine.runner import RUNNING, Failed, Job, JobStatus, Runner, Succeeded, TaskStart
from runners.engine.service import Phase, Refusals, StateTable
from runners.retry import RETRIES
from runners.testing import MemoryStore, Report, RunnerHarness

STATES = StateTable(
    "fake", "JobState", running={"RUNNING"}, succeeded={"DONE"}, failed={"BROKEN", "STOPPED"}
)


def refused(code: str, status: int = 400) -> ClientError:
    response: dict[str, Any] = {
        "Error": {"Code": code, "Message": f"{code} said no"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "StartJob")  # type: ignore[arg-type]


@dataclass
class JobService:
    """Jobs by id; a start with a known key returns that key's job (an idempotent API)."""

    states: dict[str, str] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)
    starts: int = 0
    stopped: list[str] = field(default_factory=list)
    refuse_with: ClientError | None = None
    lose_answers: int = 0  # starts that take effect but whose answer is lost
    result_size: int = 10

    def start(self, name: str, key: str) -> str:
        self.starts += 1
        if self.refuse_with is not None:
            raise self.refuse_with
        run_id = self.by_key.setdefault(key, f"{name}-{len(self.by_key) + 1}")
        self.states.setdefault(run_id, "RUNNING")
        if self.lose_answers:
            self.lose_answers -= 1
            raise refused("InternalFailure", 500)
        return run_id


class FakeRunner(Runner[str]):
    name = "fake"
    idempotent_start = True
    refusals: ClassVar[Refusals] = Refusals(
        try_later={"LimitExceeded": "FakeLimitError"},
        input_errors={"NoSuchJob": "JobName"},
        failure="FakeStartError",
    )

    def __init__(self, service: JobService) -> None:
        self.service = service

    def parse(self, document: Mapping[str, Any]) -> str:
        return Fields(document).required_text("JobName")

    def describe(self, spec: str) -> dict[str, str]:
        return {"job_name": spec}

    async def start(self, spec: str, task: TaskStart) -> str:
        return self.service.start(spec, task.key)

    async def check(self, jobs: Sequence[Job[str]]) -> Mapping[str, JobStatus]:
        return {job.run_id: self._status(job.run_id) for job in jobs}

    def _status(self, run_id: str) -> JobStatus:
        state = self.service.states[run_id]
        return STATES.status(
            state,
            output=lambda: {"run": run_id, "blob": "x" * self.service.result_size},
            error="FakeJobFailedError",
            cause=lambda: {"run": run_id, "state": state},
        )

    async def stop(self, job: Job[str]) -> None:
        self.service.stopped.append(job.run_id)
        self.service.states[job.run_id] = "STOPPED"


def run(scenario: Any) -> Any:
    return asyncio.run(asyncio.wait_for(scenario, timeout=20))


def test_a_finished_job_is_reported_once_and_its_record_closed() -> None:
    service = JobService()

    async def scenario() -> tuple[Report, Any]:
        async with RunnerHarness(FakeRunner(service)) as harness:
            token = await harness.submit({"JobName": "nightly"})
            await harness.cycle(2)
            service.states["nightly-1"] = "DONE"
            report = await harness.settle(token)
            await harness.cycle(2)
            return report, harness.record(token)

    report, record = run(scenario())

    assert (report.kind, report.output) == ("success", {"run": "nightly-1", "blob": "x" * 10})
    assert (record.status, record.outcome, record.run_id) == (
        Status.DONE,
        Outcome.SUCCEEDED,
        "nightly-1",
    )
    assert service.starts == 1


def test_bad_input_fails_the_task_and_stores_nothing() -> None:
    async def scenario() -> tuple[Report, Any]:
        async with RunnerHarness(FakeRunner(JobService())) as harness:
            token = await harness.submit('{"JobName": 7}')
            return await harness.settle(token), harness.records()

    report, records = run(scenario())

    assert (report.kind, report.error) == ("failure", "RunnerInputError")
    assert json.loads(report.cause or "") == {
        "field": "JobName",
        "problem": "must be a non-empty string",
    }
    assert records == []


@pytest.mark.parametrize(
    ("code", "error", "cause"),
    [
        ("NoSuchJob", "RunnerInputError", {"field": "JobName", "problem": "NoSuchJob said no"}),
        (
            "AccessDenied",
            "FakeStartError",
            {"job_name": "nightly", "error": "AccessDenied", "message": "AccessDenied said no"},
        ),
    ],
)
def test_a_refused_start_is_read_from_the_runners_refusal_table(
    code: str, error: str, cause: dict[str, str]
) -> None:
    service = JobService(refuse_with=refused(code))

    async def scenario() -> Report:
        async with RunnerHarness(FakeRunner(service)) as harness:
            return await harness.settle(await harness.submit({"JobName": "nightly"}))

    report = run(scenario())

    assert (report.kind, report.error, json.loads(report.cause or "")) == ("failure", error, cause)
    assert service.starts == 1  # a refusal is final: never retried


class RefusingStore(MemoryStore):
    """A job table that refuses every new task for good (a policy without PutItem)."""

    async def create(self, record: TaskRecord) -> TaskRecord:
        raise refused("AccessDeniedException")


def test_a_task_the_job_table_refuses_fails_with_runner_store_error_at_once() -> None:
    service = JobService()

    async def scenario() -> tuple[Report, Any]:
        harness = RunnerHarness(FakeRunner(service), store=RefusingStore())
        async with harness:
            token = await harness.submit({"JobName": "nightly"})
            return harness.channel.tasks[token].reports[0], harness.engine.counters

    report, counters = run(scenario())

    assert (report.kind, report.error) == ("failure", "RunnerStoreError")
    cause = json.loads(report.cause or "")
    assert (cause["table"], cause["error"]) == ("memory", "AccessDeniedException")
    assert service.starts == 0  # nothing was started for a task that was not stored
    assert counters.store_errors == 1


class StricterRunner(FakeRunner):
    """A later version of the runner that asks for a field the stored inputs lack."""

    def parse(self, document: Mapping[str, Any]) -> str:
        Fields(document).required_text("Queue")
        return super().parse(document)


def test_a_stored_input_that_no_longer_parses_fails_its_task_once_and_closes_it() -> None:
    service = JobService()

    async def scenario() -> tuple[Report, ...]:
        harness = RunnerHarness(FakeRunner(service))
        token = await harness.submit({"JobName": "nightly"})  # started, then the worker dies
        later = time.time() + harness.config.lease_seconds + 1  # its lease has run out
        upgraded = Engine(
            harness.config,
            StricterRunner(service),
            harness.channel,
            harness.store,
            "upgraded",
            clock=lambda: later,
            retries=RETRIES.within(1.0),
        )
        assert await upgraded.claim() == 1
        assert upgraded.in_flight == {}
        record = harness.record(token)
        assert record is not None
        assert (record.status, record.outcome, record.error) == (
            Status.DONE,
            Outcome.FAILED,
            "RunnerInputError",
        )
        assert await upgraded.claim() == 0  # closed: no claim meets it again
        assert upgraded.counters.input_errors == 1
        return tuple(harness.channel.tasks[token].reports)

    reports = run(scenario())

    [report] = reports
    assert (report.kind, report.error) == ("failure", "RunnerInputError")
    assert json.loads(report.cause or "") == {
        "field": "Queue",
        "problem": "is required",
        "stored_record": True,
        "run_id": "nightly-1",
    }


@pytest.mark.parametrize(("margin", "taken_early"), [(5.0, 0), (0.001, 1)])
def test_a_worker_whose_clock_is_5_s_ahead_takes_no_live_lease(
    margin: float, taken_early: int
) -> None:
    """Leases compare two hosts' clocks: with the skew margin, a claimer 5 s ahead takes
    a lease no earlier than the owner's own clock says it expired (without it, 4 s
    early, while the owner may still be working)."""
    service, now = JobService(), [1_000_000.0]

    async def scenario() -> tuple[int, int]:
        harness = RunnerHarness(FakeRunner(service), clock_skew_seconds=margin)
        harness.engine.clock = lambda: now[0]
        await harness.submit({"JobName": "nightly"})  # leased until now + 30 s
        ahead = Engine(
            harness.config,
            FakeRunner(service),
            harness.channel,
            harness.store,
            "ahead",
            clock=lambda: now[0] + 5.0,
        )
        now[0] += harness.config.lease_seconds - 1  # 1 s left on the owner's clock
        early = await ahead.claim()
        now[0] += 1.5  # expired on the owner's clock, and the owner is gone
        return early, await ahead.claim()

    early, later = run(scenario())

    assert early == taken_early
    assert later == 1 - taken_early
    assert service.starts == 1


def test_a_lease_released_at_shutdown_is_taken_over_by_a_clock_behind() -> None:
    service, now = JobService(), [1_000_000.0]

    async def scenario() -> int:
        harness = RunnerHarness(FakeRunner(service), clock_skew_seconds=5.0)
        harness.engine.clock = lambda: now[0]
        await harness.submit({"JobName": "nightly"})
        await harness.engine.release()
        behind = Engine(
            harness.config,
            FakeRunner(service),
            harness.channel,
            harness.store,
            "behind",
            clock=lambda: now[0] - 5.0,
        )
        return await behind.claim()

    assert run(scenario()) == 1


def test_a_limit_is_retried_until_the_start_timeout_then_fails_with_its_error() -> None:
    service = JobService(refuse_with=refused("LimitExceeded"))

    async def scenario() -> Report:
        async with RunnerHarness(FakeRunner(service), start_timeout_seconds=0.5) as harness:
            return await harness.settle(await harness.submit({"JobName": "nightly"}))

    report = run(scenario())

    assert (report.kind, report.error) == ("failure", "FakeLimitError")
    assert service.starts >= 3


def test_a_stopped_execution_stops_its_job() -> None:
    service = JobService()

    async def scenario() -> Any:
        async with RunnerHarness(FakeRunner(service), heartbeat_interval_seconds=0.05) as harness:
            token = await harness.submit({"JobName": "nightly"})
            harness.channel.close(token)  # the execution was stopped
            await harness.cycle(3)
            return harness.record(token)

    record = run(scenario())

    assert service.stopped == ["nightly-1"]
    assert (record.status, record.outcome) == (Status.DONE, Outcome.CANCELLED)


def test_a_start_in_doubt_is_found_and_stopped_when_its_execution_stops() -> None:
    """The service took the start but its answers were lost until the engine gave up:
    the record holds no run id. Cancelling must still stop the job the start made; for an
    idempotent runner the engine finds it by starting again with the same key."""
    service = JobService(lose_answers=1000)

    async def scenario() -> Any:
        # The start is retried a check interval after it failed: long enough that the
        # check below meets a task due only for its heartbeat.
        harness = RunnerHarness(
            FakeRunner(service),
            retries=RETRIES.within(0.3),
            heartbeat_interval_seconds=0.05,
            check_interval_seconds=5.0,
        )
        async with harness:
            token = await harness.submit({"JobName": "nightly"})
            stored = harness.record(token)
            assert stored is not None
            assert stored.run_id is None
            service.lose_answers = 0  # the service answers again
            harness.channel.close(token)
            # The retries may give up sooner than a heartbeat is due (their jitter):
            # wait one out, still well before the start is retried.
            await asyncio.sleep(0.1)
            await harness.engine.check()  # before the start is retried: a heartbeat
            return harness.record(token)

    record = run(scenario())

    assert service.stopped == ["nightly-1"]
    assert len(service.by_key) == 1  # one job, however often the start was sent
    assert (record.status, record.outcome, record.run_id) == (Status.DONE, Outcome.CANCELLED, None)


def test_a_start_in_doubt_that_is_refused_when_found_leaves_nothing_to_stop() -> None:
    service = JobService(lose_answers=1000)

    async def scenario() -> Any:
        # The start is retried a check interval after it failed: long enough that the
        # check below meets a task due only for its heartbeat.
        harness = RunnerHarness(
            FakeRunner(service),
            retries=RETRIES.within(0.3),
            heartbeat_interval_seconds=0.05,
            check_interval_seconds=5.0,
        )
        async with harness:
            token = await harness.submit({"JobName": "nightly"})
            service.refuse_with = refused("LimitExceeded")  # the job was never made
            service.by_key.clear()
            harness.channel.close(token)
            await harness.engine.check()
            return harness.record(token)

    record = run(scenario())

    assert service.stopped == []
    assert (record.status, record.outcome) == (Status.DONE, Outcome.CANCELLED)


def test_output_over_256_kib_fails_the_task_with_runner_output_error() -> None:
    service = JobService(result_size=300_000)

    async def scenario() -> Report:
        async with RunnerHarness(FakeRunner(service)) as harness:
            token = await harness.submit({"JobName": "big"})
            service.states["big-1"] = "DONE"
            return await harness.settle(token)

    report = run(scenario())

    assert (report.kind, report.error) == ("failure", "RunnerOutputError")


def test_a_runner_whose_start_is_not_idempotent_must_implement_find() -> None:
    with pytest.raises(TypeError, match="must implement find"):

        class Careless(FakeRunner):
            idempotent_start = False

    class Careful(FakeRunner):
        idempotent_start = False

        async def find(self, spec: str, task: TaskStart) -> str | None:
            return self.service.by_key.get(task.key)

    assert Careful(JobService()).idempotent_start is False


def test_an_unknown_state_keeps_the_job_running_with_a_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert STATES.phase("DONE") is Phase.SUCCEEDED
    assert STATES.phase("BROKEN") is Phase.FAILED
    assert STATES.phase("PAUSED") is Phase.RUNNING
    assert "unknown state" in capsys.readouterr().out
    with pytest.raises(ValueError, match="classified twice"):
        StateTable("fake", "S", running={"A"}, succeeded={"A"}, failed=())


def test_a_status_reads_only_the_fields_of_the_outcome_reached() -> None:
    """A running job's record may lack what its output or failure cause reads."""

    def unreadable() -> dict[str, Any]:
        raise KeyError("not there while running")

    def status(state: str) -> JobStatus:
        return STATES.status(
            state, output=lambda: {"done": state}, error="FakeError", cause=lambda: {"why": state}
        )

    assert STATES.status("RUNNING", output=unreadable, error="E", cause=unreadable) is RUNNING
    assert status("DONE") == Succeeded({"done": "DONE"})
    assert status("BROKEN") == Failed("FakeError", {"why": "BROKEN"})
