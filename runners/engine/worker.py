"""The loops that drive engines: concurrent long polls, check cycles, orphan claims.

The same loops serve both ways of running: a container worker runs until told to stop
(SIGTERM), a scheduled Lambda until its deadline. Shutdown is explicit: stop starting
polls, let the polls in flight return and store what they bring, then hand every held
task to the next worker by releasing its lease. All of it within a grace period: past
it (a table that does not answer), the worker leaves what it holds to lease expiry and
says so, rather than be killed mid-write by the container's stop timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine, Sequence
from typing import Any

from runners.engine.engine import Engine
from runners.engine.metrics import CURRENT
from runners.logs import get_logger

# A poll is only started if it can finish before the deadline, with this margin.
POLL_MARGIN_SECONDS = 5.0
# How often a tick whose polls are over looks whether its last task has closed.
_IDLE_CHECK_SECONDS = 0.5
# Below the container service's StopTimeout (120 s in runner-service.yaml), above a 60 s
# long poll plus storing what it brings.
SHUTDOWN_GRACE_SECONDS = 100.0


class Worker:
    def __init__(
        self,
        engines: Sequence[Engine[Any]],
        clock: Any = time.time,
        shutdown_grace_seconds: float = SHUTDOWN_GRACE_SECONDS,
    ) -> None:
        self.engines = list(engines)
        self.clock = clock
        self.shutdown_grace_seconds = shutdown_grace_seconds
        # Tasks left to lease expiry (or, unstored, to their state's heartbeat timeout)
        # because shutdown ran past its grace period.
        self.left_behind: dict[str, int] | None = None
        self.log = get_logger()
        self._stopping = asyncio.Event()
        self._accepts: set[asyncio.Task[None]] = set()
        self._deadline: float | None = None

    async def run(self, stop: asyncio.Event, deadline: float | None = None) -> dict[str, Any]:
        """Serve until ``stop`` is set or the wall clock reaches ``deadline``."""
        self._deadline = deadline
        for engine in self.engines:
            CURRENT.set(engine.metrics)
            await engine.claim()
            await engine.check()
        CURRENT.set(None)
        pollers = [
            asyncio.create_task(self._poll_loop(engine))
            for engine in self.engines
            for _ in range(engine.config.pollers)
        ]
        background = [
            asyncio.create_task(loop)
            for engine in self.engines
            for loop in (self._check_loop(engine), self._claim_loop(engine))
        ]
        background += [asyncio.create_task(loop) for loop in self._completion_loops()]
        self.log.info(
            "worker started", runners=[e.runner.name for e in self.engines], pollers=len(pollers)
        )
        await self._until(stop, deadline, pollers)
        try:
            async with asyncio.timeout(self.shutdown_grace_seconds):
                await self._shutdown(pollers, background)
        except TimeoutError:
            await self._abandon(pollers, background)
        for engine in self.engines:
            engine.flush_metrics()
        summary: dict[str, Any] = {"runners": [engine.summary() for engine in self.engines]}
        if self.left_behind is not None:
            summary["left_behind"] = self.left_behind
        return summary

    async def _until(
        self, stop: asyncio.Event, deadline: float | None, pollers: list[asyncio.Task[None]]
    ) -> None:
        """Until stopped or the deadline; a tick also ends once it may start no more polls
        and holds no task (a scheduled Lambda is billed for every second it waits)."""
        ends: list[asyncio.Task[Any]] = [asyncio.create_task(stop.wait())]
        if deadline is not None:
            ends.append(asyncio.create_task(self._idle_after_polls(pollers)))
        timeout = None if deadline is None else max(0.0, deadline - self.clock())
        try:
            await asyncio.wait(ends, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for end in ends:
                end.cancel()
            await asyncio.gather(*ends, return_exceptions=True)

    async def _idle_after_polls(self, pollers: list[asyncio.Task[None]]) -> None:
        await asyncio.gather(*pollers, return_exceptions=True)
        while self._accepts or any(engine.load for engine in self.engines):
            await asyncio.sleep(_IDLE_CHECK_SECONDS)

    async def _shutdown(
        self, pollers: list[asyncio.Task[None]], background: list[asyncio.Task[None]]
    ) -> None:
        self.log.info("stopping: waiting for polls in flight")
        self._stopping.set()
        for engine in self.engines:
            engine.capacity_freed.set()
        await asyncio.gather(*pollers, return_exceptions=True)
        await asyncio.gather(*self._accepts, return_exceptions=True)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        for engine in self.engines:
            await engine.release()
        self.log.info("worker stopped")

    async def _abandon(
        self, pollers: list[asyncio.Task[None]], background: list[asyncio.Task[None]]
    ) -> None:
        """The grace period is over: stop waiting. Nothing is lost: a held task's lease
        expires and another worker claims it; a task polled but not yet stored comes back
        through its state's heartbeat timeout and Retry."""
        self.left_behind = {
            "held": sum(len(engine.in_flight) for engine in self.engines),
            "unstored": len(self._accepts),
        }
        self.log.error(
            "shutdown grace period over; leaving tasks to lease expiry",
            grace_seconds=self.shutdown_grace_seconds,
            **self.left_behind,
        )
        tasks = [*pollers, *self._accepts, *background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # Loops --------------------------------------------------------------------------

    async def _poll_loop(self, engine: Engine[Any]) -> None:
        CURRENT.set(engine.metrics)
        failures = 0
        while await self._may_poll(engine):
            engine.polls_open += 1
            try:
                task = await engine.channel.poll()
            except Exception:
                engine.log.exception("poll failed")
                failures += 1
                await self._pause(engine.retries.poll.wait_seconds(failures))
                continue
            finally:
                engine.polls_open -= 1
            failures = 0
            if task is not None:
                self._spawn(engine.accept(task))

    async def _may_poll(self, engine: Engine[Any]) -> bool:
        """Wait for room under the in-flight cap; False once no poll may start."""
        while not engine.has_capacity() and not self._stopping.is_set():
            engine.capacity_freed.clear()
            if engine.has_capacity():
                break
            await engine.capacity_freed.wait()
        if self._stopping.is_set():
            return False
        budget = engine.config.poll_seconds + POLL_MARGIN_SECONDS
        return self._deadline is None or self._deadline - self.clock() >= budget

    async def _check_loop(self, engine: Engine[Any]) -> None:
        """Cycles start at a fixed rate (a cycle's own time does not push the next one
        back); a cycle that overruns is followed at once by the next."""
        CURRENT.set(engine.metrics)
        interval = engine.config.check_interval_seconds
        due = time.monotonic()
        while True:
            due = max(due + interval, time.monotonic())
            await asyncio.sleep(due - time.monotonic())
            try:
                await engine.check()
            except Exception:
                engine.log.exception("check cycle failed")
            engine.flush_metrics()

    def _completion_loops(self) -> list[Coroutine[Any, Any, None]]:
        """One loop per completion queue (the activities of one runner share theirs:
        any engine of the runner can take and report any of its tasks)."""
        loops, urls = [], set()
        for engine in self.engines:
            queue = engine.completions
            if queue is not None and queue.url not in urls:
                urls.add(queue.url)
                loops.append(self._completion_loop(engine))
        return loops

    async def _completion_loop(self, engine: Engine[Any]) -> None:
        CURRENT.set(engine.metrics)
        assert engine.completions is not None
        await engine.completions.serve(engine)

    async def _claim_loop(self, engine: Engine[Any]) -> None:
        CURRENT.set(engine.metrics)
        while True:
            await asyncio.sleep(engine.config.lease_seconds / 4)
            await engine.claim()

    async def _pause(self, seconds: float) -> None:
        """Sleep, waking early when the worker stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _spawn(self, accept: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(accept)
        self._accepts.add(task)
        task.add_done_callback(self._accepted)

    def _accepted(self, task: asyncio.Task[None]) -> None:
        self._accepts.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("accepting a task failed", exc_info=task.exception())
