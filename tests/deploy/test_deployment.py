"""From an empty account to running pipelines, with build.py's tasks on the emulator.

One deployment serves the whole module: ``pynt`` uploads the packages, scripts and
definitions and creates every stack; then pipelines run through what was deployed, on
the deployed code and configuration only: the runner Lambdas tick when their schedules
fire (the emulator runs each package in a clean interpreter), the object-created Lambda
runs when the data bucket's events reach its rule, the arrival rule starts executions,
and the container worker runs the Dockerfile's entry point with the environment of the
service's task definition.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deploy.project import ROOT, STACKS
from runners.demo.resources import crm_replication_task, emr_cluster
from runners.local import Emulator, RunBehaviour
from tests.deploy.conftest import filled_params, run_pynt
from tests.helpers import wait_until

# The emulator's 1 s long poll and a 1 s check interval keep each tick short; the
# emulator caps each invocation at this many seconds (a tick keeps 10 spare and starts
# no poll within 5 s of its end).
TICK_SECONDS = 24
FAST = {"RUNNERS_POLL_SECONDS": "1", "RUNNERS_CHECK_INTERVAL_SECONDS": "1"}
ALL_STACKS = list(STACKS)


@dataclass
class Deployment:
    emulator: Emulator
    env: dict[str, str]
    outputs: dict[str, dict[str, str]]
    build_dir: Path

    def client(self, service: str) -> Any:
        return self.emulator.client(service)

    def run_lambda_ticks(self, done: Callable[[], bool], rounds: int = 8) -> int:
        """Fire every schedule, wait for the ticks, until ``done``; return the rounds."""
        for round_number in range(1, rounds + 1):
            self.emulator.fire_schedules()
            self.emulator.lambdas.wait_idle(timeout=120)
            self.raise_for_lambda_errors()
            if done():
                return round_number
        ticks = "\n".join(
            f"{i.function_name}: {i.result}\n{i.logs[-2000:]}"
            for i in self.emulator.lambdas.invocations
        )
        raise AssertionError(f"not done after {rounds} rounds of ticks:\n{ticks}")

    def raise_for_lambda_errors(self) -> None:
        for invocation in self.emulator.lambdas.invocations:
            invocation.raise_for_error()


@pytest.fixture(scope="module")
def deployed(
    emulator: Emulator, build_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    emulator.reset()
    ec2 = emulator.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    params = filled_params(
        tmp_path_factory.mktemp("params"),
        {
            "VpcId": vpc,
            "SubnetIds": subnet,
            # The schedule would start an execution on every tick round; tests start their own.
            "ScheduleState": "DISABLED",
            # The mixed pipeline, on a DMS task and an EMR cluster the account has.
            "MixedPipelineReplicationTaskArn": crm_replication_task(emulator),
            "MixedPipelineStartType": "start-replication",
            "MixedPipelineEmrClusterId": emr_cluster(emulator),
            "MixedPipelineScriptsS3Path": "s3://runners-artifacts/emr-scripts/",
            "MixedPipelineOutputS3Path": "s3://runners-artifacts/output/",
            "MixedPipelineRedshiftWorkgroup": "analytics",
        },
    )
    env = {
        **os.environ,
        **emulator.client_env(),
        "RUNNERS_BUILD_DIR": str(build_dir),
        "RUNNERS_PARAMS_DIR": str(params),
        "RUNNERS_STACK_POLL_SECONDS": "0.1",
    }
    tasks = ["deploylambda", "deploygluescripts", *(f"createstack[{name}]" for name in ALL_STACKS)]
    result = run_pynt(*tasks, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    cfn = emulator.client("cloudformation")
    outputs = {
        name: {
            output["OutputKey"]: output["OutputValue"]
            for output in cfn.describe_stacks(StackName=name)["Stacks"][0].get("Outputs", [])
        }
        for name in ALL_STACKS
    }
    emulator.lambdas.time_limit_seconds = TICK_SECONDS
    emulator.lambdas.extra_environment = dict(FAST)
    try:
        yield Deployment(emulator, env, outputs, build_dir)
    finally:
        emulator.reset()


def execution_status(deployment: Deployment, arn: str) -> str:
    status: str = deployment.client("stepfunctions").describe_execution(executionArn=arn)["status"]
    return status


def test_every_stack_is_created_and_stackstatus_shows_it(deployed: Deployment) -> None:
    result = run_pynt("stackstatus", env=deployed.env)
    assert result.returncode == 0, result.stderr
    for name in ALL_STACKS:
        assert f"{name} " in result.stdout
    assert result.stdout.count("CREATE_COMPLETE") == len(ALL_STACKS)


def test_the_sales_pipeline_runs_on_the_scheduled_lambdas(deployed: Deployment) -> None:
    """The original's flow: the execution waits for data, the files land, the
    object-created Lambda releases the waits, the Glue runner Lambda runs the jobs."""
    sfn = deployed.client("stepfunctions")
    machine = deployed.outputs["step-functions-resources"]["MarketingAndSalesETLOrchestratorArn"]
    execution = sfn.start_execution(stateMachineArn=machine)["executionArn"]
    deployed.run_lambda_ticks(lambda: _waiting_for_data(deployed, execution), rounds=2)

    result = run_pynt("uploadsampledata", env=deployed.env)
    assert result.returncode == 0, result.stderr
    deployed.emulator.lambdas.wait_idle()
    released = [
        i for i in deployed.emulator.lambdas.invocations if i.function_name == "ons3objectcreated"
    ]
    assert len(released) == 2  # one S3 event per file, through the EventBridge rule
    deployed.raise_for_lambda_errors()

    deployed.run_lambda_ticks(lambda: execution_status(deployed, execution) != "RUNNING")
    assert execution_status(deployed, execution) == "SUCCEEDED"
    runs = deployed.client("glue").get_job_runs(JobName="JoinMarketingAndSalesData")["JobRuns"]
    assert [run["JobRunState"] for run in runs] == ["SUCCEEDED"]


def test_the_operations_resources_are_deployed(deployed: Deployment) -> None:
    """The redrive Lambda (schedule off, scoped to the monitored machines' executions),
    the dashboard and the alarms of the triggers-and-notifications stack."""
    outputs = deployed.outputs["triggers-and-notifications"]
    function = outputs["RedriveFunctionName"]
    configuration = deployed.client("lambda").get_function(FunctionName=function)
    variables = configuration["Configuration"]["Environment"]["Variables"]
    assert variables["RUNNERS_FAILURE_QUEUE_URL"] == outputs["FailureQueueUrl"]
    rules = deployed.client("events").list_rules()["Rules"]
    [schedule] = [r for r in rules if r.get("ScheduleExpression") == "rate(1 day)"]
    assert schedule["State"] == "DISABLED"
    machines = [
        value
        for key, value in deployed.outputs["step-functions-resources"].items()
        if key.endswith("Arn") and ":stateMachine:" in value
    ]
    role = configuration["Configuration"]["Role"].rsplit("/", 1)[-1]
    iam = deployed.client("iam")
    [policy] = iam.list_role_policies(RoleName=role)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"]
    if isinstance(document, str):  # moto keeps a stack's inline policy as Python's repr
        document = ast.literal_eval(document)
    statements = document["Statement"]
    redrive = next(s for s in statements if "states:RedriveExecution" in s["Action"])
    assert sorted(redrive["Resource"]) == sorted(
        m.replace(":stateMachine:", ":execution:") + ":*" for m in machines
    )
    assert all(s["Resource"] != "*" for s in statements)
    body = deployed.client("cloudwatch").get_dashboard(DashboardName=outputs["DashboardName"])
    widgets = json.loads(body["DashboardBody"])["widgets"]
    assert any("TasksFailed" in json.dumps(w) for w in widgets)
    alarms = deployed.client("cloudwatch").describe_alarms()["MetricAlarms"]
    assert {"TasksFailed", "CheckCycleDuration", "OpenPolls", "ApproximateAgeOfOldestMessage"} <= {
        alarm["MetricName"] for alarm in alarms
    }
    invoked = deployed.client("lambda").invoke(FunctionName=function, Payload=b"{}")
    assert "FunctionError" not in invoked, invoked["Payload"].read()
    result = json.loads(invoked["Payload"].read())
    assert (result["redriven"], result["error"], result["outcomes"]) == (0, 0, [])


def _waiting_for_data(deployment: Deployment, execution: str) -> bool:
    return _activities_started(deployment, execution) == 2


def test_an_object_under_the_arrival_prefix_starts_job_then_crawler(deployed: Deployment) -> None:
    """The arrival rule starts ProcessAndCrawlSales; the Glue and crawler runner Lambdas
    run it to the end."""
    sfn = deployed.client("stepfunctions")
    machine = deployed.outputs["step-functions-resources"]["ProcessAndCrawlSalesArn"]
    bucket = deployed.outputs["step-functions-resources"]["SourceDataBucketName"]
    deployed.client("s3").put_object(Bucket=bucket, Key="incoming/sales.csv", Body=b"day\n")
    [started] = wait_until(lambda: sfn.list_executions(stateMachineArn=machine)["executions"])
    execution = started["executionArn"]
    arrival = json.loads(sfn.describe_execution(executionArn=execution)["input"])
    assert arrival["detail"]["object"]["key"] == "incoming/sales.csv"

    deployed.run_lambda_ticks(lambda: execution_status(deployed, execution) != "RUNNING")
    assert execution_status(deployed, execution) == "SUCCEEDED"
    output = json.loads(sfn.describe_execution(executionArn=execution)["output"])
    assert "crawl" in output, output
    assert output["crawl"]["GlueCrawlerName"] == "ProcessedSalesCrawler"
    assert output["crawl"]["GlueCrawlStatus"] == "SUCCEEDED"


def test_the_container_worker_runs_from_the_service_task_definition(
    deployed: Deployment, tmp_path: Path
) -> None:
    """The Dockerfile's entry point, on the image's files only (requirements-runtime.txt
    and runners/ without the emulator or demo), configured by the environment the
    runner-service stack gives its container, serves the Athena reports flow and exits
    cleanly on SIGTERM."""
    family = "runner-service"
    task = deployed.client("ecs").describe_task_definition(taskDefinition=family)
    [container] = task["taskDefinition"]["containerDefinitions"]
    environment = {item["name"]: item["value"] for item in container["environment"]}
    served = {name for name in environment if name.endswith("_ACTIVITY_ARN")}
    # The runners whose activities the parameters give; EMR Serverless's are not given.
    assert served == {
        f"RUNNERS_{r}_ACTIVITY_ARN"
        for r in ("GLUE", "ATHENA", "CRAWLER", "S3WAIT", "DMS", "EMRSTEP", "REDSHIFT")
    }
    assert "RUNNERS_SERVE" not in environment

    command = _image_command(deployed.build_dir, tmp_path)
    env = {**environment, **deployed.emulator.client_env(), **FAST, "PATH": os.defpath}
    worker = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        sfn = deployed.client("stepfunctions")
        machine = deployed.outputs["step-functions-resources"]["SalesReportsArn"]
        execution = sfn.start_execution(stateMachineArn=machine)["executionArn"]
        wait_until(lambda: execution_status(deployed, execution) != "RUNNING", timeout=60)
        assert execution_status(deployed, execution) == "SUCCEEDED"
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, output.decode()


def _image_command(build_dir: Path, tmp_path: Path) -> list[str]:
    """The Dockerfile's ENTRYPOINT, run on what the image holds and nothing else."""
    app = tmp_path / "app"
    shutil.copytree(
        ROOT / "runners",
        app / "runners",
        ignore=lambda directory, names: [
            name
            for name in names
            if name == "__pycache__"
            or (Path(directory).name == "runners" and name in ("local", "demo", "testing"))
        ],
    )
    [dependencies] = (build_dir / "dependencies").iterdir()
    entrypoint = next(
        json.loads(line.removeprefix("ENTRYPOINT"))
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("ENTRYPOINT")
    )
    assert entrypoint[:3] == ["python", "-m", "runners"]
    bootstrap = (
        "import runpy, sys; sys.path[:0] = sys.argv[1:3]; "
        "sys.argv = ['runners', *sys.argv[3:]]; "
        "runpy.run_module('runners', run_name='__main__', alter_sys=True)"
    )
    return [
        sys.executable,
        "-I",
        "-S",
        "-c",
        bootstrap,
        str(app),
        str(dependencies),
        *entrypoint[3:],
    ]


def test_an_emr_serverless_run_on_the_runner_lambda_and_the_activity_its_stack_made(
    deployed: Deployment,
) -> None:
    """A runner added by its module alone: its stack, function, role and activity come
    from its declaration and the generic templates (no activity given: it makes one)."""
    outputs = deployed.outputs["emrserverlessrunner-lambda"]
    [activity] = outputs["ActivityArns"].split(",")
    assert activity.endswith(":activity:emrserverlessrunnerActivity")
    emr = deployed.client("emr-serverless")
    application = emr.create_application(name="etl", releaseLabel="emr-7.1.0", type="SPARK")
    deployed.emulator.emrserverless_runs.add("daily", RunBehaviour(duration=1.0))
    sfn = deployed.client("stepfunctions")
    machine = sfn.create_state_machine(
        name="EmrServerlessDaily",
        roleArn="arn:aws:iam::123456789012:role/StatesExecutionRole",
        definition=json.dumps(
            {
                "StartAt": "Spark",
                "States": {"Spark": {"Type": "Task", "Resource": activity, "End": True}},
            }
        ),
    )["stateMachineArn"]
    document = {
        "ApplicationId": application["applicationId"],
        "Name": "daily",
        "JobDriver": {"sparkSubmit": {"entryPoint": "s3://runners-artifacts/daily.py"}},
    }
    execution = sfn.start_execution(stateMachineArn=machine, input=json.dumps(document))[
        "executionArn"
    ]

    deployed.run_lambda_ticks(lambda: execution_status(deployed, execution) != "RUNNING")

    assert execution_status(deployed, execution) == "SUCCEEDED"
    output = json.loads(sfn.describe_execution(executionArn=execution)["output"])
    assert output["EmrServerlessJobRunState"] == "SUCCESS"


def test_the_mixed_pipeline_runs_on_the_scheduled_lambdas(deployed: Deployment) -> None:
    """DMS, Glue, EMR and Redshift runner Lambdas serve one pipeline the stacks deployed:
    the sales file lands, then the load, the job and the step run side by side, then the
    statement over their results."""
    sfn = deployed.client("stepfunctions")
    machine = deployed.outputs["step-functions-resources"]["MixedTechnologyPipelineArn"]
    execution = sfn.start_execution(stateMachineArn=machine)["executionArn"]
    # (When an earlier test landed the sales file already, the wait ends at once.)
    deployed.run_lambda_ticks(lambda: _activities_started(deployed, execution) >= 1, rounds=2)

    bucket = deployed.outputs["step-functions-resources"]["SourceDataBucketName"]
    deployed.client("s3").put_object(
        Bucket=bucket, Key="SalesPipeline_QuickSightSample.csv", Body=b"Date,Region\n"
    )
    deployed.emulator.lambdas.wait_idle()
    deployed.run_lambda_ticks(lambda: execution_status(deployed, execution) != "RUNNING")

    assert execution_status(deployed, execution) == "SUCCEEDED"
    output = json.loads(sfn.describe_execution(executionArn=execution)["output"])
    loaded = output["loaded"]
    assert loaded["crm"]["DmsStopReason"] == "Stop Reason FULL_LOAD_ONLY_FINISHED"
    assert loaded["sales"]["GlueJobRunState"] == "SUCCEEDED"
    assert loaded["segments"]["EmrStepState"] == "COMPLETED"
    assert output["mart"]["RedshiftStatementStatus"] == "FINISHED"
    assert output["mart"]["RedshiftWorkgroupName"] == "analytics"


def _activities_started(deployment: Deployment, execution: str) -> int:
    events = deployment.client("stepfunctions").get_execution_history(executionArn=execution)
    return sum(1 for e in events["events"] if e["type"] == "ActivityStarted")


def test_updatestack_without_changes_and_a_failed_stack_exit_as_they_should(
    deployed: Deployment,
) -> None:
    result = run_pynt("updatestack[glue-resources]", env=deployed.env)
    assert result.returncode == 0, result.stderr
    assert "glue-resources: already up to date" in result.stdout

    # A second gluerunner stack would create a table that exists: CloudFormation
    # rolls it back and the task says which resource failed and why.
    dynamodb = deployed.client("dynamodb")
    dynamodb.create_table(
        TableName="Taken",
        KeySchema=[{"AttributeName": "task_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "task_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    params = Path(deployed.env["RUNNERS_PARAMS_DIR"])
    entries = json.loads((params / "crawlerrunner-lambda-params.json").read_text())
    for entry in entries:
        if entry["ParameterKey"] == "DDBTableName":
            entry["ParameterValue"] = "Taken"
    (params / "crawlerrunner-lambda-params.json").write_text(json.dumps(entries))
    deployed.client("cloudformation").delete_stack(StackName="crawlerrunner-lambda")
    result = run_pynt("createstack[crawlerrunner-lambda]", env=deployed.env)
    assert result.returncode == 1
    assert "ROLLBACK_COMPLETE" in result.stderr
    assert "JobTable (AWS::DynamoDB::Table)" in result.stderr


def test_deletestack_waits_for_the_stack_to_go(deployed: Deployment) -> None:
    result = run_pynt("deletestack[triggers-and-notifications]", env=deployed.env)
    assert result.returncode == 0, result.stderr
    assert "DELETE_COMPLETE" in result.stdout
    status = run_pynt("stackstatus", env=deployed.env).stdout
    assert "triggers-and-notifications  not created" in status
