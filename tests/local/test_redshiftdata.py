"""Redshift Data API statements on the emulator, through boto3 and aiobotocore.

Quotes are from the Amazon Redshift Data API reference
(https://docs.aws.amazon.com/redshift-data/latest/APIReference/).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from runners.local import Emulator, RunBehaviour
from tests.conftest import ClientFactory
from tests.helpers import error_code, wait_until

TARGET = {"WorkgroupName": "etl", "Database": "dev"}


@pytest.fixture
def data(client: ClientFactory) -> Any:
    return client("redshift-data")


def status(data: Any, statement_id: str) -> str:
    state: str = data.describe_statement(Id=statement_id)["Status"]
    return state


def test_a_statement_moves_through_its_states_on_the_clock(aws: Emulator, data: Any) -> None:
    """StatusString: "SUBMITTED - The query was submitted, but not yet processed. PICKED -
    The query has been chosen to be run. STARTED - The query run has started. FINISHED -
    The query has finished running." ResultRows: "Either the number of rows returned from
    the SQL statement or the number of rows affected.\""""
    aws.redshift_statements.add(
        "FROM sales",
        RunBehaviour(
            phases=(("SUBMITTED", 1.0), ("PICKED", 1.0), ("STARTED", 1.0)),
            final_state="FINISHED",
            metrics={"ResultRows": 42, "ResultSize": 512, "HasResultSet": 1},
        ),
    )
    statement_id = data.execute_statement(Sql="SELECT * FROM sales", **TARGET)["Id"]

    seen = [status(data, statement_id)]
    deadline = time.monotonic() + 10
    while seen[-1] != "FINISHED" and time.monotonic() < deadline:
        time.sleep(0.05)
        seen.append(status(data, statement_id))
    described = data.describe_statement(Id=statement_id)

    assert [state for n, state in enumerate(seen) if seen.index(state) == n] == [
        "SUBMITTED",
        "PICKED",
        "STARTED",
        "FINISHED",
    ]
    assert (described["ResultRows"], described["ResultSize"], described["HasResultSet"]) == (
        42,
        512,
        True,
    )
    assert described["Duration"] == 1_000_000_000  # "The amount of time in nanoseconds"
    assert described["QueryString"] == "SELECT * FROM sales"
    assert described["WorkgroupName"] == "etl"


def test_a_failed_statement_says_why(aws: Emulator, data: Any) -> None:
    """Error: "The error message from the cluster if the SQL statement encountered an
    error while running.\""""
    aws.redshift_statements.add(
        "broken",
        RunBehaviour(
            duration=0.2,
            final_state="FAILED",
            error_message='ERROR: relation "broken" does not exist',
        ),
    )
    statement_id = data.execute_statement(Sql="SELECT * FROM broken", **TARGET)["Id"]

    wait_until(lambda: status(data, statement_id) == "FAILED")

    assert data.describe_statement(Id=statement_id)["Error"].startswith("ERROR: relation")


def test_a_client_token_runs_one_statement(data: Any) -> None:
    """ClientToken: "A unique, case-sensitive identifier that you provide to ensure the
    idempotency of the request.\""""
    first = data.execute_statement(Sql="VACUUM", ClientToken="a" * 64, **TARGET)["Id"]
    again = data.execute_statement(Sql="VACUUM", ClientToken="a" * 64, **TARGET)["Id"]
    other = data.execute_statement(Sql="VACUUM", ClientToken="b" * 64, **TARGET)["Id"]

    assert first == again != other
    listed = data.list_statements(Status="ALL")["Statements"]
    assert sorted(s["Id"] for s in listed) == sorted([first, other])


def test_a_target_and_a_database_are_required(data: Any) -> None:
    """A cluster is named by ClusterIdentifier, a serverless workgroup by WorkgroupName;
    the database name "is required when authenticating using either Secrets Manager or
    temporary credentials" (the two ways there are)."""
    for request in (
        {"Sql": "SELECT 1", "Database": "dev"},
        {"Sql": "SELECT 1", "Database": "dev", "ClusterIdentifier": "c", "WorkgroupName": "etl"},
        {"Sql": "SELECT 1", "WorkgroupName": "etl"},
    ):
        with pytest.raises(ClientError) as raised:
            data.execute_statement(**request)
        assert error_code(raised.value) == "ValidationException"


