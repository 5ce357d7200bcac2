"""One bounded tick of a runner per scheduled Lambda invocation.

The tick claims tasks earlier ticks left (their leases are released at the end of each
tick), checks and reports them, polls for new tasks while a whole long poll still fits
in the remaining time, and returns a summary of what it did.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import Any, Protocol

from runners import logs, settings
from runners.engine.worker import Worker
from runners.runtime import open_engines

# Stop this long before Lambda's own timeout, to release leases and return.
SAFETY_SECONDS = 10.0
# Shutdown must end before Lambda's timeout does: past this, the tick leaves what it holds
# to lease expiry (and says so) rather than be killed in the middle of a write.
SHUTDOWN_GRACE_SECONDS = SAFETY_SECONDS - 2.0


class LambdaContext(Protocol):
    aws_request_id: str

    def get_remaining_time_in_millis(self) -> int: ...


def lambda_tick(
    runner: str, context: LambdaContext, environ: Mapping[str, str] = os.environ
) -> dict[str, Any]:
    logs.configure_once(environ.get("RUNNERS_LOG_LEVEL", "INFO"), json_output=True)
    configs = settings.from_environment(runner, environ)
    remaining = context.get_remaining_time_in_millis() / 1000
    deadline = time.time() + remaining - SAFETY_SECONDS
    return asyncio.run(_tick(configs, deadline, f"lambda:{context.aws_request_id}"))


async def _tick(
    configs: list[settings.RunnerConfig], deadline: float, instance: str
) -> dict[str, Any]:
    async with open_engines(configs, owner_instance=instance) as engines:
        worker = Worker(engines, shutdown_grace_seconds=SHUTDOWN_GRACE_SECONDS)
        return await worker.run(asyncio.Event(), deadline)
