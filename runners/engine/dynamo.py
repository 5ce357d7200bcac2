"""What every DynamoDB table of the project shares: binding a PynamoDB model to a table,
creating and checking it, reading a failed condition, and keeping PynamoDB off the event
loop.

The job store and the wait table both stand on this; the PynamoDB models stay the one
schema of each table. (The job store, written four times a task, sends the requests its
model builds through aiobotocore on the loop; the wait table calls PynamoDB on a thread
bridge.)
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar, cast

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from pynamodb.exceptions import DeleteError, PutError, TableError, UpdateError
from pynamodb.models import Model

from runners.errors import ConfigError
from runners.retry import RETRIES, error_code, retry_sync

T = TypeVar("T")
M = TypeVar("M", bound=Model)
CONDITION_FAILED = "ConditionalCheckFailedException"

_bound: dict[tuple[type[Model], str, str], type[Model]] = {}
_bound_lock = threading.Lock()
_verified: set[type[Model]] = set()  # tables found right once: a warm Lambda skips them


def bind(model: type[M], table: str, region: str) -> type[M]:
    """The model bound to one table in one region. PynamoDB binds tables per model
    class; each binding is made once per process, however often it is asked for."""
    key = (model, table, region)
    with _bound_lock:
        if key not in _bound:
            base = cast(type, model.Meta)
            meta = type("Meta", (base,), {"table_name": table, "region": region})
            _bound[key] = type(
                f"{model.__name__}_{table}",
                (model,),
                {"Meta": meta, "__module__": model.__module__},
            )
        bound: type[M] = _bound[key]  # type: ignore[assignment]
        return bound


def ensure_table(model: type[Model]) -> None:
    """Create a model's table with its TTL unless it exists. Idempotent and patient:
    another worker may create it at the same moment, and a create whose answer was lost
    (retried by the SDK) has still created it."""

    def create() -> None:
        if model.exists():
            return
        try:
            model.create_table(wait=True)
        except TableError as error:
            if error_code(error) != "ResourceInUseException":
                raise
        model.update_ttl(ignore_update_ttl_errors=True)

    retry_sync(create, RETRIES.setup)


def verify_table(model: type[Model], role: str) -> None:
    """Check that the table this version needs is there, before any task depends on it:
    its key, its indexes and its TTL. A mismatch is a ``ConfigError`` naming the table,
    what was found and what to do (a task stored in a wrong table would be lost).
    ``role`` says what the table is for ("the glue runner's job table")."""
    if model in _verified:
        return
    table, region = model.Meta.table_name, str(model.Meta.region)
    where = f"{role} {table} ({region})"
    found, ttl = _describe(table, region, where)
    schema: Any = model._get_schema()  # PynamoDB's view of the model: the one schema
    wanted_keys = _keys(schema["key_schema"])
    keys = _keys(found.get("KeySchema", []))
    if keys != wanted_keys:
        if "sfn_activity_arn" in keys:
            raise ConfigError(
                f"{where}: this is the original sample's table (key {_shown(keys)}); "
                "give the runner a new table name (its stack or --create-table makes it)"
            )
        raise ConfigError(
            f"{where}: its key is {_shown(keys)}, this version needs {_shown(wanted_keys)}; "
            "give the runner a table of its own"
        )
    indexes = {
        i["IndexName"]: _keys(i["KeySchema"]) for i in found.get("GlobalSecondaryIndexes", [])
    }
    for index in schema["global_secondary_indexes"]:
        name, wanted = index["index_name"], _keys(index["key_schema"])
        if indexes.get(name) != wanted:
            raise ConfigError(
                f"{where}: it has no index {name} ({_shown(wanted)}); "
                "recreate it from the runner's stack, or give the runner a new table name"
            )
    attribute = model._ttl_attribute()  # type: ignore[no-untyped-call]
    if attribute is not None and (
        ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING")
        or ttl.get("AttributeName") != attribute.attr_name
    ):
        raise ConfigError(
            f"{where}: TTL is not on {attribute.attr_name} (found "
            f"{ttl.get('TimeToLiveStatus', 'DISABLED')} {ttl.get('AttributeName', '')}); "
            f"enable it, or finished records are kept forever"
        )
    _verified.add(model)


_CHECK_CLIENT = Config(
    connect_timeout=5, read_timeout=20, retries={"mode": "standard", "max_attempts": 3}
)


def _describe(table: str, region: str, where: str) -> tuple[Any, Any]:
    # The short-call clients' timeouts and retries (runners.runtime), not boto3's
    # defaults (60 s timeouts, five attempts), so the setup budget means what it says.
    client = boto3.client("dynamodb", region_name=region, config=_CHECK_CLIENT)
    try:
        found = retry_sync(lambda: client.describe_table(TableName=table), RETRIES.setup)["Table"]
        ttl = retry_sync(lambda: client.describe_time_to_live(TableName=table), RETRIES.setup)
    except ClientError as error:
        code = error_code(error)
        if code == "ResourceNotFoundException":
            raise ConfigError(
                f"{where}: no such table; create it (the runner's stack does, or "
                "--create-table for a local run)"
            ) from None
        if code in ("AccessDeniedException", "UnrecognizedClientException"):
            raise ConfigError(
                f"{where}: cannot be described ({code}); the worker needs "
                "dynamodb:DescribeTable and dynamodb:DescribeTimeToLive on it"
            ) from None
        raise
    return found, ttl.get("TimeToLiveDescription", {})


def _keys(schema: list[dict[str, str]]) -> dict[str, str]:
    return {key["AttributeName"]: key["KeyType"] for key in schema}


def _shown(keys: dict[str, str]) -> str:
    return " + ".join(f"{name} ({kind})" for name, kind in sorted(keys.items(), key=lambda k: k[1]))


def condition_held(write: Callable[[], Any]) -> bool:
    """Run a conditional write: False when its condition did not hold, so callers speak
    of who holds the item instead of catching PynamoDB's errors."""
    try:
        write()
    except (PutError, UpdateError, DeleteError) as error:
        if error_code(error) != CONDITION_FAILED:
            raise
        return False
    return True


class Bridge:
    """Runs synchronous PynamoDB calls on a thread pool of its own, so the event loop
    never blocks on DynamoDB and a slow table cannot starve other work of threads."""

    def __init__(self, threads: int = 32, name: str = "dynamodb") -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)

    async def run(self, call: Callable[[], T]) -> T:
        # The caller's context variables go along (as with asyncio.to_thread): which
        # engine's metrics count a throttled DynamoDB answer, for one.
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(context.run, call))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def epoch_datetime(epoch: float | None) -> datetime | None:
    """TTL attributes are datetimes in PynamoDB; records keep epoch seconds."""
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=UTC)
