"""The Athena runner against the emulator's Athena, through aiobotocore."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from runners.engine.runner import Failed, Job, Succeeded, TaskStart
from runners.errors import RunnerInputError
from runners.local import Emulator, RunBehaviour
from runners.services.athena import AthenaQueryRunner
from runners.testing import Report, RunnerHarness
from tests.aio import AioLoop
from tests.helpers import wait_until

OUT = "s3://results/"


@pytest.fixture
def runner(aws: Emulator, aio_loop: AioLoop) -> Iterator[AthenaQueryRunner]:
    client = aio_loop.client("athena", aws.endpoint_url, aws.client_env())
    yield AthenaQueryRunner(client._client, default_output_location=OUT)
    client.close()


def test_input_is_validated_field_by_field() -> None:
    runner = AthenaQueryRunner(athena=None, default_workgroup="etl")
    spec = runner.parse(
        {
            "AthenaQueryString": "SELECT ?",
            "AthenaDatabase": "db",
            "ExecutionParameters": ["1"],
            "AthenaResultEncryptionOption": "SSE_KMS",
            "AthenaResultKmsKey": "key",
            "AthenaResultOutputLocation": "s3://o/",
        }
    )
    assert (spec.workgroup, spec.execution_parameters, spec.kms_key) == ("etl", ["1"], "key")
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "AthenaQueryString"),
        ({"AthenaQueryString": "SELECT 1"}, "AthenaDatabase"),
        ({"AthenaQueryString": "SELECT 1", "AthenaNamedQuery": "n"}, "AthenaNamedQuery"),
        (
            {"AthenaNamedQuery": "n", "AthenaResultOutputLocation": "/tmp/x"},
            "AthenaResultOutputLocation",
        ),
        (
            {"AthenaNamedQuery": "n", "AthenaResultEncryptionOption": "ROT13"},
            "AthenaResultEncryptionOption",
        ),
        (
            {"AthenaNamedQuery": "n", "AthenaResultEncryptionOption": "CSE_KMS"},
            "AthenaResultKmsKey",
        ),
        (
            {"AthenaNamedQuery": "n", "ExecutionParameters": "1; DROP TABLE t"},
            "ExecutionParameters",
        ),
        ({"AthenaNamedQuery": "n", "ExecutionParameters": [1]}, "ExecutionParameters"),
        (
            {"AthenaNamedQuery": "n", "ExecutionParameters": ["'a'", "1; DROP TABLE t"]},
            "ExecutionParameters[1]",
        ),
        ({"AthenaNamedQuery": "n", "ExecutionParameters": ["'x' --"]}, "ExecutionParameters[0]"),
        ({"AthenaNamedQuery": "n", "ExecutionParameters": ["1 /* c */"]}, "ExecutionParameters[0]"),
        ({"AthenaNamedQuery": "n", "ExecutionParameters": ["'open"]}, "ExecutionParameters[0]"),
        ({"AthenaNamedQuery": "n\u0000"}, "AthenaNamedQuery"),
        ({"AthenaNamedQuery": "n\ud800"}, "AthenaNamedQuery"),
    ]
    for document, field in cases:
        with pytest.raises(RunnerInputError) as raised:
            runner.parse(document)
        assert raised.value.field == field, document


def test_parameters_may_be_any_single_value() -> None:
    """Athena places each execution parameter where its ``?`` stands: quoted text
    (quotes doubled inside), numbers and expressions such as ``CAST('2014-07-05' AS
    DATE)`` are values; only text reaching past the value is refused."""
    runner = AthenaQueryRunner(athena=None)
    values = ["'Closed Won'", "'it''s'", "'--; not a comment'", "42", "CAST('2014-07-05' AS DATE)"]
    spec = runner.parse({"AthenaNamedQuery": "n", "ExecutionParameters": values})
    assert spec.execution_parameters == values


def test_start_is_idempotent_by_client_request_token(
    aws: Emulator, aio_loop: AioLoop, runner: AthenaQueryRunner
) -> None:
    spec = runner.parse({"AthenaQueryString": "SELECT 1", "AthenaDatabase": "db"})

    first = aio_loop.run(runner.start(spec, TaskStart("k" * 64, 0.0)))
    second = aio_loop.run(runner.start(spec, TaskStart("k" * 64, 0.0)))

    assert first == second
    assert aws.client("athena").list_query_executions()["QueryExecutionIds"] == [first]


def test_a_named_query_is_resolved_at_start(
    aws: Emulator, aio_loop: AioLoop, runner: AthenaQueryRunner
) -> None:
    named = aws.client("athena").create_named_query(
        Name="daily", Database="sales", QueryString="SELECT count(*) FROM sales"
    )["NamedQueryId"]

    query_id = aio_loop.run(
        runner.start(runner.parse({"AthenaNamedQuery": named}), TaskStart("n" * 64, 0.0))
    )

    execution = aws.client("athena").get_query_execution(QueryExecutionId=query_id)
    assert execution["QueryExecution"]["Query"] == "SELECT count(*) FROM sales"
    assert execution["QueryExecution"]["QueryExecutionContext"] == {"Database": "sales"}


def test_an_unknown_named_query_is_an_input_error(
    aio_loop: AioLoop, runner: AthenaQueryRunner
) -> None:
    async def scenario() -> Report:
        async with RunnerHarness(runner) as harness:
            return await harness.settle(await harness.submit({"AthenaNamedQuery": "missing"}))

    report = aio_loop.run(scenario())

    assert (report.kind, report.error) == ("failure", "RunnerInputError")
    assert json.loads(report.cause or "")["field"] == "AthenaNamedQuery"


def test_queries_are_checked_fifty_per_call(
    aws: Emulator, aio_loop: AioLoop, runner: AthenaQueryRunner
) -> None:
    aws.athena_queries.default = RunBehaviour(duration=0.2)
    spec = runner.parse({"AthenaQueryString": "SELECT 1", "AthenaDatabase": "db"})
    jobs = [
        Job(spec, aio_loop.run(runner.start(spec, TaskStart(f"{n:064d}", 0.0)))) for n in range(120)
    ]
    wait_until(
        lambda: (
            aws.client("athena").get_query_execution(QueryExecutionId=jobs[-1].run_id)[
                "QueryExecution"
            ]["Status"]["State"]
            == "SUCCEEDED"
        )
    )
    aws.faults.calls.clear()

    statuses: dict[str, Any] = dict(aio_loop.run(runner.check(jobs)))

    assert all(isinstance(statuses[job.run_id], Succeeded) for job in jobs)
    assert aws.faults.calls["athena:BatchGetQueryExecution"] == 3


def test_a_failed_query_is_reported_at_its_first_check(
    aws: Emulator, aio_loop: AioLoop, runner: AthenaQueryRunner
) -> None:
    """QueryExecutionStatus: "The FAILED state is always terminal with no automatic
    retry": nothing is held back, and the cause carries ``AthenaError``."""
    aws.athena_queries.default = RunBehaviour(
        duration=0.1, final_state="FAILED", error_message="HIVE_CURSOR_ERROR"
    )
    spec = runner.parse({"AthenaQueryString": "SELECT 1", "AthenaDatabase": "db"})
    job = Job(spec, aio_loop.run(runner.start(spec, TaskStart("r" * 64, 0.0))))
    wait_until(
        lambda: (
            aws.client("athena").get_query_execution(QueryExecutionId=job.run_id)["QueryExecution"][
                "Status"
            ]["State"]
            == "FAILED"
        )
    )

    reported = aio_loop.run(runner.check([job]))[job.run_id]

    assert isinstance(reported, Failed)
    assert reported.error == "AthenaQueryFailedError"
    assert reported.cause["AthenaError"]["ErrorMessage"] == "HIVE_CURSOR_ERROR"
