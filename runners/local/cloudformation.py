"""CloudFormation: the resource types runners' templates use that moto does not model,
and AWS's behaviour when a stack cannot be created.

moto skips a resource type it does not know with a warning and reports the stack
complete; AWS creates it or fails the stack. Here every type the templates use is
created in the emulator's backends, a type the emulator cannot create fails
``CreateStack`` at once, and a resource that fails to create rolls the stack back
(``ROLLBACK_COMPLETE``, with the resource's ``CREATE_FAILED`` event and reason), as
AWS does. State machines are created where executions run, from ``Definition``,
``DefinitionString`` or ``DefinitionS3Location`` with ``DefinitionSubstitutions``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from moto.applicationautoscaling.models import applicationautoscaling_backends
from moto.cloudformation import parsing
from moto.cloudformation.exceptions import UnformattedGetAttTemplateException, ValidationError
from moto.cloudformation.models import CloudFormationBackend, Event, Stack
from moto.cloudformation.responses import CloudFormationResponse
from moto.cloudwatch.models import cloudwatch_backends
from moto.core.common_models import CloudFormationModel
from moto.dynamodb.models import dynamodb_backends
from moto.dynamodb.models.table import Table
from moto.glue.models import glue_backends
from moto.s3.models import FakeBucket, s3_backends
from moto.sns.models import sns_backends
from moto.sqs.models import sqs_backends
from moto.stepfunctions.models import StateMachine

from runners.local import stepfunctions


class _Resource:
    """What the emulated resources share: a physical id, attributes, deletion."""

    def __init__(
        self,
        physical_id: str,
        attributes: dict[str, Any] | None = None,
        on_delete: Callable[[], None] | None = None,
    ) -> None:
        self._physical_id = physical_id
        self._attributes = attributes or {}
        self._on_delete = on_delete

    @property
    def physical_resource_id(self) -> str:
        return self._physical_id

    def get_cfn_attribute(self, name: str) -> Any:
        if name not in self._attributes:
            raise UnformattedGetAttTemplateException()
        return self._attributes[name]

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return True

    def is_created(self) -> bool:
        return True

    def delete(self, account_id: str, region_name: str) -> None:
        if self._on_delete is not None:
            self._on_delete()

    @classmethod
    def update_from_cloudformation_json(
        cls,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> Any:
        original_resource.delete(account_id, region_name)
        create: Any = cls.create_from_cloudformation_json  # type: ignore[attr-defined]
        return create(new_resource_name, cloudformation_json, account_id, region_name)

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region: str
    ) -> None:
        """Deletion goes through ``delete``; nothing is left to do by name."""


def _properties(cloudformation_json: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = cloudformation_json.get("Properties", {})
    return properties


# Step Functions ---------------------------------------------------------------------


class ActivityResource(_Resource, CloudFormationModel):  # type: ignore[misc]
    """``AWS::StepFunctions::Activity``: Ref is the ARN; GetAtt ``Name``."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::StepFunctions::Activity"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> ActivityResource:
        backend = stepfunctions.BACKENDS[account_id][region_name]
        tags = _properties(cloudformation_json).get("Tags")
        activity = backend.create_activity(resource_name, tags=tags)
        return cls(
            activity.arn,
            {"Name": resource_name},
            lambda: backend.delete_activity(activity.arn),
        )


def _definition(properties: dict[str, Any], account_id: str) -> str:
    """The definition from whichever property holds it, placeholders substituted."""
    if "Definition" in properties:
        definition = json.dumps(properties["Definition"])
    elif "DefinitionS3Location" in properties:
        location = properties["DefinitionS3Location"]
        bucket = s3_backends[account_id]["aws"].get_bucket(location["Bucket"])
        key = bucket.keys.get(location["Key"])
        if key is None:
            raise ValidationError(
                message=f"DefinitionS3Location: s3://{location['Bucket']}/{location['Key']} "
                "does not exist"
            )
        definition = key.value.decode()
    else:
        definition = properties.get("DefinitionString", "")
    for name, value in properties.get("DefinitionSubstitutions", {}).items():
        definition = definition.replace("${" + name + "}", str(value))
    return definition


