"""Runner configuration: the one place that reads config files and environment variables.

A config is JSON. It names its runner with ``"runner"``; a file in the original
sample's format has no such key and is recognised by its name. The original's keys
(``sfn_activity_arn``, ``sfn_worker_name``, ``ddb_table``, ``ddb_query_limit``,
``glue_job_capacity``) keep working. Fields are the engine's (every runner has them)
plus the runner's own options, declared by the runner. Environment variables override
files: ``RUNNERS_<RUNNER>_<FIELD>`` for one runner, then ``RUNNERS_<FIELD>`` for all.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from runners import registry
from runners.engine.config import EngineConfig
from runners.engine.definition import RunnerDefinition
from runners.engine.worker import SHUTDOWN_GRACE_SECONDS
from runners.errors import ConfigError

FILE_NAMES = {"gluerunner-config.json": "glue", "athenarunner-config.json": "athena"}
ALIASES = {
    "sfn_activity_arn": "activity_arn",
    "sfn_worker_name": "worker_name",
    "ddb_table": "table",
    "ddb_query_limit": "page_size",
}
ENGINE_FIELDS = {field.name: field for field in fields(EngineConfig)}


@dataclass(frozen=True, kw_only=True)
class RunnerConfig(EngineConfig):
    """One runner's configuration: the engine's fields, its name, its own options."""

    runner: str
    options: Any = None

    @property
    def definition(self) -> RunnerDefinition[Any]:
        return registry.get(self.runner)

    def as_mapping(self) -> dict[str, Any]:
        """What a config file for this runner holds."""
        values = {name: getattr(self, name) for name in ENGINE_FIELDS}
        options = dataclasses.asdict(self.options) if self.options is not None else {}
        return {"runner": self.runner, **values, **options}


def from_mapping(data: Mapping[str, Any], default_runner: str | None = None) -> RunnerConfig:
    values = {ALIASES.get(key, key): value for key, value in data.items()}
    runner = values.pop("runner", None) or default_runner
    if not runner:
        raise ConfigError("missing configuration: runner")
    if not isinstance(runner, str):
        raise ConfigError(f"runner: must be a runner's name, got {runner!r}")
    definition = registry.get(runner)
    option_fields = {field.name: field for field in fields(definition.options)}
    unknown = sorted(set(values) - set(ENGINE_FIELDS) - set(option_fields))
    if unknown:
        raise ConfigError(
            f"unknown configuration keys for the {runner} runner: {', '.join(unknown)}"
        )
    missing = [name for name in ("activity_arn", "table") if not values.get(name)]
    if missing:
        raise ConfigError(f"missing configuration: {', '.join(missing)}")
    engine = {
        name: _typed(EngineConfig, name, value)
        for name, value in values.items()
        if name in ENGINE_FIELDS
    }
    options = {
        name: _typed(definition.options, name, value)
        for name, value in values.items()
        if name in option_fields
    }
    try:
        built = definition.options(**options)
    except TypeError as error:
        raise ConfigError(f"{runner} runner: {error}") from error
    return RunnerConfig(runner=runner, options=built, **engine)


def environment_values(runner: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """Config fields set by ``RUNNERS_<RUNNER>_<FIELD>``, else ``RUNNERS_<FIELD>``."""
    options = registry.get(runner).options
    owners = {**dict.fromkeys(ENGINE_FIELDS, EngineConfig)}
    owners.update(dict.fromkeys((field.name for field in fields(options)), options))
    values: dict[str, Any] = {}
    for name, owner in owners.items():
        for variable in (f"RUNNERS_{runner}_{name}".upper(), f"RUNNERS_{name}".upper()):
            if variable in environ:
                values[name] = _typed(owner, name, environ[variable], where=variable)
                break
    return values


def with_environment(config: RunnerConfig, environ: Mapping[str, str]) -> RunnerConfig:
    overrides = environment_values(config.runner, environ)
    if not overrides:
        return config
    return from_mapping({**config.as_mapping(), **overrides})


def load_file(path: str | Path, environ: Mapping[str, str]) -> RunnerConfig:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config is a JSON object")
    try:
        return with_environment(from_mapping(data, FILE_NAMES.get(path.name)), environ)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from error


def from_environment(runner: str, environ: Mapping[str, str]) -> list[RunnerConfig]:
    """A Lambda's configs: an optional file (``RUNNERS_CONFIG_FILE``), then variables.
    ``RUNNERS_<RUNNER>_ACTIVITY_ARN`` may list several activities, comma-separated."""
    file_name = environ.get("RUNNERS_CONFIG_FILE")
    if file_name:
        return [load_file(file_name, environ)]
    values = environment_values(runner, environ)
    arns = [arn.strip() for arn in str(values.pop("activity_arn", "")).split(",") if arn.strip()]
    if not arns:
        raise ConfigError(f"missing configuration: RUNNERS_{runner.upper()}_ACTIVITY_ARN")
    return [from_mapping({"runner": runner, **values, "activity_arn": arn}) for arn in arns]


def served_from_environment(environ: Mapping[str, str]) -> list[RunnerConfig]:
    """A container worker's configs: ``RUNNERS_SERVE`` names its runners (comma-separated);
    without it, every runner whose ``RUNNERS_<RUNNER>_ACTIVITY_ARN`` is set is served.
    Each is configured by variables as in ``from_environment``."""
    listed = [name.strip() for name in environ.get("RUNNERS_SERVE", "").split(",") if name.strip()]
    served = listed or [
        name for name in registry.names() if environ.get(f"RUNNERS_{name.upper()}_ACTIVITY_ARN")
    ]
    if not served:
        raise ConfigError(
            "RUNNERS_SERVE: name the runners to serve, or set RUNNERS_<RUNNER>_ACTIVITY_ARN "
            f"for each (runners: {', '.join(registry.names())})"
        )
    for name in served:
        registry.get(name)  # an unknown name is a ConfigError naming the known ones
    return [config for runner in served for config in from_environment(runner, environ)]


def shutdown_grace_seconds(environ: Mapping[str, str]) -> float:
    """How long a stopping container worker may take to hand its tasks on
    (``RUNNERS_SHUTDOWN_GRACE_SECONDS``); keep it below the service's StopTimeout."""
    text = environ.get("RUNNERS_SHUTDOWN_GRACE_SECONDS")
    if text is None:
        return SHUTDOWN_GRACE_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"RUNNERS_SHUTDOWN_GRACE_SECONDS: {text!r} is not a positive number")
    return seconds


def _typed(owner: type, name: str, value: Any, where: str | None = None) -> Any:
    """A config value as its field's type: files give JSON values, variables text."""
    kind = typing.get_type_hints(owner)[name]
    allowed = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    if value is None and type(None) in allowed:
        return None
    if isinstance(value, str) and bool in allowed and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if isinstance(value, bool):
        if bool in allowed:
            return value
    elif int in allowed and isinstance(value, int | str):
        try:
            return int(value)
        except ValueError:
            pass
    elif float in allowed and isinstance(value, int | float | str):
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            return number
    elif str in allowed and isinstance(value, str):
        return value
    expected = " or ".join(k.__name__ for k in allowed if k is not type(None))
    raise ConfigError(f"{where or name}: {value!r} is not {expected}")
