from __future__ import annotations

import asyncio
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from runners.retry import is_retryable, retry


def client_error(code: str, status: int = 400) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "Operation")


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (client_error("ThrottlingException"), True),
        (client_error("TooManyRequestsException"), True),
        (client_error("ProvisionedThroughputExceededException"), True),
        (client_error("SlowDown", 503), True),
        (client_error("Anything", 500), True),
        (client_error("InternalServiceException"), True),
        (EndpointConnectionError(endpoint_url="http://x"), True),
        (client_error("AccessDeniedException"), False),
        (client_error("TaskTimedOut"), False),
        (client_error("ConcurrentRunsExceededException"), False),
        (ValueError("bug"), False),
    ],
)
def test_retryable_errors_are_throttling_5xx_and_connections(
    error: BaseException, retryable: bool
) -> None:
    assert is_retryable(error) is retryable


def test_retry_backs_off_until_success_and_never_retries_final_errors() -> None:
    attempts = []

    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise client_error("ThrottlingException")
        return "ok"

    async def final() -> str:
        attempts.append(1)
        raise client_error("AccessDeniedException")

    assert asyncio.run(retry(flaky, deadline_seconds=30)) == "ok"
    assert len(attempts) == 3
    attempts.clear()
    with pytest.raises(ClientError):
        asyncio.run(retry(final, deadline_seconds=30))
    assert len(attempts) == 1
