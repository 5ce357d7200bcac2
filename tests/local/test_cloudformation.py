"""CloudFormation on the emulator: the resource types runners' templates use, and stack
failure as AWS reports it.

References: the CloudFormation template reference for each type
(https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/), and
"Troubleshooting CloudFormation" for stack states
(https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/troubleshooting.html).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from botocore.exceptions import ClientError

from runners.local import Emulator
from tests.helpers import wait_until

ROLE = "arn:aws:iam::123456789012:role/r"


def create(aws: Emulator, name: str, resources: dict[str, Any], **template: Any) -> dict[str, Any]:
    cfn = aws.client("cloudformation")
    body = {"AWSTemplateFormatVersion": "2010-09-09", "Resources": resources, **template}
    cfn.create_stack(StackName=name, TemplateBody=yaml.safe_dump(body))
    stack: dict[str, Any] = cfn.describe_stacks(StackName=name)["Stacks"][0]
    return stack


def outputs(stack: dict[str, Any]) -> dict[str, str]:
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}


def test_activity_ref_is_its_arn_and_getatt_name_its_name(aws: Emulator) -> None:
    """AWS::StepFunctions::Activity: "Ref returns the ARN of the created activity";
    "Fn::GetAtt ... Name: Returns the name of the activity"."""
    stack = create(
        aws,
        "activities",
        {"Work": {"Type": "AWS::StepFunctions::Activity", "Properties": {"Name": "DoWork"}}},
        Outputs={
            "Arn": {"Value": {"Ref": "Work"}},
            "Name": {"Value": {"Fn::GetAtt": ["Work", "Name"]}},
        },
    )
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    arn = "arn:aws:states:us-east-1:123456789012:activity:DoWork"
    assert outputs(stack) == {"Arn": arn, "Name": "DoWork"}
    assert aws.client("stepfunctions").describe_activity(activityArn=arn)["name"] == "DoWork"

    aws.client("cloudformation").delete_stack(StackName="activities")
    with pytest.raises(ClientError) as raised:
        aws.client("stepfunctions").describe_activity(activityArn=arn)
    assert raised.value.response["Error"]["Code"] == "ActivityDoesNotExist"


def test_no_value_in_a_list_removes_the_item(aws: Emulator) -> None:
    """Pseudo parameters reference: AWS::NoValue "Removes the corresponding resource
    property when specified as a return value in the Fn::If intrinsic function"; an item
    of a list that resolves to it is removed (the runner templates pass a runner's
    variables only when it is served)."""
    stack = create(
        aws,
        "novalue",
        {"Work": {"Type": "AWS::StepFunctions::Activity", "Properties": {"Name": "Work"}}},
        Conditions={"No": {"Fn::Equals": ["a", "b"]}},
        Outputs={
            "Joined": {
                "Value": {
                    "Fn::Join": [
                        ",",
                        ["first", {"Fn::If": ["No", "dropped", {"Ref": "AWS::NoValue"}]}, "last"],
                    ]
                }
            }
        },
    )

    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert outputs(stack) == {"Joined": "first,last"}


def test_state_machine_from_s3_with_substitutions_runs_its_activity_tasks(aws: Emulator) -> None:
    """AWS::StepFunctions::StateMachine: DefinitionS3Location is "the name of the S3
    bucket where the state machine definition is stored"; DefinitionSubstitutions "a map
    ... that specifies the mappings for placeholder variables in the state machine
    definition". The state machine runs where executions run: its activity task reaches
    a worker polling the activity created in the same stack."""
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="defs")
    definition = {
        "StartAt": "Work",
        "States": {"Work": {"Type": "Task", "Resource": "${WorkArn}", "End": True}},
    }
    s3.put_object(Bucket="defs", Key="flow.asl.json", Body=json.dumps(definition))
    stack = create(
        aws,
        "machines",
        {
            "Work": {"Type": "AWS::StepFunctions::Activity", "Properties": {"Name": "Work"}},
            "Flow": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {
                    "StateMachineName": "Flow",
                    "RoleArn": ROLE,
                    "DefinitionS3Location": {"Bucket": "defs", "Key": "flow.asl.json"},
                    "DefinitionSubstitutions": {"WorkArn": {"Ref": "Work"}},
                },
            },
        },
        Outputs={"Flow": {"Value": {"Ref": "Flow"}}, "Work": {"Value": {"Ref": "Work"}}},
    )
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    sfn = aws.client("stepfunctions")
    machine, activity = outputs(stack)["Flow"], outputs(stack)["Work"]
    described = json.loads(sfn.describe_state_machine(stateMachineArn=machine)["definition"])
    assert described["States"]["Work"]["Resource"] == activity

    execution = sfn.start_execution(stateMachineArn=machine, input='{"n": 1}')["executionArn"]
    task = wait_until(lambda: sfn.get_activity_task(activityArn=activity).get("taskToken"))
    sfn.send_task_success(taskToken=task, output='{"done": true}')
    wait_until(lambda: sfn.describe_execution(executionArn=execution)["status"] == "SUCCEEDED")


def test_glue_database_jobs_and_crawlers(aws: Emulator) -> None:
    """AWS::Glue::Job, ::Crawler and ::Database: Ref returns each one's name."""
    stack = create(
        aws,
        "glue",
        {
            "Db": {
                "Type": "AWS::Glue::Database",
                "Properties": {"CatalogId": "123456789012", "DatabaseInput": {"Name": "sales"}},
            },
            "Job": {
                "Type": "AWS::Glue::Job",
                "Properties": {
                    "Name": "Process",
                    "Role": ROLE,
                    "Command": {"Name": "glueetl", "ScriptLocation": "s3://scripts/p.py"},
                    "ExecutionProperty": {"MaxConcurrentRuns": 1},
                    "DefaultArguments": {"--s3_output_path": "s3://out/"},
                },
            },
            "Crawler": {
                "Type": "AWS::Glue::Crawler",
                "Properties": {
                    "Name": "Crawl",
                    "Role": ROLE,
                    "DatabaseName": {"Ref": "Db"},
                    "Targets": {"S3Targets": [{"Path": "s3://out/"}]},
                },
            },
        },
        Outputs={name: {"Value": {"Ref": name}} for name in ("Db", "Job", "Crawler")},
    )
    assert outputs(stack) == {"Db": "sales", "Job": "Process", "Crawler": "Crawl"}
    glue = aws.client("glue")
    job = glue.get_job(JobName="Process")["Job"]
    assert job["DefaultArguments"] == {"--s3_output_path": "s3://out/"}
    assert job["ExecutionProperty"] == {"MaxConcurrentRuns": 1}
    assert glue.get_crawler(Name="Crawl")["Crawler"]["DatabaseName"] == "sales"


def test_resource_policies_are_applied(aws: Emulator) -> None:
    """S3::BucketPolicy, SQS::QueuePolicy and SNS::TopicPolicy set the resource's policy."""
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*"}]}
    create(
        aws,
        "policies",
        {
            "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "guarded"}},
            "BucketPolicy": {
                "Type": "AWS::S3::BucketPolicy",
                "Properties": {"Bucket": {"Ref": "Bucket"}, "PolicyDocument": policy},
            },
            "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "q"}},
            "QueuePolicy": {
                "Type": "AWS::SQS::QueuePolicy",
                "Properties": {"Queues": [{"Ref": "Queue"}], "PolicyDocument": policy},
            },
            "Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "t"}},
            "TopicPolicy": {
                "Type": "AWS::SNS::TopicPolicy",
                "Properties": {"Topics": [{"Ref": "Topic"}], "PolicyDocument": policy},
            },
        },
    )
    assert json.loads(aws.client("s3").get_bucket_policy(Bucket="guarded")["Policy"]) == policy
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName="q")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]
    assert json.loads(attributes["Policy"]) == policy
    topic = "arn:aws:sns:us-east-1:123456789012:t"
    topic_attributes = aws.client("sns").get_topic_attributes(TopicArn=topic)["Attributes"]
    assert json.loads(topic_attributes["Policy"]) == policy


def test_a_type_the_emulator_cannot_create_fails_create_stack(aws: Emulator) -> None:
    """AWS creates every resource or fails the stack; the emulator refuses up front a
    type it cannot create, instead of skipping it and reporting the stack complete."""
    cfn = aws.client("cloudformation")
    body = {"Resources": {"Lake": {"Type": "AWS::LakeFormation::Resource", "Properties": {}}}}
    with pytest.raises(ClientError) as raised:
        cfn.create_stack(StackName="unknown", TemplateBody=json.dumps(body))
    assert "AWS::LakeFormation::Resource" in raised.value.response["Error"]["Message"]


