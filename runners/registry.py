"""Which runners exist: the project's own (each module of ``runners.services`` that
declares a ``RUNNER``) and those other installed packages declare under the entry point
group ``runners.runners``::

    [project.entry-points."runners.runners"]
    httpjob = "my_package.httpjob:RUNNER"

A plugin is loaded only when its name is asked for, so a broken plugin cannot stop a
worker that does not serve it.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from runners.engine.definition import RunnerDefinition
from runners.errors import ConfigError

ENTRY_POINT_GROUP = "runners.runners"
BUILTIN_PACKAGE = "runners.services"


@functools.cache
def builtin() -> dict[str, RunnerDefinition[Any]]:
    """The project's own runners, by name."""
    package = importlib.import_module(BUILTIN_PACKAGE)
    found: dict[str, RunnerDefinition[Any]] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{BUILTIN_PACKAGE}.{info.name}")
        definition = getattr(module, "RUNNER", None)
        if isinstance(definition, RunnerDefinition):
            _add(found, definition, module.__name__)
    return found


def _plugins() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def names() -> list[str]:
    """Every runner's name; plugins are listed without being loaded."""
    return sorted({*builtin(), *_plugins()})


def get(name: str) -> RunnerDefinition[Any]:
    """The runner called ``name``; a ``ConfigError`` naming the known ones otherwise."""
    plugins = _plugins()
    if name in builtin():
        if name in plugins:
            raise ConfigError(
                f"runner {name!r}: more than one runner has this name "
                f"({builtin()[name].module} and {plugins[name].value})"
            )
        return builtin()[name]
    if name in plugins:
        return _load(plugins[name])
    raise ConfigError(f"runner: {name!r} is not one of {', '.join(names())}")


def everything() -> list[RunnerDefinition[Any]]:
    """Every runner, plugins loaded (what a deployment may serve)."""
    return [get(name) for name in names()]


@functools.cache
def _load(entry: EntryPoint) -> RunnerDefinition[Any]:
    try:
        definition = entry.load()
    except Exception as error:
        raise ConfigError(
            f"runner {entry.name!r} ({entry.value}) cannot be loaded: {error}"
        ) from error
    if not isinstance(definition, RunnerDefinition):
        raise ConfigError(f"runner {entry.name!r}: {entry.value} is not a RunnerDefinition")
    if definition.name != entry.name:
        raise ConfigError(
            f"runner {entry.name!r}: {entry.value} declares the name {definition.name!r}"
        )
    return _with_module(definition, entry.module)


def _add(
    found: dict[str, RunnerDefinition[Any]], definition: RunnerDefinition[Any], module: str
) -> None:
    if definition.name in found:
        raise ConfigError(
            f"runner {definition.name!r}: declared by {found[definition.name].module} and {module}"
        )
    found[definition.name] = _with_module(definition, module)


def _with_module(definition: RunnerDefinition[Any], module: str) -> RunnerDefinition[Any]:
    object.__setattr__(definition, "module", module)
    return definition
