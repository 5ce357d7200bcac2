"""The completion-events section: our worker with completion events on (issue #15).

Glue and Athena in the emulator put their state-change events on the default
EventBridge bus when runs end; a rule routes the runner's end events to an SQS queue
(as the runner stack does), and each worker given the queue's URL consumes it and
reports a finished job at once. Checks run every ``EventSizes.check_seconds`` (long,
60 s in the full run), so only events report promptly; with a share of the events
dropped, the periodic check is the safety net and runs more often
(``dropped_check_seconds``) so that the scenario ends soon.

Two parts:

- flows: the Glue and Athena flows of the main table (same executions, durations and
  arrivals), served by one worker, by three workers sharing the queue, and by one
  worker with 30% of the events dropped. Completion latency (job end -> task reported),
  status calls and all API calls per task, and duplicated reports: task tokens the
  emulator was sent a report for more than once (``SendTaskSuccess``/``Failure``
  request bodies).
- saturation: short Glue jobs (under 1 s), all executions started at once, one worker:
  executions per second, API calls per task, the worker process's CPU per task (its
  ``/proc/<pid>/stat`` user + system time over the run), and the share of the
  emulator's ceiling the run used (every request it served during the run, the
  benchmark's ``StartExecution`` calls included, per second, over
  ``emulator_ceiling``).

As elsewhere, every figure is read off the emulator, except the worker's CPU time,
which only the kernel knows.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.scenarios import (
    REPORTS,
    STATUS_OPERATIONS,
    Sizes,
    collect,
    emulator_ceiling,
    job_durations,
    percentile,
    prepare_flow,
    side_process,
    start_paced,
    task_machine,
    wait_for_polls,
)
from runners import registry
from runners.local import Call, Emulator

Row = tuple[str, ...]
DETAIL_TYPES = {"glue": "Glue Job State Change", "athena": "Athena Query State Change"}
POLLERS = 4  # the worker's default pollers (``EngineConfig.pollers``)

# The targets, printed alongside the figures.
TARGET_P50 = 0.5
TARGET_P95 = 1.5
TARGET_CEILING_SHARE = 0.75
TARGET_CPU_MS = 5.0


@dataclass(frozen=True)
class EventSizes:
    """The section's own knobs; executions, arrivals, job durations and the long poll
    are the main table's (``Sizes``)."""

    check_seconds: float = 60.0  # events on: checks are the safety net only
    dropped_check_seconds: float = 5.0  # the dropped-events scenario's check interval
    drop_rate: float = 0.3
    workers: int = 3  # the shared-queue scenario
    saturation_executions: int = 1000
    saturation_job_seconds: tuple[float, float] = (0.2, 0.9)


EVENTS_FULL = EventSizes()
EVENTS_QUICK = EventSizes(check_seconds=30.0, dropped_check_seconds=1.0, saturation_executions=100)


@dataclass
class EventFlowResult:
    """One scenario of one flow, counted on the emulator's side."""

    label: str
    runner: str
    workers: int
    check_seconds: float
    drop_rate: float
    executions: int
    succeeded: int
    seconds: float
    completion: list[float]
    calls: Counter[str] = field(default_factory=Counter)
    reports: int = 0  # SendTaskSuccess/Failure calls, accepted or not
    duplicated: int = 0  # task tokens reported more than once
    duplicate_answers: list[list[str]] = field(default_factory=list)  # what each was told
    emitted: int = 0  # the runner's state-change events put on the bus
    dropped: int = 0

    def per_task(self, operations: frozenset[str] | set[str] | None = None) -> float:
        total = sum(n for name, n in self.calls.items() if operations is None or name in operations)
        return total / max(self.succeeded, 1)


