"""Athena query executions on the emulator, through boto3 and aiobotocore.

Quotes are from the Amazon Athena API reference
(https://docs.aws.amazon.com/athena/latest/APIReference/).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from runners.local import Emulator, RunBehaviour
from tests.conftest import ClientFactory
from tests.helpers import error_code, wait_until

OUTPUT = {"OutputLocation": "s3://athena-results/"}


@pytest.fixture
def athena(client: ClientFactory) -> Any:
    return client("athena")


def start(athena: Any, query: str = "SELECT 1", **extra: Any) -> str:
    query_id: str = athena.start_query_execution(
        QueryString=query, ResultConfiguration=OUTPUT, **extra
    )["QueryExecutionId"]
    return query_id


def status(athena: Any, query_id: str) -> dict[str, Any]:
    execution = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
    state: dict[str, Any] = execution["Status"]
    return state


def test_client_request_token_starts_one_query(athena: Any) -> None:
    """StartQueryExecution ClientRequestToken: "If another StartQueryExecution request
    is received, the same response is returned and another query is not created." """
    token = "task-5f0c6b1e8d2a4f3b9c7d1e2f3a4b5c6d"

    first = start(athena, "SELECT * FROM sales", ClientRequestToken=token)
    second = start(athena, "SELECT * FROM sales", ClientRequestToken=token)

    assert first == second
    assert athena.list_query_executions()["QueryExecutionIds"] == [first]
    assert start(athena, "SELECT * FROM sales") != first


def test_a_query_with_no_output_location_anywhere_is_refused(athena: Any) -> None:
    """ResultConfiguration.OutputLocation: "To run the query, you must specify the query
    results location using one of the ways: either for individual queries using either
    this setting (client-side), or in the workgroup, using WorkGroupConfiguration. If none
    of them is set, Athena issues an error that no output location is provided." """
    with pytest.raises(ClientError) as raised:
        athena.start_query_execution(QueryString="SELECT 1")
    assert error_code(raised.value) == "InvalidRequestException"
    assert "output location" in str(raised.value)

    athena.create_work_group(
        Name="reports",
        Configuration={"ResultConfiguration": {"OutputLocation": "s3://reports/results/"}},
    )
    query_id = athena.start_query_execution(QueryString="SELECT 1", WorkGroup="reports")[
        "QueryExecutionId"
    ]
    execution = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
    assert execution["WorkGroup"] == "reports"


def test_a_reused_token_with_changed_parameters_is_rejected(athena: Any) -> None:
    """ClientRequestToken: "An error is returned if a parameter, such as QueryString,
    has changed." """
    token = "task-0123456789abcdef0123456789abcdef"
    start(athena, "SELECT 1", ClientRequestToken=token)

    with pytest.raises(ClientError) as raised:
        start(athena, "SELECT 2", ClientRequestToken=token)

    assert error_code(raised.value) == "InvalidRequestException"


def test_batch_get_query_execution_reports_unknown_ids(athena: Any) -> None:
    """BatchGetQueryExecution: "Returns the details of a single query execution or a list
    of up to 50 query executions". UnprocessedQueryExecutionIds: "Information about the
    query executions that failed to run." """
    known = [start(athena, f"SELECT {n}") for n in range(3)]

    response = athena.batch_get_query_execution(QueryExecutionIds=[*known, "no-such-query"])

    assert [q["QueryExecutionId"] for q in response["QueryExecutions"]] == known
    assert [q["Query"] for q in response["QueryExecutions"]] == ["SELECT 0", "SELECT 1", "SELECT 2"]
    unprocessed = response["UnprocessedQueryExecutionIds"]
    assert [u["QueryExecutionId"] for u in unprocessed] == ["no-such-query"]
    assert unprocessed[0]["ErrorMessage"]


def test_batch_get_query_execution_takes_at_most_fifty_ids(athena: Any) -> None:
    """QueryExecutionIds: "Minimum number of 1 item. Maximum number of 50 items." """
    ids = [start(athena, f"SELECT {n}") for n in range(51)]

    assert (
        len(athena.batch_get_query_execution(QueryExecutionIds=ids[:50])["QueryExecutions"]) == 50
    )
    with pytest.raises(ClientError) as raised:
        athena.batch_get_query_execution(QueryExecutionIds=ids)
    assert error_code(raised.value) in {"InvalidRequestException", "ValidationException"}


