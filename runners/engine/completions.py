"""Completion events: what the services say through EventBridge when their jobs end,
queued in SQS, turned into immediate checks and reports by the engine.

Events are best effort (EventBridge may lose or delay one) and carry few of a job's
output fields, so an event only prompts a check: the outcome reported is what the
service's status call says, and the periodic check stays as the safety net. Every
worker may receive any event; ``Engine.complete`` finds its task by the job table's
event index, whoever holds it.

A message whose event names no open task (it came before the task's run id was stored,
or the job ended twice in the events' eyes, or nobody runs it) is tried again a few
times, a little later each time, then let go: nothing is lost, since a task whose event
is let go is still reported by its periodic check.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runners.engine.runner import Runner
from runners.logs import get_logger

if TYPE_CHECKING:
    from runners.engine.engine import Engine

# How often an event that names no open task is received before it is let go, and the
# seconds it stays invisible before the next try (times the receive count).
MAX_RECEIVES = 4
RETRY_SECONDS = 1
# Messages that reach the queue within this long of the first are taken together, so
# that one status call confirms several ends. The benchmark, at 8 ends a second: 0.3 s
# gives completion p50 0.24-0.34 s and 0.65 (Glue) / 0.29 (Athena) status calls a task,
# from 0.99 / 0.94 without the window; 0.5 s, 0.50 / 0.19 but p50 0.52 s.
BATCH_SECONDS = 0.3
MAX_EVENTS = 100
LONG_POLL_SECONDS = 20
_SQS_BATCH = 10  # ReceiveMessage, DeleteMessageBatch, ChangeMessageVisibilityBatch

log = get_logger()


@dataclass(frozen=True)
class QueuedEvent:
    """One received message: what it says ended (``key``; None: nothing this runner
    runs), and how often it has been received."""

    id: str
    receipt: str
    key: str | None
    receives: int


def read(
    runner: Runner[Any], message_id: str, receipt: str, body: str, receives: int
) -> QueuedEvent:
    """A message as the runner reads its event; a malformed one is logged (it names no
    task: there is nothing to fail) and reads as naming nothing."""
    try:
        event = json.loads(body)
    except ValueError:
        event = None
    if not isinstance(event, Mapping):
        log.warning("malformed completion event let go", message_id=message_id, body=body[:200])
        return QueuedEvent(message_id, receipt, None, receives)
    return QueuedEvent(message_id, receipt, runner.ended(event), receives)


def sort(
    events: Sequence[QueuedEvent], again: set[str]
) -> tuple[list[QueuedEvent], list[QueuedEvent]]:
    """Split handled events (delete them) from those to try later (``again``: keys the
    engine could not match yet), letting go of those received too often."""
    done, later = [], []
    for event in events:
        if event.key is None or event.key not in again:
            done.append(event)
        elif event.receives >= MAX_RECEIVES:
            log.info("completion event names no open task; let go", event_key=event.key)
            done.append(event)
        else:
            later.append(event)
    return done, later


async def handle(
    engine: Engine[Any], events: Sequence[QueuedEvent]
) -> tuple[list[QueuedEvent], list[QueuedEvent]]:
    """Complete the tasks the events name; returns (handled, to try later)."""
    keys = {event.key for event in events if event.key is not None}
    again = await engine.complete(keys) if keys else set()
    return sort(events, again)


class CompletionQueue:
    """The runner's completion queue (SQS, through aiobotocore)."""

    def __init__(self, sqs: Any, url: str, runner: Runner[Any]) -> None:
        self.sqs, self.url, self.runner = sqs, url, runner

    async def collect(
        self, wait_seconds: int = LONG_POLL_SECONDS, batch_seconds: float = BATCH_SECONDS
    ) -> list[QueuedEvent]:
        """Wait for events, then take those that reach the queue within
        ``batch_seconds`` of the first (at most ``MAX_EVENTS``: a backlog is handled a
        round at a time). The window runs from the first one's arrival, so events
        that waited while the last round was handled wait no longer."""
        messages = await self._receive(wait_seconds)
        if not messages:
            return []
        first = min(_sent_at(message) for message in messages)
        await asyncio.sleep(min(batch_seconds, max(0.0, first + batch_seconds - time.time())))
        while len(messages) < MAX_EVENTS and (more := await self._receive(0)):
            messages.extend(more)
            if len(more) < _SQS_BATCH:
                break
        return [self._read(message) for message in messages]

    async def _receive(self, wait_seconds: int) -> list[dict[str, Any]]:
        answer = await self.sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=_SQS_BATCH,
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
        )
        messages: list[dict[str, Any]] = answer.get("Messages", [])
        return messages

    def _read(self, message: Mapping[str, Any]) -> QueuedEvent:
        return read(
            self.runner,
            message["MessageId"],
            message["ReceiptHandle"],
            message.get("Body", ""),
            int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
        )

    async def delete(self, events: Sequence[QueuedEvent]) -> None:
        for chunk in _chunks(events):
            await self.sqs.delete_message_batch(
                QueueUrl=self.url,
                Entries=[{"Id": str(i), "ReceiptHandle": e.receipt} for i, e in enumerate(chunk)],
            )

    async def try_later(self, events: Sequence[QueuedEvent]) -> None:
        for chunk in _chunks(events):
            await self.sqs.change_message_visibility_batch(
                QueueUrl=self.url,
                Entries=[
                    {
                        "Id": str(i),
                        "ReceiptHandle": e.receipt,
                        "VisibilityTimeout": RETRY_SECONDS * e.receives,
                    }
                    for i, e in enumerate(chunk)
                ],
            )

    async def serve(self, engine: Engine[Any]) -> None:
        """Receive and handle events until cancelled (the worker's loop)."""
        failures = 0
        while True:
            try:
                events = await self.collect()
                if events:
                    done, later = await handle(engine, events)
                    await asyncio.gather(self.delete(done), self.try_later(later))
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                engine.log.exception("completion events failed; will retry")
                await asyncio.sleep(engine.retries.poll.wait_seconds(failures))


def _sent_at(message: Mapping[str, Any]) -> float:
    """When the message reached the queue (epoch seconds; now if SQS did not say)."""
    sent = message.get("Attributes", {}).get("SentTimestamp")
    return int(sent) / 1000 if sent else time.time()


def _chunks(events: Sequence[QueuedEvent]) -> list[Sequence[QueuedEvent]]:
    return [events[i : i + _SQS_BATCH] for i in range(0, len(events), _SQS_BATCH)]
