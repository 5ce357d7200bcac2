"""What the reliability suite attacks with and how it keeps score.

The score is kept on the emulator's side, from the calls it serves: a ``Ledger`` counts
every accepted job start per task (Glue: the run's task-key argument; Athena and
Redshift: the ``ClientRequestToken`` / ``ClientToken``; EMR Serverless: the
``clientToken``; EMR steps: the task key that ends the step's name; crawler: the crawl;
DMS: the replication task, one execution per task) and every accepted task report per
task token. Nothing in production code is hooked.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runners.local import Call, Emulator, RunBehaviour
from runners.services.emrstep import task_marker
from runners.services.glue import TASK_KEY_ARGUMENT
from runners.settings import RunnerConfig
from runners.waits.table import WaitTable
from tests.engine.test_end_to_end import glue_job
from tests.helpers import TERMINAL, create_machine
from tests.local.test_dms import create_task
from tests.local.test_emr import make_cluster
from tests.services.test_emrserverless import ROLE, application
from tests.workers import config, worker_process

# Long enough that a healthy worker never misses it, short enough that a task lost in
# the one unavoidable window (polled, not stored) comes back quickly through Retry.
HEARTBEAT_SECONDS = 8
LEASE_SECONDS = 3.0
# The task key at the end of an EMR step's name.
_STEP_KEY = re.compile(re.escape(task_marker("KEY")).replace("KEY", "([0-9a-f]{64})") + "$")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


class Ledger:
    """Accepted job starts per task and accepted reports per task token."""

    def __init__(self, aws: Emulator) -> None:
        self._lock = threading.Lock()
        self.starts: Counter[str] = Counter()
        self.reports: Counter[str] = Counter()
        self.refused_reports = 0
        aws.faults.on_call("states:SendTaskSuccess", self._report)
        aws.faults.on_call("states:SendTaskFailure", self._report)
        aws.faults.on_call("glue:StartJobRun", self._glue_start)
        aws.faults.on_call("athena:StartQueryExecution", self._athena_start)
        aws.faults.on_call("glue:StartCrawler", self._crawl_start)
        aws.faults.on_call("redshift-data:ExecuteStatement", self._redshift_start)
        aws.faults.on_call("emr-serverless:StartJobRun", self._emrserverless_start)
        aws.faults.on_call("elasticmapreduce:AddJobFlowSteps", self._emr_step_start)
        aws.faults.on_call("dms:StartReplicationTask", self._dms_start)
        self._run_ids: dict[str, set[str]] = {}

    def _report(self, call: Call) -> None:
        with self._lock:
            if call.status == 200:
                self.reports[digest(call.json()["taskToken"])] += 1
            else:
                self.refused_reports += 1

    def _glue_start(self, call: Call) -> None:
        if call.status == 200:
            key = call.json().get("Arguments", {}).get(TASK_KEY_ARGUMENT, "?")
            with self._lock:
                self.starts[key] += 1

    def _athena_start(self, call: Call) -> None:
        if call.status == 200:
            self._idempotent_start(
                call.json().get("ClientRequestToken", "?"),
                call.response_json()["QueryExecutionId"],
            )

    def _redshift_start(self, call: Call) -> None:
        if call.status == 200:
            self._idempotent_start(call.json().get("ClientToken", "?"), call.response_json()["Id"])

    def _emrserverless_start(self, call: Call) -> None:
        if call.status == 200:
            self._idempotent_start(
                call.json().get("clientToken", "?"), call.response_json()["jobRunId"]
            )

    def _idempotent_start(self, token: str, run_id: str) -> None:
        """A start repeated with a token answers the first run: count distinct runs."""
        with self._lock:
            ids = self._run_ids.setdefault(token, set())
            if run_id not in ids:
                ids.add(run_id)
                self.starts[token] += 1

    def _emr_step_start(self, call: Call) -> None:
        if call.status == 200:
            with self._lock:
                for step in call.json().get("Steps", []):
                    found = _STEP_KEY.search(step.get("Name", ""))
                    self.starts[found.group(1) if found else "?"] += 1

    def _dms_start(self, call: Call) -> None:
        if call.status == 200:
            with self._lock:
                self.starts[f"dms:{call.json()['ReplicationTaskArn']}"] += 1

    def _crawl_start(self, call: Call) -> None:
        if call.status == 200:
            with self._lock:
                self.starts[f"crawl:{call.json()['Name']}"] += 1

    @property
    def jobs_started(self) -> int:
        return self.starts.total()

    @property
    def duplicated_starts(self) -> int:
        return sum(count - 1 for count in self.starts.values() if count > 1)

    @property
    def reported(self) -> int:
        return len(self.reports)

    @property
    def duplicated_reports(self) -> int:
        return sum(count - 1 for count in self.reports.values() if count > 1)


@dataclass
class Flow:
    """One runner's activity, the resources its tasks use, and how to start a task."""

    runner: str
    activity: str
    task_input: Callable[[int], dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)

    def config(self, **overrides: Any) -> RunnerConfig:
        settings = {
            "lease_seconds": LEASE_SECONDS,
            "heartbeat_interval_seconds": 2.0,
            "check_interval_seconds": 0.3,
            **self.extra,
            **overrides,
        }
        return config(self.runner, self.activity, **settings)


