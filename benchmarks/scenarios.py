"""The benchmark's scenarios, run against the embedded emulator with AWS's timing: the
60 s long poll, and Glue runs and Athena queries that take 5 to 60 s.

Both sides run as their own processes, as they would be deployed: our worker is
``python -m runners worker``, the baseline ``benchmarks/baseline.py``. Every figure is
read off the emulator (the calls it served, execution histories, run timelines), never
off either side's own account of itself.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.baseline import create_table
from runners.local import Call, Emulator, RunBehaviour

ROOT = Path(__file__).resolve().parent.parent
JOB = "Nightly"
DATABASE = "sales"
RESULTS = "s3://benchmark-results/"
STATUS_OPERATIONS = frozenset(
    {
        "glue:GetJobRun",
        "glue:GetJobRuns",
        "athena:GetQueryExecution",
        "athena:BatchGetQueryExecution",
    }
)
HEARTBEAT = "states:SendTaskHeartbeat"
REPORTS = ("states:SendTaskSuccess", "states:SendTaskFailure")


@dataclass(frozen=True)
class Sizes:
    executions: int = 500
    start_window_seconds: float = 10.0
    job_seconds: tuple[float, float] = (5.0, 60.0)
    poll_seconds: float = 60.0  # the emulator's long poll, as on AWS
    tracked_jobs: int = 10_000
    open_polls: int = 100
    polled_executions: int = 20
    runner_executions: int = 200  # per runner, in the per-runner section
    check_seconds: float = 5.0  # the per-runner section's check interval (the default)


FULL = Sizes()
# CI's smoke run: every scenario end to end, small and short, so the benchmark cannot rot.
QUICK = Sizes(
    executions=30,
    start_window_seconds=2.0,
    job_seconds=(1.0, 3.0),
    poll_seconds=3.0,
    tracked_jobs=300,
    open_polls=20,
    polled_executions=5,
    runner_executions=12,
    # Scaled with the jobs, as the long poll is, so that a task goes through several
    # checks as in the full run: with 1-3 s jobs and 5 s checks every job has ended by
    # its first check, and a runner that reads each ended job for its result (Redshift,
    # EMR Serverless) spends a call per job on that check, whatever its batching.
    check_seconds=0.5,
)


# Measurements ---------------------------------------------------------------------


@dataclass
class FlowResult:
    """One side's run of one flow."""

    side: str
    runner: str
    executions: int
    succeeded: int
    seconds: float  # first execution started -> last execution ended
    dispatch: list[float]  # task scheduled -> job started
    completion: list[float]  # job ended -> task reported
    calls: Counter[str] = field(default_factory=Counter)
    open_polls: int = 0

    @property
    def per_second(self) -> float:
        return self.succeeded / self.seconds if self.seconds else 0.0

    def per_task(self, operations: Sequence[str] | frozenset[str]) -> float:
        return sum(self.calls[name] for name in operations) / max(self.succeeded, 1)

    def per_task_where(self, prefix: str) -> float:
        return sum(n for name, n in self.calls.items() if name.startswith(prefix)) / max(
            self.succeeded, 1
        )


@dataclass
class ScaleResult:
    tracked: int
    idle_rss_mb: float
    peak_rss_mb: float
    cycle_seconds: list[float]
    setup_seconds: float


def percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


# Emulator ceiling -------------------------------------------------------------------