@dataclass
class SaturationResult:
    runner: str
    executions: int
    succeeded: int
    seconds: float  # first execution started -> last execution ended
    run_seconds: float  # first start call -> last report seen
    calls: Counter[str]
    cpu_seconds: float  # the worker process's user + system time over the run
    emulator_cpu_seconds: float  # this process's (the emulator's, and the starts')
    ceiling: dict[int, float]
    duplicated: int
    completion: list[float]

    @property
    def per_second(self) -> float:
        return self.succeeded / self.seconds if self.seconds else 0.0

    @property
    def requests_per_second(self) -> float:
        """Every request the emulator served during the run, per second."""
        return sum(self.calls.values()) / self.run_seconds if self.run_seconds else 0.0

    @property
    def ceiling_rate(self) -> float:
        return max(self.ceiling.values())

    @property
    def ceiling_share(self) -> float:
        return self.requests_per_second / self.ceiling_rate if self.ceiling_rate else 0.0

    @property
    def worker_calls_per_task(self) -> float:
        """API calls per task, the benchmark's own ``StartExecution`` left out."""
        ours = sum(self.calls.values()) - self.calls["states:StartExecution"]
        return ours / max(self.succeeded, 1)

    @property
    def emulator_cores(self) -> float:
        """How many cores the emulator's process kept busy over the run, on average (its
        threads share one interpreter lock: about 1.0 is all it can do)."""
        return self.emulator_cpu_seconds / self.run_seconds if self.run_seconds else 0.0

    @property
    def worker_cores(self) -> float:
        return self.cpu_seconds / self.run_seconds if self.run_seconds else 0.0

    @property
    def cpu_ms_per_task(self) -> float:
        return 1000 * self.cpu_seconds / max(self.succeeded, 1)


# Emulator-side counting -------------------------------------------------------------


class TokenReports:
    """Task reports by task token, as the emulator was sent them: ``done`` once
    ``expect``-many distinct tokens had a report accepted."""

    def __init__(self, aws: Emulator) -> None:
        self.by_token: Counter[str] = Counter()
        # Each report's answer, by token: "200", or the error's type.
        self.answers: dict[str, list[str]] = {}
        self.accepted: set[str] = set()
        self.last_at = 0.0
        self._lock = threading.Lock()
        self._target = 0
        self.done = threading.Event()
        for name in REPORTS:
            aws.faults.on_call(name, self._seen)

    def expect(self, count: int) -> None:
        self._target = count

    @property
    def duplicated(self) -> int:
        with self._lock:
            return sum(1 for n in self.by_token.values() if n > 1)

    def duplicates(self) -> list[list[str]]:
        """The answers to each token's reports, for the tokens reported more than once."""
        with self._lock:
            return [list(answers) for answers in self.answers.values() if len(answers) > 1]

    @property
    def sent(self) -> int:
        with self._lock:
            return sum(self.by_token.values())

    def _seen(self, call: Call) -> None:
        token = str(call.json().get("taskToken", ""))
        answer = (
            "200" if call.status == 200 else str(call.response_json().get("__type", call.status))
        )
        with self._lock:
            self.by_token[token] += 1
            self.answers.setdefault(token, []).append(answer)
            if call.status == 200:
                self.accepted.add(token)
                self.last_at = time.monotonic()
                if len(self.accepted) >= self._target:
                    self.done.set()


