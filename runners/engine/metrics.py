"""What the engines did, as CloudWatch metrics in Embedded Metric Format (EMF).

Each engine gathers its counts and timings between flushes and writes one EMF document
to stdout per flush (each check cycle, and at the end of a Lambda tick): Lambda and the
container's awslogs driver send stdout to CloudWatch Logs, which turns the documents
into metrics, with no API call and no agent. The documents are made by
``aws-embedded-metrics`` (its serializer and validation), always with its stdout sink:
its environment detection would look for a CloudWatch agent on ECS and EC2.

Namespace ``RUNNERS_METRICS_NAMESPACE`` (default ``Runners``); dimensions ``Deployment``
(``RUNNERS_DEPLOYMENT``, default ``runners``) and ``Runner``, each metric under both
[Deployment, Runner] and [Deployment]. ``RUNNERS_METRICS=off`` writes nothing.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from aws_embedded_metrics.environment import Environment
from aws_embedded_metrics.environment.local_environment import LocalEnvironment
from aws_embedded_metrics.logger.metrics_logger import MetricsLogger

from runners.engine.service import Measure
from runners.retry import THROTTLING_CODES

NAMESPACE = "Runners"
DEPLOYMENT = "runners"

# Counts (unit Count) and timings, by metric name.
COUNTS = (
    "TasksReceived",
    "TasksStarted",
    "TasksSucceeded",
    "TasksFailed",
    "TasksCancelled",
    "InputErrors",
    "ThrottledCalls",
)
UNITS = {
    "DispatchLatency": "Milliseconds",  # received from a poll -> job started
    "CompletionLatency": "Milliseconds",  # the service's end of the job -> reported
    "JobDuration": "Seconds",  # started -> finished
    "CheckCycleDuration": "Milliseconds",
    "TasksInFlight": "Count",
    "OpenPolls": "Count",
    "WorkerUtilization": "Percent",  # held or incoming tasks / max_in_flight
}

# The metrics of the engine whose work is running now (its loops set it): where an SDK
# hook counts throttled calls.
CURRENT: ContextVar[EngineMetrics | None] = ContextVar("runners_metrics", default=None)


def enabled(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get("RUNNERS_METRICS", "on").strip().lower() not in ("off", "false", "0")


@dataclass
class EngineMetrics:
    """One engine's figures since its last flush."""

    runner: str
    namespace: str = NAMESPACE
    deployment: str = DEPLOYMENT
    on: bool = True
    counts: Counter[str] = field(default_factory=Counter)
    values: list[tuple[str, float, str]] = field(default_factory=list)

    @classmethod
    def from_environment(
        cls, runner: str, environ: Mapping[str, str] = os.environ
    ) -> EngineMetrics:
        return cls(
            runner,
            environ.get("RUNNERS_METRICS_NAMESPACE") or NAMESPACE,
            environ.get("RUNNERS_DEPLOYMENT") or DEPLOYMENT,
            enabled(environ),
        )

    def count(self, name: str, amount: int = 1) -> None:
        self.counts[name] += amount

    def observe(self, name: str, value: float) -> None:
        self.values.append((name, value, UNITS[name]))

    def measured(self, measures: tuple[Measure, ...]) -> None:
        self.values.extend((m.name, m.value, m.unit) for m in measures)

    def since(self, name: str, started: float | None, unit_scale: float = 1000.0) -> None:
        """Observe the time from ``started`` (epoch seconds) to now."""
        if started is not None:
            self.observe(name, max(0.0, time.time() - started) * unit_scale)

    def flush(self, gauges: Mapping[str, float]) -> None:
        """Write one EMF document with everything since the last flush."""
        counts, values = self.counts, self.values
        self.counts, self.values = Counter(), []
        if not self.on:
            return
        logger = MetricsLogger(_stdout)
        logger.set_namespace(self.namespace)
        deployment = {"Deployment": self.deployment}
        logger.set_dimensions({**deployment, "Runner": self.runner}, deployment)
        for name in COUNTS:
            logger.put_metric(name, counts.get(name, 0), "Count")
        for name, value in gauges.items():
            logger.put_metric(name, value, UNITS[name])
        for name, value, unit in values:
            logger.put_metric(name, value, unit)
        logger.flush_sync()
        sys.stdout.flush()  # one whole line, never interleaved with the logs on stderr


_LOCAL = LocalEnvironment()


async def _stdout() -> Environment:
    return _LOCAL


def count_throttled(response: Any = None, **_: Any) -> None:
    """botocore ``needs-retry`` hook: count an attempt answered with a throttling error
    (the SDK's own retries included). Returns None: the retry decision is botocore's."""
    metrics = CURRENT.get()
    if metrics is None or not isinstance(response, tuple) or len(response) < 2:
        return
    parsed = response[1] if isinstance(response[1], dict) else {}
    if parsed.get("Error", {}).get("Code") in THROTTLING_CODES:
        metrics.count("ThrottledCalls")
