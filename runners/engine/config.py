"""What the engine needs to know about one activity; every runner shares these fields.

A runner's own fields (a Glue job's default capacity, the wait table...) live in its
options dataclass; ``runners.settings`` reads both from files and the environment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from runners.errors import ConfigError

ACTIVITY_ARN = re.compile(r"^arn:[\w-]+:states:([a-z0-9-]+):(\d{12}):activity:[\w.-]{1,80}$")


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    """Times are seconds."""

    activity_arn: str
    table: str
    worker_name: str = "runners"
    page_size: int = 100
    pollers: int = 4
    max_in_flight: int = 1000
    poll_seconds: float = 60.0
    check_interval_seconds: float = 5.0
    heartbeat_interval_seconds: float = 60.0
    lease_seconds: float = 120.0
    # Leases compare the wall clocks of different hosts, assumed NTP-synced: a worker
    # takes a lease over only once it has been expired this long by its own clock, so a
    # clock a few seconds ahead never takes a live lease.
    clock_skew_seconds: float = 5.0
    start_timeout_seconds: float = 3600.0
    retention_days: float = 7.0
    # Completion events (the service's EventBridge events, through a queue) may report
    # this runner's tasks: each report is preceded by a conditional mark so that the
    # periodic check and the event path never both report.
    completion_events: bool = False
    # The queue of those events this worker consumes (the container worker; in Lambda
    # mode a Lambda consumes it). Setting it turns completion events on.
    completion_queue_url: str = ""

    def __post_init__(self) -> None:
        if not ACTIVITY_ARN.match(self.activity_arn):
            raise ConfigError(f"activity_arn: {self.activity_arn!r} is not an activity ARN")
        if not self.table:
            raise ConfigError("table: the job table name is empty")
        for field in fields(EngineConfig):
            value = getattr(self, field.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
                raise ConfigError(f"{field.name}: must be positive, got {value}")
        if self.lease_seconds < 2 * self.check_interval_seconds:
            raise ConfigError(
                f"lease_seconds ({self.lease_seconds:g}) must be at least twice "
                f"check_interval_seconds ({self.check_interval_seconds:g}): leases are "
                "renewed by check cycles"
            )

    @property
    def events_on(self) -> bool:
        return self.completion_events or bool(self.completion_queue_url)

    @property
    def region(self) -> str:
        match = ACTIVITY_ARN.match(self.activity_arn)
        assert match is not None
        return match.group(1)
