"""Run the real worker against the emulator: in a background thread, or as a process."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runners.engine.engine import Engine
from runners.engine.worker import Worker
from runners.local import Emulator
from runners.runtime import open_engines
from runners.settings import RunnerConfig
from tests.conftest import POLL_SECONDS

FAST = {
    "poll_seconds": POLL_SECONDS,
    "check_interval_seconds": 0.3,
    "heartbeat_interval_seconds": 30.0,
    "lease_seconds": 30.0,
}


def config(
    runner: str, activity_arn: str, table: str | None = None, **overrides: Any
) -> RunnerConfig:
    return RunnerConfig(
        runner=runner,
        activity_arn=activity_arn,
        table=table or f"{runner}-tasks",
        **{**FAST, **overrides},
    )


class InProcessWorker:
    """``Worker.run`` on its own event loop thread, stopped like SIGTERM would."""

    def __init__(self, configs: list[RunnerConfig]) -> None:
        self.configs = configs
        self.engines: list[Engine[Any]] = []
        self.summary: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as error:
            self.error = error
            self._ready.set()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with open_engines(self.configs, create_tables=True) as engines:
            self.engines = engines
            worker = Worker(engines)
            self._ready.set()
            self.summary = await worker.run(self._stop)

    def start(self) -> InProcessWorker:
        self._thread.start()
        assert self._ready.wait(30), "worker did not start"
        if self.error is not None:
            raise self.error
        return self

    def stop(self, timeout: float = 30) -> dict[str, Any]:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "worker did not stop"
        self._loop.close()
        assert self.summary is not None
        return self.summary

    @property
    def counters(self) -> dict[str, int]:
        return self.engines[0].counters.as_dict()

    def idle_tasks(self) -> int:
        """Tasks held and not in the middle of an operation (a start, a report...)."""
        return sum(
            not flight.busy for engine in self.engines for flight in list(engine.in_flight.values())
        )


@contextmanager
def running_worker(*configs: RunnerConfig) -> Iterator[InProcessWorker]:
    worker = InProcessWorker(list(configs)).start()
    try:
        yield worker
    finally:
        if worker._thread.is_alive():
            worker.stop()


@contextmanager
def worker_process(
    aws: Emulator, tmp_path: Path, *configs: RunnerConfig, log_name: str = "worker"
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m runners worker`` as a user runs it, pointed at the emulator."""
    paths = []
    for index, item in enumerate(configs):
        path = tmp_path / f"{log_name}-{index}.json"
        path.write_text(json.dumps(dataclasses.asdict(item)))
        paths.append(path)
    arguments = [arg for path in paths for arg in ("--config", str(path))]
    log = (tmp_path / f"{log_name}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "runners", "worker", *arguments, "--create-table"],
        env={**os.environ, **aws.client_env()},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        log.close()
