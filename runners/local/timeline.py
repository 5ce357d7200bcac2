"""Wall-clock timelines for emulated Glue job runs and Athena queries.

moto advances a run one state per read, and only when its interval has passed since the
previous step, so when a run ends would depend on how often it is polled. Here a run's
state is a function of the time since it started: it ends at its wall-clock time however
often (or rarely) anyone looks, which keeps every latency figure honest.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RunBehaviour:
    """How an emulated run plays out.

    ``duration`` seconds after it starts the run reaches ``final_state`` (with
    ``error_message`` for failures). ``phases`` replaces the default non-terminal
    phases (the service's start state, then RUNNING) with explicit ``(state, seconds)``
    steps, e.g. an Athena query that fails transiently and is queued again.
    ``metrics`` are the figures the service reports for a finished run, by their API
    names (``DataScannedInBytes``, ``TablesCreated``...).
    """

    duration: float = 1.0
    final_state: str = "SUCCEEDED"
    error_message: str | None = None
    phases: tuple[tuple[str, float], ...] | None = None
    metrics: Mapping[str, int] = field(default_factory=dict)

    def timeline(self, start_state: str, started_at: float | None = None) -> Timeline:
        phases = self.phases if self.phases is not None else self._default_phases(start_state)
        return Timeline(list(phases), self.final_state, started_at or time.time())

    def _default_phases(self, start_state: str) -> tuple[tuple[str, float], ...]:
        starting = min(0.2, self.duration * 0.1)
        return ((start_state, starting), ("RUNNING", self.duration - starting))


@dataclass
class Timeline:
    """Non-terminal ``(state, seconds)`` phases, then a final state, from ``started_at``.

    ``on_stop`` is called (without arguments, after the change) when ``stop`` moves the
    end earlier: whoever acts at the end time (``service_events``) looks again.
    """

    phases: list[tuple[str, float]]
    final_state: str
    started_at: float
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    on_stop: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def state(self, now: float | None = None) -> str:
        elapsed = (now or time.time()) - self.started_at
        with self._lock:
            for state, seconds in self.phases:
                if elapsed < seconds:
                    return state
                elapsed -= seconds
            return self.final_state

    def is_final(self, now: float | None = None) -> bool:
        return self.completed_at(now) is not None

    def completed_at(self, now: float | None = None) -> float | None:
        """Wall-clock time the final state was reached, or None while still going."""
        end = self.started_at + self._total_seconds()
        return end if (now or time.time()) >= end else None

    def last_change_at(self, now: float | None = None) -> float:
        """Wall-clock time of the latest state change up to ``now``."""
        now = now or time.time()
        changed = self.started_at
        with self._lock:
            for _state, seconds in self.phases:
                if changed + seconds > now:
                    break
                changed += seconds
        return changed

    def changes(self) -> list[tuple[float, str]]:
        """``(wall-clock time, state entered)`` for every state the run shows, in order:
        its first state at ``started_at``, the final state last (at the end time).

        Phases too short to be seen are left out and a phase in the state before it
        extends it, as ``state()`` reads them."""
        at = self.started_at
        changes: list[tuple[float, str]] = []
        with self._lock:
            for state, seconds in self.phases:
                if seconds > 0 and (not changes or changes[-1][1] != state):
                    changes.append((at, state))
                at += seconds
            changes.append((at, self.final_state))
        return changes

    def seconds_in(self, state: str, now: float | None = None) -> float:
        """How long the run has spent in ``state`` so far."""
        elapsed = (now or time.time()) - self.started_at
        spent = 0.0
        with self._lock:
            for phase, seconds in self.phases:
                if phase == state:
                    spent += max(0.0, min(seconds, elapsed))
                elapsed -= seconds
        return spent

    def stop(self, stopped_state: str, stopping: tuple[str, float] | None = None) -> bool:
        """End the run early (``StopQueryExecution``, ``BatchStopJobRun``).

        Returns False when the run had already reached its final state.
        """
        now = time.time()
        if self.is_final(now):
            return False
        with self._lock:
            kept, elapsed = [], now - self.started_at
            for state, seconds in self.phases:
                if elapsed <= 0:
                    break
                kept.append((state, min(seconds, elapsed)))
                elapsed -= seconds
            if stopping is not None:
                kept.append(stopping)
            self.phases, self.final_state = kept, stopped_state
        if self.on_stop is not None:
            self.on_stop()
        return True

    def _total_seconds(self) -> float:
        with self._lock:
            return sum(seconds for _state, seconds in self.phases)