def test_a_batch_runs_its_statements_in_order(aws: Emulator, data: Any) -> None:
    """BatchExecuteStatement: "Runs one or more SQL statements, which can be data
    manipulation language (DML) or data definition language (DDL)"; Sqls holds 1 to 40;
    SubStatements: "The SQL statements from a multiple statement run.\""""
    aws.redshift_statements.add("CREATE", RunBehaviour(duration=0.2))
    aws.redshift_statements.add("INSERT", RunBehaviour(duration=2.0))
    statement_id = data.batch_execute_statement(
        Sqls=["CREATE TABLE t (n int)", "INSERT INTO t VALUES (1)"], **TARGET
    )["Id"]
    first = f"{statement_id}:1"
    wait_until(lambda: data.describe_statement(Id=first)["Status"] == "FINISHED")

    during = data.describe_statement(Id=statement_id)
    wait_until(lambda: status(data, statement_id) == "FINISHED", timeout=15)
    after = data.describe_statement(Id=statement_id)

    assert during["Status"] == "STARTED"  # the second statement has 2 s to go
    assert during["SubStatements"][0]["Status"] == "FINISHED"
    assert [s["Id"] for s in after["SubStatements"]] == [f"{statement_id}:1", f"{statement_id}:2"]
    assert all(s["Status"] == "FINISHED" for s in after["SubStatements"])
    assert (
        data.describe_statement(Id=f"{statement_id}:2")["QueryString"] == "INSERT INTO t VALUES (1)"
    )
    with pytest.raises(ClientError) as raised:
        data.batch_execute_statement(Sqls=["SELECT 1"] * 41, **TARGET)
    assert error_code(raised.value) == "ValidationException"


def test_a_batch_stops_at_its_first_failure(aws: Emulator, data: Any) -> None:
    aws.redshift_statements.default = RunBehaviour(duration=0.1)
    aws.redshift_statements.add("bad", RunBehaviour(duration=0.1, final_state="FAILED"))
    statement_id = data.batch_execute_statement(
        Sqls=["SELECT 1", "SELECT bad", "SELECT 3"], **TARGET
    )["Id"]

    wait_until(lambda: status(data, statement_id) == "FAILED")
    subs = data.describe_statement(Id=statement_id)["SubStatements"]

    assert [s["Status"] for s in subs] == ["FINISHED", "FAILED", "ABORTED"]


def test_list_statements_filters_by_status_and_name_prefix_and_pages(
    aws: Emulator, data: Any
) -> None:
    """ListStatements: "By default, only finished statements are shown"; Status "ALL - A
    status value that includes all query statuses"; StatementName: "You can list multiple
    statements by providing a prefix that matches the beginning of the statement name";
    MaxResults: "Valid Range: Minimum value of 0. Maximum value of 100.\""""
    aws.redshift_statements.add("slow", RunBehaviour(duration=30))
    aws.redshift_statements.add("quick", RunBehaviour(duration=0.05))
    slow = [
        data.execute_statement(Sql="SELECT slow", StatementName=f"nightly-{n}", **TARGET)["Id"]
        for n in range(3)
    ]
    quick = data.execute_statement(Sql="SELECT quick", StatementName="adhoc", **TARGET)["Id"]
    wait_until(lambda: status(data, quick) == "FINISHED")
    wait_until(lambda: all(status(data, s) == "STARTED" for s in slow))

    finished = data.list_statements()["Statements"]
    started = data.list_statements(Status="STARTED", StatementName="nightly")["Statements"]
    first = data.list_statements(Status="ALL", MaxResults=2)
    second = data.list_statements(Status="ALL", MaxResults=2, NextToken=first["NextToken"])

    assert [s["Id"] for s in finished] == [quick]
    assert sorted(s["Id"] for s in started) == sorted(slow)
    assert len(first["Statements"]) == 2
    assert "NextToken" not in second
    paged = {s["Id"] for s in first["Statements"] + second["Statements"]}
    assert paged == {*slow, quick}


def test_cancel_aborts_a_running_statement_and_refuses_a_finished_one(
    aws: Emulator, data: Any
) -> None:
    """CancelStatement: "Cancels a running query"; a finished one cannot be: "Could not
    cancel a query that is already in FINISHED state".\""""
    aws.redshift_statements.add("slow", RunBehaviour(duration=30))
    aws.redshift_statements.add("quick", RunBehaviour(duration=0.05))
    running = data.execute_statement(Sql="SELECT slow", **TARGET)["Id"]
    done = data.execute_statement(Sql="SELECT quick", **TARGET)["Id"]
    wait_until(lambda: status(data, done) == "FINISHED")

    assert data.cancel_statement(Id=running)["Status"] is True
    assert status(data, running) == "ABORTED"
    with pytest.raises(ClientError) as raised:
        data.cancel_statement(Id=done)
    assert error_code(raised.value) == "ValidationException"
    with pytest.raises(ClientError) as missing:
        data.describe_statement(Id="00000000-0000-0000-0000-000000000000")
    assert error_code(missing.value) == "ResourceNotFoundException"
