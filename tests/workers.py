"""Run the real worker against the emulator: on a background thread, or as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runners import settings
from runners.local import Emulator
from runners.settings import RunnerConfig
from runners.testing.background import BackgroundWorker
from tests.conftest import POLL_SECONDS

FAST = {
    "poll_seconds": POLL_SECONDS,
    "check_interval_seconds": 0.3,
    "heartbeat_interval_seconds": 30.0,
    "lease_seconds": 30.0,
    "clock_skew_seconds": 0.5,
}


def config(
    runner: str, activity_arn: str, table: str | None = None, **overrides: Any
) -> RunnerConfig:
    return settings.from_mapping(
        {
            "runner": runner,
            "activity_arn": activity_arn,
            "table": table or f"{runner}-tasks",
            **FAST,
            **overrides,
        }
    )


@contextmanager
def running_worker(*configs: RunnerConfig) -> Iterator[BackgroundWorker]:
    with BackgroundWorker(configs) as worker:
        yield worker


# ``python -m runners`` on a host whose wall clock is off by argv[1] seconds (NTP-synced
# hosts differ by milliseconds; this is the skew the lease margin must absorb). Patched
# before the runners are imported, so every default clock is the skewed one.
SKEWED = r"""
import sys, time
_real, skew = time.time, float(sys.argv.pop(1))
time.time = lambda: _real() + skew
from runners.cli import main
sys.exit(main(sys.argv[1:]))
"""


@contextmanager
def worker_process(
    aws: Emulator,
    tmp_path: Path,
    *configs: RunnerConfig,
    log_name: str = "worker",
    clock_ahead_seconds: float = 0.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m runners worker`` as a user runs it, pointed at the emulator."""
    paths = []
    for index, item in enumerate(configs):
        path = tmp_path / f"{log_name}-{index}.json"
        path.write_text(json.dumps(item.as_mapping()))
        paths.append(path)
    arguments = [arg for path in paths for arg in ("--config", str(path))]
    log = (tmp_path / f"{log_name}.log").open("wb")
    runners = (
        ["-m", "runners"] if not clock_ahead_seconds else ["-c", SKEWED, str(clock_ahead_seconds)]
    )
    process = subprocess.Popen(
        [sys.executable, *runners, "worker", *arguments, "--create-table"],
        env={**os.environ, **aws.client_env()},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        log.close()
