"""What goes to S3 before (or instead of) a stack operation: Lambda packages, Glue
scripts, state machine definitions and the sample data; and emptying a bucket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from deploy.params import Parameters
from deploy.project import BUILD, SAMPLES, STACKS, DeployError, FunctionSpec
from deploy.stacks import Printer


def ensure_bucket(s3: Any, bucket: str, say: Printer) -> None:
    """Create a deployment bucket if missing: encrypted, private, owner-enforced."""
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("404", "NoSuchBucket"):
            raise DeployError(f"s3://{bucket}: {error}") from error
    region = s3.meta.region_name
    options: dict[str, Any] = {}
    if region != "us-east-1":
        options["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(Bucket=bucket, ObjectOwnership="BucketOwnerEnforced", **options)
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    say(f"created s3://{bucket} (encrypted, public access blocked)")


def deploy_package(
    s3: Any, parameters: Parameters, function: FunctionSpec, say: Printer, build_dir: Path = BUILD
) -> None:
    bucket, key = parameters.package_location(function)
    package = build_dir / f"{function.name}.zip"
    if not package.exists():
        raise DeployError(f"{package} not built: pynt packagelambda[{function.name}]")
    ensure_bucket(s3, bucket, say)
    s3.upload_file(str(package), bucket, key)
    say(f"{function.name}: uploaded to s3://{bucket}/{key}")


def require_package(s3: Any, parameters: Parameters, function: FunctionSpec) -> None:
    """Fail early, with the fix, when a stack would not find its function's package."""
    bucket, key = parameters.package_location(function)
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        raise DeployError(
            f"s3://{bucket}/{key} not found: "
            f"pynt packagelambda[{function.name}] deploylambda[{function.name}]"
        ) from error


def update_function(
    lambda_client: Any, parameters: Parameters, function: FunctionSpec, say: Printer
) -> None:
    """Point the deployed function at its freshly uploaded package."""
    bucket, key = parameters.package_location(function)
    name = parameters.outputs(function.stack, function.name)[function.function_name_output]
    lambda_client.update_function_code(FunctionName=name, S3Bucket=bucket, S3Key=key)
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
    say(f"{function.name}: function {name} now runs s3://{bucket}/{key}")


def deploy_glue_scripts(s3: Any, parameters: Parameters, say: Printer) -> None:
    path = parameters.value(STACKS["glue-resources"], "S3ETLScriptPath")
    bucket, prefix = _split_s3_path(path)
    ensure_bucket(s3, bucket, say)
    _upload_all(s3, sorted((SAMPLES / "glue-scripts").glob("*.py")), bucket, prefix, say)
    # The mixed pipeline's Spark step, when that pipeline is deployed.
    emr_path = parameters.value(STACKS["step-functions-resources"], "MixedPipelineScriptsS3Path")
    if emr_path:
        bucket, prefix = _split_s3_path(emr_path)
        ensure_bucket(s3, bucket, say)
        _upload_all(s3, sorted((SAMPLES / "emr-scripts").glob("*.py")), bucket, prefix, say)


def deploy_state_machines(s3: Any, parameters: Parameters, say: Printer) -> None:
    spec = STACKS["step-functions-resources"]
    bucket = parameters.value(spec, "SourceS3BucketName")
    prefix = parameters.value(spec, "StateMachinesS3Prefix")
    ensure_bucket(s3, bucket, say)
    definitions = sorted((SAMPLES / "statemachines").glob("*.asl.json"))
    _upload_all(s3, definitions, bucket, prefix, say)


def upload_sample_data(s3: Any, parameters: Parameters, say: Printer) -> None:
    bucket = parameters.value(STACKS["step-functions-resources"], "SourceDataBucketName")
    _upload_all(s3, sorted((SAMPLES / "data").glob("*.csv")), bucket, "", say)


def delete_bucket(s3: Any, bucket: str, say: Printer) -> None:
    """Delete every object version and delete marker, then the bucket."""
    deleted = 0
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            doomed = [
                {"Key": item["Key"], "VersionId": item["VersionId"]}
                for item in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            for start in range(0, len(doomed), 1000):
                s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed[start : start + 1000]})
            deleted += len(doomed)
        s3.delete_bucket(Bucket=bucket)
    except ClientError as error:
        if error.response["Error"]["Code"] == "NoSuchBucket":
            say(f"s3://{bucket} does not exist")
            return
        raise DeployError(f"s3://{bucket}: {error}") from error
    say(f"deleted s3://{bucket} and {deleted} object versions")


def _upload_all(s3: Any, paths: list[Path], bucket: str, prefix: str, say: Printer) -> None:
    for path in paths:
        s3.upload_file(str(path), bucket, f"{prefix}{path.name}")
        say(f"uploaded {path.relative_to(SAMPLES.parent)} to s3://{bucket}/{prefix}{path.name}")


def _split_s3_path(path: str) -> tuple[str, str]:
    if not path.startswith("s3://"):
        raise DeployError(f"{path!r} is not an s3:// path")
    bucket, _, prefix = path.removeprefix("s3://").partition("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix
