"""The baseline: the original sample's runner algorithm (aws-samples/aws-etl-orchestrator,
``lambda/gluerunner`` and ``lambda/athenarunner``), ported to Python 3 for comparison.

One round, as the original's Lambda handler does it:
1. poll ``GetActivityTask`` again and again until a poll comes back empty (on AWS, an
   empty poll takes the whole 60 s long poll); start each task's job as it arrives and
   ``PutItem`` its record (hash key: the activity ARN; range key: the run id);
2. ``Query`` the table once, ``Limit`` 50 (``ddb_query_limit``), no pagination;
3. for each item, one status call (``GetJobRun`` / ``GetQueryExecution``): finished
   jobs are reported (``SendTaskSuccess`` / ``SendTaskFailure``) and their items deleted,
   running ones get a ``SendTaskHeartbeat``.

The original ran one round every 3 minutes (its template's schedule); here rounds run
back to back, which can only flatter the baseline. Only what the benchmark needs is
kept: no named queries, no encryption options. Run it with the AWS variables set:

    python benchmarks/baseline.py --runner glue --activity-arn ARN --table TABLE
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

import boto3
from boto3.dynamodb.conditions import Key
from botocore.config import Config

QUERY_LIMIT = 50  # the original's ddb_query_limit
RANGE_KEYS = {"glue": "glue_job_run_id", "athena": "athena_query_execution_id"}
FAILED_ERRORS = {"glue": "GlueJobFailedError", "athena": "AthenaQueryFailedError"}


class Baseline:
    def __init__(self, runner: str, activity_arn: str, table: str, capacity: int) -> None:
        self.runner, self.activity_arn, self.capacity = runner, activity_arn, capacity
        # As in the original: one client each, the Step Functions one with a read timeout
        # above the 60 s long poll.
        self.sfn = boto3.client("stepfunctions", config=Config(read_timeout=70))
        self.service: Any = boto3.client("glue") if runner == "glue" else boto3.client("athena")
        self.table = boto3.resource("dynamodb").Table(table)

    def round(self) -> None:
        self.start_jobs()
        self.check_jobs()

    def start_jobs(self) -> None:
        while True:
            task = self.sfn.get_activity_task(activityArn=self.activity_arn, workerName="baseline")
            token = task.get("taskToken")
            if not token:
                return
            # The original's input is a JSON string holding the JSON object.
            spec = json.loads(json.loads(task["input"]))
            run_id = self.start(spec)
            self.table.put_item(
                Item={
                    "sfn_activity_arn": self.activity_arn,
                    RANGE_KEYS[self.runner]: run_id,
                    "job_name": spec.get("GlueJobName", ""),
                    "sfn_task_token": token,
                }
            )

    def start(self, spec: dict[str, Any]) -> str:
        if self.runner == "glue":
            response = self.service.start_job_run(
                JobName=spec["GlueJobName"],
                Arguments={k: v for k, v in spec.items() if isinstance(v, str)},
                AllocatedCapacity=int(spec.get("GlueJobCapacity", self.capacity)),
            )
            return str(response["JobRunId"])
        response = self.service.start_query_execution(
            QueryString=spec["AthenaQueryString"],
            QueryExecutionContext={"Database": spec["AthenaDatabase"]},
            ResultConfiguration={"OutputLocation": spec["AthenaResultOutputLocation"]},
        )
        return str(response["QueryExecutionId"])

    def check_jobs(self) -> None:
        items = self.table.query(
            KeyConditionExpression=Key("sfn_activity_arn").eq(self.activity_arn),
            Limit=QUERY_LIMIT,
        )["Items"]
        for item in items:
            run_id = str(item[RANGE_KEYS[self.runner]])
            state, output = self.status(str(item["job_name"]), run_id)
            token = str(item["sfn_task_token"])
            if state in ("STARTING", "RUNNING", "STOPPING", "QUEUED"):
                self.sfn.send_task_heartbeat(taskToken=token)
                continue
            if state == "SUCCEEDED":
                self.sfn.send_task_success(taskToken=token, output=json.dumps(output))
            else:
                self.sfn.send_task_failure(
                    taskToken=token, error=FAILED_ERRORS[self.runner], cause=json.dumps(output)
                )
            self.table.delete_item(
                Key={"sfn_activity_arn": self.activity_arn, RANGE_KEYS[self.runner]: run_id}
            )

    def status(self, job_name: str, run_id: str) -> tuple[str, dict[str, Any]]:
        if self.runner == "glue":
            run = self.service.get_job_run(
                JobName=job_name, RunId=run_id, PredecessorsIncluded=False
            )["JobRun"]
            state = str(run["JobRunState"])
            return state, {
                "GlueJobName": job_name,
                "GlueJobRunId": run_id,
                "GlueJobRunState": state,
            }
        execution = self.service.get_query_execution(QueryExecutionId=run_id)["QueryExecution"]
        state = str(execution["Status"]["State"])
        return state, {"AthenaQueryExecutionId": run_id, "AthenaQueryExecutionState": state}


def create_table(runner: str, table: str) -> None:
    """The original's table: the activity ARN, then the run id."""
    boto3.client("dynamodb").create_table(
        TableName=table,
        KeySchema=[
            {"AttributeName": "sfn_activity_arn", "KeyType": "HASH"},
            {"AttributeName": RANGE_KEYS[runner], "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "sfn_activity_arn", "AttributeType": "S"},
            {"AttributeName": RANGE_KEYS[runner], "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner", choices=sorted(RANGE_KEYS), required=True)
    parser.add_argument("--activity-arn", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--capacity", type=int, default=10, help="the original's default DPUs")
    args = parser.parse_args(argv)
    baseline = Baseline(args.runner, args.activity_arn, args.table, args.capacity)
    while True:  # until the benchmark stops the process
        baseline.round()


if __name__ == "__main__":
    main()
