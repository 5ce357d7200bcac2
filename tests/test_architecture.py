"""The layers, as the imports show them: the engine stands on the base modules only, the
service runners know nothing of Step Functions or the job store, and the emulator's moto
is the one it was written for."""

from __future__ import annotations

import ast
import re
import tomllib

from deploy.project import ROOT
from runners.local.emulator import SUPPORTED_MOTO_VERSIONS

BASE = ("runners.errors", "runners.logs", "runners.retry")


def imports(folder: str) -> dict[str, set[str]]:
    """The runners modules each file of ``folder`` imports."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / folder).glob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        found[path.name] = {name for name in names if name.startswith("runners")}
    return found


def test_the_engine_imports_nothing_above_it() -> None:
    for module, names in imports("runners/engine").items():
        above = {n for n in names if not n.startswith("runners.engine") and n not in BASE}
        assert above == set(), module


def test_service_runners_know_nothing_of_step_functions_or_the_job_store() -> None:
    engine_side = {"runners.engine.engine", "runners.engine.activity", "runners.engine.store"}
    for module, names in imports("runners/services").items():
        assert names & engine_side == set(), module
        assert not any(
            n.startswith(("runners.handlers", "runners.runtime", "runners.settings")) for n in names
        ), module


def test_the_emulators_moto_is_the_one_its_extensions_were_written_for() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    [local] = project["project"]["optional-dependencies"]["local"]
    [pinned] = [
        line
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.startswith("moto[")
    ]
    [supported] = SUPPORTED_MOTO_VERSIONS
    assert re.sub(r"^moto\[[^\]]*\]", "", local) == f"=={supported}"
    assert pinned.endswith(f"=={supported}")
