"""A fast harness for unit-testing a runner on the real engine, without the emulator.

The engine is the one the worker runs; only the job store and the activity are in
memory. A runner author gives it a runner whose service client is whatever the test
wants (moto in-process, a local HTTP server, a stub of a non-AWS service)::

    async with RunnerHarness(MyRunner(client)) as harness:
        token = await harness.submit({"JobName": "nightly"})
        report = await harness.settle(token)
        assert report.kind == "success"
"""

from __future__ import annotations

import asyncio
import json
import time
from types import TracebackType
from typing import Any, Generic

from runners.engine.config import EngineConfig
from runners.engine.engine import Engine
from runners.engine.records import TaskRecord, task_id_for
from runners.engine.runner import Runner, SpecT
from runners.engine.store import JobStore
from runners.retry import RETRIES, RetryPolicies
from runners.testing.memory import ACTIVITY_ARN, MemoryChannel, MemoryStore, Report

FAST = {
    "check_interval_seconds": 0.05,
    "heartbeat_interval_seconds": 60.0,
    "lease_seconds": 30.0,
    "clock_skew_seconds": 0.5,
    "start_timeout_seconds": 5.0,
}

# Retries give up within a second, so a test of an outage is quick.
FAST_RETRIES = RETRIES.within(1.0)


class RunnerHarness(Generic[SpecT]):
    def __init__(
        self,
        runner: Runner[SpecT],
        owner: str = "harness",
        retries: RetryPolicies = FAST_RETRIES,
        store: JobStore | None = None,
        **config: Any,
    ) -> None:
        self.channel = MemoryChannel()
        self.store = store or MemoryStore()
        self.config = EngineConfig(activity_arn=ACTIVITY_ARN, table="memory", **{**FAST, **config})
        self.engine: Engine[SpecT] = Engine(
            self.config, runner, self.channel, self.store, owner, retries=retries
        )

    async def __aenter__(self) -> RunnerHarness[SpecT]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.engine.release()

    async def submit(self, task_input: dict[str, Any] | str) -> str:
        """Schedule a task, receive it as a poll would, store and start it; returns its
        token."""
        text = task_input if isinstance(task_input, str) else json.dumps(task_input)
        token = self.channel.submit(text)
        task = await self.channel.poll()
        assert task is not None
        assert task.token == token
        await self.engine.accept(task)
        return token

    async def settle(self, token: str, timeout: float = 10.0) -> Report:
        """Run check cycles until the task is reported; its report."""
        deadline = time.monotonic() + timeout
        while not self.channel.tasks[token].reports:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the task was not reported within {timeout} s")
            await asyncio.sleep(self.config.check_interval_seconds)
            await self.engine.check()
        [report] = self.channel.tasks[token].reports
        return report

    async def cycle(self, count: int = 1) -> None:
        """Run ``count`` check cycles, one check interval apart."""
        for _ in range(count):
            await asyncio.sleep(self.config.check_interval_seconds)
            await self.engine.check()

    def records(self) -> list[TaskRecord]:
        """Every record stored (in the harness's memory store)."""
        assert isinstance(self.store, MemoryStore)
        return self.store.records()

    def record(self, token: str) -> TaskRecord | None:
        """The task's record as stored."""
        return {record.task_id: record for record in self.records()}.get(task_id_for(token))
