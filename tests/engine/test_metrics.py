"""Metrics in CloudWatch Embedded Metric Format: the engine's figures on the in-memory
harness first (milliseconds a test), then from the container worker and a Lambda tick
against the emulator, read back from their stdout. Every document is checked against
the EMF specification
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html):
"_aws" with an integer "Timestamp" in ms and "CloudWatchMetrics" directives of
"Namespace", "Dimensions" (arrays of dimension keys, each a top-level string member) and
"Metrics" (each "Name" a top-level member holding a number or an array of numbers)."""

from __future__ import annotations

import asyncio
import json
import math
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from runners.engine.engine import Engine
from runners.engine.inputs import Fields
from runners.engine.metrics import CURRENT, EngineMetrics, count_throttled
from runners.engine.records import TaskRecord
from runners.engine.runner import RUNNING, Job, JobStatus, Runner, Succeeded, TaskStart
from runners.engine.service import Finish, Measure
from runners.errors import ConfigError, TaskFailure
from runners.handlers import athenarunner
from runners.local import Emulator, Fault, RunBehaviour
from runners.testing import MemoryStore, RunnerHarness
from tests.engine.test_end_to_end import glue_job, start, task_machine
from tests.handlers import test_lambda
from tests.handlers.test_lambda import SCHEDULED_EVENT, Context
from tests.helpers import finished
from tests.workers import config, worker_process

lambda_env = test_lambda.lambda_env  # the fixture, shared

ATHENA_QUERY = {
    "AthenaQueryString": "SELECT region, sum(revenue) FROM sales GROUP BY region",
    "AthenaDatabase": "sales",
    "AthenaResultOutputLocation": "s3://results/",
}
CLOUDWATCH_UNITS = {"Count", "Milliseconds", "Seconds", "Percent", "Bytes", "None"}


def documents(text: str) -> list[dict[str, Any]]:
    """The EMF documents among the lines (a worker's log file has its logs too)."""
    found = []
    for line in text.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            found.append(json.loads(line))
    return found


def assert_valid_emf(document: dict[str, Any], namespace: str = "Runners") -> None:
    meta = document["_aws"]
    assert isinstance(meta["Timestamp"], int)
    assert abs(meta["Timestamp"] - time.time() * 1000) < 600_000
    [directive] = meta["CloudWatchMetrics"]
    assert directive["Namespace"] == namespace
    assert directive["Dimensions"] == [["Deployment", "Runner"], ["Deployment"]]
    for key in ("Deployment", "Runner"):
        assert isinstance(document[key], str)
        assert document[key]
    assert 0 < len(directive["Metrics"]) <= 100
    for metric in directive["Metrics"]:
        assert set(metric) == {"Name", "Unit"}, metric
        assert metric["Unit"] in CLOUDWATCH_UNITS, metric
        values = as_list(document[metric["Name"]])
        assert 0 < len(values) <= 100, metric
        assert all(isinstance(v, int | float) and math.isfinite(v) for v in values), metric


def as_list(value: Any) -> list[float]:
    return value if isinstance(value, list) else [value]


def totals(docs: list[dict[str, Any]], runner: str) -> dict[str, float]:
    summed: dict[str, float] = {}
    for name, values in samples(docs, runner).items():
        summed[name] = sum(values)
    return summed


def samples(docs: list[dict[str, Any]], runner: str) -> dict[str, list[float]]:
    """Every value of every metric the runner's documents carry."""
    found: dict[str, list[float]] = {}
    for doc in docs:
        if doc["Runner"] != runner:
            continue
        for metric in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            found.setdefault(metric["Name"], []).extend(as_list(doc[metric["Name"]]))
    return found


def units(docs: list[dict[str, Any]]) -> dict[str, str]:
    return {
        m["Name"]: m.get("Unit", "None")
        for doc in docs
        for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    }


# The engine on the in-memory harness ------------------------------------------------


