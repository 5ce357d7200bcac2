"""A runner from another package: the sample plugin (``samples/runner-plugin``) is
installed with pip from its own directory, found through its entry point, and served by
``python -m runners worker`` against a job server with an HTTP API on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from deploy.project import SAMPLES
from runners.local import Emulator
from tests.engine.test_end_to_end import task_machine
from tests.helpers import finished

PLUGIN = SAMPLES / "runner-plugin"


class JobServer(ThreadingHTTPServer):
    """The HTTP job API the plugin's docstring describes; jobs finish when a test says."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), JobHandler)
        self.jobs: dict[str, dict[str, Any]] = {}
        self.by_key: dict[str, str] = {}
        self.starts = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class JobHandler(BaseHTTPRequestHandler):
    server: JobServer

    def do_POST(self) -> None:
        path = urlparse(self.path).path
        if path == "/jobs":
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if body["job"] == "missing":
                return self._answer(404, {"error": "no such job"})
            with self.server.lock:
                self.server.starts += 1
                job_id = self.server.by_key.setdefault(body["key"], uuid.uuid4().hex)
                state = "failed" if body["job"] == "doomed" else "running"
                self.server.jobs.setdefault(job_id, {"id": job_id, "state": state, **body})
            return self._answer(200, {"id": job_id})
        job_id = path.split("/")[2]
        self.server.jobs[job_id]["state"] = "cancelled"
        return self._answer(200, {})

    def do_GET(self) -> None:
        ids = parse_qs(urlparse(self.path).query)["ids"][0].split(",")
        self._answer(200, {"jobs": [self.server.jobs[i] for i in ids if i in self.server.jobs]})

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def job_server() -> Iterator[JobServer]:
    server = JobServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install`` of the plugin's directory, as its user would, into a folder of
    its own (this venv is left as it was)."""
    target = tmp_path_factory.mktemp("plugin-site")
    result = subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
            "--no-build-isolation", "--disable-pip-version-check",
            "--target", str(target), str(PLUGIN),
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert list(target.glob("runners_httpjob-*.dist-info"))
    return target


def test_a_plugin_runner_installed_from_its_own_package_is_served_by_the_worker(
    aws: Emulator, job_server: JobServer, installed: Path, tmp_path: Path
) -> None:
    sfn = aws.client("stepfunctions")
    activity = sfn.create_activity(name="HttpJobActivity")["activityArn"]
    machine = task_machine(sfn, "httpjob", activity, catch="HttpJobFailedError")
    runs = {
        name: sfn.start_execution(stateMachineArn=machine, input=json.dumps({"JobName": name}))[
            "executionArn"
        ]
        for name in ("nightly", "doomed", "missing")
    }
    config = tmp_path / "httpjob.json"
    config.write_text(
        json.dumps(
            {
                "runner": "httpjob",
                "activity_arn": activity,
                "table": "HttpJobs",
                "httpjob_endpoint": job_server.url,
                "poll_seconds": 1,
                "check_interval_seconds": 0.3,
            }
        )
    )
    env = {**os.environ, **aws.client_env(), "PYTHONPATH": str(installed)}
    command = [sys.executable, "-m", "runners", "worker", "--config", str(config), "--create-table"]
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            caught = finished(sfn, runs["doomed"], timeout=30)
            refused = finished(sfn, runs["missing"], timeout=30)
            [nightly] = [job for job in job_server.jobs.values() if job["job"] == "nightly"]
            nightly["state"] = "succeeded"
            done = finished(sfn, runs["nightly"], timeout=30)
        finally:
            worker.terminate()
            worker.wait(timeout=60)

    assert worker.returncode == 0, (tmp_path / "worker.log").read_text()
    assert json.loads(done["output"]) == {"HttpJobId": nightly["id"], "HttpJobState": "succeeded"}
    assert json.loads(caught["output"])["error"]["Error"] == "HttpJobFailedError"
    assert (refused["status"], refused["error"]) == ("FAILED", "RunnerInputError")
    assert job_server.starts == 2  # one start each for the two jobs the server has
