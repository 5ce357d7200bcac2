"""Builds engines from configs: clients, stores and runners, closed together.

Clients honour the standard ``AWS_ENDPOINT_URL`` variables through botocore; nothing
here knows about the embedded emulator.
"""

from __future__ import annotations

import inspect
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from runners.engine.activity import ActivityChannel
from runners.engine.completions import LONG_POLL_SECONDS, CompletionQueue
from runners.engine.definition import RunnerContext, SdkRetries
from runners.engine.engine import CONCURRENCY, Engine
from runners.engine.metrics import watch_throttling
from runners.engine.runner import Runner
from runners.engine.store import DynamoStore, create_job_table
from runners.settings import RunnerConfig

# Short-call clients: fail fast and let the engine's retry policy decide.
_CALL_TIMEOUTS = {"connect_timeout": 5, "read_timeout": 20}
# A runner whose starts carry no idempotency token gets clients that never resend (its
# definition says "none"): the engine retries its calls itself, searching first.
SDK_RETRIES: dict[SdkRetries, dict[str, Any]] = {
    "standard": {"mode": "standard", "max_attempts": 3},
    "none": {"mode": "standard", "total_max_attempts": 1},
}


def worker_identity(worker_name: str, instance: str | None = None) -> str:
    """Who owns a lease: unique per process (or per Lambda invocation)."""
    instance = instance or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return f"{worker_name}@{instance}"


class _Clients:
    def __init__(self, stack: AsyncExitStack) -> None:
        self._stack = stack
        self._session = get_session()
        self._cache: dict[tuple[str, str, str], Any] = {}

    async def get(self, service: str, region: str, purpose: str = "calls", **config: Any) -> Any:
        key = (service, region, purpose)
        if key not in self._cache:
            settings = {
                **_CALL_TIMEOUTS,
                "retries": SDK_RETRIES["standard"],
                "max_pool_connections": CONCURRENCY + 4,
                **config,
            }
            client = await self._stack.enter_async_context(
                self._session.create_client(  # type: ignore[call-overload]
                    service, region_name=region, config=AioConfig(**settings)
                )
            )
            watch_throttling(client.meta.events)
            self._cache[key] = client
        return self._cache[key]


async def _runner(
    config: RunnerConfig, clients: _Clients, stack: AsyncExitStack, create_tables: bool
) -> Runner[Any]:
    definition = config.definition
    retries = SDK_RETRIES[definition.sdk_retries]

    async def client(service: str) -> Any:
        purpose = f"retries:{definition.sdk_retries}"
        return await clients.get(service, config.region, purpose, retries=retries)

    def at_close(close: Callable[[], Any]) -> None:
        stack.push_async_callback(_finish, close)

    context = RunnerContext(config, config.options, client, at_close, create_tables)
    return await definition.build(context)


async def _finish(close: Callable[[], Any]) -> None:
    """Run a runner's clean-up, awaiting it if it is a coroutine (an HTTP session)."""
    result = close()
    if inspect.isawaitable(result):
        await result


async def _completions(
    config: RunnerConfig, runner: Runner[Any], clients: _Clients
) -> CompletionQueue | None:
    if not config.completion_queue_url:
        return None
    sqs = await clients.get(
        "sqs", config.region, "completions", read_timeout=LONG_POLL_SECONDS + 10
    )
    return CompletionQueue(sqs, config.completion_queue_url, runner)


@asynccontextmanager
async def open_engines(
    configs: Sequence[RunnerConfig],
    owner_instance: str | None = None,
    create_tables: bool = False,
) -> AsyncIterator[list[Engine[Any]]]:
    async with AsyncExitStack() as stack:
        clients = _Clients(stack)
        engines: list[Engine[Any]] = []
        for config in configs:
            polls = await clients.get(
                "stepfunctions",
                config.region,
                f"polls:{config.activity_arn}",
                read_timeout=config.poll_seconds + 10,
                max_pool_connections=config.pollers + 2,
            )
            calls = await clients.get("stepfunctions", config.region)
            store = DynamoStore(
                config.table,
                config.region,
                retention_seconds=config.retention_days * 86_400,
                client=await clients.get("dynamodb", config.region),
                page_size=config.page_size,
            )
            if create_tables:
                create_job_table(config.table, config.region)
            store.verify(f"the {config.runner} runner's job table")
            runner = await _runner(config, clients, stack, create_tables)
            engines.append(
                Engine(
                    config,
                    runner,
                    ActivityChannel(polls, calls, config.activity_arn, config.worker_name),
                    store,
                    worker_identity(config.worker_name, owner_instance),
                    completions=await _completions(config, runner, clients),
                )
            )
        yield engines
