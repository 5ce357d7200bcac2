"""Where moto's cost per request grows with the account and AWS's does not.

The benchmarks load the emulator with thousands of records, messages and requests; each
of these made every request slower as the run went on, so the figures measured moto's
bookkeeping rather than the worker. Each replacement keeps moto's answers and drops only
the work that grew:

- every request looked up its backend by listing moto's package directory (a
  ``listdir`` and 180 ``isdir`` calls, under the dispatcher's one lock): the list is
  read once;
- SQS ``ReceiveMessage`` read the queue's whole attribute map, three times, for every
  message it returned, to learn the retention period (each read counts every message
  in the queue): the period is read from the queue;
- DynamoDB ``Query`` and ``Scan`` sorted every item of the table by comparing key
  objects (each comparison converts both keys): the keys are converted once per item.
  The order is the same: DynamoDB "results are always sorted by the sort key value. If
  the data type of the sort key is Number, the results are returned in numeric order;
  otherwise, the results are returned in order of UTF-8 bytes" (Query, API reference).
"""

from __future__ import annotations

import functools
from typing import Any

from moto import backends
from moto.core.utils import unix_time
from moto.dynamodb.models.table import Table
from moto.sqs.models import Message, SQSBackend

_list_of_moto_modules = backends.list_of_moto_modules


@functools.cache
def moto_modules() -> frozenset[str]:
    """moto's service modules (its package does not change while the process runs)."""
    return frozenset(_list_of_moto_modules())


def retained(self: SQSBackend, queue_name: str, message: Message) -> bool:
    """Whether ``message`` is still within its queue's ``MessageRetentionPeriod``."""
    period = int(self.get_queue(queue_name).message_retention_period)
    return bool(period + message.sent_timestamp / 1000 > unix_time())


def all_items(self: Table) -> list[Any]:
    """Every item in key order (moto's order, its keys converted once per item)."""
    items: list[Any] = []
    for hash_set in self.items.values():
        items.extend(hash_set.values() if self.range_key_attr else [hash_set])
    return sorted(items, key=_key_order)


def _key_order(item: Any) -> Any:
    if item.range_key:
        return (item.hash_key.cast_value, item.range_key.cast_value)
    return item.hash_key.cast_value


def install() -> None:
    backends.list_of_moto_modules = moto_modules
    SQSBackend.is_message_valid_based_on_retention_period = retained
    Table.all_items = all_items
