"""EventBridge: rules deliver to Lambda functions and Step Functions state machines, and
scheduled rules fire when asked.

moto delivers rule matches to logs, SQS, archives and other buses only; for any other
target it raises. Here a Lambda target is invoked asynchronously in the local runtime
and a state machine target gets ``StartExecution`` with the event as input. A disabled
rule delivers nothing, and a rule with only a schedule matches no event. moto never
fires schedules: ``fire_schedules()`` sends each enabled scheduled rule one
"Scheduled Event", which is what EventBridge sends on each tick of the schedule.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from moto.awslambda.models import lambda_backends
from moto.events.models import Rule, events_backends
from moto.utilities.arns import parse_arn

from runners.local import stepfunctions
from runners.local.awslambda import RUNTIME, Invocation

_send_to_targets = Rule.send_to_targets


def send_to_targets(self: Rule, event: dict[str, Any], transform_input: bool = True) -> None:
    if self.state != "ENABLED":
        return
    if not _is_scheduled_event(event):
        if self.event_pattern is None or not self.event_pattern._pattern:
            return
        if not self.event_pattern.matches_event(event):
            return
    others = []
    for target in self.targets:
        service = parse_arn(target["Arn"]).service
        if service == "lambda":
            _invoke(target, _target_input(target, event))
        elif service == "states":
            _start_execution(target, _target_input(target, event))
        else:
            others.append(target)
    if others:
        rule = copy.copy(self)
        rule.targets = others
        _send_to_targets(rule, event, transform_input)


def _is_scheduled_event(event: dict[str, Any]) -> bool:
    return event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event"


def _target_input(target: dict[str, Any], event: dict[str, Any]) -> Any:
    """``Input`` replaces the event with constant JSON; otherwise the event goes as AWS
    delivers it (moto keeps ``time`` as a number and an ``ingestion-time`` of its own)."""
    if target.get("Input"):
        return json.loads(target["Input"])
    delivered = {key: value for key, value in event.items() if key != "ingestion-time"}
    if isinstance(delivered.get("time"), int | float):
        moment = datetime.fromtimestamp(delivered["time"], UTC)
        delivered["time"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return delivered


def _invoke(target: dict[str, Any], event: Any) -> Invocation:
    arn = parse_arn(target["Arn"])
    function = lambda_backends[arn.account][arn.region].get_function(target["Arn"])
    return RUNTIME.start(function, event)


def _start_execution(target: dict[str, Any], event: Any) -> None:
    backend = stepfunctions.backend_for_arn(target["Arn"])
    backend.start_execution(target["Arn"], execution_input=json.dumps(event))


def fire_schedules(account_id: str, region: str) -> list[str]:
    """Send one "Scheduled Event" to every enabled scheduled rule; return their names."""
    fired = []
    for bus in events_backends[account_id][region].event_buses.values():
        for rule in list(bus.rules.values()):
            if not rule.scheduled_expression or rule.state != "ENABLED":
                continue
            rule.send_to_targets(_scheduled_event(rule))
            fired.append(rule.name)
    return fired


def _scheduled_event(rule: Rule) -> dict[str, Any]:
    """In moto's internal form, which its own targets expect."""
    now = time.time()
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": rule.account_id,
        "time": now,
        "region": rule.region_name,
        "resources": [rule.arn],
        "detail": {},
        "ingestion-time": now,
    }


def install() -> None:
    Rule.send_to_targets = send_to_targets
