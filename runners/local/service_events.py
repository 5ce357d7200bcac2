"""Service events: what Glue and Athena put on the default EventBridge bus as their
runs change state, delivered by the emulator's rules to their targets.

AWS sends "Glue Job State Change" when a job run ends SUCCEEDED, FAILED, TIMEOUT or
STOPPED, "Glue Crawler State Change" when a crawl is Started, Succeeded or Failed
("Automating AWS Glue with EventBridge"), and "Athena Query State Change" whenever a
query "transitions states" ("Monitor Athena query events with EventBridge"). moto sends
none of them.

An emulated run's state is a function of the clock (``timeline.Timeline``): nothing
happens at its end time unless something is there to act. ``ServiceEvents`` is that
something: one daemon thread per emulator and one heap of ``(due time, callback)``.
Starting a run pushes one entry (a few microseconds, no thread, no timer); at the due
time the thread reads the run's timeline and puts the events of the states it reached
since it last looked, then pushes the run's next change, if any. A stop moves a
timeline's end earlier; the timeline tells its watch (``Timeline.on_stop``), which looks
again at once; the entry left at the old end time finds nothing new to send.

Tests and benchmarks make the delivery unreliable, as "best effort" allows, with
``drop`` and ``delay`` (shares of the events, by ``detail-type`` pattern, seeded like
the fault injector), and read what happened in ``emitted``, ``dropped`` and ``delayed``
(counts by ``detail-type``).
"""

from __future__ import annotations

import fnmatch
import functools
import heapq
import itertools
import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from moto.events.models import events_backends

from runners.local.timeline import Timeline

GLUE_JOB_STATE_CHANGE = "Glue Job State Change"
GLUE_CRAWLER_STATE_CHANGE = "Glue Crawler State Change"
ATHENA_QUERY_STATE_CHANGE = "Athena Query State Change"

EventFaultKind = Literal["drop", "delay"]
Callback = Callable[[], None]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceEvent:
    """One event as its service puts it on the default bus (``PutEvents`` entry fields)."""

    account: str
    region: str
    source: str
    detail_type: str
    detail: dict[str, Any]
    at: float  # when the state changed: the event's ``time``, however late it arrives
    resources: tuple[str, ...] = ()


@dataclass
class EventFault:
    """Lose (``drop``) or hold back by ``seconds`` (``delay``) a ``rate`` share of the
    events whose ``detail-type`` matches ``pattern`` (shell wildcards); ``limit`` caps
    how many are affected in all."""

    pattern: str
    kind: EventFaultKind
    rate: float = 1.0
    seconds: float = 0.0
    limit: int | None = None
    affected: int = field(default=0, init=False)

    def matches(self, detail_type: str) -> bool:
        return fnmatch.fnmatchcase(detail_type, self.pattern)


# What a watch sends for one state change: (index of the change, all changes so far).
EventFor = Callable[[int, list[tuple[float, str]]], ServiceEvent | None]


