from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from runners.engine.worker import SHUTDOWN_GRACE_SECONDS
from runners.errors import ConfigError
from runners.settings import from_environment, from_mapping, load_file, shutdown_grace_seconds

ARN = "arn:aws:states:eu-west-1:123456789012:activity:GlueRunnerActivity"


def test_the_original_config_file_works_as_is(tmp_path: Path) -> None:
    path = tmp_path / "gluerunner-config.json"
    path.write_text(
        json.dumps(
            {
                "sfn_activity_arn": ARN,
                "sfn_worker_name": "gluerunner",
                "ddb_table": "GlueRunnerActiveJobs",
                "ddb_query_limit": 50,
                "glue_job_capacity": 10,
            }
        )
    )

    config = load_file(path, {})

    assert (
        config.runner,
        config.activity_arn,
        config.worker_name,
        config.table,
        config.page_size,
        config.options.glue_job_capacity,
    ) == ("glue", ARN, "gluerunner", "GlueRunnerActiveJobs", 50, 10)
    assert config.region == "eu-west-1"


def test_environment_overrides_files_per_runner_then_for_all(tmp_path: Path) -> None:
    path = tmp_path / "any-name.json"
    path.write_text(
        json.dumps({"runner": "athena", "activity_arn": ARN, "table": "T", "pollers": 2})
    )
    environ = {
        "RUNNERS_POLLERS": "8",
        "RUNNERS_ATHENA_POLLERS": "16",
        "RUNNERS_CHECK_INTERVAL_SECONDS": "2.5",
        "RUNNERS_GLUE_TABLE": "ignored",
    }

    config = load_file(path, environ)

    assert (config.runner, config.pollers, config.check_interval_seconds, config.table) == (
        "athena",
        16,
        2.5,
        "T",
    )


def test_a_lambda_is_configured_by_environment_alone() -> None:
    [config] = from_environment(
        "glue",
        {
            "RUNNERS_GLUE_ACTIVITY_ARN": ARN,
            "RUNNERS_GLUE_TABLE": "Jobs",
            "RUNNERS_GLUE_JOB_CAPACITY": "5",
        },
    )

    assert (config.runner, config.activity_arn, config.table, config.options.glue_job_capacity) == (
        "glue",
        ARN,
        "Jobs",
        5.0,
    )


def test_a_lambda_can_serve_several_wait_activities() -> None:
    other = ARN.replace("GlueRunnerActivity", "bucket-file.csv")
    configs = from_environment(
        "s3wait",
        {
            "RUNNERS_S3WAIT_ACTIVITY_ARN": f"{ARN}, {other}",
            "RUNNERS_S3WAIT_TABLE": "Jobs",
            "RUNNERS_WAIT_TABLE": "Waits",
            "RUNNERS_WAIT_BUCKET": "bucket",
        },
    )

    assert [c.activity_arn for c in configs] == [ARN, other]
    assert {(c.table, c.options.wait_table, c.options.wait_bucket) for c in configs} == {
        ("Jobs", "Waits", "bucket")
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"runner": "glue", "table": "T"}, "missing configuration: activity_arn"),
        ({"runner": "spark", "activity_arn": ARN, "table": "T"}, "runner: 'spark'"),
        ({"runner": "glue", "activity_arn": "arn:aws:states:x", "table": "T"}, "activity_arn"),
        ({"runner": "glue", "activity_arn": ARN, "table": "T", "pollers": 0}, "pollers"),
        ({"runner": "glue", "activity_arn": ARN, "table": "T", "typo": 1}, "unknown"),
    ],
)
def test_bad_configs_name_the_key(tmp_path: Path, data: dict[str, object], message: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))

    with pytest.raises(ConfigError, match=message):
        load_file(path, {})


def test_a_non_numeric_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="RUNNERS_POLLERS"):
        from_environment(
            "glue",
            {
                "RUNNERS_GLUE_ACTIVITY_ARN": ARN,
                "RUNNERS_GLUE_TABLE": "T",
                "RUNNERS_POLLERS": "many",
            },
        )


def test_defaults_are_production_values() -> None:
    config = from_mapping({"runner": "glue", "activity_arn": ARN, "table": "T"})

    assert config.poll_seconds == 60.0
    assert config.heartbeat_interval_seconds > config.check_interval_seconds


@pytest.mark.parametrize("value", ["soon", "0", "-5", "nan", "inf"])
def test_a_bad_shutdown_grace_period_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match="RUNNERS_SHUTDOWN_GRACE_SECONDS"):
        shutdown_grace_seconds({"RUNNERS_SHUTDOWN_GRACE_SECONDS": value})


def test_the_shutdown_grace_period_stays_below_the_services_stop_timeout() -> None:
    template = Path(__file__).parents[1] / "cloudformation" / "runner-service.yaml"
    stop_timeout = int(re.search(r"StopTimeout: (\d+)", template.read_text())[1])  # type: ignore[index]

    assert shutdown_grace_seconds({}) == SHUTDOWN_GRACE_SECONDS < stop_timeout
    assert shutdown_grace_seconds({"RUNNERS_SHUTDOWN_GRACE_SECONDS": "25"}) == 25.0
