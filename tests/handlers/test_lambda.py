"""The scheduled-Lambda handlers, called as Lambda calls them: an event and a context."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pytest

from runners.engine.store import create_job_table
from runners.handlers import athenarunner, gluerunner
from runners.local import Emulator, RunBehaviour
from tests.conftest import POLL_SECONDS
from tests.engine.test_end_to_end import glue_job, task_machine
from tests.helpers import finished

SCHEDULED_EVENT = {
    "version": "0",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "detail": {},
}


@dataclass
class Context:
    """The part of Lambda's context object the handlers use."""

    aws_request_id: str
    timeout_seconds: float

    def __post_init__(self) -> None:
        self._deadline = time.time() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.time()) * 1000)


@pytest.fixture
def lambda_env(aws: Emulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    sfn = aws.client("stepfunctions")
    environment = {
        "RUNNERS_GLUE_ACTIVITY_ARN": sfn.create_activity(name="GlueRunnerActivity")["activityArn"],
        "RUNNERS_ATHENA_ACTIVITY_ARN": sfn.create_activity(name="AthenaRunnerActivity")[
            "activityArn"
        ],
        "RUNNERS_GLUE_TABLE": "GlueRunnerActiveJobs",
        "RUNNERS_ATHENA_TABLE": "AthenaRunnerActiveJobs",
        "RUNNERS_POLL_SECONDS": str(POLL_SECONDS),
        "RUNNERS_CHECK_INTERVAL_SECONDS": "0.3",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    for table in ("GlueRunnerActiveJobs", "AthenaRunnerActiveJobs"):
        create_job_table(table, "us-east-1")
    return environment


def test_glue_ticks_carry_a_job_across_invocations(
    aws: Emulator, lambda_env: dict[str, str]
) -> None:
    sfn = aws.client("stepfunctions")
    glue_job(aws, "Nightly", RunBehaviour(duration=9.0))
    execution = sfn.start_execution(
        stateMachineArn=task_machine(sfn, "lambda", lambda_env["RUNNERS_GLUE_ACTIVITY_ARN"]),
        input=json.dumps({"GlueJobName": "Nightly"}),
    )["executionArn"]

    first = gluerunner.handler(SCHEDULED_EVENT, Context("request-1", timeout_seconds=18))
    second = gluerunner.handler(SCHEDULED_EVENT, Context("request-2", timeout_seconds=18))

    summary_one, summary_two = first["runners"][0], second["runners"][0]
    assert (summary_one["received"], summary_one["started"], summary_one["succeeded"]) == (1, 1, 0)
    assert summary_one["checked"] >= 1
    assert (summary_two["claimed"], summary_two["succeeded"], summary_two["started"]) == (1, 1, 0)
    assert finished(sfn, execution)["status"] == "SUCCEEDED"
    assert aws.faults.calls["glue:StartJobRun"] == 1


def test_a_tick_never_starts_a_poll_it_cannot_finish(
    aws: Emulator, lambda_env: dict[str, str]
) -> None:
    """With less time left than one long poll plus margins, the tick only checks."""
    summary: dict[str, Any] = athenarunner.handler(
        SCHEDULED_EVENT, Context("request-3", timeout_seconds=12)
    )

    assert summary["runners"][0]["received"] == 0
    assert aws.faults.calls["states:GetActivityTask"] == 0


def test_an_idle_tick_ends_when_its_polls_are_over_not_at_the_timeout(
    aws: Emulator, lambda_env: dict[str, str]
) -> None:
    """A Lambda is billed for every second it waits: with no task to hold, the tick
    ends once it may start no more polls, long before the timeout."""
    timeout = 24.0
    started = time.monotonic()
    summary = athenarunner.handler(SCHEDULED_EVENT, Context("request-5", timeout_seconds=timeout))
    elapsed = time.monotonic() - started

    assert summary["runners"][0]["received"] == 0
    assert aws.faults.calls["states:GetActivityTask"] > 0
    # The deadline is 10 s before the timeout; polls start until 5 s + one poll before it.
    deadline = timeout - 10
    assert elapsed < deadline - 2


def test_athena_tick_runs_a_query_to_success(aws: Emulator, lambda_env: dict[str, str]) -> None:
    sfn = aws.client("stepfunctions")
    aws.athena_queries.default = RunBehaviour(duration=0.5)
    execution = sfn.start_execution(
        stateMachineArn=task_machine(
            sfn, "lambda-athena", lambda_env["RUNNERS_ATHENA_ACTIVITY_ARN"]
        ),
        input=json.dumps(
            {
                "AthenaQueryString": "SELECT 1",
                "AthenaDatabase": "db",
                "AthenaResultOutputLocation": "s3://results/",
            }
        ),
    )["executionArn"]

    summary = athenarunner.handler(SCHEDULED_EVENT, Context("request-4", timeout_seconds=18))

    assert summary["runners"][0]["succeeded"] == 1
    assert json.loads(finished(sfn, execution)["output"])["AthenaQueryExecutionState"] == (
        "SUCCEEDED"
    )


def test_one_wait_tick_serves_several_wait_activities(
    aws: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runners.handlers import s3waitrunner
    from runners.waits.table import WaitTable
    from tests.waits.notifications import Notifications

    sfn, s3 = aws.client("stepfunctions"), aws.client("s3")
    s3.create_bucket(Bucket="data")
    arns = [
        sfn.create_activity(name=f"data-{name}.csv")["activityArn"]
        for name in ("sales", "marketing")
    ]
    for name, value in {
        "RUNNERS_S3WAIT_ACTIVITY_ARN": ",".join(arns),
        "RUNNERS_S3WAIT_TABLE": "WaitTasks",
        "RUNNERS_WAIT_TABLE": "Waits",
        "RUNNERS_WAIT_BUCKET": "data",
        "RUNNERS_POLL_SECONDS": str(POLL_SECONDS),
        "RUNNERS_CHECK_INTERVAL_SECONDS": "0.3",
    }.items():
        monkeypatch.setenv(name, value)
    create_job_table("WaitTasks", "us-east-1")
    WaitTable("Waits", "us-east-1").create_table()
    notifications = Notifications(aws, "data", "s3")
    for name in ("sales", "marketing"):
        s3.put_object(Bucket="data", Key=f"{name}.csv", Body=b"x")
    while notifications.deliver(wait_seconds=1):
        pass
    executions = [
        sfn.start_execution(stateMachineArn=task_machine(sfn, f"w{n}", arn))["executionArn"]
        for n, arn in enumerate(arns)
    ]

    summary = s3waitrunner.handler(SCHEDULED_EVENT, Context("request-5", timeout_seconds=18))

    assert [r["succeeded"] for r in summary["runners"]] == [1, 1]
    assert [finished(sfn, arn)["status"] for arn in executions] == ["SUCCEEDED"] * 2


def test_the_runner_handler_serves_the_runner_its_function_names(
    aws: Emulator, lambda_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``runners.handlers.runner.handler`` is what the runner templates deploy: the
    function's RUNNERS_RUNNER says which runner it is."""
    from runners.handlers import runner

    aws.athena_queries.add("FROM reports", RunBehaviour(duration=0.5))
    sfn = aws.client("stepfunctions")
    execution = sfn.start_execution(
        stateMachineArn=task_machine(sfn, "generic", lambda_env["RUNNERS_ATHENA_ACTIVITY_ARN"]),
        input=json.dumps(
            {
                "AthenaQueryString": "SELECT * FROM reports",
                "AthenaDatabase": "sales",
                "AthenaResultOutputLocation": "s3://results/",
            }
        ),
    )["executionArn"]
    monkeypatch.setenv("RUNNERS_RUNNER", "athena")

    summary = runner.handler(SCHEDULED_EVENT, Context("request-6", timeout_seconds=18))

    assert [(r["runner"], r["succeeded"]) for r in summary["runners"]] == [("athena", 1)]
    assert finished(sfn, execution)["status"] == "SUCCEEDED"


def test_a_function_that_names_no_known_runner_fails_with_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from runners.errors import ConfigError
    from runners.handlers import runner

    monkeypatch.delenv("RUNNERS_RUNNER", raising=False)
    with pytest.raises(ConfigError, match="RUNNERS_RUNNER"):
        runner.handler(SCHEDULED_EVENT, Context("request-7", timeout_seconds=18))
    monkeypatch.setenv("RUNNERS_RUNNER", "spark")
    known = "athena, crawler, dms, emrserverless, emrstep, glue"
    with pytest.raises(ConfigError, match=f"'spark' is not one of {known}"):
        runner.handler(SCHEDULED_EVENT, Context("request-8", timeout_seconds=18))


def queue_records(aws: Emulator, url: str, wait_seconds: int = 20) -> dict[str, Any]:
    """What Lambda's SQS event source mapping invokes a function with, for the messages
    one receive brings ("Using Lambda with Amazon SQS": Records of aws:sqs)."""
    sqs = aws.client("sqs")
    messages = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=wait_seconds,
        MessageSystemAttributeNames=["ApproximateReceiveCount"],
    ).get("Messages", [])
    assert messages, "no message came"
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:glue-completions",
            }
            for message in messages
        ]
    }


