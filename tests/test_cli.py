"""``python -m runners emulator`` as a user runs it: a process, a URL, a signal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest

from tests.helpers import wait_until


@contextmanager
def emulator_process(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "runners", "emulator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield process, process.stdout.readline().strip()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def reachable(endpoint: str) -> bool:
    sfn = boto3.client(
        "stepfunctions",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    return "activities" in sfn.list_activities()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_prints_its_endpoint_first_and_exits_cleanly(stop_signal: signal.Signals) -> None:
    with emulator_process() as (process, first_line):
        assert first_line.startswith("http://127.0.0.1:")
        assert reachable(first_line)

        process.send_signal(stop_signal)

        assert process.wait(timeout=10) == 0
    with socket.socket() as probe:
        port = int(first_line.rsplit(":", 1)[1])
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_serves_on_the_requested_port_through_aws_endpoint_url() -> None:
    port = free_port()
    with emulator_process("--port", str(port)) as (process, endpoint):
        assert endpoint == f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        created = subprocess.run(
            [
                sys.executable,
                "-c",
                "import boto3; print(boto3.client('stepfunctions')"
                ".create_activity(name='viaenv')['activityArn'])",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert created.stdout.strip().endswith(":activity:viaenv")
        process.terminate()
        assert wait_until(lambda: process.poll() is not None, timeout=10)
        assert process.returncode == 0


def test_fires_scheduled_rules_on_the_period_asked_for() -> None:
    """``--fire-schedules`` stands in for EventBridge's clock when rehearsing a
    deployment: each scheduled rule's targets receive a "Scheduled Event"."""
    with emulator_process("--fire-schedules", "0.2") as (process, endpoint):
        options: dict[str, Any] = {
            "endpoint_url": endpoint,
            "region_name": "us-east-1",
            "aws_access_key_id": "x",
            "aws_secret_access_key": "x",
        }
        sqs, events = boto3.client("sqs", **options), boto3.client("events", **options)
        queue = sqs.create_queue(QueueName="ticks")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
        events.put_rule(Name="every-minute", ScheduleExpression="rate(1 minute)")
        events.put_targets(
            Rule="every-minute", Targets=[{"Id": "q", "Arn": arn["Attributes"]["QueueArn"]}]
        )
        message = wait_until(lambda: sqs.receive_message(QueueUrl=queue).get("Messages"))
        assert '"Scheduled Event"' in message[0]["Body"]
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_the_worker_command_never_loads_the_emulator() -> None:
    """moto (the demo's and the emulator's) would triple a worker's memory: the worker
    command must not import it, even to list the demo's scenarios."""
    code = (
        "import sys\n"
        "from runners.cli import main\n"
        "code = main(['worker', '--config', '/nonexistent/gluerunner-config.json'])\n"
        "print(code, sorted({m.split('.')[0] for m in sys.modules} & {'moto', 'runners'}))\n"
        "print(sorted(m for m in sys.modules if m.startswith(('runners.local', 'runners.demo'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )

    assert result.stdout.splitlines() == ["2 ['runners']", "[]"]
    assert "configuration error" in result.stderr
