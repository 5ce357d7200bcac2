"""The emulator's cheaper bookkeeping keeps moto's (and AWS's) answers."""

from __future__ import annotations

from moto.backends import get_backend
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
