"""A start that fails without saying whether it took effect never becomes two jobs.

AWS: a 500 "InternalFailure" ("The request processing has failed because of an unknown
error") or no answer at all says nothing of whether the request was applied. Glue's
``StartJobRun`` and ``StartCrawler`` carry no idempotency token, so the worker must not
resend them blindly (nor let the SDK do so): it searches for the run first, and trusts a
"none" only when it could not have overtaken the start it looks for.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from runners.local import Call, Emulator, Fault, RunBehaviour
from runners.local.faults import FaultKind
from tests.engine.test_end_to_end import glue_job, task_machine
from tests.helpers import finished, wait_until
from tests.services.test_crawler import create_crawler
from tests.workers import config, running_worker


class AcceptedStarts:
    """Starts the emulator applied (status 200), whatever the client heard."""

    def __init__(self, aws: Emulator, operation: str) -> None:
        self.aws, self.operation = aws, operation
        self.served = self.applied = 0
        self._lock = threading.Lock()
        aws.faults.on_call(operation, self._seen)

    def _seen(self, call: Call) -> None:
        with self._lock:
            self.served += 1
            self.applied += call.status == 200

    @property
    def count(self) -> int:
        return self.applied

    def all_served(self) -> bool:
        """Every start received was served (a held one too)."""
        return self.served == self.aws.faults.calls[self.operation]


def run_one(aws: Emulator, runner: str, document: dict[str, Any], timeout: float) -> Any:
    sfn = aws.client("stepfunctions")
    activity = sfn.create_activity(name=f"{runner}-activity")["activityArn"]
    execution = sfn.start_execution(
        stateMachineArn=task_machine(sfn, runner, activity), input=json.dumps(document)
    )["executionArn"]
    with running_worker(config(runner, activity)):
        return finished(sfn, execution, timeout=timeout)


@pytest.mark.parametrize("kind", ["lost", "error"])
def test_a_glue_start_answered_500_runs_once(aws: Emulator, kind: FaultKind) -> None:
    """``lost``: applied, then answered 500 (the run is found, not started again);
    ``error``: answered 500 without being applied (the search finds nothing promptly,
    and the start is made)."""
    glue_job(aws, "Nightly", RunBehaviour(duration=0.5))
    starts = AcceptedStarts(aws, "glue:StartJobRun")
    aws.faults.add(Fault("glue:StartJobRun", kind, limit=1))

    done = run_one(aws, "glue", {"GlueJobName": "Nightly"}, timeout=30)

    assert done["status"] == "SUCCEEDED"
    assert starts.count == 1
    assert len(aws.client("glue").get_job_runs(JobName="Nightly")["JobRuns"]) == 1
    assert aws.faults.calls["glue:GetJobRuns"] >= 1  # it searched before starting again


def test_a_crawl_whose_start_answer_was_lost_runs_once(aws: Emulator) -> None:
    create_crawler(aws, "sales", RunBehaviour(duration=0.5))
    starts = AcceptedStarts(aws, "glue:StartCrawler")
    aws.faults.add(Fault("glue:StartCrawler", "lost", limit=1))

    done = run_one(aws, "crawler", {"CrawlerName": "sales"}, timeout=30)

    assert done["status"] == "SUCCEEDED"
    assert starts.count == 1


def test_an_athena_start_whose_answer_was_lost_is_simply_retried(aws: Emulator) -> None:
    """The ``ClientRequestToken`` makes the retry return the first query."""
    aws.athena_queries.default = RunBehaviour(duration=0.5)
    aws.faults.add(Fault("athena:StartQueryExecution", "lost", limit=1))

    done = run_one(
        aws,
        "athena",
        {
            "AthenaQueryString": "SELECT 1",
            "AthenaDatabase": "d",
            "AthenaResultOutputLocation": "s3://r/",
        },
        timeout=30,
    )

    assert done["status"] == "SUCCEEDED"
    assert len(aws.client("athena").list_query_executions()["QueryExecutionIds"]) == 1


@pytest.mark.slow
def test_a_glue_start_held_past_the_client_timeout_runs_once(aws: Emulator) -> None:
    """The start is held 25 s (past the 20 s read timeout) while every other call is
    answered at once: a search right after the timeout would find nothing and start a
    second run. The worker waits until an unanswered start can no longer land."""
    glue_job(aws, "Nightly", RunBehaviour(duration=0.5))
    starts = AcceptedStarts(aws, "glue:StartJobRun")
    aws.faults.add(Fault("glue:StartJobRun", "hang", seconds=25, limit=1))

    done = run_one(aws, "glue", {"GlueJobName": "Nightly"}, timeout=150)
    wait_until(starts.all_served, timeout=60)

    assert done["status"] == "SUCCEEDED"
    assert starts.count == 1
