"""What a wait is for, what arrived, and how S3 tells us.

S3 reports object creation three ways: notification records (keys URL-encoded, spaces
as ``+``), the same records wrapped in SQS (or SNS) messages, and EventBridge "Object
Created" events (keys not encoded). All become ``Arrival``s here.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus


@dataclass(frozen=True)
class Arrival:
    """An object that landed in S3."""

    bucket: str
    key: str
    event_time: float
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None
    sequencer: str | None = None

    def output(self, activity_arn: str) -> dict[str, Any]:
        """The wait task's output: the original sample's keys plus object details."""
        return {
            "S3BucketName": self.bucket,
            "S3Key": self.key,
            "SFNActivityArn": activity_arn,
            "S3ObjectSize": self.size,
            "S3ObjectETag": self.etag,
            "S3ObjectVersionId": self.version_id,
            "S3EventTime": datetime.fromtimestamp(self.event_time, tz=UTC).isoformat(),
        }

    def newer_than(self, other: Arrival) -> bool:
        """S3's ordering for events on one key: compare sequencers (hex strings, padded
        to equal length); without them, the event time."""
        if self.sequencer and other.sequencer:
            width = max(len(self.sequencer), len(other.sequencer))
            return self.sequencer.rjust(width, "0") > other.sequencer.rjust(width, "0")
        return self.event_time > other.event_time


@dataclass(frozen=True)
class Matcher:
    """Which objects release a wait. Every constraint given must hold."""

    bucket: str
    key: str | None = None
    prefix: str | None = None
    suffix: str | None = None
    glob: str | None = None
    convention: str | None = None  # an activity name of the form <bucket>-<file name>

    def matches(self, bucket: str, key: str) -> bool:
        return (
            bucket == self.bucket
            and (self.key is None or key == self.key)
            and (self.prefix is None or key.startswith(self.prefix))
            and (self.suffix is None or key.endswith(self.suffix))
            and (self.glob is None or fnmatch.fnmatchcase(key, self.glob))
            and (self.convention is None or convention_name(bucket, key) == self.convention)
        )

    @property
    def key_prefix(self) -> str:
        """The longest key prefix every matching key shares (to narrow lookups)."""
        return self.key or self.prefix or ""

    def as_dict(self) -> dict[str, str]:
        return {name: value for name, value in self.__dict__.items() if value is not None}


def convention_name(bucket: str, key: str) -> str:
    """The original sample's mapping: activity ``<bucket>-<last element of the key>``."""
    return f"{bucket}-{key.rsplit('/', maxsplit=1)[-1].strip()}"


def arrivals_in(event: Mapping[str, Any]) -> Iterator[Arrival]:
    """Every object-created arrival in an S3, SQS, SNS or EventBridge event."""
    if event.get("source") == "aws.s3" and event.get("detail-type") == "Object Created":
        yield _from_eventbridge(event)
        return
    for record in event.get("Records", []):
        if record.get("eventSource") == "aws:sqs":
            yield from arrivals_in(_json(record.get("body")))
        elif record.get("EventSource") == "aws:sns":
            yield from arrivals_in(_json(record.get("Sns", {}).get("Message")))
        elif record.get("eventSource") == "aws:s3" and str(record.get("eventName", "")).startswith(
            "ObjectCreated"
        ):
            yield _from_notification(record)


def _from_notification(record: Mapping[str, Any]) -> Arrival:
    s3 = record["s3"]
    found = s3["object"]
    return Arrival(
        bucket=s3["bucket"]["name"],
        key=unquote_plus(found["key"]),
        event_time=_epoch(record.get("eventTime")),
        size=found.get("size"),
        etag=found.get("eTag"),
        version_id=found.get("versionId"),
        sequencer=found.get("sequencer"),
    )


def _from_eventbridge(event: Mapping[str, Any]) -> Arrival:
    detail = event["detail"]
    found = detail["object"]
    return Arrival(
        bucket=detail["bucket"]["name"],
        key=found["key"],
        event_time=_epoch(event.get("time")),
        size=found.get("size"),
        etag=found.get("etag"),
        version_id=found.get("version-id"),
        sequencer=found.get("sequencer"),
    )


def _json(text: Any) -> Mapping[str, Any]:
    try:
        parsed = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _epoch(text: Any) -> float:
    if not isinstance(text, str):
        return datetime.now(tz=UTC).timestamp()
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
