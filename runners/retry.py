"""Retries: which errors are retried (one place) and for how long (one policy per kind
of call, as data).

Whether to retry is a property of the error: ``is_retryable`` is the single place that
decides (throttling, 5xx, broken connections). Everything else (bad input, missing
resources, closed tasks) is final. How long to keep trying is a property of the call:
``RETRIES`` names each kind of call the engine makes, with its budget and the reason
for it. Each attempt is itself one SDK call with the SDK's own retries underneath (see
``runners.runtime.SDK_RETRIES``), so a budget bounds when the last attempt may begin,
not when it ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

import aiohttp
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from pynamodb.exceptions import PynamoDBException
from tenacity import (
    AsyncRetrying,
    Retrying,
    retry_if_exception,
    stop_before_delay,
    stop_never,
    wait_random_exponential,
)

T = TypeVar("T")

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
    }
)
SERVER_CODES = frozenset(
    {
        "InternalFailure",
        "InternalError",
        "InternalServerError",
        "InternalServerException",
        "InternalServiceException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
    }
)
# Errors raised before a request was sent: it cannot have taken effect.
_NEVER_SENT = (EndpointConnectionError, ConnectTimeoutError, aiohttp.ClientConnectorError)
_CONNECTION_ERRORS = (
    EndpointConnectionError,
    ConnectionClosedError,
    ConnectTimeoutError,
    ReadTimeoutError,
    aiohttp.ClientError,
    asyncio.TimeoutError,
    ConnectionError,
)


def error_code(error: BaseException) -> str:
    """The AWS error code of a botocore or PynamoDB error ("" for anything else)."""
    if isinstance(error, PynamoDBException):
        return error.cause_response_code or ""
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


def is_retryable(error: BaseException) -> bool:
    if isinstance(error, PynamoDBException) and error.cause is not None:
        return is_retryable(error.cause)
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = error_code(error)
        return code in THROTTLING_CODES or code in SERVER_CODES or status >= 500
    return isinstance(error, _CONNECTION_ERRORS)


def is_ambiguous(error: BaseException) -> bool:
    """The request failed but may have taken effect: it was answered with a server error,
    or not answered at all. (A throttled request was refused before it was applied.)"""
    if isinstance(error, PynamoDBException) and error.cause is not None:
        return is_ambiguous(error.cause)
    if not is_retryable(error) or isinstance(error, _NEVER_SENT):
        return False
    return not (isinstance(error, ClientError) and error_code(error) in THROTTLING_CODES)


def is_unanswered(error: BaseException) -> bool:
    """No answer came back (a timeout, a dropped connection): the request may still be on
    its way and take effect later."""
    if isinstance(error, PynamoDBException) and error.cause is not None:
        return is_unanswered(error.cause)
    return is_ambiguous(error) and not isinstance(error, ClientError)


@dataclass(frozen=True)
class RetryPolicy:
    """How one kind of call is retried (after Temporal's ``RetryPolicy``): waits grow
    from ``initial_seconds`` to ``maximum_seconds`` (full jitter, so many workers do not
    retry in step); no new attempt begins after ``budget_seconds`` (None: until it
    succeeds)."""

    budget_seconds: float | None
    why: str
    initial_seconds: float = 0.2
    maximum_seconds: float = 10.0

    def wait_seconds(self, failures: int) -> float:
        """The wait after ``failures`` failures in a row, without jitter (for loops that
        own their pacing, like the poll loop)."""
        return float(min(self.maximum_seconds, self.initial_seconds * 2 ** max(0, failures - 1)))


@dataclass(frozen=True)
class RetryPolicies:
    """One named policy per kind of call; the README's "Retries" table lists them."""

    poll: RetryPolicy
    accept: RetryPolicy
    start: RetryPolicy
    status: RetryPolicy
    heartbeat: RetryPolicy
    report: RetryPolicy
    stop: RetryPolicy
    store: RetryPolicy
    setup: RetryPolicy

    def within(self, seconds: float) -> RetryPolicies:
        """Every bounded budget cut to ``seconds`` (tests of outages that must end soon);
        the unbounded ones stay unbounded, since losing a task is never the answer."""
        cut = {}
        for field in fields(self):
            policy: RetryPolicy = getattr(self, field.name)
            if policy.budget_seconds is not None:
                cut[field.name] = replace(
                    policy, budget_seconds=min(policy.budget_seconds, seconds)
                )
        return replace(self, **cut)

    def named(self) -> dict[str, RetryPolicy]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


RETRIES = RetryPolicies(
    poll=RetryPolicy(
        None,
        "polling is the worker's whole job; an error an operator must fix (a denied "
        "GetActivityTask) is logged at every attempt until it is fixed",
        initial_seconds=1.0,
    ),
    accept=RetryPolicy(
        None,
        "a received task lives only in this process until it is stored (or failed, if "
        "it cannot be): giving up would lose it",
    ),
    start=RetryPolicy(
        30.0,
        "the stored record keeps the task: the next check cycle starts it again, "
        "searching first where a start may have landed",
    ),
    status=RetryPolicy(30.0, "the next check cycle asks again"),
    heartbeat=RetryPolicy(
        30.0, "the next check cycle sends it again, well inside the state's HeartbeatSeconds"
    ),
    report=RetryPolicy(
        30.0, "the record stays open: the next check cycle sees the end again and reports"
    ),
    stop=RetryPolicy(
        30.0,
        "the task is over already; a job that could not be stopped is logged with its "
        "run id for an operator",
    ),
    store=RetryPolicy(
        30.0,
        "lease renewals, closes and claims: the lease keeps the task safe meanwhile, and "
        "the next cycle writes again",
    ),
    setup=RetryPolicy(
        60.0,
        "table checks at start: a worker that cannot reach its table within a minute "
        "stops with that error (exit 1) rather than take tasks it cannot keep",
    ),
)


def _tenacity(policy: RetryPolicy) -> dict[str, Any]:
    budget = policy.budget_seconds
    return {
        "retry": retry_if_exception(is_retryable),
        "wait": wait_random_exponential(
            multiplier=policy.initial_seconds, max=policy.maximum_seconds
        ),
        # stop_before_delay: no attempt begins past the budget (its wait included).
        "stop": stop_never if budget is None else stop_before_delay(budget),
        "reraise": True,
    }


async def retry(call: Callable[[], Awaitable[T]], policy: RetryPolicy) -> T:
    """Await ``call()`` until it succeeds, retrying only retryable errors, within the
    policy's budget."""
    async for attempt in AsyncRetrying(**_tenacity(policy)):
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity either returns or re-raises")


def retry_sync(call: Callable[[], T], policy: RetryPolicy) -> T:
    """``retry`` for synchronous calls (PynamoDB outside the event loop)."""
    for attempt in Retrying(**_tenacity(policy)):
        with attempt:
            return call()
    raise AssertionError("unreachable: tenacity either returns or re-raises")
