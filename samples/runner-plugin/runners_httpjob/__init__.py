"""A runner for a service outside AWS: any job server with a small HTTP API.

    POST {endpoint}/jobs              {"job": name, "parameters": {...}, "key": task key}
                                      -> {"id": ...}; the same key returns the same job
    GET  {endpoint}/jobs?ids=a,b,c    -> {"jobs": [{"id", "state", "message"}, ...]}
    POST {endpoint}/jobs/{id}/cancel

States: queued and running keep the task alive, succeeded succeeds it, failed and
cancelled fail it with ``HttpJobFailedError``. A 404 on start is bad input, a 429 is
"try later", other 4xx answers are a named failure; 5xx answers and broken connections
are retried by the engine (the start is idempotent by its key).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from runners.engine.definition import RunnerContext, RunnerDefinition
from runners.engine.inputs import Fields
from runners.engine.runner import RUNNING, Failed, Job, JobStatus, Runner, Succeeded, TaskStart
from runners.engine.service import Phase, StateTable
from runners.errors import ConfigError, RunnerInputError, TaskFailure, TryLater

STATES = StateTable(
    "httpjob",
    "JobState",
    running={"queued", "running"},
    succeeded={"succeeded"},
    failed={"failed", "cancelled"},
)
BATCH = 50


@dataclass(frozen=True)
class HttpJobSpec:
    job: str
    parameters: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class HttpJobOptions:
    httpjob_endpoint: str = ""  # the job server, e.g. https://jobs.example.com/api

    def __post_init__(self) -> None:
        if not self.httpjob_endpoint.startswith(("http://", "https://")):
            raise ConfigError("httpjob_endpoint: the job server's http(s):// URL is required")


class HttpJobRunner(Runner[HttpJobSpec]):
    name = "httpjob"
    idempotent_start = True  # the server returns the same job for the same key

    def __init__(self, session: aiohttp.ClientSession, endpoint: str) -> None:
        self.session, self.endpoint = session, endpoint.rstrip("/")

    def parse(self, document: Mapping[str, Any]) -> HttpJobSpec:
        fields = Fields(document)
        return HttpJobSpec(
            job=fields.required_text("JobName", max_length=200),
            parameters=tuple(sorted(fields.string_map("Parameters").items())),
        )

    def describe(self, spec: HttpJobSpec) -> dict[str, str]:
        return {"job_name": spec.job}

    async def start(self, spec: HttpJobSpec, task: TaskStart) -> str:
        body = {"job": spec.job, "parameters": dict(spec.parameters), "key": task.key}
        async with self.session.post(f"{self.endpoint}/jobs", json=body) as response:
            if response.status == 404:
                raise RunnerInputError("JobName", f"the job server has no job {spec.job!r}")
            if response.status == 429:
                raise TryLater("HttpJobBusyError", await response.text())
            if 400 <= response.status < 500:
                raise TaskFailure(
                    "HttpJobStartError", {"job_name": spec.job, "status": response.status}
                )
            response.raise_for_status()  # 5xx: retried, with the same key
            return str((await response.json())["id"])

    async def check(self, jobs: Sequence[Job[HttpJobSpec]]) -> Mapping[str, JobStatus]:
        statuses: dict[str, JobStatus] = {}
        ids = [job.run_id for job in jobs]
        for index in range(0, len(ids), BATCH):
            query = {"ids": ",".join(ids[index : index + BATCH])}
            async with self.session.get(f"{self.endpoint}/jobs", params=query) as response:
                response.raise_for_status()
                for found in (await response.json())["jobs"]:
                    statuses[found["id"]] = self._status(found)
        return statuses

    def _status(self, found: Mapping[str, Any]) -> JobStatus:
        phase = STATES.phase(found.get("state"))
        if phase is Phase.SUCCEEDED:
            return Succeeded({"HttpJobId": found["id"], "HttpJobState": found["state"]})
        if phase is Phase.FAILED:
            return Failed(
                "HttpJobFailedError",
                {"id": found["id"], "state": found["state"], "message": found.get("message", "")},
            )
        return RUNNING

    async def stop(self, job: Job[HttpJobSpec]) -> None:
        async with self.session.post(f"{self.endpoint}/jobs/{job.run_id}/cancel") as response:
            response.raise_for_status()


async def build(context: RunnerContext[HttpJobOptions]) -> HttpJobRunner:
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))
    context.at_close(session.close)
    return HttpJobRunner(session, context.options.httpjob_endpoint)


RUNNER = RunnerDefinition(
    name="httpjob",
    title="HttpJob",
    description="runs a job on an HTTP job server and waits for it",
    build=build,
    options=HttpJobOptions,
    states=STATES,
)
