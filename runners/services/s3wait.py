"""Waiting for data: a wait task ends when the object it waits for lands in S3.

On a new wait task the runner records a waiter in the wait table, then looks for an
arrival that already happened (the object-created Lambda records every arrival; an
exact key is also checked with ``HeadObject``). If one is there, the task succeeds at
once; if not, the Lambda releases it when the object lands. Checks are the safety net:
they finish waits the Lambda released, take over a release whose Lambda died midway,
and find arrivals a failed Lambda invocation left behind.

What a wait is for, in order: the task input (``S3Bucket`` with ``S3Key``,
``S3Prefix`` or ``S3KeyPattern``); else the runner's configured rule; else the
original sample's convention, activity ``<bucket>-<file name>``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from runners.engine.definition import (
    DeployParameter,
    Permission,
    RunnerContext,
    RunnerDefinition,
)
from runners.engine.inputs import Fields
from runners.engine.runner import RUNNING, Job, JobStatus, Runner, Succeeded, TaskStart
from runners.errors import ConfigError, RunnerInputError
from runners.logs import get_logger
from runners.retry import error_code
from runners.waits.model import Arrival, Matcher
from runners.waits.table import RELEASED, RELEASING, WAITING, Waiter, WaitTable

RUNNER_CLAIMANT = "runner"
DEFAULT_MAX_AGE_SECONDS = 86_400.0
# A Lambda that claimed a release and went quiet this long is presumed dead.
RELEASE_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class WaitRule:
    """A configured mapping from objects to this runner's activity."""

    bucket: str | None = None
    prefix: str | None = None
    suffix: str | None = None
    glob: str | None = None


@dataclass(frozen=True)
class WaitSpec:
    matcher: Matcher
    max_age_seconds: float
    arrived_after: float | None = None


