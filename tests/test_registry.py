"""The runner registry: the project's runners, plugins found by entry point, and the
checks made when it is read."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from runners import registry, settings
from runners.errors import ConfigError

ARN = "arn:aws:states:us-east-1:123456789012:activity:Work"
BUILTIN = list(registry.builtin().values())


def test_the_projects_runners_are_found_in_their_modules() -> None:
    assert {
        "athena",
        "crawler",
        "dms",
        "emrserverless",
        "emrstep",
        "glue",
        "redshift",
        "s3wait",
    } <= set(registry.names())
    for definition in BUILTIN:
        assert definition.module == f"runners.services.{definition.module.rsplit('.', 1)[-1]}"
        assert registry.get(definition.name) is definition


def test_an_unknown_runner_is_a_config_error_naming_the_known_ones() -> None:
    known = "athena, crawler, dms, emrserverless, emrstep, glue"
    with pytest.raises(ConfigError, match=f"'spark' is not one of {known}"):
        registry.get("spark")
    with pytest.raises(ConfigError, match="'spark' is not one of"):
        settings.served_from_environment({"RUNNERS_SERVE": "glue,spark"})


@pytest.mark.parametrize(
    "definition", [d for d in BUILTIN if d.states], ids=lambda d: str(getattr(d, "name", d))
)
def test_each_state_table_classifies_every_state_the_service_has(definition: Any) -> None:
    """The table is the one place a service's states are classified; AWS's API model
    lists the states, so a state AWS adds fails this test instead of a night's run."""
    table = definition.states
    assert table.states == documented_states(table.service, table.shape)


def documented_states(service: str, shape_name: str) -> set[str]:
    """An enumeration's values; for a string member (``ReplicationTask.Status``: DMS
    models its statuses as a string), the values its documentation lists, as the API
    reference does (``<code>"running"</code> - The task is performing...``)."""
    model = botocore.session.get_session().get_service_model(service)
    if "." not in shape_name:
        return set(model.shape_for(shape_name).enum)  # type: ignore[attr-defined]
    structure, member = shape_name.split(".")
    documentation = model.shape_for(structure).members[member].documentation  # type: ignore[attr-defined]
    return set(re.findall(r'<li> <p> <code>"([a-z-]+)"</code>', documentation))


def plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, target: str, code: str
) -> None:
    """A package installed as pip installs it: its module and its dist-info with the
    entry point."""
    package = tmp_path / "site"
    (package / f"{name}_plugin.py").parent.mkdir(parents=True, exist_ok=True)
    (package / f"{name}_plugin.py").write_text(code)
    info = package / f"{name}_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[runners.runners]\n{name} = {target}\n")
    monkeypatch.syspath_prepend(str(package))


ECHO = """
from dataclasses import dataclass
from runners.engine.definition import RunnerDefinition

async def build(context):
    raise NotImplementedError

@dataclass(frozen=True)
class EchoOptions:
    echo_prefix: str = ">"

RUNNER = RunnerDefinition(
    name="{name}", title="Echo", description="", build=build, options=EchoOptions
)
"""


def test_a_plugin_is_found_by_its_entry_point_and_configured_like_any_runner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin(tmp_path, monkeypatch, "echo", "echo_plugin:RUNNER", ECHO.format(name="echo"))

    assert "echo" in registry.names()
    config = settings.from_mapping(
        {"runner": "echo", "activity_arn": ARN, "table": "T", "echo_prefix": "$"}
    )
    assert (config.definition.module, config.options.echo_prefix) == ("echo_plugin", "$")
    with pytest.raises(ConfigError, match="unknown configuration keys for the echo runner"):
        settings.from_mapping(
            {"runner": "echo", "activity_arn": ARN, "table": "T", "glue_job_capacity": 1}
        )


@pytest.mark.parametrize(
    ("name", "target", "code", "message"),
    [
        ("broken", "broken_plugin:RUNNER", "import not_a_module\n", "cannot be loaded"),
        ("named", "named_plugin:RUNNER", ECHO.format(name="other"), "declares the name 'other'"),
        ("thing", "thing_plugin:RUNNER", "RUNNER = 42\n", "is not a RunnerDefinition"),
        ("glue", "glue_plugin:RUNNER", ECHO.format(name="glue"), "more than one runner"),
    ],
)
def test_a_plugin_that_cannot_serve_is_a_config_error_when_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, target: str, code: str, message: str
) -> None:
    plugin(tmp_path, monkeypatch, name, target, code)

    assert "athena" in registry.names()  # listing never loads a plugin
    with pytest.raises(ConfigError, match=message):
        registry.get(name)