class ServiceEvents:
    """The emulator's scheduler of service events (one thread, one heap)."""

    def __init__(self, seed: int | None = None) -> None:
        self.enabled = True
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, int, Callback]] = []
        self._order = itertools.count()  # ties on the due time keep their push order
        self._generation = 0  # entries pushed before a reset are never run
        self._firing = threading.Lock()  # held while a callback runs; a reset waits
        self._thread: threading.Thread | None = None
        self._running = False
        self._faults: list[EventFault] = []
        self._random = random.Random(seed)
        self.emitted: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.delayed: Counter[str] = Counter()

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        with self._cond:
            if self._thread is not None:
                return
            self._running = True
            self._thread = threading.Thread(
                target=self._run, name="emulator-service-events", daemon=True
            )
            self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (pending events are forgotten) and wait for it to end."""
        with self._cond:
            thread, self._thread = self._thread, None
            self._running = False
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout)
        self.reset()

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def reset(self) -> None:
        """Forget pending events, faults and counts (an in-flight delivery finishes
        first, so nothing from before the reset reaches the new account)."""
        with self._firing, self._cond:
            self._heap.clear()
            self._generation += 1
            self._faults.clear()
            self.emitted.clear()
            self.dropped.clear()
            self.delayed.clear()

    # -- faults and counts ----------------------------------------------------------

    def drop(
        self, rate: float = 1.0, detail_type: str = "*", limit: int | None = None
    ) -> EventFault:
        """Lose ``rate`` of the matching events (EventBridge: "Best effort")."""
        return self.add(EventFault(detail_type, "drop", rate=rate, limit=limit))

    def delay(
        self, seconds: float, rate: float = 1.0, detail_type: str = "*", limit: int | None = None
    ) -> EventFault:
        """Deliver ``rate`` of the matching events ``seconds`` late."""
        return self.add(EventFault(detail_type, "delay", rate=rate, seconds=seconds, limit=limit))

    def add(self, fault: EventFault) -> EventFault:
        with self._cond:
            self._faults.append(fault)
        return fault

    def remove(self, fault: EventFault) -> None:
        with self._cond:
            if fault in self._faults:
                self._faults.remove(fault)

    def seed(self, seed: int | None) -> None:
        """Make which events the faults pick repeatable."""
        with self._cond:
            self._random = random.Random(seed)

    def count(self, pattern: str = "*") -> int:
        """Events put on the bus so far whose ``detail-type`` matches ``pattern``."""
        with self._cond:
            return sum(n for name, n in self.emitted.items() if fnmatch.fnmatchcase(name, pattern))

    @property
    def pending(self) -> int:
        """Scheduled callbacks not run yet (watched runs, delayed events)."""
        with self._cond:
            return len(self._heap)

    # -- scheduling -----------------------------------------------------------------

    def watch(self, timeline: Timeline, event_for: EventFor, final_only: bool = False) -> None:
        """Send ``event_for(i, changes)`` for each state change of ``timeline`` when it
        happens (``final_only``: the final state only), once each, stops included."""
        if not self.enabled or self._thread is None:
            return
        _Watch(self, timeline, event_for, final_only).schedule()

    def call_at(self, when: float, callback: Callback) -> None:
        with self._cond:
            if not self._running:
                return
            entry = (when, next(self._order), self._generation, callback)
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:  # earlier than what the thread waits for
                self._cond.notify()

    def put(self, event: ServiceEvent) -> None:
        """Put ``event`` on its account's default bus now, unless a fault drops or
        delays it."""
        fault = self._pick_fault(event.detail_type)
        if fault is not None and fault.kind == "drop":
            with self._cond:
                self.dropped[event.detail_type] += 1
            return
        if fault is not None and fault.kind == "delay":
            with self._cond:
                self.delayed[event.detail_type] += 1
            self.call_at(time.time() + fault.seconds, lambda: self._deliver(event))
            return
        self._deliver(event)

    def _pick_fault(self, detail_type: str) -> EventFault | None:
        with self._cond:
            for fault in self._faults:
                if not fault.matches(detail_type):
                    continue
                if fault.limit is not None and fault.affected >= fault.limit:
                    continue
                if self._random.random() < fault.rate:
                    fault.affected += 1
                    return fault
        return None

    def _deliver(self, event: ServiceEvent) -> None:
        backend = events_backends[event.account][event.region]
        backend.put_events(
            [
                {
                    "Source": event.source,
                    "DetailType": event.detail_type,
                    "Detail": json.dumps(event.detail),
                    "Resources": list(event.resources),
                    "Time": event.at,
                    "EventBusName": "default",
                }
            ]
        )
        with self._cond:
            self.emitted[event.detail_type] += 1

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._running:
                    wait = self._heap[0][0] - time.time() if self._heap else None
                    if wait is not None and wait <= 0:
                        break
                    self._cond.wait(wait)
                if not self._running:
                    return
                _due, _order, generation, callback = heapq.heappop(self._heap)
            with self._firing:
                if generation != self._generation:
                    continue
                try:
                    callback()
                except Exception:  # one bad event must not stop the others
                    _log.exception("service event callback failed")


class _Watch:
    """One timeline's changes, sent in order as the clock reaches them.

    Each heap entry carries the epoch it was pushed in; a stop pushes a new one, so the
    entry left at the old time finds itself superseded and does nothing."""

    __slots__ = ("_epoch", "_event_for", "_events", "_final_only", "_sent", "_timeline")

    def __init__(
        self, events: ServiceEvents, timeline: Timeline, event_for: EventFor, final_only: bool
    ) -> None:
        self._events = events
        self._timeline = timeline
        self._event_for = event_for
        self._final_only = final_only
        self._sent = 0  # changes already looked at
        self._epoch = 0
        timeline.on_stop = self.look_now

    def schedule(self) -> None:
        """Wake at the next change to send."""
        self._push(None)

    def look_now(self) -> None:
        self._push(time.time())

    def _push(self, when: float | None) -> None:
        # Reading the timeline, taking an epoch and pushing are one step, so a stop
        # racing a fire cannot leave only an entry timed before the stop in force.
        with self._events._cond:
            if when is None:
                changes = self._timeline.changes()
                index = len(changes) - 1 if self._final_only else self._sent
                if index >= len(changes):
                    return
                when = changes[index][0]
            self._epoch += 1
            self._events.call_at(when, functools.partial(self.fire, self._epoch))

    def fire(self, epoch: int) -> None:
        if epoch != self._epoch:
            return  # superseded: a stop moved the next change
        now = time.time()
        changes = self._timeline.changes()
        reached = [i for i in range(self._sent, len(changes)) if changes[i][0] <= now]
        if self._final_only:
            reached = [i for i in reached if i == len(changes) - 1]
        for index in reached:
            event = self._event_for(index, changes)
            if event is not None:
                self._events.put(event)
        if reached:
            self._sent = reached[-1] + 1
        if self._sent < len(changes):
            self.schedule()


# The process's one scheduler (moto's state is per process, so is the emulator's).
EVENTS = ServiceEvents()
