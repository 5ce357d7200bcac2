"""Lambda packages: one zip per function, importable with nothing else on the path."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from deploy.packaging import build_package, python_version
from deploy.params import Parameters
from deploy.project import FUNCTIONS, RUNNER_HANDLER, FunctionSpec

# Prints where every imported module came from, so the test can see nothing leaked in.
IMPORT_CHECK = """
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
handler = importlib.import_module(sys.argv[2]).handler
assert callable(handler)
if sys.argv[3]:  # a runner's function loads its runner by name
    from runners import registry
    assert registry.get(sys.argv[3]).build
print(json.dumps({"path": sys.path, "files": [
    getattr(module, "__file__", None) or "" for module in list(sys.modules.values())
]}))
"""


@pytest.mark.parametrize("function", FUNCTIONS.values(), ids=list(FUNCTIONS))
def test_each_package_imports_its_handler_in_a_clean_interpreter(
    build_dir: Path, tmp_path: Path, function: FunctionSpec
) -> None:
    with zipfile.ZipFile(build_dir / f"{function.name}.zip") as package:
        package.extractall(tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            IMPORT_CHECK,
            str(tmp_path),
            function.module,
            function.runner or "",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = __import__("json").loads(result.stdout)
    assert not any("site-packages" in entry for entry in report["path"])
    outside = [
        file
        for file in report["files"]
        if file and not file.startswith(str(tmp_path)) and not file.startswith(sys.base_prefix)
    ]
    assert outside == []


@pytest.mark.parametrize("function", FUNCTIONS.values(), ids=list(FUNCTIONS))
def test_a_package_holds_no_emulator_demo_cli_or_tests(
    build_dir: Path, function: FunctionSpec
) -> None:
    with zipfile.ZipFile(build_dir / f"{function.name}.zip") as package:
        names = package.namelist()
    assert f"{function.module.replace('.', '/')}.py" in names
    forbidden = ("runners/local/", "runners/demo/", "runners/cli.py", "tests/", "moto/", "pytest")
    assert [name for name in names if name.startswith(forbidden)] == []
    assert "aiobotocore/__init__.py" in names
    assert not any(name.endswith(".pyc") for name in names)


def test_a_package_holds_only_the_runners_modules_its_handler_imports(build_dir: Path) -> None:
    with zipfile.ZipFile(build_dir / "ons3objectcreated.zip") as package:
        runners = {name for name in package.namelist() if name.startswith("runners/")}
    assert "runners/waits/table.py" in runners
    assert not any(name.startswith("runners/services/") for name in runners)
    for function in FUNCTIONS.values():
        if function.module != RUNNER_HANDLER:
            continue
        with zipfile.ZipFile(build_dir / f"{function.name}.zip") as package:
            services = {n for n in package.namelist() if n.startswith("runners/services/")}
        [runner] = function.modules  # its own runner, and no other
        assert services == {"runners/services/__init__.py", f"{runner.replace('.', '/')}.py"}


def test_packages_are_built_for_the_templates_python_and_lambdas_platform(build_dir: Path) -> None:
    """Compiled dependencies are manylinux wheels for the runtime the template declares."""
    version = python_version(FUNCTIONS["gluerunner"], Parameters(None))
    assert version == "3.11"
    with zipfile.ZipFile(build_dir / "gluerunner.zip") as package:
        extensions = [name for name in package.namelist() if name.endswith(".so")]
        wheels = [
            package.read(name).decode()
            for name in package.namelist()
            if name.startswith("multidict-") and name.endswith("WHEEL")
        ]
    assert extensions
    assert all("cpython-311-x86_64-linux-gnu" in name for name in extensions)
    assert any("manylinux" in wheel for wheel in wheels)


def test_packages_are_reproducible(build_dir: Path) -> None:
    """The same sources give the same bytes, so an unchanged function redeploys as is."""
    path = build_dir / "crawlerrunner.zip"
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    build_package(FUNCTIONS["crawlerrunner"], "3.11", build_dir)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
