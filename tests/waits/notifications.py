"""Real S3 notifications from the emulator, handed to the object-created handler the way
Lambda receives them: straight from S3, through an SQS queue, or through EventBridge."""

from __future__ import annotations

import json
import threading
from typing import Any, Literal

from runners.handlers import ons3objectcreated
from runners.local import Emulator

Delivery = Literal["s3", "sqs", "eventbridge"]


class Notifications:
    def __init__(self, aws: Emulator, bucket: str, delivery: Delivery = "sqs") -> None:
        self.aws, self.bucket, self.delivery = aws, bucket, delivery
        self.sqs = aws.client("sqs")
        self.queue = self.sqs.create_queue(QueueName=f"{bucket}-{delivery}")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])[
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
        self.results: list[dict[str, int]] = []
        self.bodies: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def event_for(self, body: str) -> dict[str, Any]:
        """The Lambda event carrying one delivered message."""
        if self.delivery == "sqs":
            return {"Records": [{"eventSource": "aws:sqs", "messageId": "m", "body": body}]}
        parsed: dict[str, Any] = json.loads(body)
        return parsed

    def deliver(self, wait_seconds: int = 0) -> int:
        """Hand every waiting message to the handler; returns how many were handed."""
        messages = self.sqs.receive_message(
            QueueUrl=self.queue, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds
        ).get("Messages", [])
        for message in messages:
            self.bodies.append(message["Body"])
            self.results.append(ons3objectcreated.handler(self.event_for(message["Body"]), None))
            self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)

    def __enter__(self) -> Notifications:
        """Deliver continuously in the background, as the event source mapping would."""
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(10)

    def _pump(self) -> None:
        while not self._stop.is_set():
            if not self.deliver():
                self._stop.wait(0.05)

    @property
    def released(self) -> int:
        return sum(result["released"] for result in self.results)
