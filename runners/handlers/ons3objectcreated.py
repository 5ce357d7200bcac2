"""``runners.handlers.ons3objectcreated.handler``: release the waits an object ends.

Accepts S3 notifications (one or many records), the same records wrapped in SQS or SNS
messages, and EventBridge "Object Created" events. For every arrival it records the
arrival, then releases each matching waiter it can claim. It never long-polls: with
nobody waiting it returns after one write and one query.

Configuration: ``RUNNERS_WAIT_TABLE`` (the wait table), ``AWS_REGION``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from runners import logs
from runners.engine.store import model_for
from runners.retry import error_code
from runners.waits.model import Arrival, arrivals_in
from runners.waits.table import Waiter, WaitTable

CLOSED_TASK_CODES = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})


class Releaser:
    """Releases the waiters one arrival ends; shared by the handler and the demo."""

    def __init__(self, waits: WaitTable, sfn: Any, region: str, claimant: str) -> None:
        self.waits, self.sfn, self.region, self.claimant = waits, sfn, region, claimant
        self.log = logs.get_logger(component="ons3objectcreated")

    def arrived(self, arrival: Arrival) -> int:
        """Record the arrival, then release every waiter it satisfies; returns how many."""
        recorded = self.waits.record_arrival(arrival)
        released = 0
        for waiter in self.waits.waiting(recorded.bucket):
            if (
                waiter.matcher.matches(recorded.bucket, recorded.key)
                and recorded.event_time >= waiter.not_before
            ):
                released += self._release(waiter, recorded)
        self.log.info("object arrived", bucket=recorded.bucket, key=recorded.key, released=released)
        return released

    def _release(self, waiter: Waiter, arrival: Arrival) -> bool:
        claimed = self.waits.claim(waiter, self.claimant, arrival)
        if claimed is None:
            return False  # another releaser won the claim
        try:
            self._send(waiter, arrival)
        except Exception:
            self.waits.unclaim(waiter, self.claimant)  # let the retried event try again
            raise
        self.waits.mark_released(waiter, self.claimant)
        return True

    def _send(self, waiter: Waiter, arrival: Arrival) -> None:
        record = model_for(waiter.job_table, self.region).get(waiter.wait_id, consistent_read=True)
        try:
            self.sfn.send_task_success(
                taskToken=record.token, output=json.dumps(arrival.output(waiter.activity_arn))
            )
        except ClientError as error:
            if error_code(error) not in CLOSED_TASK_CODES:
                raise
            self.log.info("wait was already closed", token=logs.token_hash(record.token))
            return
        self.log.info(
            "wait released", token=logs.token_hash(record.token), activity=waiter.activity_arn
        )


def handler(event: Mapping[str, Any], context: Any) -> dict[str, int]:
    logs.configure_once(os.environ.get("RUNNERS_LOG_LEVEL", "INFO"), json_output=True)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    releaser = Releaser(
        WaitTable(os.environ["RUNNERS_WAIT_TABLE"], region),
        boto3.client(
            "stepfunctions",
            region_name=region,
            config=Config(retries={"mode": "standard", "max_attempts": 5}),
        ),
        region,
        claimant=f"lambda:{getattr(context, 'aws_request_id', 'local')}",
    )
    arrivals = list(arrivals_in(event))
    released = sum(releaser.arrived(arrival) for arrival in arrivals)
    return {"arrivals": len(arrivals), "released": released}
