"""``python -m runners demo``: a sample flow end to end on the embedded emulator.

It starts the emulator, deploys the sample resources, runs the worker and the
object-created handler in this process, starts an execution, lands the sample files in
the source bucket, and prints each state as it is entered and left. No AWS account,
nothing left running.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from runners import logs
from runners.demo.progress import Follower, summary_table
from runners.demo.resources import (
    MACHINES,
    SOURCE_BUCKET,
    WAIT_TABLE,
    Deployment,
    deploy,
    failure_notifications,
    sample,
)
from runners.demo.scenarios import SCENARIOS, Scenario, Upload
from runners.handlers import ons3objectcreated
from runners.local import REGION, Emulator
from runners.local.event_sources import QueueEventSource
from runners.operations import redrive
from runners.testing.background import BackgroundWorker
from runners.waits.table import WaitTable

# Long polls end after this long in the demo (AWS: 60 s), so it stops promptly.
POLL_SECONDS = 2.0
TIMEOUT_SECONDS = 50.0


def run_demo(scenario_name: str = "sales", verbose: bool = False, out: TextIO = sys.stdout) -> int:
    scenario = SCENARIOS[scenario_name]
    logs.configure("INFO" if verbose else "CRITICAL", json_output=False)

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    began = time.monotonic()
    say(f"runners demo [{scenario.name}]: {scenario.description}")
    with (
        Emulator(activity_poll_seconds=POLL_SECONDS) as aws,
        aws.environment(),
        _variable("RUNNERS_WAIT_TABLE", WAIT_TABLE),
        _variable("RUNNERS_METRICS", "off"),  # the demo's stdout is for people
    ):
        say(f"embedded AWS emulator at {aws.endpoint_url}; no AWS account needed")
        deployment = deploy(aws)
        WaitTable(WAIT_TABLE, REGION).create_table()
        scenario.behaviours(aws)
        say(
            "deployed the samples: buckets, 3 Glue jobs, 1 crawler, 1 DMS task, 1 EMR "
            f"cluster, {len(deployment.activities)} activities, {len(MACHINES)} state machines"
        )
        events = QueueEventSource(
            aws.client("sqs"), deployment.notifications_queue, ons3objectcreated.handler
        )
        with BackgroundWorker(deployment.configs) as worker, events:
            say(f"worker running: {', '.join(c.runner for c in deployment.configs)}")
            say("")
            follower = _run(aws, deployment, scenario, say)
            redriven = _recover(aws, deployment, scenario, follower, say)
        counters = (worker.summary or {}).get("runners", [])
        notified = failure_notifications(aws, deployment)
    elapsed = time.monotonic() - began
    return _report(scenario, follower, counters, notified, redriven, elapsed, say)


def _run(
    aws: Emulator, deployment: Deployment, scenario: Scenario, say: Callable[[str], None]
) -> Follower:
    sfn, s3 = aws.client("stepfunctions"), aws.client("s3")
    pending = sorted(scenario.uploads, key=lambda upload: upload.at)
    for upload in [u for u in pending if u.at < 0]:
        say(f"  before start: {_upload(s3, upload)}")
    pending = [u for u in pending if u.at >= 0]
    machine = deployment.machines[scenario.machine]
    execution = sfn.start_execution(
        stateMachineArn=machine, name=f"demo-{scenario.name}-{int(time.time())}"
    )["executionArn"]
    say(f"started {MACHINES[scenario.machine]} execution {execution.rsplit(':', 1)[-1]}")
    follower = Follower(sfn, execution)
    _follow(follower, say, lambda elapsed: _land(s3, pending, elapsed, say))
    return follower


def _follow(follower: Follower, say: Callable[[str], None], tick: Callable[[float], None]) -> None:
    started, deadline = time.monotonic(), time.monotonic() + TIMEOUT_SECONDS
    while follower.status == "RUNNING" and time.monotonic() < deadline:
        for line in follower.poll():
            say(line)
        tick(time.monotonic() - started)
        time.sleep(0.2)


def _land(s3: Any, pending: list[Upload], elapsed: float, say: Callable[[str], None]) -> None:
    while pending and elapsed >= pending[0].at:
        say(f"{elapsed:6.1f}s  {_upload(s3, pending.pop(0))}")


def _recover(
    aws: Emulator,
    deployment: Deployment,
    scenario: Scenario,
    follower: Follower,
    say: Callable[[str], None],
) -> list[redrive.Outcome]:
    """What an engineer on call does after a failed night: fix the cause, then
    ``python -m runners redrive --queue <failure queue>``."""
    if scenario.fix is None or follower.status != "FAILED":
        return []
    say("")
    say("the execution failed; its status-change event is on the failure queue")
    scenario.fix(aws)
    say("fixed the Glue job; python -m runners redrive --queue <failure queue>:")
    sqs, sfn = aws.client("sqs"), aws.client("stepfunctions")
    outcomes = redrive.Redriver(sfn).from_queue(sqs, deployment.failed_executions)
    for line in redrive.table_text(outcomes).splitlines():
        say(f"  {line}")
    say("")
    follower.status = "RUNNING"
    _follow(follower, say, lambda _elapsed: None)
    return outcomes


def _upload(s3: Any, upload: Upload) -> str:
    body = sample("data", upload.file).read_bytes()
    key = upload.key or upload.file
    s3.put_object(Bucket=SOURCE_BUCKET, Key=key, Body=body)
    return f"uploaded s3://{SOURCE_BUCKET}/{key} ({len(body):,} bytes)"


def _report(
    scenario: Scenario,
    follower: Follower,
    counters: list[dict[str, int]],
    notified: list[Any],
    redriven: list[redrive.Outcome],
    elapsed: float,
    say: Callable[[str], None],
) -> int:
    say("")
    say(f"execution {follower.status} in {follower.duration:.1f} s (demo {elapsed:.1f} s in all)")
    rows = list(follower.rows.values())
    if rows:
        say("")
        for line in summary_table(rows):
            say(line)
    say("")
    totals = {
        key: sum(c.get(key, 0) for c in counters)
        for key in ("received", "started", "succeeded", "failed", "input_errors")
    }
    say(
        f"worker: {totals['received']} tasks received, {totals['started']} jobs and waits "
        f"started, {totals['succeeded']} succeeded, {totals['failed']} failed"
    )
    if notified:
        say(f"failure notifications published: {len(notified)}")
    handled = any(row.kind == "sns" for row in rows)
    ok = follower.status == "SUCCEEDED" and handled == scenario.handled_failure
    if scenario.handled_failure and ok:
        say("a job failed and the flow handled it through its Catch path")
    if scenario.fix is not None:
        ok = ok and [o.action for o in redriven] == [redrive.Action.REDRIVEN]
        if ok:
            say("a job failed the execution; the redrive ran only what had not succeeded")
    say("try: python -m runners demo --scenario " + " | ".join(SCENARIOS))
    return 0 if ok else 1


@contextmanager
def _variable(name: str, value: str) -> Iterator[None]:
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved
