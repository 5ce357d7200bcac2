"""Metrics in CloudWatch Embedded Metric Format, from the container worker and a Lambda
tick, read back from their stdout and checked against the EMF specification
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html):
"_aws" with an integer "Timestamp" in ms and "CloudWatchMetrics" directives of
"Namespace", "Dimensions" (arrays of dimension keys, each a top-level string member) and
"Metrics" (each "Name" a top-level member holding a number or an array of numbers)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from runners.handlers import athenarunner
from runners.local import Emulator, Fault, RunBehaviour
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


def documents(text: str) -> list[dict[str, Any]]:
    found = []
    for line in text.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            found.append(json.loads(line))
    return found


def assert_valid_emf(document: dict[str, Any], namespace: str = "Runners") -> None:
    meta = document["_aws"]
    assert isinstance(meta["Timestamp"], int)
    assert meta["Timestamp"] > 1_700_000_000_000
    [directive] = meta["CloudWatchMetrics"]
    assert directive["Namespace"] == namespace
    assert directive["Dimensions"] == [["Deployment", "Runner"], ["Deployment"]]
    for key in ("Deployment", "Runner"):
        assert isinstance(document[key], str)
    for metric in directive["Metrics"]:
        value = document[metric["Name"]]
        values = value if isinstance(value, list) else [value]
        assert values, metric
        assert all(isinstance(v, int | float) for v in values), metric
        assert metric.get("Unit", "None") in {
            "Count",
            "Milliseconds",
            "Seconds",
            "Percent",
            "Bytes",
            "None",
        }


def as_list(value: Any) -> list[float]:
    return value if isinstance(value, list) else [value]


def totals(docs: list[dict[str, Any]], runner: str) -> dict[str, float]:
    summed: dict[str, float] = {}
    for doc in docs:
        if doc["Runner"] != runner:
            continue
        for metric in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            value = doc[metric["Name"]]
            summed[metric["Name"]] = summed.get(metric["Name"], 0) + sum(
                value if isinstance(value, list) else [value]
            )
    return summed


def units(docs: list[dict[str, Any]]) -> dict[str, str]:
    return {
        m["Name"]: m.get("Unit", "None")
        for doc in docs
        for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    }


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
            time.sleep(0.5)  # the check cycle after the last report flushes its figures
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=30) == 0
    return (tmp_path / "worker.log").read_text(errors="replace")


def executions_to_measure(aws: Emulator, sfn: Any, activities: dict[str, str]) -> list[str]:
    glue_job(aws, "Good", RunBehaviour(duration=1.6))  # ExecutionTime: 1 s at least
    glue_job(aws, "Bad", RunBehaviour(duration=0.5, final_state="FAILED", error_message="boom"))
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
        start(sfn, task_machine(sfn, "bad", glue), {"GlueJobName": "Bad"}),
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
    glue, athena = totals(docs, "glue"), totals(docs, "athena")
    assert (glue["TasksReceived"], glue["TasksStarted"]) == (3, 2)
    assert (glue["TasksSucceeded"], glue["TasksFailed"], glue["InputErrors"]) == (1, 1, 1)
    assert glue["GlueDPUSeconds"] >= 10  # ExecutionTime x 5 workers x 2 DPU
    assert (athena["TasksReceived"], athena["TasksSucceeded"]) == (1, 1)
    assert athena["AthenaBytesScanned"] == 4096
    glue_docs = [d for d in docs if d["Runner"] == "glue" and "DispatchLatency" in d]
    assert glue_docs
    latencies = [v for d in glue_docs for v in as_list(d["DispatchLatency"])]
    assert len(latencies) == 2
    assert all(0 <= v < 10_000 for v in latencies)
    assert units(docs)["CompletionLatency"] == "Milliseconds"
    assert units(docs)["JobDuration"] == "Seconds"
    assert units(docs)["WorkerUtilization"] == "Percent"
    assert units(docs)["AthenaBytesScanned"] == "Bytes"
    assert {"TasksInFlight", "OpenPolls", "CheckCycleDuration", "ThrottledCalls"} <= set(
        units(docs)
    )
    # While it runs, a worker always has polls open (the "worker down" alarm reads this).
    assert max(d["OpenPolls"] for d in docs if d["Runner"] == "glue") >= 1


def test_throttled_calls_are_counted(
    aws: Emulator, sfn: Any, activities: dict[str, str], tmp_path: Path
) -> None:
    glue_job(aws, "Slowed", RunBehaviour(duration=0.5))
    aws.faults.add(Fault("glue:StartJobRun", "throttle", limit=2))
    execution = start(
        sfn, task_machine(sfn, "slowed", activities["glue"]), {"GlueJobName": "Slowed"}
    )

    docs = documents(
        run_worker_until_done(aws, tmp_path, {"glue": activities["glue"]}, [execution])
    )

    assert totals(docs, "glue")["ThrottledCalls"] == 2


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
