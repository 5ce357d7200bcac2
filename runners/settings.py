"""Runner configuration: the one place that reads config files and environment variables.

A config is JSON. It names its runner with ``"runner"``; a file in the original
sample's format has no such key and is recognised by its name. The original's keys
(``sfn_activity_arn``, ``sfn_worker_name``, ``ddb_table``, ``ddb_query_limit``,
``glue_job_capacity``) keep working. Environment variables override files:
``RUNNERS_<RUNNER>_<FIELD>`` for one runner, then ``RUNNERS_<FIELD>`` for all.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from runners.errors import ConfigError

RUNNER_NAMES = ("glue", "athena", "s3wait", "crawler")
FILE_NAMES = {"gluerunner-config.json": "glue", "athenarunner-config.json": "athena"}
ALIASES = {
    "sfn_activity_arn": "activity_arn",
    "sfn_worker_name": "worker_name",
    "ddb_table": "table",
    "ddb_query_limit": "page_size",
}
_ACTIVITY_ARN = re.compile(r"^arn:[\w-]+:states:([a-z0-9-]+):(\d{12}):activity:[\w.-]{1,80}$")


@dataclass(frozen=True)
class RunnerConfig:
    """Everything one runner needs; times are seconds."""

    runner: str
    activity_arn: str
    table: str
    worker_name: str = "runners"
    page_size: int = 100
    pollers: int = 4
    max_in_flight: int = 1000
    poll_seconds: float = 60.0
    check_interval_seconds: float = 5.0
    heartbeat_interval_seconds: float = 60.0
    lease_seconds: float = 120.0
    start_timeout_seconds: float = 3600.0
    retention_days: float = 7.0
    glue_job_capacity: float | None = None
    athena_output_location: str | None = None
    athena_workgroup: str | None = None
    wait_table: str | None = None
    wait_bucket: str | None = None
    wait_prefix: str | None = None
    wait_suffix: str | None = None
    wait_glob: str | None = None
    wait_max_age_seconds: float = 86_400.0

    def __post_init__(self) -> None:
        if self.runner not in RUNNER_NAMES:
            raise ConfigError(f"runner: {self.runner!r} is not one of {', '.join(RUNNER_NAMES)}")
        if not _ACTIVITY_ARN.match(self.activity_arn):
            raise ConfigError(f"activity_arn: {self.activity_arn!r} is not an activity ARN")
        if not self.table:
            raise ConfigError("table: the job table name is empty")
        if self.runner == "s3wait" and not self.wait_table:
            raise ConfigError("wait_table: the s3wait runner needs the wait table's name")
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
                raise ConfigError(f"{field.name}: must be positive, got {value}")

    @property
    def region(self) -> str:
        match = _ACTIVITY_ARN.match(self.activity_arn)
        assert match is not None
        return match.group(1)


def from_mapping(data: Mapping[str, Any], default_runner: str | None = None) -> RunnerConfig:
    values = {ALIASES.get(key, key): value for key, value in data.items()}
    values.setdefault("runner", default_runner)
    known = {field.name for field in fields(RunnerConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown configuration keys: {', '.join(unknown)}")
    missing = [name for name in ("runner", "activity_arn", "table") if not values.get(name)]
    if missing:
        raise ConfigError(f"missing configuration: {', '.join(missing)}")
    try:
        return RunnerConfig(**values)
    except TypeError as error:
        raise ConfigError(str(error)) from error


def environment_values(runner: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """Config fields set by ``RUNNERS_<RUNNER>_<FIELD>``, else ``RUNNERS_<FIELD>``."""
    values: dict[str, Any] = {}
    for field in fields(RunnerConfig):
        for name in (f"RUNNERS_{runner}_{field.name}".upper(), f"RUNNERS_{field.name}".upper()):
            raw = environ.get(name)
            if raw is not None and field.name != "runner":
                values[field.name] = _parse(field, raw, name)
                break
    return values


def with_environment(config: RunnerConfig, environ: Mapping[str, str]) -> RunnerConfig:
    overrides = environment_values(config.runner, environ)
    return dataclasses.replace(config, **overrides) if overrides else config


def load_file(path: str | Path, environ: Mapping[str, str]) -> RunnerConfig:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config is a JSON object")
    return with_environment(from_mapping(data, FILE_NAMES.get(path.name)), environ)


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
    """A container worker's configs: ``RUNNERS_SERVE`` names its runners (comma-separated),
    each configured by variables as in ``from_environment``."""
    served = [name.strip() for name in environ.get("RUNNERS_SERVE", "").split(",") if name.strip()]
    if not served:
        raise ConfigError(f"RUNNERS_SERVE: name the runners to serve ({', '.join(RUNNER_NAMES)})")
    unknown = sorted(set(served) - set(RUNNER_NAMES))
    if unknown:
        raise ConfigError(f"RUNNERS_SERVE: unknown runners {', '.join(unknown)}")
    return [config for runner in served for config in from_environment(runner, environ)]


def _parse(field: dataclasses.Field[Any], raw: str, name: str) -> Any:
    kind = str(field.type)
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
    except ValueError as error:
        raise ConfigError(f"{name}: {raw!r} is not a number") from error
    return raw
