"""The emulator's cheaper bookkeeping keeps moto's (and AWS's) answers."""

from __future__ import annotations

import json
import time
from typing import Any

from moto.backends import get_backend
from moto.core.utils import unix_time
from moto.moto_server import werkzeug_app

from runners.local import ACCOUNT_ID, REGION, Emulator, scaling


def test_every_moto_service_is_still_routed(aws: Emulator) -> None:
    """The modules read once are the ones moto's own listing finds."""
    assert werkzeug_app.backends.list_of_moto_modules is scaling.moto_modules
    assert scaling.moto_modules() == set(scaling._list_of_moto_modules())
    assert {"sqs", "dynamodb", "glue", "stepfunctions"} <= scaling.moto_modules()


def test_a_message_past_its_queue_retention_period_is_not_received(aws: Emulator) -> None:
    """SQS keeps a message for the queue's ``MessageRetentionPeriod`` ("the length of
    time, in seconds, for which Amazon SQS retains a message", SetQueueAttributes, API
    reference) and no longer: an older one is never received."""
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName="retention", Attributes={"MessageRetentionPeriod": "60"})[
        "QueueUrl"
    ]
    sqs.send_message(QueueUrl=url, MessageBody="old")
    (message,) = get_backend("sqs")[ACCOUNT_ID][REGION].get_queue("retention")._messages
    message.sent_timestamp -= 61_000  # sent 61 s ago, by the queue's clock
    sqs.send_message(QueueUrl=url, MessageBody="new")

    bodies = [
        message["Body"]
        for _ in range(2)  # moto stops a receive at an expired message
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    ]

    assert bodies == ["new"]


def test_a_busy_queue_hands_out_each_message_once(aws: Emulator) -> None:
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName="busy")["QueueUrl"]
    for start in range(0, 300, 10):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(n), "MessageBody": str(n)} for n in range(start, start + 10)],
        )

    bodies: list[str] = []
    while answer := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        bodies += [m["Body"] for m in answer]

    assert sorted(bodies, key=int) == [str(n) for n in range(300)]


def test_query_results_come_in_sort_key_order_numbers_numerically(aws: Emulator) -> None:
    """Query: "results are always sorted by the sort key value. If the data type of the
    sort key is Number, the results are returned in numeric order; otherwise, the
    results are returned in order of UTF-8 bytes" (DynamoDB API reference), on a
    global secondary index as on the table."""
    dynamodb = aws.client("dynamodb")
    dynamodb.create_table(
        TableName="ordered",
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "n", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "n", "AttributeType": "N"},
            {"AttributeName": "g", "AttributeType": "S"},
            {"AttributeName": "s", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-g",
                "KeySchema": [
                    {"AttributeName": "g", "KeyType": "HASH"},
                    {"AttributeName": "s", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    numbers = [100, 9, 10, -3, 2.5, 1000]
    for n in numbers:
        item = {"pk": {"S": "a"}, "n": {"N": str(n)}, "g": {"S": "g"}, "s": {"S": f"k{n}"}}
        dynamodb.put_item(TableName="ordered", Item=item)

    table = dynamodb.query(
        TableName="ordered",
        KeyConditionExpression="pk = :a",
        ExpressionAttributeValues={":a": {"S": "a"}},
    )["Items"]
    backwards = dynamodb.query(
        TableName="ordered",
        KeyConditionExpression="pk = :a",
        ExpressionAttributeValues={":a": {"S": "a"}},
        ScanIndexForward=False,
    )["Items"]
    index = dynamodb.query(
        TableName="ordered",
        IndexName="by-g",
        KeyConditionExpression="g = :g",
        ExpressionAttributeValues={":g": {"S": "g"}},
    )["Items"]

    assert [float(i["n"]["N"]) for i in table] == sorted(numbers)
    assert [float(i["n"]["N"]) for i in backwards] == sorted(numbers, reverse=True)
    assert [i["s"]["S"] for i in index] == sorted(f"k{n}" for n in numbers)


def test_an_account_made_again_after_a_reset_is_empty_and_reset_again(aws: Emulator) -> None:
    """The account fast path keeps moto's reset whole: after a reset, the account is
    made again (and registered), so the next reset clears it too."""
    sqs = aws.client("sqs")
    sqs.create_queue(QueueName="before")
    aws.reset()
    assert sqs.list_queues().get("QueueUrls", []) == []

    sqs.create_queue(QueueName="after")
    aws.reset()

    assert sqs.list_queues().get("QueueUrls", []) == []


def test_a_parsed_path_serves_every_event_and_state_it_is_used_for(aws: Emulator) -> None:
    """Each JSONPath is parsed once and reused, and still reads each document afresh:
    an EventBridge input transformer ("InputPathsMap ... JSON path to extract from the
    event", InputTransformer, EventBridge API reference) gives each event its own
    values, and a state's InputPath/ResultPath each execution its own input."""
    assert scaling.json_path("$.detail.state") is scaling.json_path("$.detail.state")
    sqs, events = aws.client("sqs"), aws.client("events")
    url = sqs.create_queue(QueueName="transformed")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(Name="states", EventPattern=json.dumps({"source": ["test"]}))
    transformer = {"InputPathsMap": {"s": "$.detail.state"}, "InputTemplate": '{"got": "<s>"}'}
    events.put_targets(
        Rule="states", Targets=[{"Id": "q", "Arn": arn, "InputTransformer": transformer}]
    )
    for state in ("ONE", "TWO"):
        events.put_events(
            Entries=[{"Source": "test", "DetailType": "t", "Detail": json.dumps({"state": state})}]
        )
    bodies = [
        json.loads(m["Body"])
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    ]
    assert sorted(b["got"] for b in bodies) == ["ONE", "TWO"]

    sfn = aws.client("stepfunctions")
    definition = {
        "StartAt": "Pick",
        "States": {
            "Pick": {
                "Type": "Pass",
                "InputPath": "$.value",
                "ResultPath": "$.copy",
                "End": True,
            }
        },
    }
    machine = sfn.create_state_machine(
        name="paths", definition=json.dumps(definition), roleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/r"
    )["stateMachineArn"]
    outputs = []
    for value in ({"n": 1}, {"n": 2}):
        execution = sfn.start_execution(stateMachineArn=machine, input=json.dumps({"value": value}))
        outputs.append(wait_for_output(sfn, execution["executionArn"]))
    assert outputs == [
        {"value": {"n": 1}, "copy": {"n": 1}},
        {"value": {"n": 2}, "copy": {"n": 2}},
    ]


def wait_for_output(sfn: Any, arn: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            assert described["status"] == "SUCCEEDED", described
            return json.loads(described["output"])
        time.sleep(0.05)
    raise AssertionError(f"{arn} still running after {timeout} s")


def test_sqs_reads_the_same_clock_in_seconds(aws: Emulator) -> None:
    """SQS's clock is moto's, read without datetime arithmetic: a delayed message
    ("DelaySeconds: the length of time, in seconds, for which to delay a specific
    message", SendMessage, API reference) stays invisible that long, then is received."""
    assert abs(scaling.epoch_seconds() - unix_time()) < 0.05
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName="delayed")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=1)

    early = sqs.receive_message(QueueUrl=url).get("Messages", [])
    time.sleep(1.2)
    late = sqs.receive_message(QueueUrl=url).get("Messages", [])

    assert early == []
    assert [m["Body"] for m in late] == ["later"]
