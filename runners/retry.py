"""The one retry policy: throttling, 5xx and broken connections, backed off with jitter.

Whether to retry is a property of the error: ``is_retryable`` is the single place that
decides. Everything else (bad input, missing resources, closed tasks) is final.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
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
    stop_after_delay,
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


def _policy(deadline_seconds: float | None) -> dict[str, Any]:
    return {
        "retry": retry_if_exception(is_retryable),
        "wait": wait_random_exponential(multiplier=0.2, max=10),
        "stop": stop_never if deadline_seconds is None else stop_after_delay(deadline_seconds),
        "reraise": True,
    }


async def retry(call: Callable[[], Awaitable[T]], deadline_seconds: float | None = 60.0) -> T:
    """Await ``call()`` until it succeeds, retrying only retryable errors, for at most
    ``deadline_seconds`` (None: for as long as it takes)."""
    async for attempt in AsyncRetrying(**_policy(deadline_seconds)):
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity either returns or re-raises")


def retry_sync(call: Callable[[], T], deadline_seconds: float | None = 60.0) -> T:
    """``retry`` for synchronous calls (PynamoDB outside the event loop)."""
    for attempt in Retrying(**_policy(deadline_seconds)):
        with attempt:
            return call()
    raise AssertionError("unreachable: tenacity either returns or re-raises")
