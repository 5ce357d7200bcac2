"""The sample resources, deployed into the embedded emulator.

The state machines come from ``samples/statemachines`` (the same files the
CloudFormation templates deploy), with their ``${Name}`` placeholders substituted as
CloudFormation's ``DefinitionSubstitutions`` would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import runners
from runners import settings
from runners.local import Emulator
from runners.settings import RunnerConfig

SAMPLES = Path(runners.__file__).resolve().parent.parent / "samples"
SOURCE_BUCKET = "etl-demo-source-data"
ARTIFACTS_BUCKET = "etl-demo-artifacts"
WAIT_TABLE = "RunnersWaits"
SALES_FILE = "SalesPipeline_QuickSightSample.csv"
MARKETING_FILE = "MarketingData_QuickSightSample.csv"
ROLE_ARN = "arn:aws:iam::123456789012:role/runners-demo"
GLUE_JOBS = {
    "ProcessSalesData": (
        "process_sales_data.py",
        {
            "--s3_input_path": f"s3://{SOURCE_BUCKET}/{SALES_FILE}",
            "--s3_output_path": f"s3://{ARTIFACTS_BUCKET}/output/sales/",
        },
    ),
    "ProcessMarketingData": (
        "process_marketing_data.py",
        {
            "--s3_input_path": f"s3://{SOURCE_BUCKET}/{MARKETING_FILE}",
            "--s3_output_path": f"s3://{ARTIFACTS_BUCKET}/output/marketing/",
        },
    ),
    "JoinMarketingAndSalesData": (
        "join_marketing_and_sales_data.py",
        {
            "--s3_sales_path": f"s3://{ARTIFACTS_BUCKET}/output/sales/",
            "--s3_marketing_path": f"s3://{ARTIFACTS_BUCKET}/output/marketing/",
            "--s3_output_path": f"s3://{ARTIFACTS_BUCKET}/output/joined/",
        },
    ),
}
SALES_CRAWLER = "ProcessedSalesCrawler"
CRM_TASK = "crm-accounts-full-load"
EMR_CLUSTER = "runners-demo-spark"
REDSHIFT_WORKGROUP = "analytics"
MACHINES = {
    "marketing_and_sales_etl": "MarketingAndSalesETLOrchestrator",
    "athena_reports": "SalesReports",
    "job_then_crawler": "ProcessAndCrawlSales",
    "mixed_pipeline": "MixedTechnologyPipeline",
}
# The job runners the demo worker serves: runner name, activity, job table.
JOB_RUNNERS = (
    ("glue", "GlueRunnerActivity", "GlueRunnerActiveJobs"),
    ("athena", "AthenaRunnerActivity", "AthenaRunnerActiveJobs"),
    ("crawler", "CrawlerRunnerActivity", "CrawlerRunnerActiveJobs"),
    ("dms", "DmsRunnerActivity", "DmsRunnerActiveJobs"),
    ("emrstep", "EmrStepRunnerActivity", "EmrStepRunnerActiveJobs"),
    ("redshift", "RedshiftRunnerActivity", "RedshiftRunnerActiveJobs"),
)


class SamplesMissing(FileNotFoundError):
    """The demo runs from a clone of the repository, where ``samples/`` lives."""


def substitute(definition: str, values: Mapping[str, str]) -> str:
    """Replace ``${Name}`` placeholders; every placeholder must have a value."""
    missing = sorted(set(re.findall(r"\$\{(\w+)\}", definition)) - set(values))
    if missing:
        raise KeyError(f"no value for {', '.join(missing)}")
    return re.sub(r"\$\{(\w+)\}", lambda match: values[match.group(1)], definition)


def sample(*parts: str) -> Path:
    path = SAMPLES.joinpath(*parts)
    if not path.exists():
        raise SamplesMissing(f"{path} not found: run the demo from a clone of the repository")
    return path


@dataclass
class Deployment:
    activities: dict[str, str]
    machines: dict[str, str]
    notifications_queue: str
    failure_queue: str  # the failure topic's messages
    poll_seconds: float
    failed_executions: str = ""  # failed executions, as the triggers stack queues them
    configs: list[RunnerConfig] = field(default_factory=list)


def deploy(aws: Emulator) -> Deployment:
    """Create everything the sample flows use, as the stacks would."""
    s3, sqs, sns = aws.client("s3"), aws.client("sqs"), aws.client("sns")
    sfn, glue = aws.client("stepfunctions"), aws.client("glue")
    for bucket in (SOURCE_BUCKET, ARTIFACTS_BUCKET):
        s3.create_bucket(Bucket=bucket)
    for folder in ("glue-scripts", "emr-scripts"):
        for script in sorted(sample(folder).glob("*.py")):
            s3.put_object(
                Bucket=ARTIFACTS_BUCKET, Key=f"{folder}/{script.name}", Body=script.read_bytes()
            )
    notifications = _queue(sqs, "source-data-created")
    s3.put_bucket_notification_configuration(
        Bucket=SOURCE_BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": notifications[1], "Events": ["s3:ObjectCreated:*"]}
            ]
        },
    )
    failures = _queue(sqs, "etl-failures")
    topic = sns.create_topic(Name="etl-failures")["TopicArn"]
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=failures[1],
        Attributes={"RawMessageDelivery": "true"},
    )
    activities = {
        name: sfn.create_activity(name=name)["activityArn"]
        for name in (
            *(activity for _, activity, _ in JOB_RUNNERS),
            f"{SOURCE_BUCKET}-{SALES_FILE}",
            f"{SOURCE_BUCKET}-{MARKETING_FILE}",
        )
    }
    for job, (script_name, arguments) in GLUE_JOBS.items():
        glue.create_job(
            Name=job,
            Role=ROLE_ARN,
            GlueVersion="4.0",
            DefaultArguments=arguments,
            Command={
                "Name": "glueetl",
                "PythonVersion": "3",
                "ScriptLocation": f"s3://{ARTIFACTS_BUCKET}/glue-scripts/{script_name}",
            },
        )
    glue.create_crawler(
        Name=SALES_CRAWLER,
        Role=ROLE_ARN,
        DatabaseName="sales",
        Targets={"S3Targets": [{"Path": f"s3://{ARTIFACTS_BUCKET}/output/sales/"}]},
    )
    values = {
        "GlueRunnerActivityArn": activities["GlueRunnerActivity"],
        "AthenaRunnerActivityArn": activities["AthenaRunnerActivity"],
        "CrawlerRunnerActivityArn": activities["CrawlerRunnerActivity"],
        "WaitForSalesDataActivityArn": activities[f"{SOURCE_BUCKET}-{SALES_FILE}"],
        "WaitForMarketingDataActivityArn": activities[f"{SOURCE_BUCKET}-{MARKETING_FILE}"],
        "ProcessSalesDataJobName": "ProcessSalesData",
        "ProcessMarketingDataJobName": "ProcessMarketingData",
        "JoinMarketingAndSalesDataJobName": "JoinMarketingAndSalesData",
        "SalesCrawlerName": SALES_CRAWLER,
        "FailureTopicArn": topic,
        "SourceDataBucketName": SOURCE_BUCKET,
        "AthenaDatabase": "sales",
        "AthenaResultsLocation": f"s3://{ARTIFACTS_BUCKET}/athena-results/",
        "Partition": "aws",
        "DmsRunnerActivityArn": activities["DmsRunnerActivity"],
        "EmrStepRunnerActivityArn": activities["EmrStepRunnerActivity"],
        "RedshiftRunnerActivityArn": activities["RedshiftRunnerActivity"],
        "CrmReplicationTaskArn": crm_replication_task(aws),
        "CrmStartType": "start-replication",
        "EmrClusterId": emr_cluster(aws),
        "EmrScriptsS3Path": f"s3://{ARTIFACTS_BUCKET}/emr-scripts/",
        "EmrOutputS3Path": f"s3://{ARTIFACTS_BUCKET}/output/",
        "RedshiftWorkgroup": REDSHIFT_WORKGROUP,
        "RedshiftDatabase": "dev",
    }
    machines = {
        name: sfn.create_state_machine(
            name=machine,
            roleArn=ROLE_ARN,
            definition=substitute(sample("statemachines", f"{name}.asl.json").read_text(), values),
        )["stateMachineArn"]
        for name, machine in MACHINES.items()
    }
    deployment = Deployment(
        activities,
        machines,
        notifications[0],
        failures[0],
        aws.activity_poll_seconds,
        failed_executions=_failed_executions_queue(aws),
    )
    deployment.configs = runner_configs(deployment)
    return deployment


def runner_configs(deployment: Deployment) -> list[RunnerConfig]:
    """One worker process serves every sample activity."""
    common: dict[str, Any] = {
        "poll_seconds": deployment.poll_seconds,
        "check_interval_seconds": 1.0,
        "worker_name": "runners-demo",
    }
    arns = deployment.activities
    waits = [
        {
            "runner": "s3wait",
            "activity_arn": arns[f"{SOURCE_BUCKET}-{name}"],
            "table": "RunnersWaitTasks",
            "wait_table": WAIT_TABLE,
            "wait_bucket": SOURCE_BUCKET,
        }
        for name in (SALES_FILE, MARKETING_FILE)
    ]
    jobs = [
        {"runner": runner, "activity_arn": arns[activity], "table": table}
        for runner, activity, table in JOB_RUNNERS
    ]
    return [settings.from_mapping({**common, **values}) for values in [*jobs, *waits]]


def emr_cluster(aws: Emulator) -> str:
    """A long-running cluster the pipeline adds its Spark step to."""
    cluster: str = aws.client("emr").run_job_flow(
        Name=EMR_CLUSTER,
        ReleaseLabel="emr-7.1.0",
        Applications=[{"Name": "Spark"}],
        Instances={
            "MasterInstanceType": "m5.xlarge",
            "SlaveInstanceType": "m5.xlarge",
            "InstanceCount": 3,
            "KeepJobFlowAliveWhenNoSteps": True,
        },
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]
    return cluster


def crm_replication_task(aws: Emulator) -> str:
    """A full-load DMS task copying the CRM's accounts into the warehouse's staging."""
    dms = aws.client("dms")
    instance = dms.create_replication_instance(
        ReplicationInstanceIdentifier="runners-demo",
        ReplicationInstanceClass="dms.t3.medium",
    )["ReplicationInstance"]["ReplicationInstanceArn"]
    endpoints = [
        dms.create_endpoint(
            EndpointIdentifier=name,
            EndpointType=kind,
            EngineName=engine,
            ServerName=f"{name}.example.internal",
            Port=port,
            DatabaseName=database,
            Username="dms",
            Password="demo-only",  # the emulator's throwaway endpoint; no real secret
        )["Endpoint"]["EndpointArn"]
        for name, kind, engine, port, database in (
            ("crm-mysql", "source", "mysql", 3306, "crm"),
            ("warehouse", "target", "redshift", 5439, "dev"),
        )
    ]
    mappings = {
        "rules": [
            {
                "rule-type": "selection",
                "rule-id": "1",
                "rule-name": "accounts",
                "object-locator": {"schema-name": "crm", "table-name": "accounts"},
                "rule-action": "include",
            }
        ]
    }
    task: str = dms.create_replication_task(
        ReplicationTaskIdentifier=CRM_TASK,
        SourceEndpointArn=endpoints[0],
        TargetEndpointArn=endpoints[1],
        ReplicationInstanceArn=instance,
        MigrationType="full-load",
        TableMappings=json.dumps(mappings),
    )["ReplicationTask"]["ReplicationTaskArn"]
    return task


def _failed_executions_queue(aws: Emulator) -> str:
    """The triggers-and-notifications stack's failure queue: every execution that stops
    unsuccessfully, through an EventBridge rule (its FailedExecutionRule)."""
    url, arn = _queue(aws.client("sqs"), "etl-failed-executions")
    rules = aws.client("events")
    pattern = {
        "source": ["aws.states"],
        "detail-type": ["Step Functions Execution Status Change"],
        "detail": {"status": ["FAILED", "TIMED_OUT", "ABORTED"]},
    }
    rules.put_rule(Name="failed-executions", EventPattern=json.dumps(pattern))
    rules.put_targets(Rule="failed-executions", Targets=[{"Id": "queue", "Arn": arn}])
    return url


def _queue(sqs: Any, name: str) -> tuple[str, str]:
    url: str = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn: str = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


def failure_notifications(aws: Emulator, deployment: Deployment) -> list[dict[str, Any]]:
    """Messages the flows published to the failure topic."""
    messages = (
        aws.client("sqs")
        .receive_message(QueueUrl=deployment.failure_queue, MaxNumberOfMessages=10)
        .get("Messages", [])
    )
    return [json.loads(message["Body"]) for message in messages]
