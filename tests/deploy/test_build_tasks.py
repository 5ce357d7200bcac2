"""build.py's failures: each exits 1 with a message that says what to do."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from runners.local import Emulator
from tests.deploy.conftest import filled_params, run_pynt


def pynt_env(aws: Emulator, params: Path) -> dict[str, str]:
    return {**os.environ, **aws.client_env(), "RUNNERS_PARAMS_DIR": str(params)}


def test_a_no_default_parameter_names_the_file_and_key_to_set(
    aws: Emulator, shipped_params: Path
) -> None:
    result = run_pynt("createstack[glue-resources]", env=pynt_env(aws, shipped_params))
    assert result.returncode == 1
    expected = f"{shipped_params / 'glue-resources-params.json'}: S3ETLScriptPath is <NO-DEFAULT>"
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_the_deployment_bucket_is_set_once_in_the_descriptor(
    aws: Emulator, shipped_params: Path
) -> None:
    """Every function's package goes where the gluerunner entry says, unless changed."""
    result = run_pynt("deploylambda[ons3objectcreated]", env=pynt_env(aws, shipped_params))
    assert result.returncode == 1
    descriptor = shipped_params / "s3-deployment-descriptor.json"
    assert f"{descriptor}: gluerunner.SourceS3BucketName is <NO-DEFAULT>" in result.stderr


def test_a_stack_built_on_another_asks_for_that_one_first(aws: Emulator, tmp_path: Path) -> None:
    params = filled_params(tmp_path / "params")
    result = run_pynt("createstack[glue-resources]", env=pynt_env(aws, params))
    assert result.returncode == 1
    assert (
        "needs stack step-functions-resources, which is not deployed "
        "(pynt createstack[step-functions-resources])"
    ) in result.stderr


def test_a_lambda_stack_without_its_package_says_how_to_build_it(
    aws: Emulator, tmp_path: Path
) -> None:
    params = filled_params(tmp_path / "params")
    result = run_pynt("createstack[step-functions-resources]", env=pynt_env(aws, params))
    assert result.returncode == 1
    assert (
        "s3://runners-deployment/src/ons3objectcreated.zip not found: "
        "pynt packagelambda[ons3objectcreated] deploylambda[ons3objectcreated]"
    ) in result.stderr


@pytest.mark.parametrize(
    ("task", "message"),
    [
        (
            "createstack[nonesuch]",
            "unknown stack 'nonesuch'; the stacks are: step-functions-resources",
        ),
        (
            "packagelambda[nonesuch]",
            "unknown function nonesuch; the functions are: athenarunner, crawlerrunner",
        ),
    ],
)
def test_unknown_names_list_the_known_ones(
    aws: Emulator, tmp_path: Path, task: str, message: str
) -> None:
    result = run_pynt(task, env=pynt_env(aws, filled_params(tmp_path / "params")))
    assert result.returncode == 1
    assert message in result.stderr


def test_a_parameter_the_template_does_not_declare_is_refused(
    aws: Emulator, tmp_path: Path
) -> None:
    params = filled_params(tmp_path / "params")
    path = params / "glue-resources-params.json"
    entries = json.loads(path.read_text())
    entries.append({"ParameterKey": "S3ETLScriptPaht", "ParameterValue": "s3://typo/"})
    path.write_text(json.dumps(entries))
    result = run_pynt("updatestack[glue-resources]", env=pynt_env(aws, params))
    assert result.returncode == 1
    assert "S3ETLScriptPaht not a parameter of glue-resources.yaml" in result.stderr


def test_deploying_a_package_not_built_says_how_to_build_it(aws: Emulator, tmp_path: Path) -> None:
    env = {
        **pynt_env(aws, filled_params(tmp_path / "params")),
        "RUNNERS_BUILD_DIR": str(tmp_path / "empty-build"),
    }
    result = run_pynt("deploylambda[gluerunner]", env=env)
    assert result.returncode == 1
    assert "gluerunner.zip not built: pynt packagelambda[gluerunner]" in result.stderr


def test_a_stack_prefix_names_every_stack_the_tasks_create_and_read(
    aws: Emulator, tmp_path: Path
) -> None:
    """Two deployments in one account (the original sample and this one during a
    switch-over, or two environments): RUNNERS_STACK_PREFIX names this one's stacks, and
    references between them (``{{stack:...}}``) find the prefixed stacks."""
    aws.client("cloudformation").create_stack(
        StackName="blue-step-functions-resources",
        TemplateBody=json.dumps(
            {
                "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
                "Outputs": {"SourceDataBucketName": {"Value": "blue-data"}},
            }
        ),
    )
    env = {**pynt_env(aws, filled_params(tmp_path / "params")), "RUNNERS_STACK_PREFIX": "blue-"}

    created = run_pynt("createstack[glue-resources]", env=env)
    status = run_pynt("stackstatus", env=env)
    invalid = run_pynt("stackstatus", env={**env, "RUNNERS_STACK_PREFIX": "9 lives/"})

    assert created.returncode == 0, created.stdout + created.stderr
    assert "blue-glue-resources: creating" in created.stdout
    names = [s["StackName"] for s in aws.client("cloudformation").describe_stacks()["Stacks"]]
    assert sorted(names) == ["blue-glue-resources", "blue-step-functions-resources"]
    assert re.search(r"^blue-glue-resources +CREATE_COMPLETE$", status.stdout, re.MULTILINE)
    assert invalid.returncode == 1
    assert "RUNNERS_STACK_PREFIX: '9 lives/step-functions-resources' is not a valid stack name" in (
        invalid.stderr
    )
