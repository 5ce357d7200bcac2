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
  otherwise, the results are returned in order of UTF-8 bytes" (Query, API reference);
- every request looked its account up in every service's backends under moto's one
  backend lock, and checked the service's registration by comparing it with every
  registered service: an account already there is returned at once;
- SQS counted a queue's messages (for its attribute map, which ``SendMessage`` reads
  for one flag) by asking each message's visibility of a clock computed through
  datetime arithmetic: SQS reads the same clock as seconds since the epoch;
- EventBridge built a JSONPath parser (a parser generator run) for each of the eight
  paths of its default input template, for every event and target, and the Step
  Functions interpreter one for every path of every state it ran: a path is parsed
  once (a parsed path is never changed: ``find`` and ``update`` work on the data).
"""

from __future__ import annotations

import functools
import time
from datetime import datetime
from typing import Any

import jsonpath_ng.ext
from jsonpath_ng.ext.parser import parse as parse_extended
from jsonpath_ng.parser import parse as parse_plain
from moto import backends
from moto.core.base_backend import BackendDict
from moto.core.utils import unix_time
from moto.dynamodb.models.table import Table
from moto.sqs import models as sqs_models
from moto.sqs.models import Message, SQSBackend
from moto.stepfunctions.parser.asl.component.common.path import result_path
from moto.stepfunctions.parser.asl.utils import json_path as state_paths

_list_of_moto_modules = backends.list_of_moto_modules


@functools.cache
def moto_modules() -> frozenset[str]:
    """moto's service modules (its package does not change while the process runs)."""
    return frozenset(_list_of_moto_modules())


def retained(self: SQSBackend, queue_name: str, message: Message) -> bool:
    """Whether ``message`` is still within its queue's ``MessageRetentionPeriod``."""
    period = int(self.get_queue(queue_name).message_retention_period)
    return bool(period + message.sent_timestamp / 1000 > epoch_seconds())


def epoch_seconds(moment: datetime | None = None) -> float:
    """moto's ``unix_time``: now (or ``moment``, naive UTC) in seconds since the epoch."""
    return time.time() if moment is None else unix_time(moment)


def epoch_milliseconds(moment: datetime | None = None) -> float:
    return epoch_seconds(moment) * 1000.0


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


_create_account_specific_backend = BackendDict._create_account_specific_backend


def account_backend(self: BackendDict[Any], account_id: str) -> None:
    """Create an account's backends unless they exist. Keys enter a ``BackendDict``
    only through moto's method, which registers the service too, and moto's reset
    clears both together: an account present is a service registered."""
    if dict.__contains__(self, account_id):
        return
    _create_account_specific_backend(self, account_id)


json_path = functools.lru_cache(maxsize=1024)(parse_extended)
plain_json_path = functools.lru_cache(maxsize=1024)(parse_plain)


def install() -> None:
    BackendDict._create_account_specific_backend = account_backend
    jsonpath_ng.ext.parse = json_path  # type: ignore[attr-defined]
    state_paths.parse = json_path
    result_path.parse = plain_json_path
    sqs_models.unix_time = epoch_seconds
    sqs_models.unix_time_millis = epoch_milliseconds
    backends.list_of_moto_modules = moto_modules
    SQSBackend.is_message_valid_based_on_retention_period = retained
    Table.all_items = all_items