class MeteredRunner(Runner[str]):
    """Jobs that finish when the test says, with what the test says the service told."""

    name = "metered"
    idempotent_start = True

    def __init__(self) -> None:
        self.finishes: dict[str, Finish] = {}

    def parse(self, document: Mapping[str, Any]) -> str:
        return Fields(document).required_text("JobName")

    def describe(self, spec: str) -> dict[str, str]:
        return {"job_name": spec}

    async def start(self, spec: str, task: TaskStart) -> str:
        if spec == "refused":
            raise TaskFailure("MeteredStartError", {"reason": "no such job"})
        return f"{spec}-run"

    async def check(self, jobs: Sequence[Job[str]]) -> Mapping[str, JobStatus]:
        return {
            job.run_id: Succeeded({"run": job.run_id}, finish=self.finishes[job.run_id])
            if job.run_id in self.finishes
            else RUNNING
            for job in jobs
        }

    async def stop(self, job: Job[str]) -> None:
        pass


def run(scenario: Any) -> Any:
    return asyncio.run(asyncio.wait_for(scenario, timeout=20))


def flushed(engine: Engine[Any], capsys: pytest.CaptureFixture[str]) -> dict[str, list[float]]:
    """Flush the engine's metrics; every value it wrote, by name (checked as EMF)."""
    capsys.readouterr()
    engine.flush_metrics()
    docs = documents(capsys.readouterr().out)
    assert docs
    for doc in docs:
        assert_valid_emf(doc)
    return samples(docs, engine.runner.name)


