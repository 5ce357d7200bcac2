"""Build and deployment tasks: ``pynt -l`` lists them, README "Deploying to AWS" walks
through them. Every task talks to AWS through boto3's default configuration, so
``AWS_PROFILE``, ``AWS_REGION`` and ``AWS_ENDPOINT_URL`` apply; a failure prints what
went wrong and exits non-zero.
"""

from __future__ import annotations

import functools
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import boto3
import pynt
from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

# pynt loads this file by path; the deploy package lives beside it.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy import packaging, stacks, templates, uploads
from deploy.params import Parameters
from deploy.project import BUILD, FUNCTIONS, STACKS, DeployError, functions, stack

Action = TypeVar("Action", bound=Callable[..., None])


def task() -> Callable[[Action], Action]:
    """pynt's decorator, typed."""
    return cast(Callable[[Action], Action], pynt.task())


def say(message: str) -> None:
    print(message, flush=True)


def reported(action: Callable[..., None]) -> Callable[..., None]:
    """Turn a failure into its message and exit status 1 instead of a traceback."""

    @functools.wraps(action)
    def run(*args: str) -> None:
        try:
            action(*args)
        except DeployError as error:
            sys.exit(f"{action.__name__}: {error}")
        except NoRegionError:
            sys.exit(
                f"{action.__name__}: no AWS region; set AWS_DEFAULT_REGION or a profile's region"
            )
        except (ClientError, BotoCoreError, Boto3Error) as error:
            sys.exit(f"{action.__name__}: {error}")

    return run


def client(service: str) -> Any:
    return boto3.client(service)  # type: ignore[call-overload]


def parameters() -> Parameters:
    return Parameters(client("cloudformation"))


@task()
@reported
def clean() -> None:
    """Delete build/ (packages and the installed dependencies)."""
    shutil.rmtree(BUILD, ignore_errors=True)
    say(f"removed {BUILD}")


@task()
@reported
def packagelambda(*names: str) -> None:
    """Build Lambda zips in build/: packagelambda[gluerunner,...]; all when none named."""
    offline = Parameters(None)
    for function in functions(names):
        version = packaging.python_version(function, offline)
        say(f"{function.name}: packaging for python{version} ({packaging.PLATFORM})")
        say(f"  {packaging.build_package(function, version).describe()}")


@task()
@reported
def deploylambda(*names: str) -> None:
    """Upload built zips to the buckets in s3-deployment-descriptor.json."""
    s3, params = client("s3"), parameters()
    for function in functions(names):
        uploads.deploy_package(s3, params, function, say)


@task()
@reported
def updatelambda(*names: str) -> None:
    """Point deployed functions at their uploaded zips (after deploylambda)."""
    lambda_client, params = client("lambda"), parameters()
    for function in functions(names):
        uploads.update_function(lambda_client, params, function, say)


@task()
@reported
def createstack(name: str) -> None:
    """Create a stack and wait: createstack[step-functions-resources]."""
    spec = stack(name)
    params = parameters()
    _before_stack(spec.name, params)
    stacks.create(client("cloudformation"), params, spec, say)


@task()
@reported
def updatestack(name: str) -> None:
    """Update a stack from its template and parameters, and wait."""
    spec = stack(name)
    params = parameters()
    _before_stack(spec.name, params)
    stacks.update(client("cloudformation"), params, spec, say)


@task()
@reported
def rendertemplates(*names: str) -> None:
    """Write stacks' templates as deployed (with their runners' parts) to build/templates."""
    target = BUILD / "templates"
    target.mkdir(parents=True, exist_ok=True)
    for spec in [stack(name) for name in names] or list(STACKS.values()):
        path = target / f"{spec.name}.json"
        path.write_text(templates.body(spec.rendered()))
        say(f"{spec.name}: {path}")


@task()
@reported
def deletestack(name: str) -> None:
    """Delete a stack and wait (empty its buckets first: deletes3bucket)."""
    stacks.delete(client("cloudformation"), stack(name), say)


@task()
@reported
def stackstatus() -> None:
    """Show the status of every stack of the project."""
    rows = stacks.status_table(client("cloudformation"))
    width = max(len(name) for name, _, _ in rows)
    for name, status, reason in rows:
        say(f"{name:<{width}}  {status}" + (f"  ({reason})" if reason else ""))


@task()
@reported
def deploygluescripts() -> None:
    """Upload samples/glue-scripts to S3ETLScriptPath (glue-resources-params.json)."""
    uploads.deploy_glue_scripts(client("s3"), parameters(), say)


@task()
@reported
def deploystatemachines() -> None:
    """Upload samples/statemachines (createstack/updatestack do it for their stack)."""
    uploads.deploy_state_machines(client("s3"), parameters(), say)


@task()
@reported
def uploadsampledata() -> None:
    """Upload samples/data to the source data bucket: releases waiting executions."""
    uploads.upload_sample_data(client("s3"), parameters(), say)


@task()
@reported
def deletes3bucket(name: str) -> None:
    """Delete a bucket with every object version in it: deletes3bucket[my-bucket]."""
    uploads.delete_bucket(client("s3"), name, say)


def _before_stack(name: str, params: Parameters) -> None:
    """Upload what the stack reads from S3, or fail with the task that would."""
    if name == "step-functions-resources":
        uploads.deploy_state_machines(client("s3"), params, say)
    s3 = client("s3")
    for function in FUNCTIONS.values():
        if function.stack == name:
            uploads.require_package(s3, params, function)
