"""What the engines did, as CloudWatch metrics in Embedded Metric Format (EMF).

Each engine gathers its counts and timings between flushes and writes them as EMF
documents, one JSON line each, to stdout per flush (each check cycle, and at the end of
a run: the last of a Lambda tick). Lambda and the container's awslogs driver send stdout
to CloudWatch Logs, which turns the documents into metrics: no API call, no agent, no
permission. The logs go to stderr (``runners.logs``), so the two never mix.

The documents are built by ``aws-embedded-metrics``: its ``MetricsContext`` validates
names, units, values and dimensions, and its ``LogSerializer`` writes the document
(splitting it past 100 metrics, or 100 values of one metric, as the format requires).
Its ``MetricsLogger`` is not used, on purpose: it picks its sink by probing the
environment (on ECS and EC2 it would look for the EC2 metadata endpoint and send to a
CloudWatch agent's socket), and its ``flush_sync`` resolves that environment on a new
thread with a new event loop at each flush when called from a running loop, as the
worker is. Writing the serializer's lines to stdout ourselves is the library's own
stdout sink, without either.

Namespace ``RUNNERS_METRICS_NAMESPACE`` (default ``Runners``); dimensions ``Deployment``
(``RUNNERS_DEPLOYMENT``, default ``runners``) and ``Runner``, each metric under both
[Deployment, Runner] and [Deployment]. ``RUNNERS_METRICS=off`` writes nothing.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import Counter
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from aws_embedded_metrics.exceptions import (
    InvalidDimensionError,
    InvalidMetricError,
    InvalidNamespaceError,
)
from aws_embedded_metrics.logger.metrics_context import MetricsContext
from aws_embedded_metrics.serializers.log_serializer import LogSerializer
from aws_embedded_metrics.validator import validate_dimension_set, validate_namespace

from runners.engine.service import Measure
from runners.errors import ConfigError
from runners.logs import get_logger
from runners.retry import THROTTLING_CODES

NAMESPACE = "Runners"
DEPLOYMENT = "runners"

# Counted between flushes; every flush writes each of them, zeros included, so a sum
# over a period is right even where nothing happened.
COUNTS = (
    "TasksReceived",
    "TasksStarted",
    "TasksSucceeded",
    "TasksFailed",
    "TasksCancelled",
    "InputErrors",
    "ThrottledCalls",
    "CompletionEvents",  # completion events that named a job of this runner
    "EventReports",  # tasks reported because an event said their job ended
)
# Timings (one value per event) and gauges (sampled at each flush), by metric name.
UNITS = {
    "DispatchLatency": "Milliseconds",  # received from a poll -> job started
    "CompletionLatency": "Milliseconds",  # the job's end -> reported
    "JobDuration": "Seconds",  # started -> finished
    "CheckCycleDuration": "Milliseconds",
    "TasksInFlight": "Count",
    "OpenPolls": "Count",
    "WorkerUtilization": "Percent",  # held or incoming tasks / max_in_flight
}
# The botocore handler's id: a client hooked twice still counts an answer once.
_HOOK_ID = "runners.metrics.count_throttled"

# The metrics of the engine whose work is running now (the worker's loops set it, and
# the job table's threads inherit it): where an SDK hook counts throttled calls.
CURRENT: ContextVar[EngineMetrics | None] = ContextVar("runners_metrics", default=None)

log = get_logger()


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
    values: list[Measure] = field(default_factory=list)
    # Throttled calls are counted on the job table's threads too.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def from_environment(
        cls, runner: str, environ: Mapping[str, str] = os.environ
    ) -> EngineMetrics:
        """The engine's metrics as the environment sets them; a namespace or deployment
        CloudWatch would refuse is a ``ConfigError`` at start, not a silent gap later."""
        metrics = cls(
            runner,
            environ.get("RUNNERS_METRICS_NAMESPACE") or NAMESPACE,
            environ.get("RUNNERS_DEPLOYMENT") or DEPLOYMENT,
            enabled(environ),
        )
        if metrics.on:
            try:
                validate_namespace(metrics.namespace)
                if metrics.namespace.startswith("AWS/"):  # CloudWatch keeps these for AWS
                    raise InvalidNamespaceError(f"{metrics.namespace} is reserved for AWS")
                validate_dimension_set(metrics.dimensions)
            except (InvalidNamespaceError, InvalidDimensionError) as error:
                raise ConfigError(
                    f"metrics (RUNNERS_METRICS_NAMESPACE, RUNNERS_DEPLOYMENT): {error}"
                ) from None
        return metrics

    @property
    def dimensions(self) -> dict[str, str]:
        return {"Deployment": self.deployment, "Runner": self.runner}

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.counts[name] += amount

    def observe(self, name: str, value: float) -> None:
        self.values.append(Measure(name, value, UNITS[name]))

    def between(self, name: str, start: float, end: float) -> None:
        """Observe the time from ``start`` to ``end`` (epoch seconds) in ``name``'s unit,
        never below zero (the service's clock and this host's may differ a little)."""
        seconds = max(0.0, end - start)
        self.observe(name, seconds * 1000 if UNITS[name] == "Milliseconds" else seconds)

    def measured(self, measures: tuple[Measure, ...]) -> None:
        """What a runner read from the service about a finished job (Glue DPU-seconds,
        Athena bytes scanned): published as it is named, the engine knows no more."""
        self.values.extend(measures)

    def flush(self, gauges: Mapping[str, float]) -> None:
        """Write everything since the last flush, and ``gauges`` as they are now. Never
        raises: a figure CloudWatch would refuse is dropped with a warning, and nothing
        here may stop a check cycle."""
        with self._lock:
            counts, values = self.counts, self.values
            self.counts, self.values = Counter(), []
        if not self.on:
            return
        try:
            lines = self.documents(counts, gauges, values)
            for line in lines:  # one write per line: whole lines, however stdout buffers
                sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except Exception:
            log.exception("writing metrics failed", runner=self.runner)

    def documents(
        self, counts: Mapping[str, int], gauges: Mapping[str, float], values: list[Measure]
    ) -> list[str]:
        """The EMF documents (JSON lines) for these figures."""
        context = MetricsContext(namespace=self.namespace)
        context.set_dimensions([self.dimensions, {"Deployment": self.deployment}])
        for name in COUNTS:
            _put(context, Measure(name, counts.get(name, 0), "Count"))
        for name, value in gauges.items():
            _put(context, Measure(name, value, UNITS[name]))
        for measure in values:
            _put(context, measure)
        return LogSerializer.serialize(context)


def _put(context: MetricsContext, measure: Measure) -> None:
    # Short decimals keep a busy cycle's document small (a log event is one line).
    value = round(measure.value, 3)
    try:
        context.put_metric(measure.name, value, measure.unit)
    except InvalidMetricError as error:
        log.warning("metric value dropped", metric=measure.name, problem=str(error))


def watch_throttling(events: Any) -> None:
    """Count, in ``ThrottledCalls``, the throttled answers of the botocore (or
    aiobotocore) client whose ``meta.events`` these are."""
    events.register("needs-retry", count_throttled, unique_id=_HOOK_ID)


def count_throttled(response: Any = None, **_: Any) -> None:
    """botocore ``needs-retry`` hook: count an attempt answered with a throttling error
    (the SDK's own retries included). Returns None: the retry decision is botocore's.
    Never raises: a metric must not fail the call it watches."""
    metrics = CURRENT.get()
    if metrics is not None and _error_code(response) in THROTTLING_CODES:
        metrics.count("ThrottledCalls")


def _error_code(response: Any) -> str | None:
    """The error code of a ``(http response, parsed)`` pair, whatever its protocol's
    shape (``Error`` is a string in some services' parsed errors)."""
    if not isinstance(response, tuple) or len(response) < 2 or not isinstance(response[1], dict):
        return None
    error = response[1].get("Error")
    code = error.get("Code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None