def test_a_query_succeeds_at_its_wall_clock_time(aws: Emulator, athena: Any) -> None:
    """QueryExecutionStatus.State: "QUEUED indicates that the query has been submitted
    ... RUNNING indicates that the query is in execution phase. SUCCEEDED indicates that
    the query completed without errors." The state follows the clock, not the reads."""
    aws.athena_queries.add(
        "FROM sales", RunBehaviour(duration=1.0, metrics={"DataScannedInBytes": 2048})
    )
    query_id = start(athena, "SELECT day, sum(revenue) FROM sales GROUP BY day")
    time.sleep(0.5)
    running = status(athena, query_id)

    time.sleep(1.0)
    execution = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]

    assert running["State"] == "RUNNING"
    assert "CompletionDateTime" not in running
    assert execution["Status"]["State"] == "SUCCEEDED"
    assert execution["Status"]["CompletionDateTime"] >= execution["Status"]["SubmissionDateTime"]
    assert execution["Statistics"]["DataScannedInBytes"] == 2048
    assert 800 <= execution["Statistics"]["EngineExecutionTimeInMillis"] <= 1000
    assert execution["ResultConfiguration"]["OutputLocation"] == (
        f"s3://athena-results/{query_id}.csv"
    )


def test_a_failed_query_carries_its_reason(aws: Emulator, athena: Any) -> None:
    """QueryExecutionStatus: "FAILED indicates that the query experienced an error and
    did not complete processing." AthenaError: "Provides information about an Athena
    query error." StateChangeReason: "Further detail about the status of the query." """
    aws.athena_queries.add(
        "broken",
        RunBehaviour(duration=0.2, final_state="FAILED", error_message="SYNTAX_ERROR: line 1:8"),
    )
    query_id = start(athena, "SELECT broken(")

    failed = wait_until(lambda: (s := status(athena, query_id))["State"] == "FAILED" and s)

    assert failed["StateChangeReason"] == "SYNTAX_ERROR: line 1:8"
    assert failed["AthenaError"]["ErrorMessage"] == "SYNTAX_ERROR: line 1:8"
    assert failed["AthenaError"]["Retryable"] is False


def test_a_transient_error_sends_a_running_query_back_to_queued(aws: Emulator, athena: Any) -> None:
    """QueryExecutionStatus.State: "For queries that experience certain transient
    errors, the state transitions from RUNNING back to QUEUED. The FAILED state is always
    terminal with no automatic retry." """
    aws.athena_queries.add(
        "flaky",
        RunBehaviour(
            # Phases long enough that a loaded machine's slow status call misses none.
            phases=(("QUEUED", 0.8), ("RUNNING", 0.8), ("QUEUED", 0.8), ("RUNNING", 0.8)),
        ),
    )
    query_id = start(athena, "SELECT flaky")
    seen: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (not seen or seen[-1] != "SUCCEEDED"):
        state = status(athena, query_id)["State"]
        if not seen or seen[-1] != state:
            seen.append(state)
        time.sleep(0.03)

    assert seen == ["QUEUED", "RUNNING", "QUEUED", "RUNNING", "SUCCEEDED"]


def test_stop_query_execution_cancels_a_running_query(aws: Emulator, athena: Any) -> None:
    """QueryExecutionStatus: "CANCELLED indicates that a user input interrupted query
    execution." """
    aws.athena_queries.default = RunBehaviour(duration=30)
    query_id = start(athena)

    athena.stop_query_execution(QueryExecutionId=query_id)

    cancelled = status(athena, query_id)
    assert cancelled["State"] == "CANCELLED"
    assert "CompletionDateTime" in cancelled


def test_unknown_ids_answer_invalid_request(athena: Any) -> None:
    """GetQueryExecution / StopQueryExecution / GetNamedQuery errors:
    "InvalidRequestException: Indicates that something is wrong with the input to the
    request." """
    for call in (athena.get_query_execution, athena.stop_query_execution):
        with pytest.raises(ClientError) as raised:
            call(QueryExecutionId="no-such-query")
        assert error_code(raised.value) == "InvalidRequestException"
    with pytest.raises(ClientError) as raised:
        athena.get_named_query(NamedQueryId="no-such-named-query")
    assert error_code(raised.value) == "InvalidRequestException"


def test_execution_parameters_are_kept(athena: Any) -> None:
    """ExecutionParameters: "A list of values for the parameters in a query." """
    query_id = start(athena, "SELECT * FROM t WHERE day = ?", ExecutionParameters=["'2024-01-01'"])

    execution = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]

    assert execution["ExecutionParameters"] == ["'2024-01-01'"]
