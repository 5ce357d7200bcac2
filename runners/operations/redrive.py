"""``python -m runners redrive`` and its scheduled Lambda: run failed executions again.

Failures come from the failure queue (the "Step Functions Execution Status Change"
events the triggers-and-notifications stack routes there) or from listing a state
machine's executions that stopped in a time window. Each failure is one execution at
one redrive count. For each:

- redrivable, and not ended in a ``Fail`` state: ``RedriveExecution`` (same ARN; only
  the failed states run again);
- ended in a ``Fail`` state (a redrive would only run that state again and fail), or
  not redrivable (older than 14 days, an Express machine...): a new execution with the
  same input, named after the failure, saying why.

Never twice: the decision reads the execution's own state. A failure whose execution
has been redriven since (its ``redriveCount`` moved on) is not acted on again; the
redrive's ``clientToken`` and the new execution's name derive from the failure, so
two runs racing on one failure still make one redrive or one new execution. A
failure-queue message is deleted once its failure is dealt with, and kept (to be
seen again) when AWS could not be asked.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from runners.errors import ConfigError
from runners.logs import get_logger
from runners.retry import error_code

STATUS_CHANGE = "Step Functions Execution Status Change"
UNSUCCESSFUL = ("FAILED", "TIMED_OUT", "ABORTED")
# A failure redriven this often and failing again waits for a person.
MAX_REDRIVES = 1
# Execution names: up to 80 characters of letters, digits, - and _.
_NAME_LIMIT = 80
_RERUN = re.compile(r"-rerun-[0-9a-f]{12}$")
_CLIENT = Config(retries={"mode": "standard", "max_attempts": 5}, read_timeout=20)


class Action(StrEnum):
    REDRIVEN = "redriven"
    STARTED = "started"  # a new execution with the same input
    SKIPPED = "skipped"  # dealt with already, or left for a person
    ERROR = "error"  # AWS could not be asked; tried again on the next run


@dataclass(frozen=True)
class Failure:
    """One unsuccessful stop of an execution: at redrive count ``redrive_count``."""

    execution_arn: str
    redrive_count: int


@dataclass(frozen=True)
class Outcome:
    execution_arn: str
    action: Action
    reason: str
    new_execution_arn: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "action": self.action.value}


class UnreadableFailure(ValueError):
    """A failure-queue message that is not an execution status-change event."""


class Redriver:
    def __init__(
        self,
        sfn: Any,
        max_redrives: int = MAX_REDRIVES,
        dry_run: bool = False,
        include_aborted: bool = False,
    ) -> None:
        self.sfn, self.max_redrives, self.dry_run = sfn, max_redrives, dry_run
        self.include_aborted = include_aborted
        self.log = get_logger(operation="redrive")

    def handle(self, failure: Failure) -> Outcome:
        try:
            outcome = self._decide(failure)
        except (ClientError, BotoCoreError) as error:
            outcome = Outcome(failure.execution_arn, Action.ERROR, _aws_error(error))
        self.log.info("failure handled", **outcome.as_dict(), dry_run=self.dry_run)
        return outcome

    def _decide(self, failure: Failure) -> Outcome:
        arn = failure.execution_arn
        execution = self.sfn.describe_execution(executionArn=arn)
        reason = self._left_alone(execution, failure)
        if reason is not None:
            return Outcome(arn, Action.SKIPPED, reason)
        fail_state = self._fail_state(arn) if execution["status"] == "FAILED" else None
        if fail_state is not None:
            why = f"it ended in its Fail state {fail_state!r}: a redrive would only fail there"
            return self._start_again(execution, failure, why)
        if execution.get("redriveStatus") != "REDRIVABLE":
            why = execution.get("redriveStatusReason") or "not redrivable"
            return self._start_again(execution, failure, f"it cannot be redriven: {why}")
        return self._redrive(failure)

    def _left_alone(self, execution: dict[str, Any], failure: Failure) -> str | None:
        """Why this failure is not acted on (None: it is)."""
        status, count = execution["status"], execution.get("redriveCount", 0)
        if count > failure.redrive_count:
            return f"redriven since (now {status}, {count} redrives)"
        if status not in UNSUCCESSFUL:
            return f"the execution is {status}"
        if status == "ABORTED" and not self.include_aborted:
            # Someone stopped it on purpose (bad data, a wrong run): theirs to rerun.
            return "it was stopped on purpose (ABORTED)"
        attempts = count + (1 if _RERUN.search(execution["name"]) else 0)
        if attempts >= self.max_redrives:
            return f"failed again after {attempts} reruns; left for a person"
        return None

    def _redrive(self, failure: Failure) -> Outcome:
        arn = failure.execution_arn
        if not self.dry_run:
            try:
                self.sfn.redrive_execution(executionArn=arn, clientToken=_key(failure)[:64])
            except ClientError as error:
                if error_code(error) != "ExecutionNotRedrivable":
                    raise
                # Another run redrove it a moment ago (it is running again), or AWS
                # refuses for a reason the description did not give.
                return Outcome(arn, Action.SKIPPED, f"not redrivable: {_aws_error(error)}")
        return Outcome(arn, Action.REDRIVEN, "only its failed states run again")

    def _start_again(self, execution: dict[str, Any], failure: Failure, why: str) -> Outcome:
        machine, name = execution["stateMachineArn"], rerun_name(execution["name"], failure)
        rerun = f"{machine.replace(':stateMachine:', ':execution:', 1)}:{name}"
        try:
            earlier = self.sfn.describe_execution(executionArn=rerun)
        except ClientError as error:
            if error_code(error) != "ExecutionDoesNotExist":
                raise
        else:
            return Outcome(
                failure.execution_arn,
                Action.SKIPPED,
                f"started again earlier ({earlier['status']})",
                rerun,
            )
        if not self.dry_run:
            rerun = self.sfn.start_execution(
                stateMachineArn=machine, name=name, input=execution.get("input") or "{}"
            )["executionArn"]
        return Outcome(failure.execution_arn, Action.STARTED, f"new execution: {why}", rerun)

    def _fail_state(self, arn: str) -> str | None:
        """The Fail state the execution ended in, if it ended in one (its history's
        last state entered)."""
        history = self.sfn.get_execution_history(executionArn=arn, reverseOrder=True, maxResults=50)
        for event in history["events"]:
            if event["type"].endswith("StateEntered"):
                if event["type"] == "FailStateEntered":
                    return str(event["stateEnteredEventDetails"]["name"])
                return None
        return None

    # Sources -------------------------------------------------------------------

    def from_queue(self, sqs: Any, queue_url: str, limit: int = 100) -> list[Outcome]:
        """Deal with up to ``limit`` queued failures. A message whose failure was dealt
        with is deleted; the others (unreadable, AWS unreachable, a dry run) are made
        visible again when the run ends, for the next run or a person."""
        outcomes: list[Outcome] = []
        kept: list[str] = []
        for message in _messages(sqs, queue_url, limit):
            outcome = self._message(message)
            outcomes.append(outcome)
            if outcome.action is Action.ERROR or self.dry_run or outcome.execution_arn == "":
                kept.append(message["ReceiptHandle"])
            else:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        for handle in kept:
            sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=handle, VisibilityTimeout=0
            )
        return outcomes

    def _message(self, message: dict[str, Any]) -> Outcome:
        try:
            failure = failure_from_message(message["Body"])
        except UnreadableFailure as error:
            self.log.warning("unreadable failure-queue message kept", problem=str(error))
            return Outcome("", Action.SKIPPED, f"message {message['MessageId']}: {error}")
        return self.handle(failure)

    def from_listing(
        self, machines: Iterable[str], since: datetime.datetime, until: datetime.datetime
    ) -> list[Outcome]:
        return [self.handle(f) for f in listed_failures(self.sfn, machines, since, until)]


def listed_failures(
    sfn: Any, machines: Iterable[str], since: datetime.datetime, until: datetime.datetime
) -> Iterator[Failure]:
    """Executions of these state machines that stopped unsuccessfully in [since, until]."""
    pages = sfn.get_paginator("list_executions")
    for machine in machines:
        for status in UNSUCCESSFUL:
            for page in pages.paginate(stateMachineArn=machine, statusFilter=status):
                for item in page["executions"]:
                    stopped = item.get("stopDate")
                    if stopped is not None and since <= stopped <= until:
                        yield Failure(item["executionArn"], item.get("redriveCount", 0))


def failure_from_message(body: str) -> Failure:
    """The failure an EventBridge status-change event names (raw, or inside an SNS
    notification)."""
    try:
        event = json.loads(body)
        if isinstance(event, dict) and event.get("Type") == "Notification":
            event = json.loads(event["Message"])
        detail = event["detail"]
        if event.get("detail-type") != STATUS_CHANGE:
            raise UnreadableFailure(f"not a {STATUS_CHANGE!r} event: {event.get('detail-type')}")
        if detail["status"] not in UNSUCCESSFUL:
            raise UnreadableFailure(f"the event's status is {detail['status']}, not a failure")
        return Failure(str(detail["executionArn"]), int(detail.get("redriveCount") or 0))
    except UnreadableFailure:
        raise
    except (ValueError, KeyError, TypeError) as error:
        raise UnreadableFailure(f"not an execution status-change event: {error!r}") from error


def rerun_name(name: str, failure: Failure) -> str:
    """The name of the new execution for a failure: readable, and the same on every run."""
    suffix = f"-rerun-{_key(failure)[:12]}"
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[: _NAME_LIMIT - len(suffix)] + suffix


def _key(failure: Failure) -> str:
    text = f"{failure.execution_arn}#{failure.redrive_count}"
    return hashlib.sha256(text.encode()).hexdigest()


def _messages(sqs: Any, queue_url: str, limit: int) -> Iterator[dict[str, Any]]:
    seen = 0
    while seen < limit:
        batch = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(10, limit - seen),
            WaitTimeSeconds=1,
            VisibilityTimeout=300,
        ).get("Messages", [])
        if not batch:
            return
        seen += len(batch)
        yield from batch


def _aws_error(error: Exception) -> str:
    return " ".join(str(error).split())[:300]


def clients(region: str | None) -> tuple[Any, Any]:
    if not region:
        raise ConfigError("--region: give the region (or set AWS_REGION)")
    session = boto3.session.Session(region_name=region)
    return session.client("stepfunctions", config=_CLIENT), session.client("sqs", config=_CLIENT)


def table_text(outcomes: list[Outcome]) -> str:
    if not outcomes:
        return "no failed executions to redrive"
    lines = [
        f"{o.action.value:<9} {o.execution_arn.rsplit(':', 1)[-1]:<40} {o.reason}"
        + (f" -> {o.new_execution_arn.rsplit(':', 1)[-1]}" if o.new_execution_arn else "")
        for o in outcomes
    ]
    counts = {a.value: sum(o.action is a for o in outcomes) for a in Action}
    return "\n".join([*lines, ", ".join(f"{n} {a}" for a, n in counts.items())])
