"""A runner's declaration: everything the rest of the project needs to know about it.

Each runner module ends with one ``RunnerDefinition``. Settings read its options,
the runtime builds it with clients of its SDK retry mode, the Lambda handler serves it
by name, and the deployment tasks give its role its permissions and its function its
parameters. Nothing else lists runners: adding one is adding a module.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Generic, Literal, TypeVar

from runners.engine.config import EngineConfig
from runners.engine.runner import Runner
from runners.engine.service import EndEvents, StateTable

OptionsT = TypeVar("OptionsT")
# "standard": the SDK retries throttling and 5xx itself. "none": the start carries no
# idempotency token, so an SDK resend after a lost answer would start a second job;
# the engine retries such calls itself, searching first.
SdkRetries = Literal["standard", "none"]
ClientFactory = Callable[[str], Awaitable[Any]]
_NAME = re.compile(r"^[a-z][a-z0-9]{1,30}$")


@dataclass(frozen=True)
class NoOptions:
    """For runners with no fields of their own."""


@dataclass(frozen=True)
class Permission:
    """One IAM statement the runner's role needs. Resources are CloudFormation ``Fn::Sub``
    strings: ``${AWS::Partition}``, ``${AWS::Region}``, ``${AWS::AccountId}`` and the
    names of the runner's deployment parameters may appear. ``*`` only for actions that
    accept no resource."""

    actions: tuple[str, ...]
    resources: tuple[str, ...]


@dataclass(frozen=True)
class DeployParameter:
    """A stack parameter of the runner's deployment. With ``option``, the parameter sets
    that options field of the runner (an empty value sets nothing)."""

    name: str
    description: str
    default: str | None = None
    option: str | None = None


@dataclass(frozen=True)
class RunnerContext(Generic[OptionsT]):
    """What building a runner is given: its settings, and AWS clients for its region,
    made with its SDK retry mode."""

    config: EngineConfig
    options: OptionsT
    client: ClientFactory
    # Run this (a function or a coroutine function) when the engines close.
    at_close: Callable[[Callable[[], Any]], None]
    create_tables: bool = False


@dataclass(frozen=True)
class RunnerDefinition(Generic[OptionsT]):
    """``name`` is what configs call the runner (``"runner": "glue"``); ``title`` names
    its template parameters (``GlueActivityArns``); ``function`` its Lambda function and
    stack (``gluerunner``, ``gluerunner-lambda``)."""

    name: str
    title: str
    description: str
    build: Callable[[RunnerContext[OptionsT]], Awaitable[Runner[Any]]]
    options: type[OptionsT] = NoOptions  # type: ignore[assignment]
    sdk_retries: SdkRetries = "standard"
    permissions: tuple[Permission, ...] = ()
    parameters: tuple[DeployParameter, ...] = ()
    states: StateTable | None = None
    # The EventBridge pattern of the service's events saying one of its jobs ended (the
    # rule the runner's stack routes to its completion queue); None: it sends none.
    completion_events: EndEvents | None = field(default=None, hash=False)
    function: str = ""
    module: str = field(default="", compare=False)  # where it was found (set by the registry)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"runner name {self.name!r}: lowercase letters and digits only")
        if not is_dataclass(self.options):
            raise ValueError(f"{self.name}: options must be a dataclass")
        option_names = {f.name for f in fields(self.options)}
        engine_names = {f.name for f in fields(EngineConfig)}
        if option_names & (engine_names | {"runner"}):
            clash = ", ".join(sorted(option_names & (engine_names | {"runner"})))
            raise ValueError(f"{self.name}: options {clash} clash with the engine's fields")
        for parameter in self.parameters:
            if parameter.option is not None and parameter.option not in option_names:
                raise ValueError(f"{self.name}: parameter {parameter.name} sets no option")
        if not self.function:
            object.__setattr__(self, "function", f"{self.name}runner")
