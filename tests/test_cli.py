"""``python -m runners emulator`` as a user runs it: a process, a URL, a signal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

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
