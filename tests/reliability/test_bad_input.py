"""A corpus of malformed task inputs, each sent by a state machine as execution input,
fed to one worker process among good tasks: each bad task fails with a named error
naming the field, before the first check cycle; the good ones succeed; the worker
never exits and never logs a whole token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runners.local import Emulator
from tests.helpers import events
from tests.reliability.conftest import Report
from tests.reliability.support import (
    Ledger,
    logs_hold_no_token,
    machine,
    make_flow,
    patient_client,
    wait_all,
    workers,
)

CHECK_INTERVAL_SECONDS = 5.0  # the default: a bad task must fail before one cycle ends
QUERY = {"AthenaDatabase": "sales", "AthenaResultOutputLocation": "s3://results/"}
SELECT = {"AthenaQueryString": "SELECT * FROM sales WHERE day = ?", **QUERY}

# (raw execution input, the field the failure names)
GLUE_CORPUS: list[tuple[str, str]] = [
    # not JSON (a Pass state's Result string is the only way to send it)
    (json.dumps("{not json"), "$"),
    (json.dumps('\ufeff{"GlueJobName": "Nightly"}'), "$"),  # byte-order mark
    (json.dumps("[" * 50_000), "$"),  # nests past any parser's recursion limit
    # JSON of the wrong shape
    ("[1, 2]", "$"),
    ("42", "$"),
    (json.dumps('["GlueJobName"]'), "$"),
    ("{}", "GlueJobName"),
    # wrong types and values
    ('{"GlueJobName": 42}', "GlueJobName"),
    ('{"GlueJobName": "   "}', "GlueJobName"),
    ('{"GlueJobName": "Nightly", "Arguments": ["--n"]}', "Arguments"),
    ('{"GlueJobName": "Nightly", "Arguments": {"--n": 1}}', "Arguments"),
    ('{"GlueJobName": "Nightly", "Arguments": {"--runners-task-key": "x"}}', "Arguments"),
    ('{"GlueJobName": "Nightly", "GlueJobCapacity": "lots"}', "GlueJobCapacity"),
    ('{"GlueJobName": "Nightly", "GlueJobCapacity": 1e999}', "GlueJobCapacity"),
    ('{"GlueJobName": "Nightly", "NumberOfWorkers": 2}', "WorkerType"),
    ('{"GlueJobName": "Nightly", "Timeout": true}', "Timeout"),
    ('{"GlueJobName": "Nightly", "Timeout": 1.5}', "Timeout"),
    # an unknown job
    ('{"GlueJobName": "NoSuchJob"}', "GlueJobName"),
    # oversized
    (json.dumps({"GlueJobName": "N" * 200_000}), "GlueJobName"),
    (json.dumps('{"GlueJobName": "Nightly", "Timeout": 1' + "0" * 5_000 + "}"), "$"),
    # unicode edge cases
    (json.dumps({"GlueJobName": "Nightly\u0000"}), "GlueJobName"),
    ('{"GlueJobName": "\\ud800"}', "GlueJobName"),  # a lone surrogate
    (json.dumps({"GlueJobName": "\u202eylthgiN"}), "GlueJobName"),  # right-to-left override
    (json.dumps({"GlueJobName": "\uff2eightly"}), "GlueJobName"),  # a full-width N
]


def select(**fields: Any) -> str:
    return json.dumps({**SELECT, **fields})


ATHENA_CORPUS: list[tuple[str, str]] = [
    ('{"AthenaDatabase": "sales"}', "AthenaQueryString"),
    ('{"AthenaQueryString": "SELECT 1"}', "AthenaDatabase"),
    (json.dumps({"AthenaNamedQuery": "q", "AthenaQueryString": "SELECT 1"}), "AthenaNamedQuery"),
    (select(AthenaResultOutputLocation="/tmp/out"), "AthenaResultOutputLocation"),
    (select(AthenaResultEncryptionOption="SSE_KMS"), "AthenaResultKmsKey"),
    (select(AthenaResultEncryptionOption="ROT13"), "AthenaResultEncryptionOption"),
    (select(ExecutionParameters="'2024-01-01'"), "ExecutionParameters"),
    (select(ExecutionParameters=[]), "ExecutionParameters"),
    # parameters that try to reach past their value
    (select(ExecutionParameters=["'x'; DROP TABLE sales"]), "ExecutionParameters[0]"),
    (select(ExecutionParameters=["'x' OR 1=1 --"]), "ExecutionParameters[0]"),
    (select(ExecutionParameters=["'a'", "1 /* */ UNION SELECT"]), "ExecutionParameters[1]"),
    (select(ExecutionParameters=["'unterminated"]), "ExecutionParameters[0]"),
    ('{"AthenaQueryString": "SELECT \'\\udfff\'", "AthenaDatabase": "sales"}', "AthenaQueryString"),
    (json.dumps({"AthenaNamedQuery": "q" * 100_000}), "AthenaNamedQuery"),  # oversized
]
CITY = {"--city": "Zoë 🚀 Zürich", "--rtl": "\u05e9\u05dc\u05d5\u05dd"}
GOOD_GLUE = [
    {"GlueJobName": "Nightly"},
    {"GlueJobName": "Nightly", "Arguments": CITY},
    json.dumps({"GlueJobName": "Nightly"}),  # the original's Pass-state string
]
GOOD_ATHENA = [
    {**SELECT, "ExecutionParameters": ["'it''s; not -- a comment'"]},
    {"AthenaQueryString": "SELECT 'Zoë 🚀'", **QUERY},
    {**SELECT, "ExecutionParameters": ["CAST('2024-01-01' AS DATE)"]},
]


def test_every_malformed_input_fails_its_own_task_and_the_rest_flow(
    aws: Emulator, tmp_path: Path, report: Report
) -> None:
    glue, athena = make_flow(aws, "glue", job_seconds=1.0), make_flow(aws, "athena", 1.0)
    ledger = Ledger(aws)
    sfn = patient_client(aws, "stepfunctions")
    bad: dict[str, str] = {}  # execution -> the field its failure must name
    good: list[str] = []
    for flow, corpus, fine in (
        (glue, GLUE_CORPUS, GOOD_GLUE),
        (athena, ATHENA_CORPUS, GOOD_ATHENA),
    ):
        machine_arn = machine(aws, flow, name=f"{flow.runner}-inputs")
        for index, (raw, field) in enumerate(corpus):
            bad[start(sfn, machine_arn, raw)] = field
            if index % 5 == 0 and fine:  # good tasks interleaved with the bad
                good.append(start(sfn, machine_arn, json.dumps(fine.pop())))
        good += [start(sfn, machine_arn, json.dumps(item)) for item in fine]

    # A lease spans two check cycles at least (renewals are made by cycles).
    fast = {"check_interval_seconds": CHECK_INTERVAL_SECONDS, "lease_seconds": 10.0}
    with workers(aws, tmp_path, glue.config(**fast), athena.config(**fast)) as [worker]:
        statuses = wait_all(aws, [*bad, *good], timeout=120)
        alive = worker.poll() is None

    failures = {arn: failure(sfn, arn) for arn in bad}
    misnamed = {
        arn: (failures[arn], field)
        for arn, field in bad.items()
        if failures[arn][:2] != ("RunnerInputError", field)
    }
    slow = {arn: failures[arn][2] for arn in bad if failures[arn][2] > CHECK_INTERVAL_SECONDS}
    attack = f"Malformed inputs ({len(bad)} kinds) among good tasks"
    for arn, field in bad.items():  # recovery: from receipt to the named failure
        lost = int(failures[arn][:2] != ("RunnerInputError", field))
        report.add(attack, 1, lost, 0, 0, recovery_seconds=failures[arn][2])
    lost = sum(statuses[arn] != "SUCCEEDED" for arn in good)
    report.add(attack, len(good), lost, ledger.duplicated_starts, ledger.duplicated_reports)
    assert alive
    assert misnamed == {}
    assert slow == {}
    assert [statuses[arn] for arn in good] == ["SUCCEEDED"] * len(good)
    assert (ledger.jobs_started, ledger.duplicated_starts) == (len(good), 0)
    assert (ledger.reported, ledger.duplicated_reports) == (len(bad) + len(good), 0)
    assert logs_hold_no_token(aws, tmp_path)


def start(sfn: Any, machine_arn: str, raw: str) -> str:
    arn: str = sfn.start_execution(stateMachineArn=machine_arn, input=raw)["executionArn"]
    return arn


def failure(sfn: Any, execution: str) -> tuple[str, str, float]:
    """The task failure's error, the field its cause names, and how long after the
    worker received the task it failed."""
    [received] = events(sfn, execution, "ActivityStarted")
    [failed] = events(sfn, execution, "ActivityFailed")
    details = failed["activityFailedEventDetails"]
    field = json.loads(details.get("cause", "{}")).get("field", "")
    seconds = (failed["timestamp"] - received["timestamp"]).total_seconds()
    return details.get("error", ""), field, seconds
