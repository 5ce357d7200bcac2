"""Completion events in Lambda mode: the runner's function, invoked by its completion
queue's event source mapping, completes the tasks whose jobs the events say ended.

The scheduled ticks hold no task between invocations (they release their leases), so
the task an event names is taken from the job table, checked, reported and closed
here; one whose job is not over yet (as the service says) is released for the next
tick. Messages to try again are returned as ``batchItemFailures`` (the mapping needs
``ReportBatchItemFailures``), after their visibility is shortened to a few seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from runners import logs, settings
from runners.engine import completions
from runners.engine.completions import QueuedEvent
from runners.handlers.tick import LambdaContext
from runners.runtime import open_engines


def is_queue_event(event: Any) -> bool:
    records = event.get("Records") if isinstance(event, Mapping) else None
    return (
        isinstance(records, list)
        and bool(records)
        and all(isinstance(r, Mapping) and r.get("eventSource") == "aws:sqs" for r in records)
    )


def lambda_completions(
    runner: str,
    event: Mapping[str, Any],
    context: LambdaContext,
    environ: Mapping[str, str] = os.environ,
) -> dict[str, Any]:
    logs.configure_once(environ.get("RUNNERS_LOG_LEVEL", "INFO"), json_output=True)
    configs = settings.from_environment(runner, environ)
    return asyncio.run(_complete(configs, event["Records"], f"lambda:{context.aws_request_id}"))


async def _complete(
    configs: list[settings.RunnerConfig], records: list[Mapping[str, Any]], instance: str
) -> dict[str, Any]:
    # Only the engine is wanted here, not a worker: completion_queue_url would make the
    # engine's queue a client of its own; the mapping receives for this function.
    configs = [_without_queue(config) for config in configs]
    async with open_engines(configs, owner_instance=instance) as engines:
        engine = engines[0]  # any engine of the runner can take and report its tasks
        events = [
            completions.read(
                engine.runner,
                str(record.get("messageId", "")),
                str(record.get("receiptHandle", "")),
                str(record.get("body", "")),
                int(record.get("attributes", {}).get("ApproximateReceiveCount", "1")),
            )
            for record in records
        ]
        try:
            _done, later = await completions.handle(engine, events)
        finally:
            await engine.release()  # what is not over yet goes back to the ticks
            engine.flush_metrics()
    return {"batchItemFailures": [{"itemIdentifier": e.id} for e in later], **_summary(events)}


def _without_queue(config: settings.RunnerConfig) -> settings.RunnerConfig:
    return dataclasses.replace(config, completion_queue_url="", completion_events=True)


def _summary(events: list[QueuedEvent]) -> dict[str, int]:
    return {"events": len(events), "naming_jobs": sum(e.key is not None for e in events)}
