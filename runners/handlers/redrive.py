"""``runners.handlers.redrive.handler``: the scheduled redrive of failed executions.

Each invocation takes the failures queued on the failure queue, redrives each one that
can be redriven, starts the others again with the same input, and returns what it did
(see ``runners.operations.redrive``: it never acts twice on one failure).

Configuration: ``RUNNERS_FAILURE_QUEUE_URL``, ``RUNNERS_MAX_REDRIVES`` (default 1),
``RUNNERS_REDRIVE_DRY_RUN`` (``true``: only report), ``RUNNERS_REDRIVE_ABORTED``
(``true``: redrive ABORTED executions too), ``AWS_REGION``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from runners import logs
from runners.errors import ConfigError
from runners.operations.redrive import MAX_REDRIVES, Action, Redriver, clients


def handler(event: Any, context: Any, environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    logs.configure_once(environ.get("RUNNERS_LOG_LEVEL", "INFO"), json_output=True)
    queue = environ.get("RUNNERS_FAILURE_QUEUE_URL")
    if not queue:
        raise ConfigError("RUNNERS_FAILURE_QUEUE_URL is not set")
    try:
        max_redrives = int(environ.get("RUNNERS_MAX_REDRIVES", MAX_REDRIVES))
    except ValueError as error:
        raise ConfigError(f"RUNNERS_MAX_REDRIVES: {error}") from error
    dry_run = _flag(environ, "RUNNERS_REDRIVE_DRY_RUN")
    aborted = _flag(environ, "RUNNERS_REDRIVE_ABORTED")
    sfn, sqs = clients(environ.get("AWS_REGION"))
    outcomes = Redriver(sfn, max_redrives, dry_run, aborted).from_queue(sqs, queue)
    counts = {action.value: sum(o.action is action for o in outcomes) for action in Action}
    return {"dry_run": dry_run, **counts, "outcomes": [o.as_dict() for o in outcomes]}


def _flag(environ: Mapping[str, str], name: str) -> bool:
    value = environ.get(name, "false").strip().lower()
    if value not in ("true", "false"):
        raise ConfigError(f"{name}: true or false, not {value!r}")
    return value == "true"