class S3WaitRunner(Runner[WaitSpec]):
    name = "s3wait"
    settles_at_start = True
    idempotent_start = True  # a waiter is written once per key

    def __init__(
        self,
        s3: Any,
        waits: WaitTable,
        activity_arn: str,
        job_table: str,
        rule: WaitRule | None = None,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        release_timeout_seconds: float = RELEASE_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.s3, self.waits = s3, waits
        self.activity_arn, self.job_table = activity_arn, job_table
        self.activity_name = activity_arn.rsplit(":", 1)[-1]
        self.rule = rule or WaitRule()
        self.max_age_seconds = max_age_seconds
        self.release_timeout_seconds = release_timeout_seconds
        self.clock = clock
        self.log = get_logger(runner=self.name, activity=activity_arn)

    # Input -------------------------------------------------------------------------

    def parse(self, document: Mapping[str, Any]) -> WaitSpec:
        fields = Fields(document)
        bucket = fields.text("S3Bucket", max_length=63) or self.rule.bucket
        given = {
            name: fields.text(field, max_length=1024)
            for name, field in (("key", "S3Key"), ("prefix", "S3Prefix"), ("glob", "S3KeyPattern"))
        }
        given = {name: value for name, value in given.items() if value is not None}
        if len(given) > 1:
            raise RunnerInputError("S3Key", "give one of S3Key, S3Prefix or S3KeyPattern")
        if bucket is None:
            raise RunnerInputError("S3Bucket", "is required (or configure wait_bucket)")
        max_age = fields.number("MaxAgeSeconds", 0, 366 * 86_400)
        return WaitSpec(
            matcher=Matcher(bucket=bucket, **given) if given else self._configured(bucket),
            max_age_seconds=self.max_age_seconds if max_age is None else max_age,
            arrived_after=_timestamp(fields.text("ArrivedAfter", max_length=64)),
        )

    def _configured(self, bucket: str) -> Matcher:
        rule = self.rule
        if rule.prefix or rule.suffix or rule.glob:
            return Matcher(bucket=bucket, prefix=rule.prefix, suffix=rule.suffix, glob=rule.glob)
        return Matcher(bucket=bucket, convention=self.activity_name)

    def describe(self, spec: WaitSpec) -> dict[str, str]:
        return {"wait_for": ",".join(f"{k}={v}" for k, v in spec.matcher.as_dict().items())}

    # Waiting -----------------------------------------------------------------------

    async def start(self, spec: WaitSpec, task: TaskStart) -> str:
        not_before = task.received_at - spec.max_age_seconds
        if spec.arrived_after is not None:
            not_before = max(not_before, spec.arrived_after)
        waiter = Waiter(
            spec.matcher.bucket,
            task.key,
            self.activity_arn,
            self.job_table,
            spec.matcher,
            not_before,
        )
        stored = await self.waits.add_waiter(waiter)
        if stored.status == WAITING:
            await self._release_if_arrived(stored)
        return task.key

    async def find(self, spec: WaitSpec, task: TaskStart) -> str | None:
        """A wait's id is its task key: there is nothing to search for."""
        return task.key

    async def check(self, jobs: Sequence[Job[WaitSpec]]) -> Mapping[str, JobStatus]:
        keys = [(job.spec.matcher.bucket, job.run_id) for job in jobs]
        waiters = await self.waits.get_waiters(keys)
        statuses: dict[str, JobStatus] = {}
        for job in jobs:
            waiter = waiters.get(job.run_id)
            if waiter is None:
                self.log.warning("waiter missing; recording it again", wait_id=job.run_id)
                await self.start(job.spec, TaskStart(job.run_id, self.clock()))
                continue
            if waiter.status == WAITING:
                waiter = await self._release_if_arrived(waiter) or waiter
            statuses[job.run_id] = self._status(waiter)
        return statuses

    def _status(self, waiter: Waiter) -> JobStatus:
        if waiter.arrival is None or waiter.status == WAITING:
            return RUNNING
        output = waiter.arrival.output(self.activity_arn)
        if waiter.status == RELEASED:
            return Succeeded(output, reported=True)
        stale = self.clock() - (waiter.claimed_at or 0.0) > self.release_timeout_seconds
        if waiter.status == RELEASING and (waiter.claimant == RUNNER_CLAIMANT or stale):
            return Succeeded(output)
        return RUNNING

    async def _release_if_arrived(self, waiter: Waiter) -> Waiter | None:
        arrival = await self._arrived(waiter)
        if arrival is None:
            return None
        return await self.waits.claim(waiter, RUNNER_CLAIMANT, arrival)

    async def _arrived(self, waiter: Waiter) -> Arrival | None:
        """The newest matching arrival on record, else the object itself if the wait
        names one key (it may have landed before arrivals were recorded)."""
        matcher = waiter.matcher
        candidates = [
            arrival
            for arrival in await self.waits.arrivals(matcher.bucket, matcher.key_prefix)
            if matcher.matches(arrival.bucket, arrival.key)
            and arrival.event_time >= waiter.not_before
        ]
        if candidates:
            return max(candidates, key=lambda arrival: arrival.event_time)
        key = matcher.key or self._conventional_key(matcher)
        return await self._head(matcher.bucket, key, waiter.not_before) if key else None

    def _conventional_key(self, matcher: Matcher) -> str | None:
        """Under the convention, the file at the bucket's root."""
        prefix = f"{matcher.bucket}-"
        if matcher.convention and matcher.convention.startswith(prefix):
            return matcher.convention[len(prefix) :]
        return None

    async def _head(self, bucket: str, key: str, not_before: float) -> Arrival | None:
        try:
            head = await self.s3.head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if error_code(error) in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise
        landed = head["LastModified"].timestamp()
        if landed < not_before:
            return None
        return Arrival(
            bucket=bucket,
            key=key,
            event_time=landed,
            size=head.get("ContentLength"),
            etag=head.get("ETag"),
            version_id=head.get("VersionId"),
        )

    async def stop(self, job: Job[WaitSpec]) -> None:
        waiter = (await self.waits.get_waiters([(job.spec.matcher.bucket, job.run_id)])).get(
            job.run_id
        )
        if waiter is not None:
            await self.waits.remove_waiter(waiter)


def _timestamp(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise RunnerInputError("ArrivedAfter", "must be an ISO-8601 time") from None


@dataclass(frozen=True)
class S3WaitOptions:
    wait_table: str = ""  # where waits and arrivals meet (required)
    wait_bucket: str | None = None  # the bucket, for waits whose input names none
    wait_prefix: str | None = None
    wait_suffix: str | None = None
    wait_glob: str | None = None
    wait_max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS

    def __post_init__(self) -> None:
        if not self.wait_table:
            raise ConfigError("wait_table: the s3wait runner needs the wait table's name")
        if self.wait_max_age_seconds <= 0:
            raise ConfigError("wait_max_age_seconds: must be positive")


async def build(context: RunnerContext[S3WaitOptions]) -> S3WaitRunner:
    options, config = context.options, context.config
    waits = WaitTable(options.wait_table, config.region)
    context.at_close(waits.close)
    if context.create_tables:
        waits.create_table()
    waits.verify()
    return S3WaitRunner(
        await context.client("s3"),
        waits,
        config.activity_arn,
        config.table,
        WaitRule(options.wait_bucket, options.wait_prefix, options.wait_suffix, options.wait_glob),
        options.wait_max_age_seconds,
    )


RUNNER = RunnerDefinition(
    name="s3wait",
    title="Wait",
    description="waits for an object to land in S3 (with the object-created Lambda)",
    build=build,
    options=S3WaitOptions,
    permissions=(
        Permission(
            (
                "dynamodb:DescribeTable",
                "dynamodb:DescribeTimeToLive",
                "dynamodb:GetItem",
                "dynamodb:BatchGetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
                "dynamodb:Query",
            ),
            (
                "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${WaitTableName}",
            ),
        ),
        # HeadObject needs GetObject; ListBucket makes a missing object a 404, not a 403.
        Permission(("s3:GetObject",), ("arn:${AWS::Partition}:s3:::${WaitBucketName}/*",)),
        Permission(("s3:ListBucket",), ("arn:${AWS::Partition}:s3:::${WaitBucketName}",)),
    ),
    parameters=(
        DeployParameter(
            "WaitTableName", "the wait table (step-functions-resources stack)", option="wait_table"
        ),
        DeployParameter("WaitBucketName", "the bucket data lands in", option="wait_bucket"),
    ),
    function="waitrunner",
)
