"""Deployment tests drive ``build.py`` the way a user does: ``pynt`` in a subprocess,
with the standard AWS variables pointing at the emulator."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from deploy.project import ROOT, TEMPLATES

PYNT = Path(sys.executable).parent / "pynt"

Pynt = Callable[..., subprocess.CompletedProcess[str]]

# What a user fills in for each <NO-DEFAULT>; a test that creates the service passes a
# network it made in the emulator.
SETTINGS = {
    "VpcId": "vpc-00000000",
    "SubnetIds": "subnet-00000000",
    "SourceDataBucketName": "runners-data",
    "AthenaResultsLocation": "s3://runners-artifacts/athena-results/",
    "S3ETLScriptPath": "s3://runners-artifacts/glue-scripts/",
    "S3ETLOutputPath": "s3://runners-artifacts/output/",
    "ContainerImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/runners:latest",
    "EmrServerlessApplicationId": "00fabc123def4567",
    "EmrServerlessExecutionRoleArn": "arn:aws:iam::123456789012:role/EmrServerlessJobs",
}
DEPLOYMENT_BUCKET = "runners-deployment"


def run_pynt(
    *tasks: str, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PYNT), *tasks],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every Lambda package, built once by ``pynt packagelambda``."""
    directory = tmp_path_factory.mktemp("build")
    env = {**os.environ, "RUNNERS_BUILD_DIR": str(directory)}
    result = run_pynt("packagelambda", env=env)
    assert result.returncode == 0, result.stderr
    print(result.stdout)
    return directory


def filled_params(directory: Path, overrides: dict[str, str] | None = None) -> Path:
    """The shipped parameter files with every <NO-DEFAULT> set, as a user would, and
    ``overrides`` replacing whatever the files say."""
    overrides = overrides or {}
    directory.mkdir(parents=True, exist_ok=True)
    for path in TEMPLATES.glob("*-params.json"):
        entries = json.loads(path.read_text())
        for entry in entries:
            key = entry["ParameterKey"]
            if key in overrides:
                entry["ParameterValue"] = overrides[key]
            elif entry["ParameterValue"] == "<NO-DEFAULT>":
                entry["ParameterValue"] = SETTINGS[key]
        (directory / path.name).write_text(json.dumps(entries, indent=2))
    descriptor = json.loads((TEMPLATES / "s3-deployment-descriptor.json").read_text())
    descriptor["gluerunner"]["SourceS3BucketName"] = DEPLOYMENT_BUCKET
    (directory / "s3-deployment-descriptor.json").write_text(json.dumps(descriptor, indent=2))
    return directory


@pytest.fixture
def shipped_params(tmp_path: Path) -> Path:
    """A copy of the parameter files exactly as shipped."""
    directory = tmp_path / "params"
    shutil.copytree(TEMPLATES, directory, ignore=shutil.ignore_patterns("*.yaml"))
    return directory