class Clock:
    """The engine's wall clock, moved by the test."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_job_is_timed_from_the_service_s_own_end_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    runner, clock = MeteredRunner(), Clock()

    async def scenario() -> dict[str, list[float]]:
        async with RunnerHarness(runner) as harness:
            harness.engine.clock = clock
            token = await harness.submit({"JobName": "nightly"})
            clock.now += 30.0
            # The service says the run ended 10 s ago, after 20 s, and what it used.
            usage = (Measure("FakeUnitsUsed", 42.0), Measure("FakeBytes", 1e6, "Bytes"))
            runner.finishes["nightly-run"] = Finish(clock.now - 10.0, usage)
            await harness.settle(token)
            return flushed(harness.engine, capsys)

    figures = run(scenario())

    assert (figures["TasksReceived"], figures["TasksStarted"]) == ([1], [1])
    assert (figures["TasksSucceeded"], figures["TasksFailed"]) == ([1], [0])
    assert figures["DispatchLatency"] == [0.0]
    assert figures["JobDuration"] == [20.0]
    assert figures["CompletionLatency"] == [10_000.0]
    assert (figures["FakeUnitsUsed"], figures["FakeBytes"]) == ([42.0], [1e6])
    assert figures["CheckCycleDuration"]
    assert all(0 <= value < 1_000 for value in figures["CheckCycleDuration"])


def test_without_an_end_time_a_job_ends_at_the_check_that_found_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    runner, clock = MeteredRunner(), Clock()

    async def scenario() -> dict[str, list[float]]:
        async with RunnerHarness(runner) as harness:
            harness.engine.clock = clock
            token = await harness.submit({"JobName": "nightly"})
            clock.now += 12.0
            runner.finishes["nightly-run"] = Finish()  # the service gives no time
            await harness.settle(token)
            return flushed(harness.engine, capsys)

    figures = run(scenario())

    assert figures["JobDuration"] == [12.0]
    assert figures["CompletionLatency"] == [0.0]  # found finished -> reported
    assert "FakeUnitsUsed" not in figures


def test_a_task_refused_at_its_start_counts_as_failed_with_no_job_timings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def scenario() -> dict[str, list[float]]:
        async with RunnerHarness(MeteredRunner()) as harness:
            refused = await harness.submit({"JobName": "refused"})
            malformed = await harness.submit({"JobName": 7})
            assert (await harness.settle(refused)).error == "MeteredStartError"
            assert (await harness.settle(malformed)).error == "RunnerInputError"
            return flushed(harness.engine, capsys)

    figures = run(scenario())

    assert figures["TasksReceived"] == [2]
    assert (figures["TasksStarted"], figures["TasksSucceeded"]) == ([0], [0])
    assert (figures["TasksFailed"], figures["InputErrors"]) == ([1], [1])
    assert not {"JobDuration", "CompletionLatency", "DispatchLatency"} & set(figures)


class RefusingStore(MemoryStore):
    """A job table that refuses every new task (a policy without PutItem)."""

    async def create(self, record: TaskRecord) -> TaskRecord:
        raise ClientError({"Error": {"Code": "AccessDeniedException"}}, "PutItem")


def test_a_task_the_job_table_refuses_counts_as_failed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def scenario() -> dict[str, list[float]]:
        async with RunnerHarness(MeteredRunner(), store=RefusingStore()) as harness:
            token = await harness.submit({"JobName": "nightly"})
            assert harness.channel.tasks[token].reports[0].error == "RunnerStoreError"
            return flushed(harness.engine, capsys)

    figures = run(scenario())

    assert (figures["TasksReceived"], figures["TasksFailed"]) == ([1], [1])
    assert (figures["TasksStarted"], figures["InputErrors"]) == ([0], [0])


def test_a_task_step_functions_closed_counts_as_cancelled(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def scenario() -> dict[str, list[float]]:
        async with RunnerHarness(MeteredRunner(), heartbeat_interval_seconds=0.01) as harness:
            token = await harness.submit({"JobName": "nightly"})
            harness.channel.close(token)  # the execution was stopped
            await harness.cycle(2)
            assert harness.engine.in_flight == {}
            return flushed(harness.engine, capsys)

    figures = run(scenario())

    assert (figures["TasksStarted"], figures["TasksCancelled"]) == ([1], [1])
    assert (figures["TasksSucceeded"], figures["TasksFailed"]) == ([0], [0])
    assert figures["TasksInFlight"] == [0]


def test_counts_start_again_after_each_flush_and_gauges_show_the_load_now(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def scenario() -> tuple[dict[str, list[float]], dict[str, list[float]]]:
        async with RunnerHarness(MeteredRunner(), max_in_flight=2) as harness:
            await harness.submit({"JobName": "one"})
            await harness.submit({"JobName": "two"})
            first = flushed(harness.engine, capsys)
            return first, flushed(harness.engine, capsys)

    first, second = run(scenario())

    assert (first["TasksReceived"], second["TasksReceived"]) == ([2], [0])
    assert "DispatchLatency" not in second
    # At its in-flight cap a worker has no poll open: the one time OpenPolls is 0.
    for figures in (first, second):
        assert figures["TasksInFlight"] == [2]
        assert figures["OpenPolls"] == [0]
        assert figures["WorkerUtilization"] == [100.0]


def test_a_value_cloudwatch_would_refuse_is_dropped_and_the_rest_written(
    capsys: pytest.CaptureFixture[str],
) -> None:
    metrics = EngineMetrics("metered")
    metrics.count("TasksReceived")
    metrics.measured((Measure("Broken", math.nan), Measure("Odd", 1.0, "Furlongs")))
    metrics.observe("CheckCycleDuration", 12.5)

    metrics.flush({"OpenPolls": 3})

    [doc] = documents(capsys.readouterr().out)
    assert_valid_emf(doc)
    assert (doc["TasksReceived"], doc["OpenPolls"], doc["CheckCycleDuration"]) == (1, 3, 12.5)
    assert "Broken" not in doc
    assert "Odd" not in doc


def test_many_events_in_one_cycle_split_into_documents_of_100_values(
    capsys: pytest.CaptureFixture[str],
) -> None:
    metrics = EngineMetrics("metered")
    for index in range(250):
        metrics.observe("DispatchLatency", float(index))

    metrics.flush({})

    docs = documents(capsys.readouterr().out)
    assert len(docs) == 3
    for doc in docs:
        assert_valid_emf(doc)
    assert sorted(samples(docs, "metered")["DispatchLatency"]) == [float(i) for i in range(250)]
    assert sum(samples(docs, "metered")["TasksReceived"]) == 0


def test_metrics_are_configured_from_the_environment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    named = EngineMetrics.from_environment(
        "glue", {"RUNNERS_METRICS_NAMESPACE": "Nightly", "RUNNERS_DEPLOYMENT": "prod"}
    )
    assert (named.namespace, named.deployment, named.on) == ("Nightly", "prod", True)
    assert EngineMetrics.from_environment("glue", {}).namespace == "Runners"
    assert EngineMetrics.from_environment("glue", {}).deployment == "runners"
    off = EngineMetrics.from_environment("glue", {"RUNNERS_METRICS": "off"})
    off.count("TasksReceived")
    off.flush({"OpenPolls": 1})
    assert capsys.readouterr().out == ""
    for refused in ({"RUNNERS_METRICS_NAMESPACE": "AWS/Glue"}, {"RUNNERS_DEPLOYMENT": "pröd"}):
        with pytest.raises(ConfigError, match="RUNNERS_METRICS_NAMESPACE, RUNNERS_DEPLOYMENT"):
            EngineMetrics.from_environment("glue", refused)
    # Off, nothing is written, so nothing is checked.
    assert not EngineMetrics.from_environment("glue", {**refused, "RUNNERS_METRICS": "off"}).on


def test_an_engine_writes_no_metrics_when_they_are_off(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNNERS_METRICS", "off")
    harness = RunnerHarness(MeteredRunner())

    harness.engine.metrics.count("TasksReceived")
    harness.engine.flush_metrics()

    assert capsys.readouterr().out == ""


@dataclass
class Answer:
    status_code: int


def test_the_sdk_hook_counts_throttling_errors_only() -> None:
    metrics = EngineMetrics("metered")
    throttled = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
    attempts: list[Any] = [
        (Answer(400), throttled),
        (Answer(503), {"Error": {"Code": "SlowDown"}}),
        (Answer(400), {"Error": {"Code": "ValidationException"}}),
        (Answer(200), {"Id": "s-1", "Status": "FAILED", "Error": "relation does not exist"}),
        None,  # no answer at all: a connection error
    ]
    for response in attempts:
        count_throttled(response=response, attempts=1)  # outside any engine: ignored
    token = CURRENT.set(metrics)
    try:
        for response in attempts:
            count_throttled(response=response, attempts=1)  # never raises
    finally:
        CURRENT.reset(token)

    assert metrics.counts == {"ThrottledCalls": 2}


# The worker and a Lambda tick against the emulator -----------------------------------


@pytest.fixture
def sfn(aws: Emulator) -> Any:
    return aws.client("stepfunctions")


@pytest.fixture
def activities(sfn: Any) -> dict[str, str]:
    return {
        name: sfn.create_activity(name=f"{name}-metrics")["activityArn"]
        for name in ("glue", "athena")
    }


def run_worker_until_done(
    aws: Emulator, tmp_path: Path, activities: dict[str, str], executions: list[str], **env: str
) -> str:
    sfn = aws.client("stepfunctions")
    configs = [config(name, arn) for name, arn in activities.items()]
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        with worker_process(aws, tmp_path, *configs) as worker:
            for execution in executions:
                finished(sfn, execution, timeout=30)
            # What came after the last check cycle's flush, the one at shutdown writes.
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=30) == 0
    return (tmp_path / "worker.log").read_text(errors="replace")


def executions_to_measure(aws: Emulator, sfn: Any, activities: dict[str, str]) -> list[str]:
    glue_job(aws, "Good", RunBehaviour(duration=1.6))  # ExecutionTime: 1 s at least
    glue_job(aws, "Bad", RunBehaviour(duration=1.6, final_state="FAILED", error_message="boom"))
    aws.athena_queries.add(
        "FROM sales", RunBehaviour(duration=0.5, metrics={"DataScannedInBytes": 4096})
    )
    glue, athena = activities["glue"], activities["athena"]
    return [
        start(
            sfn,
            task_machine(sfn, "good", glue),
            {"GlueJobName": "Good", "WorkerType": "G.2X", "NumberOfWorkers": 5},
        ),
        start(sfn, task_machine(sfn, "bad", glue), {"GlueJobName": "Bad", "GlueJobCapacity": 2}),
        start(sfn, task_machine(sfn, "malformed", glue), {"GlueJobName": 7}),
        start(sfn, task_machine(sfn, "query", athena), ATHENA_QUERY),
    ]


def test_the_worker_writes_what_each_runner_did(
    aws: Emulator, sfn: Any, activities: dict[str, str], tmp_path: Path
) -> None:
    executions = executions_to_measure(aws, sfn, activities)

    docs = documents(run_worker_until_done(aws, tmp_path, activities, executions))

    assert docs
    for doc in docs:
        assert_valid_emf(doc)
        assert doc["Deployment"] == "runners"
    assert {doc["Runner"] for doc in docs} == {"glue", "athena"}
    glue, athena = totals(docs, "glue"), totals(docs, "athena")
    assert (glue["TasksReceived"], glue["TasksStarted"]) == (3, 2)
    assert (glue["TasksSucceeded"], glue["TasksFailed"], glue["InputErrors"]) == (1, 1, 1)
    assert (glue["TasksCancelled"], glue["ThrottledCalls"]) == (0, 0)
    assert (athena["TasksReceived"], athena["TasksSucceeded"]) == (1, 1)
    assert athena["AthenaBytesScanned"] == 4096
    values = samples(docs, "glue")
    # ExecutionTime (1 s at least: the emulator has no DPUSeconds) x capacity: 5 workers
    # x 2 DPU (G.2X) for the good run, MaxCapacity 2 for the failed one.
    good, bad = sorted(values["GlueDPUSeconds"], reverse=True)
    assert good >= 10
    assert bad >= 2
    assert good / 5 == bad
    for timing in ("DispatchLatency", "CompletionLatency", "JobDuration"):
        assert len(values[timing]) == 2, timing  # the two jobs that started
    assert all(0 <= v < 10_000 for v in values["DispatchLatency"])
    assert all(0 <= v < 10_000 for v in values["CompletionLatency"])
    assert max(values["JobDuration"]) >= 1.0
    assert len(samples(docs, "athena")["CompletionLatency"]) == 1
    assert units(docs) == {
        **dict.fromkeys(
            ("TasksReceived", "TasksStarted", "TasksSucceeded", "TasksFailed"), "Count"
        ),
        **dict.fromkeys(("TasksCancelled", "InputErrors", "ThrottledCalls"), "Count"),
        **dict.fromkeys(("CompletionEvents", "EventReports"), "Count"),
        **dict.fromkeys(("TasksInFlight", "OpenPolls"), "Count"),
        "WorkerUtilization": "Percent",
        "CheckCycleDuration": "Milliseconds",
        "DispatchLatency": "Milliseconds",
        "CompletionLatency": "Milliseconds",
        "JobDuration": "Seconds",
        "GlueDPUSeconds": "None",
        "AthenaBytesScanned": "Bytes",
    }
    # While it runs, a worker always has polls open (the "worker down" alarm reads this).
    assert max(values["OpenPolls"]) >= 1
    assert all(0 <= v <= 100 for v in values["WorkerUtilization"])


def test_throttled_calls_are_counted(
    aws: Emulator, sfn: Any, activities: dict[str, str], tmp_path: Path
) -> None:
    """Each throttled answer once, whichever retries it: the engine's (a Glue start
    answered ThrottlingException) or the SDK's own (the job table's writes)."""
    glue_job(aws, "Slowed", RunBehaviour(duration=0.5))
    glue = aws.faults.add(Fault("glue:StartJobRun", "throttle", limit=2))
    table = aws.faults.add(Fault("dynamodb:PutItem", "throttle", limit=3))
    execution = start(
        sfn, task_machine(sfn, "slowed", activities["glue"]), {"GlueJobName": "Slowed"}
    )

    docs = documents(
        run_worker_until_done(aws, tmp_path, {"glue": activities["glue"]}, [execution])
    )

    assert finished(sfn, execution)["status"] == "SUCCEEDED"
    assert (glue.affected, table.affected) == (2, 3)
    assert totals(docs, "glue")["ThrottledCalls"] == 5


def test_metrics_can_be_turned_off_and_named(
    aws: Emulator, sfn: Any, activities: dict[str, str], tmp_path: Path
) -> None:
    glue_job(aws, "Quiet", RunBehaviour(duration=0.3))
    execution = start(sfn, task_machine(sfn, "quiet", activities["glue"]), {"GlueJobName": "Quiet"})
    off = run_worker_until_done(
        aws, tmp_path, {"glue": activities["glue"]}, [execution], RUNNERS_METRICS="off"
    )
    assert documents(off) == []
    assert "task succeeded" in off  # the logs are still there

    again = start(sfn, task_machine(sfn, "named", activities["glue"]), {"GlueJobName": "Quiet"})
    (tmp_path / "named").mkdir()
    named = run_worker_until_done(
        aws,
        tmp_path / "named",
        {"glue": activities["glue"]},
        [again],
        RUNNERS_METRICS_NAMESPACE="Nightly",
        RUNNERS_DEPLOYMENT="prod",
    )
    docs = documents(named)
    assert docs
    for doc in docs:
        assert_valid_emf(doc, namespace="Nightly")
        assert doc["Deployment"] == "prod"


def test_a_lambda_tick_writes_its_figures(
    aws: Emulator,
    lambda_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    sfn = aws.client("stepfunctions")
    aws.athena_queries.add(
        "FROM sales", RunBehaviour(duration=0.5, metrics={"DataScannedInBytes": 2048})
    )
    execution = start(
        sfn, task_machine(sfn, "tick", lambda_env["RUNNERS_ATHENA_ACTIVITY_ARN"]), ATHENA_QUERY
    )

    athenarunner.handler(SCHEDULED_EVENT, Context("request-metrics", timeout_seconds=18))

    assert finished(sfn, execution)["status"] == "SUCCEEDED"
    docs = documents(capsys.readouterr().out)
    assert docs
    for doc in docs:
        assert_valid_emf(doc)
    athena = totals(docs, "athena")
    assert (athena["TasksReceived"], athena["TasksSucceeded"]) == (1, 1)
    assert athena["AthenaBytesScanned"] == 2048


def test_the_throttle_hook_reads_every_error_shape() -> None:
    """botocore hands ``needs-retry`` handlers ``(http_response, parsed)``; some
    protocols parse ``Error`` as text. The hook counts throttles and never raises."""
    from runners.engine.metrics import CURRENT, EngineMetrics, count_throttled

    metrics = EngineMetrics("redshift", on=False)
    token = CURRENT.set(metrics)
    try:
        for response in (
            None,
            (object(), {"Error": "ValidationException"}),
            (object(), {"Error": {"Code": "ValidationException"}}),
            (object(), {"Error": {"Code": "ThrottlingException"}}),
            (object(), "not parsed"),
        ):
            count_throttled(response=response)
    finally:
        CURRENT.reset(token)
    assert metrics.counts["ThrottledCalls"] == 1