def completion_queue(aws: Emulator, runner: str) -> str:
    """The runner stack's routing: a rule for the runner's end events, to a queue."""
    sqs, events = aws.client("sqs"), aws.client("events")
    url: str = sqs.create_queue(QueueName=f"{runner}-completions")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    ends = registry.get(runner).completion_events
    if ends is None:
        raise ValueError(f"{runner} has no completion events")
    events.put_rule(Name=f"{runner}-ends", EventPattern=json.dumps(ends.pattern))
    events.put_targets(Rule=f"{runner}-ends", Targets=[{"Id": "queue", "Arn": arn}])
    return url


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU time (Linux ``/proc``), in seconds; NaN elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat.rsplit(")", 1)[1].split()  # the name, in parentheses, may hold spaces
    utime, stime = int(fields[11]), int(fields[12])  # stat(5)'s fields 14 and 15
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def wait_until_serving(aws: Emulator, workers: int, timeout: float = 60.0) -> None:
    """Wait until ``workers`` workers hold their polls open: each long-polls the
    activity with its pollers and the queue once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if aws.faults.count("sqs:ReceiveMessage") >= workers:
            break
        time.sleep(0.05)
    wait_for_polls(aws, POLLERS * workers, timeout=max(deadline - time.monotonic(), 1.0))


def events_config(url: str, check_seconds: float) -> dict[str, Any]:
    return {
        "completion_queue_url": url,
        "check_interval_seconds": check_seconds,
        "lease_seconds": max(120.0, 2 * check_seconds),
    }


# Flows --------------------------------------------------------------------------------


def run_event_flow(
    aws: Emulator,
    runner: str,
    sizes: Sizes,
    workdir: Path,
    label: str,
    workers: int = 1,
    check_seconds: float = 60.0,
    drop_rate: float = 0.0,
) -> EventFlowResult:
    """The main table's flow for ``runner``, served by ``workers`` worker processes
    sharing one completion queue, with ``drop_rate`` of the events lost."""
    count = sizes.executions
    aws.reset()
    sfn = aws.client("stepfunctions", retries={"mode": "standard", "max_attempts": 10})
    activity = sfn.create_activity(name=f"{runner}-events-activity")["activityArn"]
    machine = task_machine(aws, activity)
    inputs = prepare_flow(aws, "runners", runner, job_durations(sizes, count))
    url = completion_queue(aws, runner)
    if drop_rate:
        aws.service_events.seed(7)
        aws.service_events.drop(rate=drop_rate)
    reports = TokenReports(aws)
    reports.expect(count)
    table = f"events-{runner}-tasks"
    config = events_config(url, check_seconds)
    with ExitStack() as stack:
        for index in range(workers):
            worker = side_process(
                aws, "runners", runner, activity, table, sizes, workdir,
                name=f"events-{runner}-{index}", reset=index == 0, **config,
            )  # fmt: skip
            stack.enter_context(worker)
            wait_until_serving(aws, index + 1)
        before = Counter(aws.faults.calls)
        arns = start_paced(sfn, machine, inputs, sizes.start_window_seconds)
        longest = sizes.start_window_seconds + sizes.job_seconds[1]
        reports.done.wait(longest + 2 * check_seconds + 120)
        time.sleep(0.5)  # a duplicate report would come right after the first
        calls = Counter(aws.faults.calls) - before
        calls.pop("states:StartExecution", None)  # the benchmark's own
        flow = collect(aws, "runners", runner, arns)
        detail = DETAIL_TYPES[runner]
        return EventFlowResult(
            label=label,
            runner=runner,
            workers=workers,
            check_seconds=check_seconds,
            drop_rate=drop_rate,
            executions=flow.executions,
            succeeded=flow.succeeded,
            seconds=flow.seconds,
            completion=flow.completion,
            calls=calls,
            reports=reports.sent,
            duplicated=reports.duplicated,
            duplicate_answers=reports.duplicates(),
            emitted=aws.service_events.emitted[detail],
            dropped=aws.service_events.dropped[detail],
        )


def event_scenarios(sizes: Sizes, events: EventSizes) -> list[tuple[str, str, dict[str, Any]]]:
    """(key, label, run_event_flow's keywords) for each flow and scenario."""
    scenarios = []
    for runner in ("glue", "athena"):
        name = runner.capitalize()
        scenarios += [
            (
                f"{runner}/1",
                f"{name}, 1 worker",
                {"runner": runner, "check_seconds": events.check_seconds},
            ),
            (
                f"{runner}/{events.workers}",
                f"{name}, {events.workers} workers, one queue",
                {
                    "runner": runner,
                    "workers": events.workers,
                    "check_seconds": events.check_seconds,
                },
            ),
            (
                f"{runner}/dropped",
                f"{name}, 1 worker, {events.drop_rate:.0%} of events dropped",
                {
                    "runner": runner,
                    "check_seconds": events.dropped_check_seconds,
                    "drop_rate": events.drop_rate,
                },
            ),
        ]
    return scenarios


# Saturation ---------------------------------------------------------------------------


def saturate(aws: Emulator, sizes: Sizes, events: EventSizes, workdir: Path) -> SaturationResult:
    """``saturation_executions`` short Glue jobs, all started at once (8 threads, as
    fast as the emulator takes them), one worker with events on."""
    ceiling = emulator_ceiling(aws)
    count = events.saturation_executions
    aws.reset()
    sfn = aws.client("stepfunctions", retries={"mode": "standard", "max_attempts": 10})
    activity = sfn.create_activity(name="saturation-activity")["activityArn"]
    machine = task_machine(aws, activity)
    short = Sizes(job_seconds=events.saturation_job_seconds)
    inputs = prepare_flow(aws, "runners", "glue", job_durations(short, count))
    url = completion_queue(aws, "glue")
    reports = TokenReports(aws)
    reports.expect(count)
    config = events_config(url, events.check_seconds)
    with side_process(
        aws, "runners", "glue", activity, "saturation-tasks", sizes, workdir,
        name="events-saturation", **config,
    ) as worker:  # fmt: skip
        wait_until_serving(aws, 1)
        before = Counter(aws.faults.calls)
        cpu_before = cpu_seconds(worker.pid)
        emulator_before = cpu_seconds(os.getpid())
        began = time.monotonic()
        arns = start_at_once(sfn, machine, inputs)
        reports.done.wait(count + 2 * events.check_seconds + 120)
        ended = reports.last_at or time.monotonic()
        cpu = cpu_seconds(worker.pid) - cpu_before
        emulator_cpu = cpu_seconds(os.getpid()) - emulator_before
        calls = Counter(aws.faults.calls) - before
        time.sleep(0.5)
        duplicated = reports.duplicated
        flow = collect(aws, "runners", "glue", arns)
    return SaturationResult(
        runner="glue",
        executions=flow.executions,
        succeeded=flow.succeeded,
        seconds=flow.seconds,
        run_seconds=ended - began,
        calls=calls,
        cpu_seconds=cpu,
        emulator_cpu_seconds=emulator_cpu,
        ceiling=ceiling,
        duplicated=duplicated,
        completion=flow.completion,
    )


def start_at_once(sfn: Any, machine: str, inputs: list[str], threads: int = 8) -> list[str]:
    """Start every execution as fast as the emulator takes them; their ARNs in order."""
    arns = [""] * len(inputs)

    def starter(index: int) -> None:
        for n in range(index, len(inputs), threads):
            answer = sfn.start_execution(stateMachineArn=machine, input=inputs[n])
            arns[n] = answer["executionArn"]

    workers = [threading.Thread(target=starter, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return arns


# Figures and the table ------------------------------------------------------------------


def flow_summary(result: EventFlowResult) -> dict[str, Any]:
    return {
        "label": result.label,
        "workers": result.workers,
        "check_seconds": result.check_seconds,
        "drop_rate": result.drop_rate,
        "executions": result.executions,
        "succeeded": result.succeeded,
        "seconds": round(result.seconds, 2),
        "completion_p50": percentile(result.completion, 0.5),
        "completion_p95": percentile(result.completion, 0.95),
        "completion_max": max(result.completion, default=float("nan")),
        "status_per_task": round(result.per_task(STATUS_OPERATIONS), 3),
        "calls_per_task": round(result.per_task(), 3),
        "reports": result.reports,
        "duplicated": result.duplicated,
        "duplicate_answers": result.duplicate_answers,
        "emitted": result.emitted,
        "dropped": result.dropped,
        "calls": dict(result.calls),
    }


def saturation_summary(result: SaturationResult) -> dict[str, Any]:
    return {
        "executions": result.executions,
        "succeeded": result.succeeded,
        "seconds": round(result.seconds, 2),
        "run_seconds": round(result.run_seconds, 2),
        "per_second": round(result.per_second, 3),
        "calls_per_task": round(result.worker_calls_per_task, 3),
        "cpu_ms_per_task": round(result.cpu_ms_per_task, 3),
        "worker_cores": round(result.worker_cores, 3),
        "emulator_cores": round(result.emulator_cores, 3),
        "requests_per_second": round(result.requests_per_second, 1),
        "ceiling": result.ceiling,
        "ceiling_share": round(result.ceiling_share, 3),
        "duplicated": result.duplicated,
        "calls": dict(result.calls),
    }


def flow_verdict(result: EventFlowResult) -> str:
    """Which of the issue's targets the scenario meets. Latency targets hold with events
    delivered; with events dropped, p95 is bounded by the check interval instead."""
    missed = []
    if result.succeeded < result.executions:
        missed.append(f"{result.executions - result.succeeded} not completed")
    if result.duplicated:
        missed.append("duplicates")
    if not result.drop_rate:
        if not percentile(result.completion, 0.5) < TARGET_P50:
            missed.append("p50")
        if not percentile(result.completion, 0.95) < TARGET_P95:
            missed.append("p95")
    return "met" if not missed else "missed: " + ", ".join(missed)


def render_events(
    sizes: Sizes,
    events: EventSizes,
    flows: dict[str, EventFlowResult],
    saturation: SaturationResult | None,
    table: Callable[[list[Row]], list[str]],
) -> str:
    """The section's two tables (``table`` lays rows out, as run.py's other tables);
    the saturation table alone when no flow ran."""
    if not flows:
        return "\n".join(render_saturation(events, saturation, table) if saturation else [])
    low, high = sizes.job_seconds
    lines = [
        f"Completion events: {sizes.executions} executions a flow, started within "
        f"{sizes.start_window_seconds:g} s, jobs {low:g}-{high:g} s; checks every "
        f"{events.check_seconds:g} s (with events dropped: every "
        f"{events.dropped_check_seconds:g} s)",
        f"targets: completion p50 < {TARGET_P50:g} s and p95 < {TARGET_P95:g} s with events; "
        f"no duplicated report; every task completes with {events.drop_rate:.0%} dropped",
        "",
    ]
    rows: list[Row] = [
        (
            "Flow",
            "succeeded",
            "completion p50 / p95 (s)",
            "status calls / task",
            "API calls / task",
            "duplicated reports",
            "events sent / dropped",
            "targets",
        )
    ]
    for result in flows.values():
        p50, p95 = percentile(result.completion, 0.5), percentile(result.completion, 0.95)
        rows.append(
            (
                result.label,
                f"{result.succeeded} / {result.executions}",
                f"{p50:.2f} / {p95:.2f}",
                f"{result.per_task(STATUS_OPERATIONS):.3f}",
                f"{result.per_task():.2f}",
                f"{result.duplicated}",
                f"{result.emitted} / {result.dropped}",
                flow_verdict(result),
            )
        )
    lines += table(rows)
    lines += [
        "",
        "status calls: GetJobRun(s) / BatchGetQueryExecution (an event's end is confirmed",
        "  by a status call, a batch for many ends); API calls: every call the workers made,",
        "  polls, DynamoDB and SQS included; duplicated: task tokens the emulator was sent",
        "  more than one report for; events: the runner's state-change events the service",
        "  put on the bus or lost (Athena sends one for each state a query reaches: 3).",
    ]
    for result in flows.values():
        for answers in result.duplicate_answers:
            lines.append(
                f"{result.label}: a task reported {len(answers)} times, answered "
                + ", ".join(answers)
            )
    if saturation is not None:
        lines += ["", *render_saturation(events, saturation, table)]
    return "\n".join(lines)


def render_saturation(
    events: EventSizes, s: SaturationResult, table: Callable[[list[Row]], list[str]]
) -> list[str]:
    slow, shigh = events.saturation_job_seconds
    cpu_met = s.cpu_ms_per_task < TARGET_CPU_MS
    share_met = s.ceiling_share >= TARGET_CEILING_SHARE
    lines = [
        f"Saturation: {s.executions:,} Glue executions started at once, jobs "
        f"{slow:g}-{shigh:g} s, 1 worker, events on, checks every {events.check_seconds:g} s",
        "",
    ]
    rows: list[Row] = [
        ("Figure", "measured", "target", ""),
        (
            "succeeded / end to end (s)",
            f"{s.succeeded} / {s.seconds:.1f}",
            f"{s.executions}",
            "met" if s.succeeded == s.executions else "missed",
        ),
        ("executions/s", f"{s.per_second:.2f}", "-", ""),
        ("API calls per task (the worker's)", f"{s.worker_calls_per_task:.2f}", "-", ""),
        (
            "worker CPU per task (ms)",
            f"{s.cpu_ms_per_task:.2f}",
            f"< {TARGET_CPU_MS:g}",
            "met" if cpu_met else "missed",
        ),
        (
            "emulator requests/s (all) / ceiling",
            f"{s.requests_per_second:.0f} / {s.ceiling_rate:.0f}",
            "-",
            "",
        ),
        (
            "  share of the ceiling used",
            f"{s.ceiling_share:.0%}",
            f">= {TARGET_CEILING_SHARE:.0%}",
            "met" if share_met else "missed",
        ),
        ("duplicated reports", f"{s.duplicated}", "0", "met" if not s.duplicated else "missed"),
        (
            "cores busy: worker / emulator process",
            f"{s.worker_cores:.2f} / {s.emulator_cores:.2f}",
            "-",
            "",
        ),
    ]
    lines += table(rows)
    lines += [
        "",
        "ceiling: the most DescribeActivity calls a second the emulator served (1 or 16",
        f"  clients: {s.ceiling[1]:.0f} / {s.ceiling[16]:.0f}), measured just before; requests/s:",
        "  every call it served from the first StartExecution to the last report, over",
        "  that time; CPU: the worker process's user + system time over the same span;",
        "  cores busy: CPU time over that span (the emulator's process, which also starts",
        "  the executions, runs on one interpreter lock: near 1.0 it is the bottleneck).",
    ]
    return lines
