"""S3 event notifications from the emulator, as AWS sends them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from runners.local import Emulator


def deliveries(aws: Emulator) -> tuple[Any, str, str]:
    sqs, s3, events = aws.client("sqs"), aws.client("s3"), aws.client("events")
    s3.create_bucket(Bucket="data")
    queues = []
    for name in ("notifications", "eventbridge"):
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        queues.append(
            (
                url,
                sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
                    "QueueArn"
                ],
            )
        )
    s3.put_bucket_notification_configuration(
        Bucket="data",
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": queues[0][1], "Events": ["s3:ObjectCreated:*"]}],
            "EventBridgeConfiguration": {},
        },
    )
    events.put_rule(
        Name="created",
        EventPattern=json.dumps({"source": ["aws.s3"], "detail-type": ["Object Created"]}),
    )
    events.put_targets(Rule="created", Targets=[{"Id": "q", "Arn": queues[1][1]}])
    return sqs, queues[0][0], queues[1][0]


def bodies(sqs: Any, url: str) -> list[dict[str, Any]]:
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def test_each_write_carries_a_growing_sequencer_on_both_paths(aws: Emulator) -> None:
    """Event message structure, ``sequencer``: "provides a way to determine the sequence
    of events. Event notifications aren't guaranteed to arrive in the same order that
    the events occurred." Both the notification and the EventBridge event of one write
    carry the same value; EventBridge names the tag ``etag``."""
    sqs, notifications, eventbridge = deliveries(aws)
    s3 = aws.client("s3")
    s3.put_object(Bucket="data", Key="k", Body=b"1")
    s3.put_object(Bucket="data", Key="k", Body=b"22")

    records = [
        b["Records"][0]["s3"]["object"] for b in bodies(sqs, notifications) if "Records" in b
    ]
    details = [b["detail"]["object"] for b in bodies(sqs, eventbridge)]

    by_size = {r["size"]: r for r in records}
    assert {d["sequencer"]: d["etag"] for d in details} == {
        r["sequencer"]: r["eTag"] for r in records
    }
    first, second = by_size[1]["sequencer"], by_size[2]["sequencer"]
    assert second.rjust(len(first), "0") > first.rjust(len(second), "0")
    assert all("versionId" not in r for r in records)
    assert all("version-id" not in d for d in details)


def test_a_bucket_policy_conditioned_on_insecure_transport_denies_nothing(aws: Emulator) -> None:
    """IAM global condition key aws:SecureTransport: "Use this key to check whether the
    request was sent using TLS." Clients reach AWS over TLS, so the common statement
    denying requests where it is "false" denies none of them; one that denies where it
    is "true" denies them all (https://docs.aws.amazon.com/IAM/latest/UserGuide/
    reference_policies_condition-keys.html#condition-keys-securetransport)."""
    s3 = aws.client("s3")

    def policy(secure: str) -> str:
        statement = {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": ["arn:aws:s3:::guarded", "arn:aws:s3:::guarded/*"],
            "Condition": {"Bool": {"aws:SecureTransport": secure}},
        }
        return json.dumps({"Version": "2012-10-17", "Statement": [statement]})

    s3.create_bucket(Bucket="guarded")
    s3.put_bucket_policy(Bucket="guarded", Policy=policy("false"))
    s3.put_object(Bucket="guarded", Key="a", Body=b"1")
    assert s3.get_object(Bucket="guarded", Key="a")["Body"].read() == b"1"

    s3.put_bucket_policy(Bucket="guarded", Policy=policy("true"))
    with pytest.raises(ClientError) as raised:
        s3.put_object(Bucket="guarded", Key="b", Body=b"2")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
