"""Whatever a config file or the environment holds, loading it yields a config or a
``ConfigError`` that names the field at fault: never a traceback (the worker command
turns a ``ConfigError`` into one line and exit code 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runners import registry
from runners.engine.config import EngineConfig
from runners.errors import ConfigError
from runners.settings import ALIASES, from_environment, from_mapping

ARN = "arn:aws:states:eu-west-1:123456789012:activity:Nightly"
RUNNERS = registry.names()
# The fields each runner needs beyond the engine's.
REQUIRED = {"s3wait": {"wait_table": "Waits"}}


def error_of(load: Callable[[], object]) -> str | None:
    """The ConfigError's message, or None when the config loaded; anything else raises."""
    try:
        load()
    except ConfigError as error:
        return str(error)
    return None


def fields_of(runner: str) -> list[str]:
    options = registry.get(runner).options
    return [f.name for f in fields(EngineConfig)] + [f.name for f in fields(options)]


def valid(runner: str) -> dict[str, Any]:
    return {"runner": runner, "activity_arn": ARN, "table": "Jobs", **REQUIRED.get(runner, {})}


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)
BAD_ARNS = st.sampled_from(
    [
        "",
        "arn:aws:states:eu-west-1:123456789012:stateMachine:Nightly",
        "arn:aws:states:eu-west-1:12345:activity:Nightly",
        "arn:aws:states::123456789012:activity:Nightly",
        "arn:aws:glue:eu-west-1:123456789012:activity:Nightly",
        "arn:aws:states:eu-west-1:123456789012:activity:" + "x" * 81,
        "GlueRunnerActivity",
    ]
)


@st.composite
def broken_configs(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A valid config with one field given a random value (or a key it does not know);
    returns it and the field an error must name."""
    runner = draw(st.sampled_from(RUNNERS))
    config = valid(runner)
    name = draw(st.sampled_from([*fields_of(runner), *ALIASES, "runner", "unknown_key"]))
    value = draw(BAD_ARNS if name in ("activity_arn", "sfn_activity_arn") else JSON_VALUES)
    config[name] = value
    return config, ALIASES.get(name, name)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(broken_configs())
def test_a_config_file_loads_or_names_the_field_at_fault(case: tuple[dict[str, Any], str]) -> None:
    config, field = case
    message = error_of(lambda: from_mapping(config))

    # An empty required field is reported as missing, by its name too.
    assert message is None or field in message, message


@settings(max_examples=300, deadline=None)
@given(
    runner=st.sampled_from(RUNNERS),
    data=st.data(),
    value=st.text(max_size=40),
    for_all=st.booleans(),
)
def test_an_environment_variable_loads_or_names_itself(
    runner: str, data: st.DataObject, value: str, for_all: bool
) -> None:
    name = data.draw(st.sampled_from(fields_of(runner)))
    variable = f"RUNNERS_{name}".upper() if for_all else f"RUNNERS_{runner}_{name}".upper()
    environ = {
        f"RUNNERS_{runner.upper()}_ACTIVITY_ARN": ARN,
        f"RUNNERS_{runner.upper()}_TABLE": "Jobs",
        **{f"RUNNERS_{runner.upper()}_{k.upper()}": v for k, v in REQUIRED.get(runner, {}).items()},
        variable: value,
    }
    message = error_of(lambda: from_environment(runner, environ))

    assert message is None or variable in message or name in message, message


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ({**valid("glue"), "pollers": "many"}, "pollers"),
        ({**valid("glue"), "polers": 4}, "polers"),
        (
            {**valid("glue"), "activity_arn": "arn:aws:states:eu-west-1:1:activity:A"},
            "activity_arn",
        ),
        ({**valid("glue"), "runner": "spark"}, "spark"),
        ([1, 2], "JSON object"),
        ("{not json", "config.json"),
    ],
)
def test_the_worker_command_exits_2_with_one_line_for_a_bad_config_file(
    content: object, named: str, tmp_path: Path
) -> None:
    path = tmp_path / "config.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    # Its own process: the worker command configures logging for the whole process.
    result = subprocess.run(
        [sys.executable, "-m", "runners", "worker", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    error = result.stderr
    assert named in error
    assert "Traceback" not in error
    assert len(error.strip().splitlines()) == 1


def test_the_fuzzed_fields_cover_every_runner_and_field() -> None:
    """Every runner's own options are reachable by the fuzz (a new option is fuzzed)."""
    assert set(RUNNERS) >= {"glue", "athena", "crawler", "s3wait", "redshift", "dms"}
    for runner in RUNNERS:
        assert from_mapping(valid(runner)).runner == runner
        assert json.dumps(from_mapping(valid(runner)).as_mapping())
