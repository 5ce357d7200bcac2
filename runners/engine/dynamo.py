"""What every DynamoDB table of the project shares: binding a PynamoDB model to a table,
creating it, reading a failed condition, and keeping PynamoDB off the event loop.

The job store and the wait table both stand on this; the PynamoDB models stay the one
schema of each table.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from pynamodb.exceptions import DeleteError, PutError, TableError, UpdateError
from pynamodb.models import Model

from runners.retry import error_code, retry_sync

T = TypeVar("T")
M = TypeVar("M", bound=Model)
CONDITION_FAILED = "ConditionalCheckFailedException"

_bound: dict[tuple[type[Model], str, str], type[Model]] = {}
_bound_lock = threading.Lock()


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

    retry_sync(create)


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
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def epoch_datetime(epoch: float | None) -> datetime | None:
    """TTL attributes are datetimes in PynamoDB; records keep epoch seconds."""
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=UTC)
