from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from runners.retry import RETRIES, RetryPolicy, is_retryable, retry


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

    assert asyncio.run(retry(flaky, RetryPolicy(30, "test"))) == "ok"
    assert len(attempts) == 3
    attempts.clear()
    with pytest.raises(ClientError):
        asyncio.run(retry(final, RetryPolicy(30, "test")))
    assert len(attempts) == 1


def test_a_budget_stops_retrying_a_call_that_keeps_failing() -> None:
    attempts = []

    async def throttled() -> str:
        attempts.append(1)
        raise client_error("ThrottlingException")

    with pytest.raises(ClientError):
        asyncio.run(retry(throttled, RetryPolicy(0.5, "test", initial_seconds=0.05)))
    assert len(attempts) > 1


def test_within_cuts_every_bounded_budget_and_keeps_the_unbounded_ones() -> None:
    cut = RETRIES.within(1.0).named()

    for name, policy in RETRIES.named().items():
        if policy.budget_seconds is None:
            assert cut[name].budget_seconds is None, name
        else:
            assert cut[name].budget_seconds == 1.0, name
    # A received task is never given up on: only shutdown's grace period bounds it.
    assert cut["accept"].budget_seconds is None


def test_the_poll_loop_waits_double_up_to_the_maximum() -> None:
    waits = [RETRIES.poll.wait_seconds(failures) for failures in range(1, 7)]

    assert waits == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_the_readme_lists_every_retry_policy_with_its_budget() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("### Retries", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| [^|]+ \| ([^|]+) \|", section, re.MULTILINE))

    assert set(rows) == set(RETRIES.named())
    for name, policy in RETRIES.named().items():
        budget = policy.budget_seconds
        assert rows[name].strip() == ("until it succeeds" if budget is None else f"{budget:g} s")