def test_a_failed_resource_rolls_the_stack_back(aws: Emulator) -> None:
    """CreateStack returns the stack id; the failure shows in the stack: the resource's
    CREATE_FAILED event with its reason, then ROLLBACK_COMPLETE, with what had been
    created deleted again ("If stack creation fails, CloudFormation rolls back")."""
    aws.client("dynamodb").create_table(
        TableName="taken",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    stack = create(
        aws,
        "clash",
        {
            "First": {"Type": "AWS::StepFunctions::Activity", "Properties": {"Name": "First"}},
            "Table": {
                "Type": "AWS::DynamoDB::Table",
                "DependsOn": "First",
                "Properties": {
                    "TableName": "taken",
                    "BillingMode": "PAY_PER_REQUEST",
                    "KeySchema": [{"AttributeName": "k", "KeyType": "HASH"}],
                    "AttributeDefinitions": [{"AttributeName": "k", "AttributeType": "S"}],
                },
            },
        },
    )
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    events = aws.client("cloudformation").describe_stack_events(StackName="clash")["StackEvents"]
    failed = [event for event in events if event["ResourceStatus"] == "CREATE_FAILED"]
    assert [event["LogicalResourceId"] for event in failed] == ["Table"]
    assert failed[0]["ResourceStatusReason"]
    assert aws.client("stepfunctions").list_activities()["activities"] == []


def test_table_time_to_live_and_point_in_time_recovery_take_effect(aws: Emulator) -> None:
    """AWS::DynamoDB::Table TimeToLiveSpecification ("Specifies the Time to Live (TTL)
    settings for the table") and PointInTimeRecoverySpecification ("The settings used
    to enable point in time recovery")."""
    create(
        aws,
        "table",
        {
            "Jobs": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {
                    "TableName": "jobs",
                    "BillingMode": "PAY_PER_REQUEST",
                    "KeySchema": [{"AttributeName": "k", "KeyType": "HASH"}],
                    "AttributeDefinitions": [{"AttributeName": "k", "AttributeType": "S"}],
                    "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                },
            }
        },
    )
    dynamodb = aws.client("dynamodb")
    ttl = dynamodb.describe_time_to_live(TableName="jobs")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    backups = dynamodb.describe_continuous_backups(TableName="jobs")["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"


def test_bucket_public_access_block_and_eventbridge_notifications_take_effect(
    aws: Emulator,
) -> None:
    """AWS::S3::Bucket PublicAccessBlockConfiguration, and NotificationConfiguration
    EventBridgeConfiguration: "Enables delivery of events to Amazon EventBridge" (an
    object created in the bucket reaches a matching rule)."""
    create(
        aws,
        "bucket",
        {
            "Data": {
                "Type": "AWS::S3::Bucket",
                "Properties": {
                    "BucketName": "landing",
                    "PublicAccessBlockConfiguration": {
                        "BlockPublicAcls": True,
                        "BlockPublicPolicy": True,
                        "IgnorePublicAcls": True,
                        "RestrictPublicBuckets": True,
                    },
                    "NotificationConfiguration": {
                        "EventBridgeConfiguration": {"EventBridgeEnabled": True}
                    },
                },
            }
        },
    )
    s3 = aws.client("s3")
    block = s3.get_public_access_block(Bucket="landing")["PublicAccessBlockConfiguration"]
    assert all(block.values())
    sqs, events = aws.client("sqs"), aws.client("events")
    queue = sqs.create_queue(QueueName="arrivals")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(Name="created", EventPattern=json.dumps({"source": ["aws.s3"]}))
    events.put_targets(Rule="created", Targets=[{"Id": "q", "Arn": queue_arn}])
    s3.put_object(Bucket="landing", Key="a.csv", Body=b"x")
    messages = wait_until(lambda: sqs.receive_message(QueueUrl=queue).get("Messages"))
    assert json.loads(messages[0]["Body"])["detail"]["object"]["key"] == "a.csv"


def test_an_update_that_changes_nothing_is_refused(aws: Emulator) -> None:
    """UpdateStack: "No updates are to be performed." when neither the template nor the
    parameters (those left to their defaults included) change; a changed value updates."""
    body = yaml.safe_dump(
        {
            "Parameters": {
                "Name": {"Type": "String"},
                "Retention": {"Type": "Number", "Default": 7},
            },
            "Resources": {
                "Work": {
                    "Type": "AWS::StepFunctions::Activity",
                    "Properties": {"Name": {"Ref": "Name"}},
                }
            },
        }
    )
    cfn = aws.client("cloudformation")
    params = [{"ParameterKey": "Name", "ParameterValue": "First"}]
    cfn.create_stack(StackName="same", TemplateBody=body, Parameters=params)
    with pytest.raises(ClientError) as raised:
        cfn.update_stack(StackName="same", TemplateBody=body, Parameters=params)
    assert raised.value.response["Error"]["Message"] == "No updates are to be performed."

    changed = [{"ParameterKey": "Name", "ParameterValue": "Second"}]
    cfn.update_stack(StackName="same", TemplateBody=body, Parameters=changed)
    assert cfn.describe_stacks(StackName="same")["Stacks"][0]["StackStatus"] == "UPDATE_COMPLETE"


def test_a_resource_failing_while_outputs_are_read_rolls_back_too(aws: Emulator) -> None:
    stack = create(
        aws,
        "outputs",
        {"Job": {"Type": "AWS::Glue::Job", "Properties": {"Name": "NoCommand", "Role": ROLE}}},
        Outputs={"Job": {"Value": {"Ref": "Job"}}},
    )
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