def _create_state_machine(
    cls: type[StateMachine],
    /,
    resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
    **kwargs: Any,
) -> StateMachine:
    properties = _properties(cloudformation_json)
    backend = stepfunctions.BACKENDS[account_id][region_name]
    return backend.create_state_machine(
        properties.get("StateMachineName", resource_name),
        _definition(properties, account_id),
        properties.get("RoleArn", ""),
        tags=properties.get("Tags"),
    )


def _update_state_machine(
    cls: type[StateMachine],
    /,
    original_resource: StateMachine,
    new_resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
) -> StateMachine:
    properties = _properties(cloudformation_json)
    backend = stepfunctions.BACKENDS[account_id][region_name]
    if properties.get("StateMachineName", original_resource.name) != original_resource.name:
        backend.delete_state_machine(original_resource.arn)
        return _create_state_machine(
            cls, new_resource_name, cloudformation_json, account_id, region_name
        )
    backend.update_state_machine(
        original_resource.arn,
        definition=_definition(properties, account_id),
        role_arn=properties.get("RoleArn"),
    )
    return original_resource


def _delete_state_machine(
    cls: type[StateMachine],
    /,
    resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
) -> None:
    stepfunctions.BACKENDS[account_id][region_name].delete_state_machine(resource_name)


# S3 ---------------------------------------------------------------------------------

_create_bucket = FakeBucket.create_from_cloudformation_json


def _create_bucket_with_settings(
    cls: type[FakeBucket],
    /,
    resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
    **kwargs: Any,
) -> FakeBucket:
    """AWS::S3::Bucket with what moto's model leaves out: PublicAccessBlockConfiguration,
    and a NotificationConfiguration's EventBridgeConfiguration ("Enables delivery of
    events to Amazon EventBridge"). Other notification targets fail loudly."""
    properties = _properties(cloudformation_json)
    notifications = dict(properties.get("NotificationConfiguration", {}))
    event_bridge = notifications.pop("EventBridgeConfiguration", None)
    if notifications:
        raise ValidationError(
            message=f"the emulator cannot create bucket notifications {sorted(notifications)}"
        )
    bucket = _create_bucket(resource_name, cloudformation_json, account_id, region_name, **kwargs)
    backend = s3_backends[account_id]["aws"]
    if "PublicAccessBlockConfiguration" in properties:
        backend.put_public_access_block(bucket.name, properties["PublicAccessBlockConfiguration"])
    if event_bridge and event_bridge.get("EventBridgeEnabled", True):
        backend.put_bucket_notification_configuration(bucket.name, {"EventBridgeConfiguration": {}})
    return bucket


# DynamoDB ---------------------------------------------------------------------------

_create_table = Table.create_from_cloudformation_json


def _create_table_with_settings(
    cls: type[Table],
    /,
    resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
    **kwargs: Any,
) -> Table:
    """AWS::DynamoDB::Table with what moto's model leaves out: TimeToLiveSpecification
    and PointInTimeRecoverySpecification take effect."""
    table = _create_table(resource_name, cloudformation_json, account_id, region_name, **kwargs)
    properties = _properties(cloudformation_json)
    backend = dynamodb_backends[account_id][region_name]
    if "TimeToLiveSpecification" in properties:
        backend.update_time_to_live(table.name, properties["TimeToLiveSpecification"])
    if "PointInTimeRecoverySpecification" in properties:
        backend.update_continuous_backups(
            table.name, properties["PointInTimeRecoverySpecification"]
        )
    return table


# Glue -------------------------------------------------------------------------------


