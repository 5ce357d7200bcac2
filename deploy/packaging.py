"""Lambda packages: one zip per function, holding the ``runners`` modules its handler
imports and the pinned runtime requirements, installed as manylinux wheels for the
Python version the function's template declares (not this machine's).

Zips are byte-for-byte reproducible (sorted entries, fixed timestamps), so an unchanged
function deploys as an unchanged object.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from modulefinder import ModuleFinder
from pathlib import Path

from deploy.params import Parameters
from deploy.project import BUILD, ROOT, RUNTIME_REQUIREMENTS, STACKS, DeployError, FunctionSpec

PLATFORM = "manylinux2014_x86_64"
# Lambda's quota for a function's unpacked code (zip file archives).
MAX_UNPACKED_BYTES = 250 * 1024 * 1024
# Never in a package: the emulator, the demo and the command line need moto and samples.
EXCLUDED = (
    "runners.local",
    "runners.demo",
    "runners.testing",
    "runners.cli",
    "runners.__main__",
)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Package:
    path: Path
    files: int
    unpacked_bytes: int

    def describe(self) -> str:
        mib = 1024 * 1024
        return (
            f"{self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path}: "
            f"{self.path.stat().st_size / mib:.1f} MiB zipped, "
            f"{self.unpacked_bytes / mib:.1f} MiB unpacked, {self.files} files"
        )


def python_version(function: FunctionSpec, parameters: Parameters) -> str:
    """``3.11`` for a function whose stack runs ``python3.11``."""
    runtime = parameters.value(STACKS[function.stack], "LambdaRuntime")
    match = re.fullmatch(r"python(\d+\.\d+)", runtime)
    if not match:
        raise DeployError(f"{function.stack}: LambdaRuntime {runtime!r} is not a Python runtime")
    return match.group(1)


def build_package(
    function: FunctionSpec, version: str, build_dir: Path = BUILD, quiet: bool = True
) -> Package:
    dependencies = install_dependencies(version, build_dir, quiet)
    files = {
        path.relative_to(dependencies).as_posix(): path
        for path in dependencies.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    for module in (function.module, *function.modules):
        for module_file in handler_modules(module):
            files[module_file.relative_to(ROOT).as_posix()] = module_file
    target = build_dir / f"{function.name}.zip"
    _write_zip(target, files)
    return Package(target, len(files), sum(path.stat().st_size for path in files.values()))


def handler_modules(module: str) -> list[Path]:
    """The files of every ``runners`` module the handler imports, at any depth."""
    finder = ModuleFinder(path=[str(ROOT)])
    finder.import_hook(module)
    names = {name for name in finder.modules if name == "runners" or name.startswith("runners.")}
    excluded = sorted(
        name for name in names if any(name == e or name.startswith(e + ".") for e in EXCLUDED)
    )
    if excluded:
        raise DeployError(f"{module} imports {', '.join(excluded)}, which packages never hold")
    found = (getattr(finder.modules[name], "__file__", None) for name in names)
    return sorted(Path(path) for path in found if path)


def install_dependencies(version: str, build_dir: Path = BUILD, quiet: bool = True) -> Path:
    """The runtime requirements for Lambda's platform, installed once per version and
    requirements file and reused by every package."""
    digest = hashlib.sha256(RUNTIME_REQUIREMENTS.read_bytes()).hexdigest()[:12]
    target = build_dir / "dependencies" / f"py{version}-{PLATFORM}-{digest}"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent))
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-compile",
        "--disable-pip-version-check",
        "--target",
        str(staging),
        "--platform",
        PLATFORM,
        "--implementation",
        "cp",
        "--python-version",
        version,
        "--only-binary=:all:",
        "-r",
        str(RUNTIME_REQUIREMENTS),
    ]
    if quiet:
        command.append("--quiet")
    result = subprocess.run(command, capture_output=quiet, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise DeployError(f"pip could not install the runtime requirements:\n{result.stderr}")
    shutil.rmtree(staging / "bin", ignore_errors=True)
    staging.rename(target)
    return target


def _write_zip(target: Path, files: dict[str, Path]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_suffix(".zip.partial")
    with zipfile.ZipFile(staging, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as package:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            package.writestr(info, files[name].read_bytes())
    unpacked = sum(path.stat().st_size for path in files.values())
    if unpacked > MAX_UNPACKED_BYTES:
        staging.unlink()
        raise DeployError(
            f"{target.name} would unpack to {unpacked / 2**20:.0f} MiB, "
            f"over Lambda's {MAX_UNPACKED_BYTES / 2**20:.0f} MiB"
        )
    staging.replace(target)
