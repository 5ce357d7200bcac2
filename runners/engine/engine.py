"""The engine: one activity's tasks from receipt to report, for any runner.

Crash-safety protocol (a worker can die between any two steps):
1. a received task is stored (STARTING) before anything is started;
2. the job starts with the task's idempotency key; after a crash or an ambiguous
   failure the runner finds the run by that key instead of starting another;
3. the run id is stored (RUNNING);
4. finished jobs are reported; a report answered "task closed" counts as done;
5. the record is closed (DONE) and kept for audit until its TTL.
Every write is conditional on still owning the record, so after a takeover only the new
owner acts; orphans (expired leases) are claimed with one conditional write each.

With completion events on, a second path reports: an event for a job, received by any
worker, takes the record from its holder (a conditional write that needs it RUNNING),
confirms the end with a status call and reports. Each reporter first marks the record
REPORTING, conditional on owning it; a marked record can no longer be taken, so exactly
one of the two reports (a crash after the mark leaves it to lease expiry and a claim).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Generic

import structlog
from botocore.exceptions import ClientError

from runners.engine.activity import ActivityTask, Channel
from runners.engine.config import EngineConfig
from runners.engine.inputs import parse_document
from runners.engine.metrics import EngineMetrics
from runners.engine.records import Outcome, Status, TaskRecord, task_id_for
from runners.engine.runner import (
    Failed,
    Job,
    JobStatus,
    Runner,
    SpecT,
    Succeeded,
    TaskStart,
)
from runners.engine.store import JobStore
from runners.errors import RunnerInputError, TaskFailure, TryLater
from runners.logs import get_logger, token_hash
from runners.retry import (
    RETRIES,
    RetryPolicies,
    error_code,
    is_ambiguous,
    is_retryable,
    is_unanswered,
    retry,
)

if TYPE_CHECKING:
    from runners.engine.completions import CompletionQueue

# How many AWS operations one engine runs at once.
CONCURRENCY = 64
# A search for an earlier run that takes longer than this may have been held behind the
# start it looks for (an outage, a partition): its "none" is not trusted.
PROMPT_SEARCH_SECONDS = 5.0
# A start that got no answer may still be on its way; its run is searched for only this
# long after it was sent (three times the call clients' read timeout).
UNANSWERED_START_SECONDS = 60.0


# What a task the job table refused fails with (a state machine can Catch it).
STORE_ERROR = "RunnerStoreError"
# The lease of a task handed over at shutdown: expired by any host's clock.
RELEASED = 0.0
# Records whose job is being checked: started, or being reported.
CHECKED = (Status.RUNNING, Status.REPORTING)


class StartInDoubt(Exception):
    """A start may have taken effect: search for its run before starting again."""


@dataclass
class Counters:
    received: int = 0
    input_errors: int = 0
    started: int = 0
    checked: int = 0
    heartbeats: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    claimed: int = 0
    lost: int = 0
    store_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class InFlight(Generic[SpecT]):
    """An owned task in memory: its record, its parsed input, its timers."""

    record: TaskRecord
    spec: SpecT
    log: structlog.stdlib.BoundLogger
    heartbeat_at: float
    may_exist: bool = False  # an earlier start attempt may have started the job
    search_after: float = 0.0  # (monotonic) not before an unanswered start could land
    start_at: float = 0.0  # when to (re)try the start
    busy: bool = field(default=False, repr=False)


class Engine(Generic[SpecT]):
    def __init__(
        self,
        config: EngineConfig,
        runner: Runner[SpecT],
        channel: Channel,
        store: JobStore,
        owner: str,
        clock: Callable[[], float] = time.time,
        retries: RetryPolicies = RETRIES,
        metrics: EngineMetrics | None = None,
        completions: CompletionQueue | None = None,
    ) -> None:
        self.config, self.runner, self.channel = config, runner, channel
        # Where this engine's worker receives completion events (None: it does not).
        self.completions = completions
        self.retries = retries
        self.metrics = metrics or EngineMetrics.from_environment(runner.name)
        self.store, self.owner, self.clock = store, owner, clock
        self.in_flight: dict[str, InFlight[SpecT]] = {}
        self.counters = Counters()
        self.capacity_freed = asyncio.Event()
        self._accepting = 0
        self.polls_open = 0
        self._limit = asyncio.Semaphore(CONCURRENCY)
        self.log = get_logger(activity=config.activity_arn, runner=runner.name)

    @property
    def load(self) -> int:
        """Tasks held or about to be: in flight, being accepted, or coming from a poll."""
        return len(self.in_flight) + self._accepting + self.polls_open

    def has_capacity(self) -> bool:
        return self.load < self.config.max_in_flight

    # Receiving ---------------------------------------------------------------------

    def accept(self, task: ActivityTask) -> Coroutine[Any, Any, None]:
        """Count a task a poll brought as held at once; the returned coroutine
        validates, stores and starts it."""
        self.counters.received += 1
        self.metrics.count("TasksReceived")
        self._accepting += 1
        return self._accept(task)

    async def _accept(self, task: ActivityTask) -> None:
        try:
            flight = await self._receive(task)
        finally:
            self._accepting -= 1
            self.capacity_freed.set()
        if flight is not None and flight.record.status == Status.STARTING:
            await self._exclusive(flight, self._start(flight))

    async def _receive(self, task: ActivityTask) -> InFlight[SpecT] | None:
        log = self.log.bind(token=token_hash(task.token))
        try:
            document = parse_document(task.input)
            spec = self.runner.parse(document)
        except RunnerInputError as error:
            self.counters.input_errors += 1
            self.metrics.count("InputErrors")
            log.warning("task input rejected", field=error.field, problem=error.problem)
            await retry(
                partial(self.channel.fail, task.token, error.error, error.cause),
                self.retries.accept,
            )
            return None
        now = self.clock()
        record = TaskRecord(
            task_id=task_id_for(task.token),
            token=task.token,
            activity_arn=self.config.activity_arn,
            runner=self.runner.name,
            task_input=document,
            owner=self.owner,
            lease_expires_at=now + self.config.lease_seconds,
            created_at=now,
        )
        # A received task must not be lost: keep trying to store it while the table may
        # come back; one it refuses (wrong table, missing permission) is failed at once.
        try:
            stored = await retry(lambda: self.store.create(record), self.retries.accept)
        except Exception as error:
            await self._store_refused(task, log, error)
            return None
        if stored.owner != self.owner:
            log.warning("task already held by another worker", owner=stored.owner)
            return None
        flight = InFlight(stored, spec, log.bind(**self.runner.describe(spec)), heartbeat_at=now)
        self.in_flight[stored.task_id] = flight
        flight.log.info("task received")
        return flight

    async def _store_refused(
        self, task: ActivityTask, log: structlog.stdlib.BoundLogger, error: Exception
    ) -> None:
        """The job table refused the task for good: fail it with a name a state machine
        can catch instead of leaving it to time out. Nothing was started."""
        self.counters.store_errors += 1
        self.metrics.count("TasksFailed")
        cause = {
            "table": self.config.table,
            "error": error_code(error) or type(error).__name__,
            "message": str(getattr(error, "cause", None) or error)[:1000],
        }
        log.error("the job table refused the task; it fails with " + STORE_ERROR, **cause)
        await retry(
            partial(self.channel.fail, task.token, STORE_ERROR, json.dumps(cause)),
            self.retries.accept,
        )

    # Starting ----------------------------------------------------------------------

    async def _start(self, flight: InFlight[SpecT]) -> None:
        record, now = flight.record, self.clock()
        try:
            run_id = await self._earlier_run(flight)
            if run_id is None:
                run_id = await retry(lambda: self._attempt_start(flight), self.retries.start)
        except TryLater as later:
            if now >= record.created_at + self.config.start_timeout_seconds:
                await self._close(flight, Failed(later.error, {"reason": later.reason}))
            else:
                flight.start_at = self.clock() + self.config.check_interval_seconds
                flight.log.info("start deferred", reason=later.reason)
            return
        except TaskFailure as failure:
            await self._close(flight, Failed(failure.error, _cause(failure.cause)))
            return
        except StartInDoubt as doubt:
            wait = max(self.config.check_interval_seconds, flight.search_after - time.monotonic())
            flight.start_at = self.clock() + wait
            flight.log.info("start in doubt; will search for its run", reason=str(doubt))
            return
        except Exception:
            flight.start_at = self.clock() + self.config.check_interval_seconds
            flight.log.exception("start failed; will retry")
            return
        record.run_id, record.status, record.started_at = run_id, Status.RUNNING, self.clock()
        record.event_key = self.runner.event_key(Job(flight.spec, run_id))
        flight.log = flight.log.bind(run_id=run_id)
        if not await self._save(flight):
            return
        self.counters.started += 1
        self.metrics.count("TasksStarted")
        self.metrics.between("DispatchLatency", record.created_at, record.started_at)
        flight.log.info("job started")
        if self.runner.settles_at_start:
            status = (await self._statuses([flight])).get(run_id)
            if isinstance(status, Succeeded | Failed):
                await self._close(flight, status)

    async def _attempt_start(self, flight: InFlight[SpecT]) -> str:
        sent = time.monotonic()
        try:
            return await self.runner.start(flight.spec, self._task_start(flight))
        except Exception as error:
            if isinstance(error, ClientError) and not is_retryable(error):
                raise self.runner.refused(flight.spec, error) from error
            if not is_ambiguous(error):
                raise
            flight.may_exist = True  # the start may have taken effect
            if self.runner.idempotent_start:
                raise  # starting again returns the same job
            if is_unanswered(error):
                flight.search_after = sent + UNANSWERED_START_SECONDS
            raise StartInDoubt(f"{type(error).__name__}: {error}") from error

    async def _earlier_run(self, flight: InFlight[SpecT]) -> str | None:
        """The run an earlier start may have made (an ambiguous failure, or a takeover
        of a task stored before its run id). A "none" only counts if the service answered
        promptly: while it is holding requests, the earlier start may still land. (After
        an unanswered start, the search waits until ``search_after``.)"""
        if not flight.may_exist or self.runner.idempotent_start:
            return None
        began = time.monotonic()
        run_id = await retry(
            lambda: self.runner.find(flight.spec, self._task_start(flight)), self.retries.start
        )
        if run_id is None and time.monotonic() - began > PROMPT_SEARCH_SECONDS:
            raise StartInDoubt("the search for an earlier run was answered slowly")
        flight.may_exist = False
        if run_id is not None:
            flight.log.info("found the run an earlier start made", run_id=run_id)
        return run_id

    @staticmethod
    def _task_start(flight: InFlight[SpecT]) -> TaskStart:
        record = flight.record
        return TaskStart(record.key, record.created_at)

    # Checking ----------------------------------------------------------------------

    async def check(self) -> None:
        """One cycle: retry pending starts, check running jobs in batches, report the
        finished, heartbeat the rest when due, renew leases that run short."""
        began, now = time.monotonic(), self.clock()
        idle = [f for f in self.in_flight.values() if not f.busy]
        pending = {
            f.record.task_id
            for f in idle
            if f.record.status == Status.STARTING and f.start_at <= now
        }
        running = [f for f in idle if f.record.status in CHECKED]
        statuses = await self._statuses(running)
        found_at = self.clock()
        finished: dict[str, Succeeded | Failed] = {}
        for flight in running:
            status = statuses.get(flight.record.run_id or "")
            if isinstance(status, Succeeded | Failed):
                finished[flight.record.task_id] = status
        operations: list[tuple[InFlight[SpecT], Awaitable[None]]] = []
        for flight in idle:
            task_id = flight.record.task_id
            if flight.busy or task_id not in self.in_flight:
                continue  # taken up or let go while the statuses were fetched
            if task_id in finished:
                operations.append((flight, self._close(flight, finished[task_id], found_at)))
            elif task_id in pending:
                operations.append((flight, self._start(flight)))
            elif now - flight.heartbeat_at >= self.config.heartbeat_interval_seconds:
                operations.append((flight, self._heartbeat(flight)))
            elif flight.record.lease_expires_at - now < self.config.lease_seconds / 2:
                operations.append((flight, self._renew(flight)))
        await asyncio.gather(*(self._exclusive(f, op) for f, op in operations))
        seconds = time.monotonic() - began
        self.metrics.observe("CheckCycleDuration", seconds * 1000)
        self._log_cycle(len(running), len(operations), seconds)

    def _log_cycle(self, running: int, operations: int, seconds: float) -> None:
        """A cycle longer than the check interval delays every report: say so."""
        log = self.log.bind(running=running, operations=operations, seconds=round(seconds, 3))
        if seconds > self.config.check_interval_seconds:
            log.warning("check cycle took longer than the check interval")
        else:
            log.debug("check cycle")

    async def _statuses(self, flights: list[InFlight[SpecT]]) -> dict[str, JobStatus]:
        if not flights:
            return {}
        jobs = [Job(f.spec, f.record.run_id or "") for f in flights]
        try:
            statuses = await retry(lambda: self.runner.check(jobs), self.retries.status)
        except Exception:
            self.log.exception("status check failed; will retry", jobs=len(jobs))
            return {}
        self.counters.checked += len(jobs)
        return dict(statuses)

    async def _heartbeat(self, flight: InFlight[SpecT]) -> None:
        open_ = await retry(
            lambda: self.channel.heartbeat(flight.record.token), self.retries.heartbeat
        )
        self.counters.heartbeats += 1
        if open_:
            flight.heartbeat_at = self.clock()
            if flight.record.lease_expires_at - self.clock() < self.config.lease_seconds / 2:
                await self._renew(flight)
        else:
            await self._cancel(flight)

    async def _renew(self, flight: InFlight[SpecT]) -> None:
        flight.record.lease_expires_at = self.clock() + self.config.lease_seconds
        await self._save(flight)

    # Closing -----------------------------------------------------------------------

    async def _close(
        self, flight: InFlight[SpecT], status: Succeeded | Failed, found_at: float | None = None
    ) -> None:
        """Report the outcome, then close the record. ``found_at``: when the check that
        saw the job finished had its answer (default: now)."""
        found_at = self.clock() if found_at is None else found_at
        if not await self._mark_reporting(flight):
            return
        token = flight.record.token
        if isinstance(status, Succeeded):
            reported = status.reported or await retry(
                lambda: self.channel.succeed(token, status.output), self.retries.report
            )
            outcome, error = Outcome.SUCCEEDED, None
        else:
            cause = json.dumps(status.cause, default=str)
            reported = await retry(
                lambda: self.channel.fail(token, status.error, cause), self.retries.report
            )
            outcome, error = Outcome.FAILED, status.error
        reported_at = self.clock()
        if not reported:
            flight.log.info("task was already closed")
        await self._done(flight, outcome, error)
        self._measure_close(flight.record, status, found_at, reported_at)
        if outcome is Outcome.SUCCEEDED:
            self.counters.succeeded += 1
            flight.log.info("task succeeded")
        else:
            self.counters.failed += 1
            flight.log.warning("task failed", error=error)

    async def _mark_reporting(self, flight: InFlight[SpecT]) -> bool:
        """Where completion events may report too, claim the report first: False if the
        event path took the task (it reports; this worker lets go)."""
        record = flight.record
        if not self.config.events_on or record.status != Status.RUNNING:
            return True
        record.status = Status.REPORTING
        return await self._save(flight)

    # Completion events ---------------------------------------------------------------

    async def complete(self, keys: Collection[str]) -> set[str]:
        """Completion events said the jobs these keys name (``Runner.event_key``) have
        ended: check them at once, in one batch, and report those the service confirms,
        taking each record from whichever worker holds it. Returns the keys to try again
        later: no open record had them (the event came before its run id was stored, or
        the run is nobody's), or the service does not say yet that the job ended."""
        wanted = set(keys)
        if not wanted:
            return set()
        self.metrics.count("CompletionEvents", len(wanted))
        flights = [f for f in self.in_flight.values() if f.record.event_key in wanted]
        held = {f.record.event_key for f in flights}
        unmatched = set()
        others = sorted(wanted - held)
        for key, taken in zip(others, await asyncio.gather(*map(self._take, others)), strict=True):
            if taken is None:
                unmatched.add(key)
            flights.extend(taken or ())
        ready = [f for f in flights if not f.busy and f.record.status in CHECKED]
        # Busy: its start is being stored, or it is being checked or reported: look
        # again shortly (a report in progress leaves nothing to find then).
        unmatched.update(f.record.event_key or "" for f in flights if f.busy)
        statuses = await self._statuses(ready)
        found_at = self.clock()
        closing = []
        for flight in ready:
            if flight.record.task_id not in self.in_flight:
                continue  # reported, or let go, meanwhile
            if flight.busy:  # the check took it up meanwhile: look again shortly
                unmatched.add(flight.record.event_key or "")
                continue
            status = statuses.get(flight.record.run_id or "")
            if isinstance(status, Succeeded | Failed):
                closing.append(self._exclusive(flight, self._close(flight, status, found_at)))
            elif flight.record.event_key is not None:
                unmatched.add(flight.record.event_key)  # not ended yet, as the service says
        await asyncio.gather(*closing)
        self.metrics.count("EventReports", len(closing))
        return unmatched

    async def _take(self, key: str) -> list[InFlight[SpecT]] | None:
        """Take the open records of ``key`` that another worker (or none) holds. None:
        no open record has the key; an empty list: they are being reported already."""
        try:
            task_ids = await retry(partial(self.store.find_open, key), self.retries.store)
        except Exception:
            self.log.exception("finding the task of a completion event failed", event_key=key)
            return None
        if not task_ids:
            return None
        lease_until = self.clock() + self.config.lease_seconds
        taken = []
        for task_id in task_ids:
            if task_id in self.in_flight:
                taken.append(self.in_flight[task_id])
                continue
            try:
                record = await retry(
                    partial(self.store.take, task_id, self.owner, lease_until), self.retries.store
                )
            except Exception:
                self.log.exception("taking the task of a completion event failed")
                return None
            if record is not None:
                await self._adopt(record)
                if task_id in self.in_flight:
                    taken.append(self.in_flight[task_id])
        return taken

    def _measure_close(
        self, record: TaskRecord, status: Succeeded | Failed, found_at: float, reported_at: float
    ) -> None:
        """A closed task's figures. The job ended when the service says it did (Glue
        ``CompletedOn``...) where the runner reads that, else when a check found it
        finished; a task refused at its start ran no job, so has no duration."""
        succeeded = isinstance(status, Succeeded)
        self.metrics.count("TasksSucceeded" if succeeded else "TasksFailed")
        self.metrics.measured(status.finish.usage)
        if record.started_at is None:
            return
        ended_at = status.finish.ended_at or found_at
        self.metrics.between("JobDuration", record.started_at, ended_at)
        self.metrics.between("CompletionLatency", ended_at, reported_at)

    async def _cancel(self, flight: InFlight[SpecT]) -> None:
        """The execution stopped or timed out: stop the job, close the record."""
        flight.log.info("task closed by Step Functions; stopping the job")
        run_id = flight.record.run_id
        if run_id is None and flight.may_exist:
            # The start is in doubt: find its job (an idempotent start finds it by
            # starting again) so that nothing is left running for a closed task.
            try:
                run_id = await retry(
                    lambda: self.runner.find(flight.spec, self._task_start(flight)),
                    self.retries.start,
                )
            except (TaskFailure, TryLater):
                flight.log.info("the start in doubt was refused: no job to stop")
        if run_id:
            job = Job(flight.spec, run_id)
            try:
                await retry(lambda: self.runner.stop(job), self.retries.stop)
            except Exception:
                flight.log.exception("could not stop the job")
        await self._done(flight, Outcome.CANCELLED, None)
        self.counters.cancelled += 1
        self.metrics.count("TasksCancelled")

    async def _done(self, flight: InFlight[SpecT], outcome: Outcome, error: str | None) -> None:
        record = flight.record
        record.status, record.outcome, record.error = Status.DONE, outcome, error
        record.finished_at = self.clock()
        await self._save(flight)
        self._forget(flight)

    # Ownership ---------------------------------------------------------------------

    async def claim(self) -> int:
        """Take over tasks whose owner stopped renewing their leases."""
        now = self.clock()
        expired_before = now - self.config.clock_skew_seconds
        try:
            records = await retry(
                lambda: self.store.claim_expired(
                    self.config.activity_arn,
                    self.owner,
                    now + self.config.lease_seconds,
                    expired_before,
                ),
                self.retries.store,
            )
        except Exception:
            self.log.exception("claiming orphaned tasks failed; will retry")
            return 0
        for record in records:
            await self._adopt(record)
        self.counters.claimed += len(records)
        return len(records)

    async def _adopt(self, record: TaskRecord) -> None:
        known = self.in_flight.get(record.task_id)
        if known is not None:  # our own lease ran out; it is ours again
            known.record.lease_expires_at = record.lease_expires_at
            return
        log = self.log.bind(token=token_hash(record.token), run_id=record.run_id)
        try:
            spec = self.runner.parse(record.task_input)
        except RunnerInputError as error:
            try:
                await self._fail_poisoned(record, log, error)
            except Exception:  # the lease runs out and the next claim tries again
                log.exception("failing a task whose stored input no longer parses failed")
            return
        flight = InFlight(
            record,
            spec,
            log.bind(**self.runner.describe(spec)),
            heartbeat_at=0.0,
            may_exist=record.status == Status.STARTING,
        )
        self.in_flight[record.task_id] = flight
        flight.log.info("task taken over")

    async def _fail_poisoned(
        self, record: TaskRecord, log: structlog.stdlib.BoundLogger, error: RunnerInputError
    ) -> None:
        """A stored input this version no longer accepts (validation tightened, or the
        record was edited): fail the task once and close the record, rather than meet it
        at every claim while its execution waits for its timeout. A job it started cannot
        be stopped without its input; the cause names the run so an operator can."""
        self.counters.input_errors += 1
        self.metrics.count("InputErrors")
        cause = {**json.loads(error.cause), "stored_record": True, "run_id": record.run_id}
        log.error("stored input no longer parses; the task fails", field=error.field)
        await retry(
            partial(self.channel.fail, record.token, error.error, json.dumps(cause)),
            self.retries.report,
        )
        record.status, record.outcome, record.error = Status.DONE, Outcome.FAILED, error.error
        record.finished_at = self.clock()
        await retry(lambda: self.store.save(record), self.retries.store)

    async def release(self) -> None:
        """Hand every held task to the next worker at once (graceful shutdown): a
        released lease is expired by any clock."""
        for flight in list(self.in_flight.values()):
            flight.record.lease_expires_at = RELEASED
        await asyncio.gather(
            *(self._save(f) for f in self.in_flight.values()), return_exceptions=True
        )
        self.in_flight.clear()
        self.capacity_freed.set()

    async def _save(self, flight: InFlight[SpecT]) -> bool:
        if await retry(lambda: self.store.save(flight.record), self.retries.store):
            return True
        flight.log.warning("task taken over by another worker; letting go")
        self.counters.lost += 1
        self._forget(flight)
        return False

    def _forget(self, flight: InFlight[SpecT]) -> None:
        self.in_flight.pop(flight.record.task_id, None)
        self.capacity_freed.set()

    def _exclusive(self, flight: InFlight[SpecT], operation: Awaitable[None]) -> Awaitable[None]:
        """Run one operation on a task at a time, within the engine's concurrency. The
        task is busy from this call on, not from when the operation first runs: the
        check and the event path, each back from its status call, must not both pick
        it up in between."""
        flight.busy = True
        return self._run_exclusive(flight, operation)

    async def _run_exclusive(self, flight: InFlight[SpecT], operation: Awaitable[None]) -> None:
        try:
            async with self._limit:
                await operation
        except Exception:
            flight.log.exception("operation failed; will retry next cycle")
        finally:
            flight.busy = False

    def flush_metrics(self) -> None:
        """Write what happened since the last flush, and the load now. ``OpenPolls``
        is 0 while a worker is up only at its in-flight cap (or while it stops): a
        worker that writes no document at all is down."""
        self.metrics.flush(
            {
                "TasksInFlight": len(self.in_flight),
                "OpenPolls": self.polls_open,
                "WorkerUtilization": 100.0 * self.load / max(1, self.config.max_in_flight),
            }
        )

    def summary(self) -> dict[str, Any]:
        return {
            "runner": self.runner.name,
            "in_flight": len(self.in_flight),
            **self.counters.as_dict(),
        }


def _cause(cause: str) -> dict[str, Any]:
    try:
        parsed = json.loads(cause)
    except ValueError:
        return {"message": cause}
    return parsed if isinstance(parsed, dict) else {"message": cause}
