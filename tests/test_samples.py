"""The shipped samples: generated data, Glue scripts, state machine definitions."""

from __future__ import annotations

import ast
import csv
import importlib.util
import io
import json
import py_compile
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from runners.demo.resources import GLUE_JOBS, SAMPLES, substitute
from runners.local import Emulator

ORIGINAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def generator() -> Any:
    spec = importlib.util.spec_from_file_location("generate", SAMPLES / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode())))


def test_the_shipped_data_is_what_the_generator_makes() -> None:
    for name, content in generator().datasets().items():
        assert (SAMPLES / "data" / name).read_bytes() == content, name


@pytest.mark.skipif(not ORIGINAL_DATA.exists(), reason="the original data sits in ../shared")
def test_the_columns_are_the_originals() -> None:
    for name in ("SalesPipeline_QuickSightSample.csv", "MarketingData_QuickSightSample.csv"):
        ours = (SAMPLES / "data" / name).read_text().splitlines()[0]
        original = (ORIGINAL_DATA / name).read_text().splitlines()[0]
        assert ours == original


def test_the_datasets_have_the_expected_shape() -> None:
    data = generator().datasets()
    sales = rows(data["SalesPipeline_QuickSightSample.csv"])
    marketing = rows(data["MarketingData_QuickSightSample.csv"])

    assert 19_000 <= len(sales) <= 21_000
    assert {r["Opportunity Stage"] for r in sales} == {
        "Lead",
        "Prospect",
        "Qualified",
        "Contracting",
        "Closed Won",
        "Closed Lost",
    }
    weights = {
        "Lead": 0.1,
        "Prospect": 0.2,
        "Qualified": 0.5,
        "Contracting": 0.8,
        "Closed Won": 1.0,
        "Closed Lost": 0.0,
    }
    assert all(
        int(r["Weighted Revenue"])
        == round(int(r["Forecasted Monthly Revenue"]) * weights[r["Opportunity Stage"]])
        for r in sales
    )
    days = [datetime.strptime(r["Date"], "%m/%d/%Y").date() for r in marketing]
    assert days[0] == date(2013, 1, 1)
    assert days[-1] == date(2016, 12, 31)
    assert len(days) == len(set(days)) == (days[-1] - days[0]).days + 1


def test_glue_scripts_compile_and_read_the_arguments_their_jobs_pass() -> None:
    for job, (script, arguments) in GLUE_JOBS.items():
        path = SAMPLES / "glue-scripts" / script
        py_compile.compile(str(path), doraise=True)
        resolved = next(
            node
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "getResolvedOptions"
        )
        names = resolved.args[1]
        assert isinstance(names, ast.List)
        wanted = {str(element.value) for element in names.elts if isinstance(element, ast.Constant)}
        assert {f"--{name}" for name in wanted - {"JOB_NAME"}} == set(arguments), job


def test_every_definition_is_valid_on_the_emulator(aws: Emulator) -> None:
    sfn = aws.client("stepfunctions")
    for path in sorted((SAMPLES / "statemachines").glob("*.asl.json")):
        text = path.read_text()
        json.loads(text)
        names = set(re.findall(r"\$\{(\w+)\}", text))
        values = {name: f"arn:aws:states:us-east-1:123456789012:activity:{name}" for name in names}
        values["Partition"] = "aws"
        arn = sfn.create_state_machine(
            name=path.name.split(".")[0],
            definition=substitute(text, values),
            roleArn="arn:aws:iam::123456789012:role/r",
        )["stateMachineArn"]
        assert arn


def test_substitution_requires_every_value() -> None:
    assert substitute('{"a": "${X}", "b": "$.c", "d": "$$.Task.Token"}', {"X": "1"}) == (
        '{"a": "1", "b": "$.c", "d": "$$.Task.Token"}'
    )
    with pytest.raises(KeyError, match="Y"):
        substitute("${X} ${Y}", {"X": "1"})
