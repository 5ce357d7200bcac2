"""``runners.handlers.runner.handler``: any runner as a scheduled Lambda.

The function's ``RUNNERS_RUNNER`` variable names the runner it serves (the runner
templates set it); each invocation is one tick of that runner. The original's handler
paths (``runners.handlers.gluerunner.handler``...) serve their runner the same way.
"""

from __future__ import annotations

import os
from typing import Any

from runners.errors import ConfigError
from runners.handlers.tick import LambdaContext, lambda_tick


def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    runner = os.environ.get("RUNNERS_RUNNER")
    if not runner:
        raise ConfigError("RUNNERS_RUNNER: name the runner this function serves")
    return lambda_tick(runner, context)
