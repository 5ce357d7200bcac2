"""S3 event notifications as AWS sends them.

What moto lacks and this adds (Amazon S3 User Guide, "Event message structure" and
"EventBridge message structure"):
- every event for one object carries a ``sequencer`` that grows with each write of a
  key ("The sequencer key provides a way to determine the sequence of events ... you
  can use it to determine which event ... occurred later"): moto's notification
  records have none, and its EventBridge events all share one constant;
- EventBridge "Object Created" details name the tag ``etag`` (moto: ``eTag``);
- an unversioned object's events carry no version id (moto: the string "null").

And bucket policies: moto applies a statement whatever its ``Condition``. Clients reach
AWS over TLS, and the emulator's loopback endpoint stands in for that, so a statement
conditioned on ``aws:SecureTransport`` ("whether the request was sent using TLS")
applies only when it asks for secure transport: the usual "deny insecure transport"
statement no longer denies everything.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
import time
from typing import Any

from moto.iam.access_control import IAMPolicy, PermissionResult
from moto.s3 import notifications
from moto.s3.models import FakeBucket

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


def get_permission(self: FakeBucket, action: str, resource: str) -> Any:
    if self.policy is None:
        return PermissionResult.NEUTRAL
    policy = json.loads(self.policy)
    statements = policy.get("Statement", [])
    statements = statements if isinstance(statements, list) else [statements]
    policy["Statement"] = [s for s in statements if _applies_over_tls(s.get("Condition"))]
    return IAMPolicy(json.dumps(policy)).is_action_permitted(action, resource)


def _applies_over_tls(condition: dict[str, Any] | None) -> bool:
    """False for a statement conditioned on plain-HTTP transport; True otherwise."""
    secure = (condition or {}).get("Bool", {}).get("aws:SecureTransport")
    return secure is None or str(secure).lower() == "true"


def install() -> None:
    FakeBucket.get_permission = get_permission
    notifications._get_s3_event = s3_event
    notifications._send_event_bridge_message = send_event_bridge_message