TaskInput = Callable[[int], dict[str, Any]]
Resources = tuple[TaskInput, dict[str, Any]]  # a task's input by n, the worker's options


def make_flow(aws: Emulator, runner: str, job_seconds: float = 1.5) -> Flow:
    """Resources for ``runner``'s tasks: jobs that take ``job_seconds`` and succeed."""
    sfn = aws.client("stepfunctions")
    activity = sfn.create_activity(name=f"{runner}-activity")["activityArn"]
    task_input, extra = RESOURCES[runner](aws, RunBehaviour(duration=job_seconds))
    return Flow(runner, activity, task_input, extra)


def _glue(aws: Emulator, behaviour: RunBehaviour) -> Resources:
    glue_job(aws, "Nightly", behaviour, max_concurrent=1000)
    return lambda n: {"GlueJobName": "Nightly", "Arguments": {"--n": str(n)}}, {}


def _athena(aws: Emulator, behaviour: RunBehaviour) -> Resources:
    aws.athena_queries.default = behaviour
    return lambda n: {
        "AthenaQueryString": f"SELECT {n}",
        "AthenaDatabase": "sales",
        "AthenaResultOutputLocation": "s3://results/",
    }, {}


def _crawler(aws: Emulator, behaviour: RunBehaviour) -> Resources:
    glue = aws.client("glue")
    aws.glue_crawls.default = behaviour

    def crawler_input(n: int) -> dict[str, Any]:
        name = f"crawler-{n}"
        glue.create_crawler(
            Name=name,
            Role="arn:aws:iam::123456789012:role/Glue",
            DatabaseName="sales",
            Targets={"S3Targets": [{"Path": f"s3://data/{n}/"}]},
        )
        return {"CrawlerName": name}

    return crawler_input, {}


def _s3wait(aws: Emulator, behaviour: RunBehaviour) -> Resources:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="landing")
    WaitTable("Waits", "us-east-1").create_table()

    def wait_input(n: int) -> dict[str, Any]:
        s3.put_object(Bucket="landing", Key=f"in/{n}.csv", Body=b"day\n")
        return {"S3BucketName": "landing", "S3Key": f"in/{n}.csv"}

    return wait_input, {"wait_table": "Waits", "wait_bucket": "landing"}


def _redshift(aws: Emulator, behaviour: RunBehaviour) -> Resources:
    aws.redshift_statements.default = behaviour
    return lambda n: {"Sql": f"SELECT {n}", "WorkgroupName": "etl", "Database": "dev"}, {}


def _emrstep(aws: Emulator, behaviour: RunBehaviour) -> Resources:
    aws.emr_steps.default = behaviour
    # A cluster runs one step at a time by default: concurrent tasks must not queue.
    cluster_id = make_cluster(aws.client("emr"), StepConcurrencyLevel=256)
    return lambda n: {"ClusterId": cluster_id, "StepName": f"etl-{n}", "Args": ["etl", str(n)]}, {}


