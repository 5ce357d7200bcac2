"""Completion events: the services' state-change events, routed by an EventBridge rule to
the runner's queue, report a finished job at once, whoever holds its task; polling stays
as the safety net. Real workers on the embedded emulator: Glue and Athena put their
events on the default bus when runs end (runners/local/service_events.py).

The workers here check every 20 s, so a task reported within a few seconds was reported
by its event; a test of the safety net checks every second.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from runners import registry
from runners.engine.completions import MAX_RECEIVES, CompletionQueue
from runners.engine.records import Outcome, Status
from runners.local import Emulator, RunBehaviour
from runners.local.faults import Call, Fault
from runners.services.glue import GlueJobRunner
from runners.settings import RunnerConfig
from tests.aio import AioLoop
from tests.engine.test_end_to_end import RESULTS, glue_job, start, task_machine
from tests.helpers import finished, wait_until
from tests.workers import config, running_worker

SLOW_CHECKS: dict[str, Any] = {"check_interval_seconds": 20.0, "lease_seconds": 60.0}
# Well under the 20 s check interval: only an event reports this fast.
PROMPT = 8.0


def completion_queue(aws: Emulator, runner: str) -> str:
    """The runner stack's routing: a rule for the runner's end events, to a queue."""
    sqs, events = aws.client("sqs"), aws.client("events")
    url: str = sqs.create_queue(QueueName=f"{runner}-completions")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    ends = registry.get(runner).completion_events
    assert ends is not None
    events.put_rule(Name=f"{runner}-ends", EventPattern=json.dumps(ends.pattern))
    events.put_targets(Rule=f"{runner}-ends", Targets=[{"Id": "queue", "Arn": arn}])
    return url


def consumer(runner: str, activity: str, url: str, **overrides: Any) -> RunnerConfig:
    return config(runner, activity, completion_queue_url=url, **{**SLOW_CHECKS, **overrides})


def reports(aws: Emulator) -> int:
    """Task reports the emulator was sent (successes and failures, accepted or not)."""
    return aws.faults.count("*SendTaskSuccess") + aws.faults.count("*SendTaskFailure")


def queue_depth(aws: Emulator, url: str) -> int:
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


@pytest.fixture
def sfn(aws: Emulator) -> Any:
    return aws.client("stepfunctions")


@pytest.fixture
def activity(sfn: Any) -> str:
    arn: str = sfn.create_activity(name="GlueRunnerActivity")["activityArn"]
    return arn


def test_an_event_for_a_job_this_worker_holds_reports_it_at_once(
    aws: Emulator, sfn: Any, activity: str
) -> None:
    url = completion_queue(aws, "glue")
    glue_job(aws, "Nightly", RunBehaviour(duration=1.0))
    with running_worker(consumer("glue", activity, url)) as worker:
        began = time.monotonic()
        execution = start(sfn, task_machine(sfn, "glue", activity), {"GlueJobName": "Nightly"})
        result = finished(sfn, execution, timeout=PROMPT)
        took = time.monotonic() - began
        assert result["status"] == "SUCCEEDED", result
        assert json.loads(result["output"])["GlueJobRunState"] == "SUCCEEDED"
        wait_until(lambda: worker.counters["succeeded"] == 1)
        assert queue_depth(aws, url) == 0
    assert took < PROMPT
    assert reports(aws) == 1
    assert aws.service_events.emitted["Glue Job State Change"] == 1


def test_an_event_for_a_job_another_worker_holds_is_reported_by_the_one_that_got_it(
    aws: Emulator, sfn: Any, activity: str
) -> None:
    """Worker A holds the task and consumes no events (a scheduled-Lambda tick, or a
    worker of another fleet); B receives the event, takes the task and reports it."""
    url = completion_queue(aws, "glue")
    glue_job(aws, "Nightly", RunBehaviour(duration=2.0))
    holder = config("glue", activity, completion_events=True, **SLOW_CHECKS)
    with running_worker(holder) as a:
        execution = start(sfn, task_machine(sfn, "glue", activity), {"GlueJobName": "Nightly"})
        held = wait_until(
            lambda: (
                a.inspect(lambda: [f.record for f in a.engines[0].in_flight.values()])
                and a.inspect(lambda: next(iter(a.engines[0].in_flight.values())).record.run_id)
            )
        )
        with running_worker(consumer("glue", activity, url, worker_name="b")) as b:
            result = finished(sfn, execution, timeout=PROMPT)
            assert result["status"] == "SUCCEEDED", result
            wait_until(lambda: b.counters["succeeded"] == 1)
        assert a.counters["succeeded"] == 0
    [item] = aws.client("dynamodb").scan(TableName="glue-tasks")["Items"]
    assert item["run_id"]["S"] == held
    assert (item["status"]["S"], item["outcome"]["S"]) == (Status.DONE, Outcome.SUCCEEDED)
    assert item["owner"]["S"].startswith("b@")
    assert reports(aws) == 1


def test_a_duplicate_event_reports_nothing_twice(aws: Emulator, sfn: Any, activity: str) -> None:
    """EventBridge delivers at least once: the same end, sent again after the report,
    finds no open task and is let go."""
    url = completion_queue(aws, "glue")
    glue_job(aws, "Nightly", RunBehaviour(duration=1.0))
    with running_worker(consumer("glue", activity, url)) as worker:
        execution = start(sfn, task_machine(sfn, "glue", activity), {"GlueJobName": "Nightly"})
        assert finished(sfn, execution, timeout=PROMPT)["status"] == "SUCCEEDED"
        run_id = aws.client("glue").get_job_runs(JobName="Nightly")["JobRuns"][0]["Id"]
        again = _glue_end(run_id, "SUCCEEDED")
        aws.client("sqs").send_message(QueueUrl=url, MessageBody=json.dumps(again))
        wait_until(lambda: queue_depth(aws, url) == 0, timeout=MAX_RECEIVES * 4 + 5)
        wait_until(lambda: worker.counters["succeeded"] == 1)  # counted after the close
    assert reports(aws) == 1


def test_an_event_that_comes_before_the_run_id_is_stored_is_tried_again(
    aws: Emulator, sfn: Any
) -> None:
    """The query ends 0.3 s after it starts; storing its run id takes 1.5 s (a slow
    table). The event finds no open task at first, comes back a second later and
    reports it."""
    activity = sfn.create_activity(name="AthenaRunnerActivity")["activityArn"]
    url = completion_queue(aws, "athena")
    aws.athena_queries.add("FROM sales", RunBehaviour(duration=0.3))
    calls: list[float] = []

    def record_puts(call: Call) -> None:
        if call.operation == "PutItem" and b'"RUNNING"' in call.body:
            calls.append(time.monotonic())

    aws.faults.on_call("dynamodb:PutItem", record_puts)
    with running_worker(consumer("athena", activity, url)) as worker:
        aws.faults.add(Fault("dynamodb:PutItem", "hang", seconds=1.5, limit=2))
        execution = start(
            sfn,
            task_machine(sfn, "athena", activity),
            {"AthenaQueryString": "SELECT 1 FROM sales", "AthenaDatabase": "db", **RESULTS},
        )
        result = finished(sfn, execution, timeout=PROMPT + 4)
        assert result["status"] == "SUCCEEDED", result
        wait_until(lambda: worker.counters["succeeded"] == 1)
    assert calls, "the run id was stored"
    assert aws.service_events.emitted["Athena Query State Change"] >= 1
    assert reports(aws) == 1


def test_a_dropped_event_leaves_the_task_to_its_periodic_check(
    aws: Emulator, sfn: Any, activity: str
) -> None:
    url = completion_queue(aws, "glue")
    glue_job(aws, "Nightly", RunBehaviour(duration=0.5))
    aws.service_events.drop(rate=1.0)
    every_second = consumer("glue", activity, url, check_interval_seconds=1.0, lease_seconds=30.0)
    with running_worker(every_second) as worker:
        execution = start(sfn, task_machine(sfn, "glue", activity), {"GlueJobName": "Nightly"})
        assert finished(sfn, execution, timeout=PROMPT)["status"] == "SUCCEEDED"
        wait_until(lambda: worker.counters["succeeded"] == 1)
    assert aws.service_events.dropped["Glue Job State Change"] == 1
    assert aws.service_events.emitted["Glue Job State Change"] == 0
    assert reports(aws) == 1


def test_an_event_for_a_run_nobody_tracks_is_let_go_and_work_goes_on(
    aws: Emulator, sfn: Any, activity: str
) -> None:
    """A run somebody started by hand ends: its event is tried a few times, then let
    go; the worker keeps serving."""
    url = completion_queue(aws, "glue")
    glue_job(aws, "Nightly", RunBehaviour(duration=0.5))
    with running_worker(consumer("glue", activity, url)) as worker:
        aws.client("glue").start_job_run(JobName="Nightly")
        wait_until(lambda: aws.service_events.emitted["Glue Job State Change"] == 1)
        wait_until(lambda: queue_depth(aws, url) == 0, timeout=MAX_RECEIVES * 4 + 5)
        execution = start(sfn, task_machine(sfn, "glue", activity), {"GlueJobName": "Nightly"})
        assert finished(sfn, execution, timeout=PROMPT)["status"] == "SUCCEEDED"
        wait_until(lambda: worker.counters["succeeded"] == 1)  # counted after the close
    assert reports(aws) == 1


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[1, 2]",
        json.dumps({"source": "aws.glue", "detail-type": "Glue Job State Change"}),
        json.dumps(
            {
                "source": "aws.glue",
                "detail-type": "Glue Job State Change",
                "detail": {"state": "SUCCEEDED", "jobRunId": 7},
            }
        ),
    ],
    ids=["not-json", "not-an-object", "no-detail", "run-id-not-text"],
)
def test_a_malformed_event_is_logged_and_let_go_and_nothing_is_lost(
    aws: Emulator, sfn: Any, activity: str, body: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = completion_queue(aws, "glue")
    glue_job(aws, "Nightly", RunBehaviour(duration=1.0))
    with running_worker(consumer("glue", activity, url)) as worker:
        execution = start(sfn, task_machine(sfn, "glue", activity), {"GlueJobName": "Nightly"})
        aws.client("sqs").send_message(QueueUrl=url, MessageBody=body)
        result = finished(sfn, execution, timeout=PROMPT)
        assert result["status"] == "SUCCEEDED", result
        wait_until(lambda: queue_depth(aws, url) == 0)
        wait_until(lambda: worker.counters["succeeded"] == 1)  # counted after the close
    if body in ("not json", "[1, 2]"):
        assert "malformed completion event let go" in capsys.readouterr().out
    assert reports(aws) == 1


def _glue_end(run_id: str, state: str) -> dict[str, Any]:
    """A "Glue Job State Change" as EventBridge delivers it to a queue
    ("Automating AWS Glue with EventBridge")."""
    return {
        "version": "0",
        "id": "a9b1c1d0-0000-4000-8000-000000000000",
        "detail-type": "Glue Job State Change",
        "source": "aws.glue",
        "account": "123456789012",
        "time": "2026-12-04T12:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "jobName": "Nightly",
            "severity": "INFO",
            "state": state,
            "jobRunId": run_id,
            "message": "Job run succeeded",
        },
    }


@pytest.mark.parametrize("later", [3, 24])
def test_events_that_come_within_the_batch_window_are_confirmed_as_one_batch(
    aws: Emulator, aio_loop: AioLoop, later: int
) -> None:
    """One event opens a window; those that arrive in it (a backlog: receive after
    receive, ten at a time) come back together, for one status call."""
    url = aws.client("sqs").create_queue(QueueName="glue-completions")["QueueUrl"]
    sqs = aio_loop.client("sqs", aws.endpoint_url, aws.client_env())

    def send(first: int, count: int) -> None:
        for n in range(first, first + count):
            body = json.dumps(_glue_end(f"jr_{n}", "SUCCEEDED"))
            sqs.send_message(QueueUrl=url, MessageBody=body)

    send(0, 1)
    meanwhile = threading.Timer(0.2, send, args=(1, later))
    meanwhile.start()
    receives = aws.faults.count("sqs:ReceiveMessage")
    try:
        queue = CompletionQueue(sqs._client, url, GlueJobRunner(glue=None))
        events = aio_loop.run(queue.collect(wait_seconds=1, batch_seconds=1.0))
    finally:
        meanwhile.join()
        sqs.close()

    assert sorted(event.key or "" for event in events) == sorted(
        f"jr_{n}" for n in range(later + 1)
    )
    # the long poll, then the window's: ten at a time, until one comes back short
    assert aws.faults.count("sqs:ReceiveMessage") - receives == 2 + later // 10


def test_events_that_waited_a_window_already_are_taken_at_once(
    aws: Emulator, aio_loop: AioLoop
) -> None:
    """The window runs from the first event's arrival in the queue (its SQS
    ``SentTimestamp``), not from when the consumer came back for more."""
    url = aws.client("sqs").create_queue(QueueName="glue-completions")["QueueUrl"]
    sqs = aio_loop.client("sqs", aws.endpoint_url, aws.client_env())
    for n in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(_glue_end(f"jr_{n}", "SUCCEEDED")))
    time.sleep(1.2)  # the consumer was busy with the round before
    try:
        queue = CompletionQueue(sqs._client, url, GlueJobRunner(glue=None))
        began = time.monotonic()
        events = aio_loop.run(queue.collect(wait_seconds=1, batch_seconds=1.0))
        took = time.monotonic() - began
    finally:
        sqs.close()

    assert sorted(event.key or "" for event in events) == ["jr_0", "jr_1", "jr_2"]
    assert took < 1.0  # no second wait: a whole window has passed since they came