class GlueDatabaseResource(_Resource, CloudFormationModel):  # type: ignore[misc]
    """``AWS::Glue::Database``: Ref is the database name."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Glue::Database"

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> GlueDatabaseResource:
        backend = glue_backends[account_id][region_name]
        database_input = dict(_properties(cloudformation_json)["DatabaseInput"])
        name = database_input.setdefault("Name", resource_name)
        backend.create_database(name, database_input)
        return cls(name, {}, lambda: backend.delete_database(name))


class GlueJobResource(_Resource, CloudFormationModel):  # type: ignore[misc]
    """``AWS::Glue::Job``: Ref is the job name."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Glue::Job"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> GlueJobResource:
        backend = glue_backends[account_id][region_name]
        p = _properties(cloudformation_json)
        backend.create_job(
            name=resource_name,
            role=p["Role"],
            command=p["Command"],
            description=p.get("Description"),
            log_uri=p.get("LogUri"),
            execution_property=p.get("ExecutionProperty"),
            default_arguments=p.get("DefaultArguments"),
            non_overridable_arguments=p.get("NonOverridableArguments"),
            connections=p.get("Connections"),
            max_retries=p.get("MaxRetries"),
            allocated_capacity=p.get("AllocatedCapacity"),
            timeout=p.get("Timeout"),
            max_capacity=p.get("MaxCapacity"),
            security_configuration=p.get("SecurityConfiguration"),
            tags=p.get("Tags") or {},
            notification_property=p.get("NotificationProperty"),
            glue_version=p.get("GlueVersion"),
            number_of_workers=p.get("NumberOfWorkers"),
            worker_type=p.get("WorkerType"),
            code_gen_configuration_nodes=None,
            execution_class=p.get("ExecutionClass"),
            source_control_details=None,
        )
        return cls(resource_name, {}, lambda: backend.jobs.pop(resource_name, None))


class GlueCrawlerResource(_Resource, CloudFormationModel):  # type: ignore[misc]
    """``AWS::Glue::Crawler``: Ref is the crawler name."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Glue::Crawler"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> GlueCrawlerResource:
        backend = glue_backends[account_id][region_name]
        p = _properties(cloudformation_json)
        backend.create_crawler(
            name=resource_name,
            role=p["Role"],
            database_name=p.get("DatabaseName"),
            description=p.get("Description"),
            targets=p["Targets"],
            schedule=(p.get("Schedule") or {}).get("ScheduleExpression"),
            classifiers=p.get("Classifiers"),
            table_prefix=p.get("TablePrefix"),
            schema_change_policy=p.get("SchemaChangePolicy"),
            recrawl_policy=p.get("RecrawlPolicy"),
            lineage_configuration=p.get("LineageConfiguration"),
            configuration=p.get("Configuration"),
            crawler_security_configuration=p.get("CrawlerSecurityConfiguration"),
            tags=p.get("Tags") or {},
        )
        return cls(resource_name, {}, lambda: backend.delete_crawler(resource_name))


# Resource policies ------------------------------------------------------------------


class BucketPolicyResource(_Resource, CloudFormationModel):  # type: ignore[misc]
    """``AWS::S3::BucketPolicy``: the policy is set on the bucket."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::S3::BucketPolicy"

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> BucketPolicyResource:
        backend = s3_backends[account_id]["aws"]
        p = _properties(cloudformation_json)
        backend.put_bucket_policy(p["Bucket"], json.dumps(p["PolicyDocument"]).encode())
        return cls(p["Bucket"], {}, lambda: backend.delete_bucket_policy(p["Bucket"]))


