"""``runners.handlers.runner.handler``: any runner as a scheduled Lambda.

The function's ``RUNNERS_RUNNER`` variable names the runner it serves (the runner
templates set it); each scheduled invocation is one tick of that runner, and one by its
completion queue (SQS records) completes the tasks the events name. The original's handler
paths (``runners.handlers.gluerunner.handler``...) serve their runner the same way.
"""

from __future__ import annotations

import os
from typing import Any

from runners.errors import ConfigError
from runners.handlers.completions import is_queue_event, lambda_completions
from runners.handlers.tick import LambdaContext, lambda_tick


def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    runner = os.environ.get("RUNNERS_RUNNER")
    if not runner:
        raise ConfigError("RUNNERS_RUNNER: name the runner this function serves")
    if is_queue_event(event):
        return lambda_completions(runner, event, context)
    return lambda_tick(runner, context)
