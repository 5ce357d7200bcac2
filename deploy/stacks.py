"""CloudFormation stacks: create, update and delete one, waiting and printing its events
as they come, and failing with the reasons CloudFormation gave."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from deploy import templates
from deploy.params import Parameters
from deploy.project import STACKS, DeployError, StackSpec

CAPABILITIES = ["CAPABILITY_IAM"]
# Seconds between progress checks; stack operations take minutes on AWS.
POLL_SECONDS = float(os.environ.get("RUNNERS_STACK_POLL_SECONDS", "5"))
# Give up waiting (the operation goes on in CloudFormation) after this long.
WAIT_SECONDS = float(os.environ.get("RUNNERS_STACK_WAIT_SECONDS", "3600"))

Printer = Callable[[str], None]


def create(cloudformation: Any, parameters: Parameters, spec: StackSpec, say: Printer) -> None:
    response = cloudformation.create_stack(
        StackName=spec.stack_name,
        TemplateBody=templates.body(spec.rendered()),
        Parameters=parameters.for_stack(spec),
        Capabilities=CAPABILITIES,
        Tags=[{"Key": "runners:stack", "Value": spec.name}],
    )
    say(f"{spec.stack_name}: creating")
    _wait(cloudformation, response["StackId"], "CREATE_COMPLETE", say)


def update(cloudformation: Any, parameters: Parameters, spec: StackSpec, say: Printer) -> None:
    earlier = _event_ids(cloudformation, spec.stack_name)
    try:
        response = cloudformation.update_stack(
            StackName=spec.stack_name,
            TemplateBody=templates.body(spec.rendered()),
            Parameters=parameters.for_stack(spec),
            Capabilities=CAPABILITIES,
            Tags=[{"Key": "runners:stack", "Value": spec.name}],
        )
    except ClientError as error:
        if "No updates are to be performed" in str(error):
            say(f"{spec.stack_name}: already up to date")
            return
        raise
    say(f"{spec.stack_name}: updating")
    _wait(cloudformation, response["StackId"], "UPDATE_COMPLETE", say, earlier)


def delete(cloudformation: Any, spec: StackSpec, say: Printer) -> None:
    stack = describe(cloudformation, spec.stack_name)
    if stack is None:
        say(f"{spec.stack_name}: does not exist")
        return
    earlier = _event_ids(cloudformation, stack["StackId"])
    cloudformation.delete_stack(StackName=stack["StackId"])
    say(f"{spec.stack_name}: deleting")
    _wait(cloudformation, stack["StackId"], "DELETE_COMPLETE", say, earlier)


def describe(cloudformation: Any, name: str) -> dict[str, Any] | None:
    try:
        stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except ClientError as error:
        if "does not exist" in str(error):
            return None
        raise
    live = [stack for stack in stacks if stack["StackStatus"] != "DELETE_COMPLETE"]
    return live[0] if live else None


def status_table(cloudformation: Any) -> list[tuple[str, str, str]]:
    """(stack, status, reason) for each of the project's stacks."""
    rows = []
    for spec in STACKS.values():
        name = spec.stack_name
        stack = describe(cloudformation, name)
        if stack is None:
            rows.append((name, "not created", ""))
        else:
            rows.append((name, stack["StackStatus"], stack.get("StackStatusReason", "")))
    return rows


def _wait(
    cloudformation: Any,
    stack_id: str,
    success: str,
    say: Printer,
    earlier: frozenset[str] = frozenset(),
) -> None:
    """Print this operation's events until it ends; raise with its failures if it failed."""
    seen = set(earlier)
    started = time.monotonic()
    while True:
        events = _new_events(cloudformation, stack_id, seen)
        for event in events:
            reason = event.get("ResourceStatusReason")
            say(
                f"  {event['Timestamp']:%H:%M:%S} {event['LogicalResourceId']} "
                f"{event['ResourceStatus']}" + (f": {reason}" if reason else "")
            )
        status = _status(cloudformation, stack_id)
        if status == success:
            say(f"  {success}")
            return
        if not status.endswith("_IN_PROGRESS"):
            raise DeployError(_failure(cloudformation, stack_id, status, earlier))
        if time.monotonic() - started > WAIT_SECONDS:
            raise DeployError(f"still {status} after {WAIT_SECONDS:.0f} s; see `pynt stackstatus`")
        time.sleep(POLL_SECONDS)


def _status(cloudformation: Any, stack_id: str) -> str:
    try:
        status: str = cloudformation.describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"]
    except ClientError as error:
        if "does not exist" in str(error):
            return "DELETE_COMPLETE"
        raise
    return status


def _events(cloudformation: Any, stack: str) -> list[dict[str, Any]]:
    try:
        pages = cloudformation.get_paginator("describe_stack_events").paginate(StackName=stack)
        return [event for page in pages for event in page["StackEvents"]]
    except ClientError as error:
        if "does not exist" in str(error):
            return []
        raise


def _event_ids(cloudformation: Any, stack: str) -> frozenset[str]:
    return frozenset(event["EventId"] for event in _events(cloudformation, stack))


def _new_events(cloudformation: Any, stack_id: str, seen: set[str]) -> list[dict[str, Any]]:
    events = _events(cloudformation, stack_id)
    fresh = [event for event in events if event["EventId"] not in seen]
    seen.update(event["EventId"] for event in fresh)
    return sorted(fresh, key=lambda event: event["Timestamp"])


def _failure(cloudformation: Any, stack_id: str, status: str, earlier: frozenset[str]) -> str:
    failed = [
        f"  {event['LogicalResourceId']} ({event['ResourceType']}): "
        f"{event.get('ResourceStatusReason', 'no reason given')}"
        for event in _events(cloudformation, stack_id)
        if event["ResourceStatus"].endswith("_FAILED") and event["EventId"] not in earlier
    ]
    hint = ""
    if any("AWS::S3::Bucket" in line for line in failed) and status.startswith("DELETE"):
        hint = "\nA bucket that still holds objects cannot be deleted: pynt deletes3bucket[<name>]"
    return f"{status}\n" + "\n".join(failed or ["  (no resource reported a reason)"]) + hint