def emulator_ceiling(aws: Emulator, seconds: float = 3.0) -> dict[int, float]:
    """Requests per second the emulator serves (``DescribeActivity``), by client count."""
    aws.reset()
    arn = aws.client("stepfunctions").create_activity(name="ceiling")["activityArn"]
    rates = {}
    for clients in (1, 16):
        counts = [0] * clients
        deadline = time.monotonic() + seconds
        threads = [
            threading.Thread(target=_hammer, args=(aws, arn, deadline, counts, i))
            for i in range(clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rates[clients] = sum(counts) / seconds
    return rates


def _hammer(aws: Emulator, arn: str, deadline: float, counts: list[int], index: int) -> None:
    sfn = aws.client("stepfunctions")
    while time.monotonic() < deadline:
        sfn.describe_activity(activityArn=arn)
        counts[index] += 1


# Flows: many executions of one activity task each -----------------------------------


def job_durations(sizes: Sizes, count: int, seed: int = 7) -> list[float]:
    """The same durations, in the same order, for both sides."""
    rng = random.Random(seed)
    low, high = sizes.job_seconds
    return [round(rng.uniform(low, high), 1) for _ in range(count)]


def prepare_flow(aws: Emulator, side: str, runner: str, durations: list[float]) -> list[str]:
    """Create the job (or query behaviours); return each execution's input.

    Inputs are JSON strings holding the JSON object, the original's format (it decodes
    input twice; ours accepts both). Job n lasts ``durations[n]``.
    """
    if runner == "glue":
        aws.client("glue").create_job(
            Name=JOB,
            Role="arn:aws:iam::123456789012:role/Glue",
            Command={"Name": "glueetl", "ScriptLocation": "s3://scripts/nightly.py"},
            ExecutionProperty={"MaxConcurrentRuns": 100_000},
        )
        aws.glue_runs.set(JOB, lambda args: RunBehaviour(duration=float(args["--seconds"])))
        documents = [
            {"GlueJobName": JOB, "--seconds": str(seconds)}  # the original passes all keys
            if side == "baseline"
            else {"GlueJobName": JOB, "Arguments": {"--seconds": str(seconds)}}
            for seconds in durations
        ]
    else:
        for seconds in set(durations):
            aws.athena_queries.add(f"[{seconds}s]", RunBehaviour(duration=seconds))
        documents = [
            {
                "AthenaQueryString": f"SELECT day, sum(revenue) FROM sales /* [{seconds}s] */",
                "AthenaDatabase": DATABASE,
                "AthenaResultOutputLocation": RESULTS,
            }
            for seconds in durations
        ]
    return [json.dumps(json.dumps(document)) for document in documents]


def task_machine(aws: Emulator, activity: str) -> str:
    definition = {
        "StartAt": "Work",
        "States": {
            "Work": {"Type": "Task", "Resource": activity, "TimeoutSeconds": 7200, "End": True}
        },
    }
    arn: str = aws.client("stepfunctions").create_state_machine(
        name="benchmark",
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/StatesExecutionRole",
    )["stateMachineArn"]
    return arn


class Reports:
    """Accepted task reports, counted on the emulator's side."""

    def __init__(self, aws: Emulator) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self._target = 0
        self.done = threading.Event()
        for name in REPORTS:
            aws.faults.on_call(name, self._seen)

    def expect(self, count: int) -> None:
        self._target = count

    def _seen(self, call: Call) -> None:
        if call.status == 200:
            with self._lock:
                self.count += 1
                if self.count >= self._target:
                    self.done.set()


def run_flow(
    aws: Emulator,
    side: str,
    runner: str,
    sizes: Sizes,
    workdir: Path,
    executions: int | None = None,
    pollers: int | None = None,
) -> FlowResult:
    """``executions`` executions started within the start window, served by one process
    of ``side`` ("runners" or "baseline"), until every task is reported."""
    count = executions or sizes.executions
    aws.reset()
    sfn = aws.client("stepfunctions", retries={"mode": "standard", "max_attempts": 10})
    activity = sfn.create_activity(name=f"{runner}-activity")["activityArn"]
    machine = task_machine(aws, activity)
    inputs = prepare_flow(aws, side, runner, job_durations(sizes, count))
    reports = Reports(aws)
    reports.expect(count)
    table = f"{side}-{runner}-tasks"
    with side_process(aws, side, runner, activity, table, sizes, workdir, pollers=pollers) as _:
        open_polls = wait_for_polls(aws, pollers or 1)
        before = Counter(aws.faults.calls)
        arns = start_paced(sfn, machine, inputs, sizes.start_window_seconds)
        reports.done.wait(deadline_seconds(side, sizes, count))
        calls = Counter(aws.faults.calls) - before
        calls.pop("states:StartExecution", None)  # the benchmark's own
        result = collect(aws, side, runner, arns)
        result.calls, result.open_polls = calls, open_polls
    return result


def wait_for_polls(aws: Emulator, polls: int, timeout: float = 60.0) -> int:
    """Wait until the side holds ``polls`` long polls open; how many it opened."""
    deadline = time.monotonic() + timeout
    while aws.faults.count("states:GetActivityTask") < polls and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # let every poll reach its wait
    return aws.faults.count("states:GetActivityTask")


def deadline_seconds(side: str, sizes: Sizes, count: int) -> float:
    longest = sizes.start_window_seconds + sizes.job_seconds[1]
    if side == "runners":
        return longest + 120
    rounds = count // 50 + 2  # the baseline reports at most 50 tasks a round
    return longest + rounds * (sizes.poll_seconds + 30) + 120


def start_paced(sfn: Any, machine: str, inputs: list[str], window: float) -> list[str]:
    """Start the executions evenly over ``window`` seconds."""
    began = time.monotonic()
    arns = []
    for index, document in enumerate(inputs):
        wait = began + window * index / max(len(inputs), 1) - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        arns.append(sfn.start_execution(stateMachineArn=machine, input=document)["executionArn"])
    return arns


@contextmanager
def side_process(
    aws: Emulator,
    side: str,
    runner: str,
    activity: str,
    table: str,
    sizes: Sizes,
    workdir: Path,
    pollers: int | None = None,
    log_level: str = "INFO",
    name: str | None = None,
    reset: bool = True,
    **config: Any,
) -> Iterator[subprocess.Popen[bytes]]:
    """One process of ``side`` serving ``activity``; stopped (SIGKILL: the figures are
    taken by then) and the emulator reset on the way out (unless ``reset`` is false:
    the last of several processes resets it). ``name`` names its config and log files
    (default ``<side>-<runner>``)."""
    name = name or f"{side}-{runner}"
    if side == "runners":
        settings = {
            "runner": runner,
            "activity_arn": activity,
            "table": table,
            "poll_seconds": sizes.poll_seconds,
            **({"pollers": pollers} if pollers else {}),
            **config,
        }
        path = workdir / f"{name}.json"
        path.write_text(json.dumps(settings))
        command = [sys.executable, "-m", "runners", "worker", "--config", str(path)]
        command.append("--create-table")
    else:
        create_table(runner, table)
        command = [sys.executable, str(ROOT / "benchmarks" / "baseline.py"), "--runner", runner]
        command += ["--activity-arn", activity, "--table", table]
    log = (workdir / f"{name}.log").open("wb")
    env = {**os.environ, **aws.client_env(), "RUNNERS_LOG_LEVEL": log_level}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.kill()
        process.wait(timeout=30)
        log.close()
        if reset:
            aws.reset()


def collect(aws: Emulator, side: str, runner: str, arns: list[str]) -> FlowResult:
    """Timings of every execution, from its history and its job's timeline."""
    sfn = aws.client("stepfunctions")
    histories = {arn: history(sfn, arn) for arn in arns}
    jobs = job_times(aws, runner, [h["run_id"] for h in histories.values() if h.get("run_id")])
    dispatch, completion = [], []
    for item in histories.values():
        job = jobs.get(item.get("run_id", ""))
        if job is None or "reported" not in item:
            continue
        dispatch.append(job[0] - item["scheduled"])
        completion.append(item["reported"] - job[1])
    ended = [h["ended"] for h in histories.values() if "ended" in h]
    started = [h["started"] for h in histories.values()]
    return FlowResult(
        side=side,
        runner=runner,
        executions=len(arns),
        succeeded=sum(1 for h in histories.values() if h.get("succeeded")),
        seconds=(max(ended) - min(started)) if ended else 0.0,
        dispatch=dispatch,
        completion=completion,
    )


def history(sfn: Any, arn: str) -> dict[str, Any]:
    """When the execution started and ended, its task was scheduled, received and
    reported, and the run id its output names."""
    item: dict[str, Any] = {}
    events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    for event in events:
        at = event["timestamp"].timestamp()
        kind = event["type"]
        if kind == "ExecutionStarted":
            item["started"] = at
        elif kind == "ActivityScheduled":
            item["scheduled"] = at
        elif kind == "ActivityStarted":
            item["received"] = at
        elif kind == "ActivitySucceeded":
            item["reported"] = at
            output = json.loads(event["activitySucceededEventDetails"].get("output") or "{}")
            item["run_id"] = output.get("GlueJobRunId") or output.get("AthenaQueryExecutionId")
        elif kind in ("ExecutionSucceeded", "ExecutionFailed", "ExecutionTimedOut"):
            item["ended"] = at
            item["succeeded"] = kind == "ExecutionSucceeded"
    return item


def job_times(aws: Emulator, runner: str, run_ids: list[str]) -> dict[str, tuple[float, float]]:
    """Each run's start and end (wall clock), by run id."""
    times: dict[str, tuple[float, float]] = {}
    if runner == "glue":
        pages = aws.client("glue").get_paginator("get_job_runs").paginate(JobName=JOB)
        for page in pages:
            for run in page["JobRuns"]:
                if "CompletedOn" in run:
                    times[run["Id"]] = (
                        run["StartedOn"].timestamp(),
                        run["CompletedOn"].timestamp(),
                    )
        return times
    athena = aws.client("athena")
    for index in range(0, len(run_ids), 50):
        batch = athena.batch_get_query_execution(QueryExecutionIds=run_ids[index : index + 50])
        for execution in batch["QueryExecutions"]:
            status = execution["Status"]
            if "CompletionDateTime" in status:
                times[execution["QueryExecutionId"]] = (
                    status["SubmissionDateTime"].timestamp(),
                    status["CompletionDateTime"].timestamp(),
                )
    return times


# Scale: one worker tracking many running jobs -------------------------------------------


def track_many(aws: Emulator, sizes: Sizes, workdir: Path) -> ScaleResult:
    """One worker holds ``tracked_jobs`` running Glue jobs: its peak memory, and how long
    one check cycle over all of them takes.

    Heartbeats and lease renewals are set far apart (an hour) so that the cycles measured
    are checks alone, and so the emulator, which serves about 250 requests a second, is
    not swamped by 10,000 heartbeats a minute that AWS would absorb. For the same reason
    cycles run every 20 s while the tasks arrive (a cycle's own time does not depend on
    the interval).
    """
    aws.reset()
    tracked = sizes.tracked_jobs
    sfn = aws.client("stepfunctions", retries={"mode": "standard", "max_attempts": 10})
    activity = sfn.create_activity(name="tracked-activity")["activityArn"]
    machine = task_machine(aws, activity)
    prepare_flow(aws, "runners", "glue", [])
    aws.glue_runs.set(JOB, RunBehaviour(duration=4 * 3600))
    document = json.dumps({"GlueJobName": JOB})
    config: dict[str, Any] = {
        "max_in_flight": tracked + 100,
        "heartbeat_interval_seconds": 3600,
        "lease_seconds": 7200,
        "check_interval_seconds": 20,
    }
    log_path = workdir / "runners-glue.log"
    with side_process(
        aws, "runners", "glue", activity, "tracked-tasks", sizes, workdir, pollers=16,
        log_level="DEBUG", **config,
    ) as worker:  # fmt: skip
        wait_for_polls(aws, 16)
        idle_rss = rss_mb(worker.pid, "VmRSS")
        began = time.monotonic()
        start_all(sfn, machine, document, tracked)
        cycles = cycle_seconds(log_path, tracked, count=3, timeout=tracked / 5 + 300)
        setup = time.monotonic() - began
        peak = rss_mb(worker.pid, "VmHWM")
    return ScaleResult(tracked, idle_rss, peak, cycles, setup)


def start_all(sfn: Any, machine: str, document: str, count: int, threads: int = 8) -> None:
    def starter(index: int) -> None:
        for _ in range(index, count, threads):
            sfn.start_execution(stateMachineArn=machine, input=document)

    workers = [threading.Thread(target=starter, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def cycle_seconds(log: Path, running: int, count: int, timeout: float) -> list[float]:
    """The durations of the first ``count`` check cycles that covered ``running`` jobs,
    from the worker's own debug log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cycles = [
            float(line["seconds"])
            for line in json_lines(log)
            if str(line.get("event", "")).startswith("check cycle")
            and line.get("running") == running
        ]
        if len(cycles) >= count:
            return cycles[:count]
        time.sleep(1.0)
    raise TimeoutError(f"the worker never checked {running} running jobs {count} times")


def json_lines(path: Path) -> Iterator[dict[str, Any]]:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                yield json.loads(line)
            except ValueError:
                continue


def rss_mb(pid: int, field_name: str) -> float:
    """Resident memory of a process (Linux ``/proc``), in MiB; NaN elsewhere."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    for line in status.splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")
