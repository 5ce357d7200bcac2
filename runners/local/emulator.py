"""The embedded emulator: moto in server mode on loopback, with runners' extensions.

Clients reach it like AWS, through ``AWS_ENDPOINT_URL``; nothing outside this package
knows it exists. moto keeps its state per process, so one emulator runs per process.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import boto3
import moto
from botocore.config import Config
from moto.moto_api._internal.models import moto_api_backend
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from runners.local import (
    athena,
    awslambda,
    cloudformation,
    connections,
    dms,
    emr,
    emrserverless,
    events,
    glue,
    redshiftdata,
    s3,
    scaling,
    stepfunctions,
)
from runners.local import service_events as _service_events
from runners.local.faults import FaultInjector

# The versions whose internals the extensions were written and tested against.
SUPPORTED_MOTO_VERSIONS = ("5.2.5",)
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"


class EmulatorError(RuntimeError):
    """The emulator cannot start here (unsupported moto, or one already running)."""


_install_lock = threading.Lock()
_installed = False
_running: Emulator | None = None


def install_extensions() -> None:
    """Patch moto once per process with the AWS behaviour runners relies on."""
    global _installed  # noqa: PLW0603 - one-time process-wide installation
    with _install_lock:
        if _installed:
            return
        if moto.__version__ not in SUPPORTED_MOTO_VERSIONS:
            raise EmulatorError(
                f"moto {moto.__version__} is not supported by runners.local "
                f"(tested: {', '.join(SUPPORTED_MOTO_VERSIONS)}); install requirements.txt"
            )
        stepfunctions.install()
        athena.install()
        glue.install()
        redshiftdata.install()
        emr.install()
        emrserverless.install()
        dms.install()
        s3.install()
        awslambda.install()
        events.install()
        cloudformation.install()
        scaling.install()
        # A failed execution is business as usual here, visible in its history; moto's
        # interpreter would log each one at ERROR, werkzeug every request at INFO.
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        _installed = True


class Emulator:
    """An AWS endpoint on ``http://127.0.0.1:<port>`` for the demo, tests and benchmarks.

    ``activity_poll_seconds`` is how long ``GetActivityTask`` holds a poll open when no
    task is scheduled: 60 s as on AWS unless a test suite asks for less.

    ``service_events``: Glue job runs and crawls and Athena queries put their
    EventBridge state-change events on the default bus when they change state (one
    thread for the emulator, a few microseconds a run); ``aws.service_events`` drops or
    delays shares of them and counts them.
    """

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        activity_poll_seconds: float = stepfunctions.DEFAULT_POLL_SECONDS,
        service_events: bool = True,
    ) -> None:
        self._host, self._port = host, port
        self.activity_poll_seconds = activity_poll_seconds
        self._service_events_on = service_events
        self.faults = FaultInjector()
        self.service_events = _service_events.EVENTS
        self.glue_runs = glue.BEHAVIOURS
        self.glue_crawls = glue.CRAWLS
        self.athena_queries = athena.BEHAVIOURS
        self.redshift_statements = redshiftdata.BEHAVIOURS
        self.emr_steps = emr.BEHAVIOURS
        self.emrserverless_runs = emrserverless.BEHAVIOURS
        self.dms_tasks = dms.BEHAVIOURS
        self.lambdas = awslambda.RUNTIME
        self._server: ThreadedMotoServer | None = None
        self.endpoint_url = ""

    def start(self) -> Emulator:
        global _running  # noqa: PLW0603 - moto's state is per process
        install_extensions()
        with _install_lock:
            if _running is not None:
                raise EmulatorError(f"an emulator already runs at {_running.endpoint_url}")
            _running = self
        stepfunctions.Settings.poll_seconds = self.activity_poll_seconds
        server = ThreadedMotoServer(ip_address=self._host, port=self._port, verbose=False)
        server.start()
        wsgi_server = server._server
        wsgi_server.app = self.faults.wrap(wsgi_server.app)
        wsgi_server.RequestHandlerClass = connections.PersistentRequestHandler
        self._server = server
        host, port = server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        stepfunctions.Settings.port = port
        self.lambdas.endpoint_url = self.endpoint_url
        self.service_events.enabled = self._service_events_on
        if self._service_events_on:
            self.service_events.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake every open long poll and forget all state."""
        global _running  # noqa: PLW0603
        if self._server is None:
            return
        self.reset()
        self.service_events.close()
        self.lambdas.close()
        self._server.stop()
        self._server._server.server_close()
        connections.close_all()
        self._server = None
        with _install_lock:
            _running = None

    def reset(self) -> None:
        """Back to an empty account: no resources, behaviours, faults or counts."""
        self.service_events.reset()  # first: nothing pending reaches the new account
        self.lambdas.clear()
        moto_api_backend.reset()
        self.glue_runs.clear()
        self.glue_crawls.clear()
        self.athena_queries.clear()
        self.redshift_statements.clear()
        self.emr_steps.clear()
        self.emrserverless_runs.clear()
        self.dms_tasks.clear()
        self.faults.clear()

    def fire_schedules(self) -> list[str]:
        """One tick of every enabled scheduled EventBridge rule (moto never fires them);
        returns the rules' names. Lambda targets run asynchronously: see ``lambdas``."""
        return events.fire_schedules(ACCOUNT_ID, REGION)

    def issued_task_tokens(self) -> list[str]:
        """Every activity task token handed out so far (to check logs never hold one)."""
        return [
            token
            for account in stepfunctions.BACKENDS.values()
            for backend in account.values()
            for token in backend.activity_tasks
        ]

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def client_env(self) -> dict[str, str]:
        """Environment variables that point standard AWS clients at this emulator."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }

    @contextmanager
    def environment(self) -> Iterator[dict[str, str]]:
        """Temporarily export ``client_env()`` into ``os.environ``."""
        saved = {key: os.environ.get(key) for key in self.client_env()}
        os.environ.update(self.client_env())
        try:
            yield self.client_env()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def client(self, service: str, **config: Any) -> Any:
        """A boto3 client for ``service`` bound to this emulator (read timeout above
        the 60 s long poll, so ``GetActivityTask`` is never cut short)."""
        env = self.client_env()
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=env["AWS_SESSION_TOKEN"],
            config=Config(**{"read_timeout": 70, "max_pool_connections": 50, **config}),
        )
