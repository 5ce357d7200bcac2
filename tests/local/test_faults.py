"""Fault injection and call accounting, as the reliability suite will use them."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from runners.local import Call, Emulator, Fault
from tests.conftest import ClientFactory
from tests.helpers import error_code

NO_RETRIES = {"retries": {"total_max_attempts": 1}}


def test_throttling_is_retried_by_both_sdks(aws: Emulator, client: ClientFactory) -> None:
    """The SDKs' standard retry handling sees an injected ThrottlingException as AWS
    throttling and retries it."""
    glue = client("glue")
    aws.faults.add(Fault("glue:GetJobs", "throttle", limit=2))

    response = glue.get_jobs()

    assert response["ResponseMetadata"]["RetryAttempts"] == 2
    assert aws.faults.count("glue:GetJobs") == 3


def test_http_500_is_retried_by_both_sdks(aws: Emulator, client: ClientFactory) -> None:
    sfn = client("stepfunctions")
    aws.faults.add(Fault("states:ListActivities", "error", limit=1))

    response = sfn.list_activities()

    assert response["ResponseMetadata"]["RetryAttempts"] == 1


@pytest.mark.parametrize(
    ("service", "call", "pattern", "expected"),
    [
        ("glue", lambda c: c.get_jobs(), "glue:GetJobs", ("ThrottlingException", 400)),
        (
            "dynamodb",
            lambda c: c.list_tables(),
            "dynamodb:ListTables",
            ("ThrottlingException", 400),
        ),
        ("s3", lambda c: c.list_buckets(), "s3:GET", ("SlowDown", 503)),
        (
            "cloudformation",
            lambda c: c.list_stacks(),
            "cloudformation:ListStacks",
            ("Throttling", 400),
        ),
    ],
)
def test_throttling_speaks_each_protocol(
    aws: Emulator, service: str, call: Any, pattern: str, expected: tuple[str, int]
) -> None:
    """JSON, REST-XML (S3) and query protocols each get their own throttling error."""
    aws.faults.add(Fault(pattern, "throttle"))

    with pytest.raises(ClientError) as raised:
        call(aws.client(service, **NO_RETRIES))

    assert (
        error_code(raised.value),
        raised.value.response["ResponseMetadata"]["HTTPStatusCode"],
    ) == expected


def test_http_500_answers_internal_failure(aws: Emulator) -> None:
    aws.faults.add(Fault("athena:*", "error"))

    with pytest.raises(ClientError) as raised:
        aws.client("athena", **NO_RETRIES).list_work_groups()

    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert error_code(raised.value) == "InternalFailure"


def test_deny_answers_access_denied_as_a_missing_permission_does(aws: Emulator) -> None:
    """An action the caller's policy does not allow is refused "AccessDeniedException ...
    User is not authorized to perform" (HTTP 400, DynamoDB's JSON protocol), and is not
    applied."""
    aws.client("dynamodb").create_table(
        TableName="T",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    aws.faults.add(Fault("dynamodb:PutItem", "deny"))
    dynamodb = aws.client("dynamodb", **NO_RETRIES)

    with pytest.raises(ClientError) as raised:
        dynamodb.put_item(TableName="T", Item={"k": {"S": "a"}})

    assert (
        error_code(raised.value),
        raised.value.response["ResponseMetadata"]["HTTPStatusCode"],
    ) == (
        "AccessDeniedException",
        400,
    )
    assert dynamodb.scan(TableName="T")["Items"] == []


def test_a_lost_response_hides_a_call_that_took_effect(aws: Emulator) -> None:
    """AWS: a 500 "InternalFailure" says nothing of whether the request was applied;
    ``lost`` applies it and answers 500, the case idempotent starts exist for."""
    aws.faults.add(Fault("states:CreateActivity", "lost", limit=1))
    served: list[Call] = []
    aws.faults.on_call("states:CreateActivity", served.append)
    sfn = aws.client("stepfunctions", **NO_RETRIES)

    with pytest.raises(ClientError) as raised:
        sfn.create_activity(name="Applied")

    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert [a["name"] for a in sfn.list_activities()["activities"]] == ["Applied"]
    assert [call.status for call in served] == [200]  # hooks see what was applied


def test_rate_affects_a_share_of_calls(aws: Emulator) -> None:
    glue = aws.client("glue", **NO_RETRIES)
    fault = aws.faults.add(Fault("glue:GetJobs", "throttle", rate=0.3))
    failures = 0
    for _ in range(200):
        try:
            glue.get_jobs()
        except ClientError:
            failures += 1

    assert failures == fault.affected
    assert 30 <= failures <= 90


def test_a_hang_delays_the_call_then_serves_it(aws: Emulator, client: ClientFactory) -> None:
    sfn = client("stepfunctions")
    aws.faults.add(Fault("states:ListActivities", "hang", seconds=0.5, limit=1))
    began = time.monotonic()

    sfn.list_activities()
    hung = time.monotonic() - began
    began = time.monotonic()
    sfn.list_activities()

    assert hung >= 0.5
    assert time.monotonic() - began < 0.5


def test_an_outage_holds_every_call_until_it_ends(aws: Emulator) -> None:
    glue, sfn = aws.client("glue"), aws.client("stepfunctions")
    aws.faults.outage(1.0)
    began = time.monotonic()

    glue.get_jobs()
    sfn.list_activities()
    waited = time.monotonic() - began
    began = time.monotonic()
    glue.get_jobs()

    assert 0.9 <= waited < 2.0
    assert time.monotonic() - began < 0.5


def test_an_outage_of_one_service_leaves_the_others_answering(aws: Emulator) -> None:
    dynamodb, sfn = aws.client("dynamodb"), aws.client("stepfunctions")
    aws.faults.outage(1.0, pattern="dynamodb:*")
    began = time.monotonic()

    sfn.list_activities()
    answered = time.monotonic() - began
    dynamodb.list_tables()
    waited = time.monotonic() - began

    assert answered < 0.5
    assert 0.9 <= waited < 2.0


def test_after_call_hooks_run_once_the_call_was_served(aws: Emulator) -> None:
    """A hook sees the served call before its response leaves: the step happened on the
    AWS side, and the caller has not learned it yet (the moment a crash test kills a
    worker)."""
    glue = aws.client("glue")
    glue.create_job(Name="J", Role="r", Command={"Name": "glueetl", "ScriptLocation": "s3://s"})
    seen: list[Call] = []
    runs_at_hook_time: list[int] = []
    released = threading.Event()

    def hook(call: Call) -> None:
        seen.append(call)
        runs_at_hook_time.append(len(aws.client("glue").get_job_runs(JobName="J")["JobRuns"]))
        released.wait(5)

    aws.faults.on_call("glue:StartJobRun", hook)
    threading.Timer(0.3, released.set).start()
    began = time.monotonic()

    glue.start_job_run(JobName="J", Arguments={"--runner-key": "abc"})

    assert time.monotonic() - began >= 0.3
    assert [(c.name, c.status) for c in seen] == [("glue:StartJobRun", 200)]
    assert seen[0].json()["Arguments"] == {"--runner-key": "abc"}
    assert runs_at_hook_time == [1]


def test_calls_are_counted_by_operation(aws: Emulator) -> None:
    sfn = aws.client("stepfunctions")
    for _ in range(3):
        sfn.list_activities()
    sfn.create_activity(name="A")

    assert aws.faults.calls["states:ListActivities"] == 3
    assert aws.faults.count("states:*") == 4


def test_removed_faults_stop_applying(aws: Emulator) -> None:
    glue = aws.client("glue", **NO_RETRIES)
    fault = aws.faults.add(Fault("glue:*", "error"))
    with pytest.raises(ClientError):
        glue.get_jobs()

    aws.faults.remove(fault)

    assert glue.get_jobs()["Jobs"] == []


def test_a_rest_json_call_is_named_by_its_operation_in_the_api_model(aws: Emulator) -> None:
    """EMR Serverless speaks REST-JSON: the operation is in the method and URI template
    (``GET /applications/{applicationId}/jobruns/{jobRunId}`` is GetJobRun), so faults
    and counts can tell GetJobRun from ListJobRuns, both GETs."""
    emr = aws.client("emr-serverless", **NO_RETRIES)
    app = emr.create_application(name="a", releaseLabel="emr-7.1.0", type="SPARK")
    aws.faults.add(Fault("emr-serverless:ListJobRuns", "throttle"))

    with pytest.raises(ClientError) as raised:
        emr.list_job_runs(applicationId=app["applicationId"])
    emr.get_application(applicationId=app["applicationId"])

    assert error_code(raised.value) == "ThrottlingException"
    assert aws.faults.service_calls("emr-serverless") == {
        "CreateApplication": 1,
        "ListJobRuns": 1,
        "GetApplication": 1,
    }
