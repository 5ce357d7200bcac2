"""Whatever input a state machine sends, parsing it either yields a spec or raises
``RunnerInputError``: nothing else escapes, so no task input can crash the accept path
and leave its task unreported."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runners.engine.inputs import parse_document
from runners.engine.runner import Runner
from runners.errors import RunnerInputError
from runners.services.athena import AthenaQueryRunner
from runners.services.crawler import GlueCrawlerRunner
from runners.services.glue import GlueJobRunner
from runners.services.s3wait import S3WaitRunner
from runners.waits.table import WaitTable

ACTIVITY = "arn:aws:states:us-east-1:123456789012:activity:landing-sales.csv"

RUNNERS: dict[str, Runner[Any]] = {
    "glue": GlueJobRunner(glue=None),
    "athena": AthenaQueryRunner(athena=None),
    "crawler": GlueCrawlerRunner(glue=None),
    "s3wait": S3WaitRunner(None, WaitTable("Waits", "us-east-1"), ACTIVITY, "tasks"),
}
FIELDS = [
    "GlueJobName", "Arguments", "GlueJobCapacity", "WorkerType", "NumberOfWorkers", "Timeout",
    "NotifyDelayAfter", "AthenaQueryString", "AthenaDatabase", "AthenaNamedQuery",
    "ExecutionParameters", "AthenaResultOutputLocation", "AthenaResultEncryptionOption",
    "AthenaResultKmsKey", "CrawlerName", "S3Bucket", "S3Key", "S3Prefix", "S3KeyPattern",
    "MaxAgeSeconds", "ArrivedAfter",
]  # fmt: skip

text = st.text(alphabet=st.characters(codec=None), max_size=40)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | text
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
documents = st.dictionaries(st.sampled_from(FIELDS) | text, values, max_size=8)


def parse_or_reject(runner: Runner[Any], raw: str) -> None:
    try:
        runner.parse(parse_document(raw))
    except RunnerInputError as error:
        rejection: RunnerInputError | None = error
    else:
        rejection = None
    if rejection is not None:
        assert rejection.error == "RunnerInputError"
        assert rejection.field
        json.loads(rejection.cause)  # the cause a state machine reads is JSON


@pytest.mark.parametrize("name", list(RUNNERS))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=documents)
def test_any_document_parses_or_fails_with_a_named_error(name: str, document: Any) -> None:
    parse_or_reject(RUNNERS[name], json.dumps(document))


@settings(max_examples=300, deadline=None)
@given(raw=st.text(max_size=200) | values.map(json.dumps))
def test_any_text_parses_or_fails_with_a_named_error(raw: str) -> None:
    for runner in RUNNERS.values():
        parse_or_reject(runner, raw)
        parse_or_reject(runner, json.dumps(raw))  # the same, as a Pass state's string


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps("[" * 100_000),  # nests past the parser's recursion limit
        json.dumps('{"a":' * 5_000 + "1" + "}" * 5_000),
        '{"GlueJobName": 1' + "0" * 5_000 + "}",  # past Python's integer digit limit
    ],
    ids=["deep-array", "deep-object", "huge-integer"],
)
def test_pathological_json_is_an_input_error(raw: str) -> None:
    with pytest.raises(RunnerInputError) as raised:
        parse_document(raw)
    assert raised.value.field == "$"
