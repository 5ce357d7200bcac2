"""Real S3 notifications from the emulator, handed to the object-created handler the way
Lambda receives them: straight from S3, through an SQS queue, or through EventBridge."""

from __future__ import annotations

import json
from typing import Any, Literal

from runners.handlers import ons3objectcreated
from runners.local import Emulator
from runners.local.event_sources import QueueEventSource, message_event, sqs_event

Delivery = Literal["s3", "sqs", "eventbridge"]


class Notifications(QueueEventSource):
    """Configures the bucket to notify a queue; delivers its messages to the handler."""

    def __init__(self, aws: Emulator, bucket: str, delivery: Delivery = "sqs") -> None:
        sqs = aws.client("sqs")
        queue = sqs.create_queue(QueueName=f"{bucket}-{delivery}")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        s3 = aws.client("s3")
        if delivery == "eventbridge":
            s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )
            events = aws.client("events")
            events.put_rule(
                Name=f"{bucket}-created",
                EventPattern=json.dumps(
                    {
                        "source": ["aws.s3"],
                        "detail-type": ["Object Created"],
                        "detail": {"bucket": {"name": [bucket]}},
                    }
                ),
            )
            events.put_targets(Rule=f"{bucket}-created", Targets=[{"Id": "q", "Arn": queue_arn}])
        else:
            s3.put_bucket_notification_configuration(
                Bucket=bucket,
                NotificationConfiguration={
                    "QueueConfigurations": [
                        {"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}
                    ]
                },
            )
        super().__init__(
            sqs, queue, ons3objectcreated.handler, sqs_event if delivery == "sqs" else message_event
        )

    def event_for(self, body: str) -> Any:
        return self.as_event(body)

    def __enter__(self) -> Notifications:
        self.start()
        return self

    @property
    def released(self) -> int:
        return sum(result["released"] for result in self.results)