class QueuePolicyResource(_Resource, CloudFormationModel):  # type: ignore[misc]
    """``AWS::SQS::QueuePolicy``: the policy is set on each queue (named by URL)."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SQS::QueuePolicy"

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> QueuePolicyResource:
        backend = sqs_backends[account_id][region_name]
        p = _properties(cloudformation_json)
        names = [url.rstrip("/").rsplit("/", 1)[-1] for url in p["Queues"]]
        for name in names:
            backend.set_queue_attributes(name, {"Policy": json.dumps(p["PolicyDocument"])})

        def delete() -> None:
            for name in names:
                if name in backend.queues:
                    backend.set_queue_attributes(name, {"Policy": ""})

        return cls(resource_name, {}, delete)


class TopicPolicyResource(_Resource, CloudFormationModel):  # type: ignore[misc]
    """``AWS::SNS::TopicPolicy``: the policy is set on each topic."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SNS::TopicPolicy"

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> TopicPolicyResource:
        backend = sns_backends[account_id][region_name]
        p = _properties(cloudformation_json)
        for topic_arn in p["Topics"]:
            backend.set_topic_attribute(topic_arn, "policy", json.dumps(p["PolicyDocument"]))
        return cls(resource_name)


class SubscriptionResource(_Resource, CloudFormationModel):  # type: ignore[misc]
    """``AWS::SNS::Subscription``: Ref is the subscription ARN."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SNS::Subscription"

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> SubscriptionResource:
        backend = sns_backends[account_id][region_name]
        p = _properties(cloudformation_json)
        subscription = backend.subscribe(p["TopicArn"], p["Endpoint"], p["Protocol"])
        return cls(subscription.arn, {}, lambda: backend.unsubscribe(subscription.arn))


# Application Auto Scaling -----------------------------------------------------------


class ScalableTargetResource(_Resource, CloudFormationModel):  # type: ignore[misc]
    """``AWS::ApplicationAutoScaling::ScalableTarget``: Ref is
    ``<resource id>|<scalable dimension>|<service namespace>``, as on AWS."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ApplicationAutoScaling::ScalableTarget"

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> ScalableTargetResource:
        backend = applicationautoscaling_backends[account_id][region_name]
        p = _properties(cloudformation_json)
        namespace, resource_id = p["ServiceNamespace"], p["ResourceId"]
        dimension = p["ScalableDimension"]
        backend.register_scalable_target(
            namespace,
            resource_id,
            dimension,
            int(p["MinCapacity"]),
            int(p["MaxCapacity"]),
            p.get("RoleARN", ""),
            p.get("SuspendedState", {}),
        )
        return cls(
            f"{resource_id}|{dimension}|{namespace}",
            {},
            lambda: backend.deregister_scalable_target(namespace, resource_id, dimension),
        )


class ScalingPolicyResource(_Resource, CloudFormationModel):  # type: ignore[misc]
    """``AWS::ApplicationAutoScaling::ScalingPolicy`` on a target named by
    ``ScalingTargetId`` or by its resource id, dimension and namespace."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ApplicationAutoScaling::ScalingPolicy"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "PolicyName"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> ScalingPolicyResource:
        backend = applicationautoscaling_backends[account_id][region_name]
        p = _properties(cloudformation_json)
        if "ScalingTargetId" in p:
            resource_id, dimension, namespace = p["ScalingTargetId"].split("|")
        else:
            resource_id, dimension = p["ResourceId"], p["ScalableDimension"]
            namespace = p["ServiceNamespace"]
        body = {
            key: p[key]
            for key in (
                "TargetTrackingScalingPolicyConfiguration",
                "StepScalingPolicyConfiguration",
            )
            if key in p
        }
        policy = backend.put_scaling_policy(
            resource_name, namespace, resource_id, dimension, body, p["PolicyType"]
        )
        return cls(
            policy.policy_arn,
            {"Arn": policy.policy_arn},
            lambda: backend.delete_scaling_policy(resource_name, namespace, resource_id, dimension),
        )


# CloudWatch alarms -------------------------------------------------------------------


class AlarmResource(_Resource, CloudFormationModel):  # type: ignore[misc]
    """``AWS::CloudWatch::Alarm`` on one metric: Ref is the alarm name (``AlarmName``,
    or a generated one), ``Arn`` its ARN, as on AWS."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudWatch::Alarm"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "AlarmName"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> AlarmResource:
        backend = cloudwatch_backends[account_id][region_name]
        p = _properties(cloudformation_json)
        alarm = backend.put_metric_alarm(
            name=resource_name,
            namespace=p["Namespace"],
            metric_name=p["MetricName"],
            comparison_operator=p["ComparisonOperator"],
            evaluation_periods=int(p["EvaluationPeriods"]),
            period=int(p["Period"]),
            threshold=float(p["Threshold"]),
            statistic=p.get("Statistic"),
            description=p.get("AlarmDescription", ""),
            dimensions=[{"Name": d["Name"], "Value": d["Value"]} for d in p.get("Dimensions", [])],
            alarm_actions=list(p.get("AlarmActions", [])),
            ok_actions=list(p.get("OKActions", [])),
            datapoints_to_alarm=p.get("DatapointsToAlarm"),
            treat_missing_data=p.get("TreatMissingData"),
            unit=p.get("Unit"),
        )
        return cls(
            resource_name,
            {"Arn": alarm.alarm_arn},
            lambda: backend.delete_alarms([resource_name]),
        )