def _emrserverless(aws: Emulator, behaviour: RunBehaviour) -> Resources:
    aws.emrserverless_runs.default = behaviour
    application_id = application(aws)
    return lambda n: {
        "ApplicationId": application_id,
        "ExecutionRoleArn": ROLE,
        "JobDriver": {"sparkSubmit": {"entryPoint": f"s3://scripts/etl-{n}.py"}},
        "Name": f"etl-{n}",
    }, {}


def _dms(aws: Emulator, behaviour: RunBehaviour) -> Resources:
    aws.dms_tasks.default = behaviour
    dms = aws.client("dms")
    # A run is one start of a replication task: one full-load task per execution.
    return lambda n: {"ReplicationTaskArn": create_task(dms, f"load-{n}")}, {}


RESOURCES: dict[str, Callable[[Emulator, RunBehaviour], Resources]] = {
    "glue": _glue,
    "athena": _athena,
    "crawler": _crawler,
    "s3wait": _s3wait,
    "redshift": _redshift,
    "emrstep": _emrstep,
    "emrserverless": _emrserverless,
    "dms": _dms,
}
RUNNERS = tuple(RESOURCES)


def machine(
    aws: Emulator, flow: Flow, name: str = "attacked", heartbeat_seconds: int = HEARTBEAT_SECONDS
) -> str:
    """One activity task that heartbeats and retries a lost task, as the samples do."""
    work = {
        "Type": "Task",
        "Resource": flow.activity,
        "HeartbeatSeconds": heartbeat_seconds,
        "TimeoutSeconds": 600,
        "Retry": [
            {
                "ErrorEquals": ["States.Timeout", "States.HeartbeatTimeout"],
                "IntervalSeconds": 1,
                "MaxAttempts": 3,
                "BackoffRate": 1.0,
            }
        ],
        "End": True,
    }
    return create_machine(
        aws.client("stepfunctions"), name, {"StartAt": "Work", "States": {"Work": work}}
    )


def start_executions(aws: Emulator, flow: Flow, machine_arn: str, count: int) -> list[str]:
    sfn = patient_client(aws, "stepfunctions")
    return [
        sfn.start_execution(stateMachineArn=machine_arn, input=json.dumps(flow.task_input(n)))[
            "executionArn"
        ]
        for n in range(count)
    ]


def patient_client(aws: Emulator, service: str) -> Any:
    """The test's own client, which rides out the faults aimed at the workers."""
    return aws.client(service, retries={"mode": "standard", "max_attempts": 40})


def wait_all(aws: Emulator, executions: list[str], timeout: float) -> dict[str, str]:
    """Wait for every execution to end; return each one's status."""
    sfn = patient_client(aws, "stepfunctions")
    pending = set(executions)
    statuses: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for arn in list(pending):
            status = sfn.describe_execution(executionArn=arn)["status"]
            if status in TERMINAL:
                statuses[arn] = status
                pending.discard(arn)
        if pending:
            time.sleep(0.2)
    statuses.update(dict.fromkeys(pending, "RUNNING"))
    return statuses


def kill_when(process: Any, predicate: Callable[[Call], bool]) -> Callable[[Call], None]:
    """An after-call hook: SIGKILL the worker once, right after the first call the
    predicate picks was served (the worker never reads the response)."""
    fired = threading.Event()

    def hook(call: Call) -> None:
        if not fired.is_set() and predicate(call):
            fired.set()
            os.kill(process.pid, signal.SIGKILL)

    return hook


@contextmanager
def workers(
    aws: Emulator,
    tmp_path: Path,
    *configs: RunnerConfig,
    count: int = 1,
    name: str = "worker",
    clock_ahead_seconds: float = 0.0,
) -> Iterator[list[Any]]:
    with ExitStack() as stack:
        yield [
            stack.enter_context(
                worker_process(
                    aws,
                    tmp_path,
                    *configs,
                    log_name=f"{name}-{n}",
                    clock_ahead_seconds=clock_ahead_seconds,
                )
            )
            for n in range(count)
        ]


