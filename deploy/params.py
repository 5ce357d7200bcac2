"""Parameter files, in the original sample's format: a JSON list of ``ParameterKey`` /
``ParameterValue`` pairs per stack, and ``s3-deployment-descriptor.json`` naming where
each function's package goes.

A value may refer to what another step produced, so a setting is written once:
``{{stack:<stack>:<OutputKey>}}`` is an output of a deployed stack,
``{{descriptor:<function>:<key>}}`` an entry of the deployment descriptor. A value still
``<NO-DEFAULT>`` stops the task with the file and key to set.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from deploy.project import (
    DESCRIPTOR,
    FUNCTIONS,
    DeployError,
    FunctionSpec,
    StackSpec,
    params_dir,
)
from deploy.project import stack_name as full_name

NO_DEFAULT = "<NO-DEFAULT>"
# A stack in one of these has outputs to read.
USABLE_STATUSES = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE")
_REFERENCE = re.compile(r"\{\{(stack|descriptor):([^:}]+):([^}]+)\}\}")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as error:
        raise DeployError(f"{path}: missing") from error
    except ValueError as error:
        raise DeployError(f"{path}: not valid JSON ({error})") from error


class Parameters:
    """Resolves parameter files and references; reads each stack's outputs once."""

    def __init__(self, cloudformation: Any | None, directory: Path | None = None) -> None:
        self._cloudformation = cloudformation
        self.directory = directory or params_dir()
        self._outputs: dict[str, dict[str, str]] = {}

    # Stacks ----------------------------------------------------------------------------

    def for_stack(self, spec: StackSpec) -> list[dict[str, str]]:
        """The stack's parameters for CreateStack/UpdateStack, checked against its template."""
        path = self.directory / spec.params_file
        declared = spec.rendered().get("Parameters", {})
        values = self._file_values(path)
        unknown = sorted(set(values) - set(declared))
        if unknown:
            raise DeployError(
                f"{path}: {', '.join(unknown)} not a parameter of {spec.template} "
                f"(its parameters: {', '.join(declared)})"
            )
        missing = [key for key, p in declared.items() if "Default" not in p and key not in values]
        if missing:
            raise DeployError(f"{path}: set {', '.join(missing)} (no default in {spec.template})")
        _check_events_lease(path, declared, values)
        where = str(path)
        return [
            {"ParameterKey": key, "ParameterValue": self.resolve(value, f"{where}: {key}")}
            for key, value in values.items()
        ]

    def value(self, spec: StackSpec, key: str) -> str:
        """One parameter as the stack gets it: from the file, else the template default."""
        path = self.directory / spec.params_file
        values = self._file_values(path)
        if key in values:
            return self.resolve(values[key], f"{path}: {key}")
        declared = spec.rendered().get("Parameters", {})
        if "Default" not in declared.get(key, {}):
            raise DeployError(f"{path}: set {key}")
        return str(declared[key]["Default"])

    def _file_values(self, path: Path) -> dict[str, str]:
        entries = read_json(path)
        if not isinstance(entries, list) or not all(
            isinstance(entry, dict) and {"ParameterKey", "ParameterValue"} <= set(entry)
            for entry in entries
        ):
            raise DeployError(
                f'{path}: expected a list of {{"ParameterKey": ..., "ParameterValue": ...}}'
            )
        return {str(entry["ParameterKey"]): str(entry["ParameterValue"]) for entry in entries}

    # Functions -------------------------------------------------------------------------

    def package_location(self, function: FunctionSpec) -> tuple[str, str]:
        """(bucket, key) the function's package is deployed to."""
        path = self.directory / DESCRIPTOR
        descriptor = read_json(path)
        entry = descriptor.get(function.name) if isinstance(descriptor, dict) else None
        if not isinstance(entry, dict) or not {"SourceS3BucketName", "SourceS3Key"} <= set(entry):
            raise DeployError(
                f"{path}: add {function.name!r} with SourceS3BucketName and SourceS3Key"
            )
        where = f"{path}: {function.name}"
        bucket = self.resolve(str(entry["SourceS3BucketName"]), f"{where}.SourceS3BucketName")
        key = self.resolve(str(entry["SourceS3Key"]), f"{where}.SourceS3Key")
        return bucket, key

    # References ------------------------------------------------------------------------

    def resolve(self, value: str, where: str) -> str:
        if NO_DEFAULT in value:
            raise DeployError(f"{where} is {NO_DEFAULT}: set it before deploying")
        return _REFERENCE.sub(lambda match: self._lookup(match, where), value)

    def _lookup(self, match: re.Match[str], where: str) -> str:
        kind, name, key = match.groups()
        if kind == "descriptor":
            if name not in FUNCTIONS:
                raise DeployError(f"{where}: no function {name!r} in {DESCRIPTOR}")
            bucket, object_key = self.package_location(FUNCTIONS[name])
            fields = {"SourceS3BucketName": bucket, "SourceS3Key": object_key}
            if key not in fields:
                raise DeployError(f"{where}: {DESCRIPTOR} entries have no {key!r}")
            return fields[key]
        outputs = self.outputs(name, where)
        if key not in outputs:
            raise DeployError(
                f"{where}: stack {name} has no output {key} (outputs: {', '.join(outputs)})"
            )
        return outputs[key]

    def outputs(self, stack_name: str, where: str = "") -> dict[str, str]:
        if stack_name not in self._outputs:
            if self._cloudformation is None:
                raise DeployError(f"{where}: refers to stack {stack_name}; this task reads none")
            try:
                found = self._cloudformation.describe_stacks(StackName=full_name(stack_name))[
                    "Stacks"
                ]
            except ClientError as error:
                if "does not exist" not in str(error):
                    raise
                found = []
            done = [s for s in found if s["StackStatus"] in USABLE_STATUSES]
            if not done:
                raise DeployError(
                    f"{where}: needs stack {stack_name}, which is not deployed "
                    f"(pynt createstack[{stack_name}])"
                )
            self._outputs[stack_name] = {
                output["OutputKey"]: output["OutputValue"] for output in done[0].get("Outputs", [])
            }
        return self._outputs[stack_name]


def _check_events_lease(path: Path, declared: dict[str, Any], values: dict[str, str]) -> None:
    """With completion events on, check cycles renew leases: a lease shorter than two
    check intervals would make every worker fail its start-up check (ConfigError)."""
    if "CompletionEvents" not in declared:
        return

    def effective(key: str) -> str:
        return values.get(key, str(declared[key].get("Default", "")))

    if effective("CompletionEvents") != "true":
        return
    interval, lease = effective("EventsCheckIntervalSeconds"), effective("EventsLeaseSeconds")
    if interval.isdigit() and lease.isdigit() and int(lease) < 2 * int(interval):
        raise DeployError(
            f"{path}: EventsLeaseSeconds ({lease}) must be at least twice "
            f"EventsCheckIntervalSeconds ({interval}): check cycles renew the leases"
        )