# Stack behaviour --------------------------------------------------------------------


class ResourceCreateFailed(Exception):
    """A resource failed to create; the stack rolls back."""

    def __init__(self, logical_id: str, resource_type: str, reason: str) -> None:
        super().__init__(reason)
        self.logical_id, self.resource_type, self.reason = logical_id, resource_type, reason


_parse_and_create_resource = parsing.parse_and_create_resource
_clean_json = parsing.clean_json


def clean_json(resource_json: Any, resources_map: Any) -> Any:
    """AWS::NoValue "removes the corresponding resource property when specified as a
    return value in the Fn::If intrinsic function"; as an item of a list, it removes the
    item (moto removes properties but leaves None in lists)."""
    if isinstance(resource_json, list):
        items = (clean_json(item, resources_map) for item in resource_json)
        return [item for item in items if item is not None]
    return _clean_json(resource_json, resources_map)


_create_stack = CloudFormationBackend.create_stack
_update_stack = CloudFormationBackend.update_stack
_update = Stack.update


def parse_and_create_resource(
    logical_id: str, resource_json: dict[str, Any], resources_map: Any, *args: Any, **kwargs: Any
) -> Any:
    try:
        return _parse_and_create_resource(logical_id, resource_json, resources_map, *args, **kwargs)
    except ResourceCreateFailed:
        raise
    except Exception as error:
        reason = getattr(error, "message", None) or str(error) or type(error).__name__
        raise ResourceCreateFailed(logical_id, resource_json["Type"], reason) from error


class _NoOutputs(dict[str, Any]):
    """A rolled-back stack's outputs: none (moto would create resources to read them)."""

    @property
    def exports(self) -> list[Any]:
        return []


def _roll_back(stack: Stack, failure: ResourceCreateFailed) -> None:
    """A failed resource rolls the stack back: ``CREATE_FAILED`` on the resource with
    its reason, then ``ROLLBACK_IN_PROGRESS`` and ``ROLLBACK_COMPLETE`` on the stack."""
    stack.events.append(
        Event(
            stack_id=stack.stack_id,
            stack_name=stack.name,
            logical_resource_id=failure.logical_id,
            physical_resource_id="",
            resource_type=failure.resource_type,
            resource_status="CREATE_FAILED",
            resource_status_reason=failure.reason,
            resource_properties=None,
        )
    )
    stack.status = "ROLLBACK_IN_PROGRESS"
    stack._add_stack_event(
        "ROLLBACK_IN_PROGRESS",
        resource_status_reason=(
            f"The following resource(s) failed to create: [{failure.logical_id}]. "
            "Rollback requested by user."
        ),
    )
    stack.output_map = _NoOutputs()
    try:
        stack.resource_map.delete()
    finally:
        stack.status = "ROLLBACK_COMPLETE"
        stack._add_stack_event("ROLLBACK_COMPLETE")


