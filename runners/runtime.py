"""Builds engines from configs: clients, stores and runners, closed together.

Clients honour the standard ``AWS_ENDPOINT_URL`` variables through botocore; nothing
here knows about the embedded emulator.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from runners.engine.activity import ActivityChannel
from runners.engine.engine import CONCURRENCY, Engine
from runners.engine.runner import Runner
from runners.engine.store import DynamoStore
from runners.services.athena import AthenaQueryRunner
from runners.services.crawler import GlueCrawlerRunner
from runners.services.glue import GlueJobRunner
from runners.services.s3wait import S3WaitRunner, WaitRule
from runners.settings import RunnerConfig
from runners.waits.table import WaitTable

# Short-call clients: fail fast and let the engine's retry policy decide.
_CALL_TIMEOUTS = {"connect_timeout": 5, "read_timeout": 20}
_SDK_RETRIES = {"mode": "standard", "max_attempts": 3}
# Glue's starts carry no idempotency token: an SDK resend after a lost answer would start
# a second run. The engine retries Glue calls itself, searching before any new start.
_NO_SDK_RETRIES = {"mode": "standard", "total_max_attempts": 1}


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
                "retries": _SDK_RETRIES,
                "max_pool_connections": CONCURRENCY + 4,
                **config,
            }
            self._cache[key] = await self._stack.enter_async_context(
                self._session.create_client(  # type: ignore[call-overload]
                    service, region_name=region, config=AioConfig(**settings)
                )
            )
        return self._cache[key]


async def _runner(config: RunnerConfig, clients: _Clients, create_tables: bool) -> Runner[Any]:
    if config.runner == "glue":
        glue = await clients.get("glue", config.region, retries=_NO_SDK_RETRIES)
        return GlueJobRunner(glue, config.glue_job_capacity)
    if config.runner == "crawler":
        return GlueCrawlerRunner(await clients.get("glue", config.region, retries=_NO_SDK_RETRIES))
    if config.runner == "athena":
        return AthenaQueryRunner(
            await clients.get("athena", config.region),
            default_output_location=config.athena_output_location,
            default_workgroup=config.athena_workgroup,
        )
    assert config.wait_table is not None  # RunnerConfig checks it
    waits = WaitTable(config.wait_table, config.region)
    if create_tables:
        waits.create_table()
    return S3WaitRunner(
        await clients.get("s3", config.region),
        waits,
        config.activity_arn,
        config.table,
        WaitRule(config.wait_bucket, config.wait_prefix, config.wait_suffix, config.wait_glob),
        config.wait_max_age_seconds,
    )


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
                page_size=config.page_size,
            )
            stack.callback(store.close)
            if create_tables:
                store.create_table()
            engines.append(
                Engine(
                    config,
                    await _runner(config, clients, create_tables),
                    ActivityChannel(polls, calls, config.activity_arn, config.worker_name),
                    store,
                    worker_identity(config.worker_name, owner_instance),
                )
            )
        yield engines
