"""What the project deploys: its stacks, their templates and parameter files, and its
Lambda functions. Every task reads this table; adding a stack or function is one line,
and a runner's stack and function come from its declaration (``runners.registry``)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy import templates
from runners import registry

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "cloudformation"
SAMPLES = ROOT / "samples"
# Packages and their installed dependencies; RUNNERS_BUILD_DIR moves them (tests do).
BUILD = Path(os.environ.get("RUNNERS_BUILD_DIR", ROOT / "build"))
RUNTIME_REQUIREMENTS = ROOT / "requirements-runtime.txt"
DESCRIPTOR = "s3-deployment-descriptor.json"
# Put before every stack name the tasks create or read, so two deployments (another
# environment, or the original sample during a switch-over) can share an account.
STACK_PREFIX_VARIABLE = "RUNNERS_STACK_PREFIX"
_STACK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")


class DeployError(Exception):
    """A task cannot go on; the message says what to fix."""


@dataclass(frozen=True)
class StackSpec:
    """A stack: its template, and the runners whose declarations complete it."""

    name: str
    template: str
    runners: tuple[str, ...] = ()

    @property
    def template_path(self) -> Path:
        return TEMPLATES / self.template

    @property
    def stack_name(self) -> str:
        """The stack's name in CloudFormation: ``RUNNERS_STACK_PREFIX`` + its name."""
        return stack_name(self.name)

    @property
    def params_file(self) -> str:
        return f"{self.name}-params.json"

    def rendered(self) -> dict[str, Any]:
        """The template as deployed: with its runners' permissions and parameters."""
        definitions = [registry.get(name) for name in self.runners]
        return templates.render(self.template_path, definitions)


@dataclass(frozen=True)
class FunctionSpec:
    """A Lambda function: its handler module, the runner it serves (loaded by name, so
    its module is packaged too), and the stack (and output) that deploys it."""

    name: str
    module: str
    stack: str
    function_name_output: str
    runner: str | None = None

    @property
    def handler(self) -> str:
        return f"{self.module}.handler"

    @property
    def modules(self) -> tuple[str, ...]:
        return (registry.get(self.runner).module,) if self.runner else ()


# The project's own runners: each has a Lambda stack, and the service serves them all.
# (A plugin's runner is served by a worker that has it installed; see the README.)
RUNNERS = list(registry.builtin().values())
RUNNER_HANDLER = "runners.handlers.runner"

STACKS = {
    spec.name: spec
    for spec in (
        StackSpec("step-functions-resources", "step-functions-resources.yaml"),
        StackSpec("glue-resources", "glue-resources.yaml"),
        *(
            StackSpec(f"{runner.function}-lambda", "runner-lambda.yaml", (runner.name,))
            for runner in RUNNERS
        ),
        StackSpec("runner-service", "runner-service.yaml", tuple(r.name for r in RUNNERS)),
        StackSpec("triggers-and-notifications", "triggers-and-notifications.yaml"),
    )
}

FUNCTIONS = {
    spec.name: spec
    for spec in (
        *(
            FunctionSpec(
                runner.function,
                RUNNER_HANDLER,
                f"{runner.function}-lambda",
                "FunctionName",
                runner.name,
            )
            for runner in RUNNERS
        ),
        FunctionSpec(
            "ons3objectcreated",
            "runners.handlers.ons3objectcreated",
            "step-functions-resources",
            "ObjectCreatedFunctionName",
        ),
        FunctionSpec(
            "redrive",
            "runners.handlers.redrive",
            "triggers-and-notifications",
            "RedriveFunctionName",
        ),
    )
}


def stack_name(name: str) -> str:
    full = os.environ.get(STACK_PREFIX_VARIABLE, "") + name
    if not _STACK_NAME.match(full):
        raise DeployError(f"{STACK_PREFIX_VARIABLE}: {full!r} is not a valid stack name")
    return full


def params_dir() -> Path:
    """Where the ``*-params.json`` files and the deployment descriptor live:
    ``cloudformation/`` unless ``RUNNERS_PARAMS_DIR`` names another (one per environment)."""
    return Path(os.environ.get("RUNNERS_PARAMS_DIR", TEMPLATES))


def stack(name: str) -> StackSpec:
    if name not in STACKS:
        raise DeployError(f"unknown stack {name!r}; the stacks are: {', '.join(STACKS)}")
    return STACKS[name]


def functions(names: tuple[str, ...]) -> list[FunctionSpec]:
    """The named functions, or all of them when none is named."""
    unknown = [name for name in names if name not in FUNCTIONS]
    if unknown:
        raise DeployError(
            f"unknown function {', '.join(unknown)}; the functions are: {', '.join(FUNCTIONS)}"
        )
    return [FUNCTIONS[name] for name in names] if names else list(FUNCTIONS.values())