def update(self: Stack, template: str, *args: Any, **kwargs: Any) -> None:
    """A failed update ends in ``UPDATE_ROLLBACK_COMPLETE`` with the reason on the stack
    (the emulator does not undo the resources it had already changed)."""
    try:
        _update(self, template, *args, **kwargs)
    except Exception as error:
        reason = getattr(error, "message", None) or str(error) or type(error).__name__
        self._add_stack_event("UPDATE_ROLLBACK_IN_PROGRESS", resource_status_reason=reason)
        self._add_stack_event("UPDATE_ROLLBACK_COMPLETE")
        self.status = "UPDATE_ROLLBACK_COMPLETE"


def _check_types(template: str | dict[str, Any] | None) -> None:
    """Fail at once on a type the emulator cannot create (AWS would create it)."""
    if not template:
        return
    body = template if isinstance(template, dict) else Stack.parse_template(template)
    unknown = sorted(
        {
            resource["Type"]
            for resource in body.get("Resources", {}).values()
            if not resource["Type"].startswith("Custom::")
            and resource["Type"] not in parsing.NULL_MODELS
            and resource["Type"] not in parsing.get_model_map()
        }
    )
    if unknown:
        raise ValidationError(
            message=f"Template format error: Unrecognized resource types: [{', '.join(unknown)}]"
            " (the emulator cannot create these)"
        )


def create_stack(
    self: CloudFormationBackend, name: str, template: str, *args: Any, **kw: Any
) -> Any:
    """CreateStack returns the stack; a resource that fails shows in the stack's state
    (resources may be created while outputs are read, before moto creates the rest)."""
    _check_types(template)
    try:
        return _create_stack(self, name, template, *args, **kw)
    except ResourceCreateFailed as failure:
        stack = next(
            s for s in self.stacks.values() if s.name == name and s.status != "DELETE_COMPLETE"
        )
        _roll_back(stack, failure)
        return stack


def update_stack(
    self: CloudFormationBackend, name: str, template: str, *args: Any, **kw: Any
) -> Any:
    _check_types(template)
    return _update_stack(self, name, template, *args, **kw)


def validate_different_update(
    self: CloudFormationResponse,
    incoming_params: list[dict[str, Any]] | None,
    stack_body: str,
    old_stack: Stack,
) -> None:
    """UpdateStack with the same template and the same effective parameters (defaults
    included) fails with "No updates are to be performed." (moto compares the passed
    parameters with the resolved ones, so it sees a change whenever a default applies)."""
    if not incoming_params or not stack_body or old_stack.template != stack_body:
        return
    declared = Stack.parse_template(stack_body).get("Parameters") or {}
    new = self._get_param_values(incoming_params, old_stack.stack_parameters)
    effective = {key: p["Default"] for key, p in declared.items() if "Default" in p} | new
    old = {key: value for key, value in old_stack.stack_parameters.items() if key in declared}
    if _as_text(effective) == _as_text(old):
        raise ValidationError(old_stack.name, message="No updates are to be performed.")


def _as_text(values: dict[str, Any]) -> dict[str, str]:
    return {
        key: ",".join(map(str, value)) if isinstance(value, list) else str(value)
        for key, value in values.items()
    }


def install() -> None:
    for cache in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cache.cache_clear()
    StateMachine.create_from_cloudformation_json = classmethod(_create_state_machine)
    StateMachine.update_from_cloudformation_json = classmethod(_update_state_machine)
    StateMachine.delete_from_cloudformation_json = classmethod(_delete_state_machine)
    Table.create_from_cloudformation_json = classmethod(_create_table_with_settings)
    FakeBucket.create_from_cloudformation_json = classmethod(_create_bucket_with_settings)
    parsing.parse_and_create_resource = parse_and_create_resource
    parsing.clean_json = clean_json
    Stack.update = update
    CloudFormationBackend.create_stack = create_stack
    CloudFormationBackend.update_stack = update_stack
    CloudFormationResponse._validate_different_update = validate_different_update
