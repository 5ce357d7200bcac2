"""S3 event notifications as AWS sends them.

What moto lacks and this adds (Amazon S3 User Guide, "Event message structure" and
"EventBridge message structure"):
- every event for one object carries a ``sequencer`` that grows with each write of a
  key ("The sequencer key provides a way to determine the sequence of events ... you
  can use it to determine which event ... occurred later"): moto's notification
  records have none, and its EventBridge events all share one constant;
- EventBridge "Object Created" details name the tag ``etag`` (moto: ``eTag``);
- an unversioned object's events carry no version id (moto: the string "null").
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from typing import Any

from moto.s3 import notifications

_original_s3_event = notifications._get_s3_event
_counter = itertools.count()
_lock = threading.Lock()


def sequencer(key: Any) -> str:
    """One per stored object version, growing with every write (hex, as S3 prints it)."""
    with _lock:
        value: str | None = getattr(key, "_runners_sequencer", None)
        if value is None:
            value = f"{time.time_ns():016X}{next(_counter) % 256:02X}"
            key._runners_sequencer = value
        return value


def s3_event(event_name: str, bucket: Any, key: Any, notification_id: str) -> dict[str, Any]:
    event: dict[str, Any] = _original_s3_event(event_name, bucket, key, notification_id)
    for record in event["Records"]:
        record["s3"]["object"]["sequencer"] = sequencer(key)
        if _versioned(key):
            record["s3"]["object"]["versionId"] = key.version_id
        else:
            record["s3"]["object"].pop("versionId", None)
    return event


def send_event_bridge_message(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
    from moto.events.models import events_backends
    from moto.events.utils import _BASE_EVENT_MESSAGE

    event = copy.deepcopy(_BASE_EVENT_MESSAGE)
    event.update(
        {
            "detail-type": notifications._detail_type(event_name),
            "source": "aws.s3",
            "account": account_id,
            "time": time.time(),  # moto renders it as ISO-8601 on delivery
            "region": bucket.region_name,
            "resources": [bucket.arn],
            "detail": {
                "version": "0",
                "bucket": {"name": bucket.name},
                "object": {
                    "key": key.name,
                    "size": key.size,
                    "etag": key.etag.replace('"', ""),
                    "sequencer": sequencer(key),
                    **({"version-id": key.version_id} if _versioned(key) else {}),
                },
                "reason": event_name.split(":")[1],
            },
        }
    )
    backend = events_backends[account_id][bucket.region_name]
    for bus in backend.event_buses.values():
        for rule in bus.rules.values():
            try:
                rule.send_to_targets(event, transform_input=False)
            except Exception:
                continue


def _versioned(key: Any) -> bool:
    return bool(key.version_id) and key.version_id != "null"


def install() -> None:
    notifications._get_s3_event = s3_event
    notifications._send_event_bridge_message = send_event_bridge_message
