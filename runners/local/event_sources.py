"""Lambda event sources, in process: moto runs no Lambda functions without Docker.

``QueueEventSource`` does what Lambda's SQS event source mapping does: receive
messages, invoke the handler with them, delete them once the handler returned (a
message whose invocation raised stays and comes back after its visibility timeout).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

Handler = Callable[[Mapping[str, Any], Any], Any]


def sqs_event(body: str) -> dict[str, Any]:
    """The event Lambda's SQS integration passes for one message."""
    return {"Records": [{"eventSource": "aws:sqs", "messageId": "local", "body": body}]}


def message_event(body: str) -> dict[str, Any]:
    """The message itself as the event: what S3 or EventBridge invoke a function with."""
    parsed: dict[str, Any] = json.loads(body)
    return parsed


class QueueEventSource:
    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        handler: Handler,
        as_event: Callable[[str], Mapping[str, Any]] = sqs_event,
        idle_wait_seconds: float = 0.05,
    ) -> None:
        self.sqs, self.queue_url, self.handler = sqs, queue_url, handler
        self.as_event, self.idle_wait_seconds = as_event, idle_wait_seconds
        self.results: list[Any] = []
        self.bodies: list[str] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def deliver(self, wait_seconds: int = 0) -> int:
        """Hand every waiting message to the handler once; returns how many came."""
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds
        ).get("Messages", [])
        for message in messages:
            self.bodies.append(message["Body"])
            try:
                self.results.append(self.handler(self.as_event(message["Body"]), None))
            except Exception as error:
                self.errors.append(error)
                continue
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)

    def start(self) -> QueueEventSource:
        self._thread = threading.Thread(target=self._pump, name="event-source", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> QueueEventSource:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _pump(self) -> None:
        while not self._stop.is_set():
            if not self.deliver():
                self._stop.wait(self.idle_wait_seconds)
