"""A worker on its own thread and event loop, for the demo, tests and benchmarks.

Stopping it is what SIGTERM does to the container worker: polls drain, leases are
released, the summary comes back.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

from runners.engine.engine import Engine
from runners.engine.worker import Worker
from runners.runtime import open_engines
from runners.settings import RunnerConfig

T = TypeVar("T")


class BackgroundWorker:
    def __init__(self, configs: Sequence[RunnerConfig], create_tables: bool = True) -> None:
        self.configs, self.create_tables = list(configs), create_tables
        self.engines: list[Engine[Any]] = []
        self.summary: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="runners-worker", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as error:  # surfaced by start() and stop()
            self.error = error
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with open_engines(self.configs, create_tables=self.create_tables) as engines:
            self.engines = engines
            self._ready.set()
            self.summary = await Worker(engines).run(self._stop)

    def start(self, timeout: float = 30) -> BackgroundWorker:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the worker did not start")
        if self.error is not None:
            raise self.error
        return self

    def stop(self, timeout: float = 90) -> dict[str, Any]:
        if self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the worker did not stop")
        self._loop.close()
        if self.error is not None:
            raise self.error
        assert self.summary is not None
        return self.summary

    def __enter__(self) -> BackgroundWorker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._thread.is_alive():
            self.stop()

    def inspect(self, look: Callable[[], T], timeout: float = 5) -> T:
        """Evaluate ``look`` on the worker's event loop, between two of its steps (reading
        engine state from another thread could catch it halfway through one)."""

        async def on_loop() -> T:
            return look()

        return asyncio.run_coroutine_threadsafe(on_loop(), self._loop).result(timeout)

    @property
    def counters(self) -> dict[str, int]:
        return self.engines[0].counters.as_dict()

    def idle_tasks(self) -> int:
        """Tasks held and not in the middle of an operation (a start, a report...)."""
        return sum(
            not flight.busy for engine in self.engines for flight in list(engine.in_flight.values())
        )