def logs_hold_no_token(aws: Emulator, tmp_path: Path) -> bool:
    text = "".join(path.read_text(errors="replace") for path in tmp_path.glob("*.log"))
    return not any(token in text for token in aws.issued_task_tokens())


# A scheduled Lambda's tick in its own process, with the context Lambda passes it.
TICK = r"""
import json, os, sys, time
request_id, timeout = sys.argv[1], float(sys.argv[2])
deadline = time.time() + timeout

class Context:
    aws_request_id = request_id

    def get_remaining_time_in_millis(self):
        return max(0, int((deadline - time.time()) * 1000))

from runners.handlers.runner import handler
summary = handler({"source": "aws.events", "detail-type": "Scheduled Event"}, Context())
print("TICK SUMMARY " + json.dumps(summary), flush=True)
# The invocation ends when the handler returns: Lambda's runtime does not wait for the
# threads a call that never answered left behind.
os._exit(0)
"""


class Tick:
    """One invocation: killed (SIGKILL) at its timeout, as Lambda ends a function that
    runs past it ("Task timed out")."""

    def __init__(
        self, process: subprocess.Popen[bytes], log_path: Path, timeout_seconds: float
    ) -> None:
        self.process, self.log_path, self.timeout_seconds = process, log_path, timeout_seconds
        self.timed_out = False
        self.timer = threading.Timer(timeout_seconds, self._time_out)
        self.timer.start()

    def _time_out(self) -> None:
        if self.process.poll() is None:
            self.timed_out = True
            self.process.kill()

    def wait(self) -> int:
        code = self.process.wait(timeout=self.timeout_seconds + 30)
        self.timer.cancel()
        return code

    def end(self) -> None:
        self.timer.cancel()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)

    def summary(self) -> dict[str, Any] | None:
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("TICK SUMMARY "):
                found: dict[str, Any] = json.loads(line.removeprefix("TICK SUMMARY "))
                return found
        return None


def start_tick(
    aws: Emulator, tmp_path: Path, config: RunnerConfig, name: str, timeout_seconds: float = 20.0
) -> Tick:
    """``runners.handlers.runner.handler`` invoked as EventBridge's schedule invokes it."""
    config_path = tmp_path / f"{name}.json"
    config_path.write_text(json.dumps(config.as_mapping()))
    log_path = tmp_path / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", TICK, name, str(timeout_seconds)],
            env={
                **os.environ,
                **aws.client_env(),
                "RUNNERS_RUNNER": config.runner,
                "RUNNERS_CONFIG_FILE": str(config_path),
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Tick(process, log_path, timeout_seconds)


@contextmanager
def ticks(aws: Emulator, tmp_path: Path) -> Iterator[Callable[..., Tick]]:
    """Start ticks with the returned function; every one is ended on the way out."""
    started: list[Tick] = []

    def start(config: RunnerConfig, name: str, timeout_seconds: float = 20.0) -> Tick:
        tick = start_tick(aws, tmp_path, config, name, timeout_seconds)
        started.append(tick)
        return tick

    try:
        yield start
    finally:
        for tick in started:
            tick.end()


def ticks_until_done(
    start: Callable[..., Tick],
    config: RunnerConfig,
    aws: Emulator,
    executions: list[str],
    timeout: float,
    prefix: str = "tick",
) -> dict[str, str]:
    """Invoke one tick after another (a schedule whose ticks never overlap) until every
    execution has ended or ``timeout`` has passed."""
    deadline = time.monotonic() + timeout
    number = 0
    statuses = statuses_now(aws, executions)
    while time.monotonic() < deadline and "RUNNING" in statuses.values():
        number += 1
        start(config, f"{prefix}-{number}").wait()
        statuses = statuses_now(aws, executions)
    return statuses


def statuses_now(aws: Emulator, executions: list[str]) -> dict[str, str]:
    sfn = patient_client(aws, "stepfunctions")
    return {arn: sfn.describe_execution(executionArn=arn)["status"] for arn in executions}