def test_a_completion_event_reports_a_task_that_ticks_hold_between_invocations(
    aws: Emulator, lambda_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tick starts the job and ends, releasing the task; the job ends between ticks;
    the runner's function, invoked by its completion queue, reports it."""
    from runners.handlers import runner
    from tests.engine.test_completions import completion_queue

    url = completion_queue(aws, "glue")
    monkeypatch.setenv("RUNNERS_RUNNER", "glue")
    monkeypatch.setenv("RUNNERS_COMPLETION_EVENTS", "true")
    sfn = aws.client("stepfunctions")
    glue_job(aws, "Nightly", RunBehaviour(duration=11.0))  # longer than the tick's 8 s
    execution = sfn.start_execution(
        stateMachineArn=task_machine(sfn, "lambda", lambda_env["RUNNERS_GLUE_ACTIVITY_ARN"]),
        input=json.dumps({"GlueJobName": "Nightly"}),
    )["executionArn"]
    tick = runner.handler(SCHEDULED_EVENT, Context("request-1", timeout_seconds=18))
    assert (tick["runners"][0]["started"], tick["runners"][0]["succeeded"]) == (1, 0)

    answer = runner.handler(queue_records(aws, url), Context("request-2", timeout_seconds=30))

    assert answer["batchItemFailures"] == []
    assert answer["naming_jobs"] == 1
    assert finished(sfn, execution)["status"] == "SUCCEEDED"
    assert aws.faults.calls["glue:StartJobRun"] == 1
    assert aws.faults.count("*SendTaskSuccess") == 1


def test_a_completion_event_nobody_holds_is_returned_to_the_queue(
    aws: Emulator, lambda_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from runners.handlers import runner
    from tests.engine.test_completions import completion_queue

    url = completion_queue(aws, "glue")
    monkeypatch.setenv("RUNNERS_RUNNER", "glue")
    glue_job(aws, "Nightly", RunBehaviour(duration=0.2))
    aws.client("glue").start_job_run(JobName="Nightly")
    event = queue_records(aws, url)

    answer = runner.handler(event, Context("request-3", timeout_seconds=30))

    [record] = event["Records"]
    assert answer["batchItemFailures"] == [{"itemIdentifier": record["messageId"]}]
