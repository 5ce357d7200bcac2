"""Lambda: deployed functions run their own package in a local Python process.

moto runs function code only in Docker. The emulator runs it in a child interpreter
started with ``-I -S``: its path holds the standard library and the unpacked deployment
package, nothing else, so a package that lacks a dependency fails here as it would on
AWS. The child gets the environment the Lambda runtime defines (function name, region,
credentials, ``LAMBDA_TASK_ROOT``...), the function's own variables, and an endpoint
pointing back at the emulator.

``time_limit_seconds`` caps a function's timeout, as ``activity_poll_seconds`` shortens
the long poll, so that suites stay fast; the context's remaining time follows the cap.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moto.awslambda.models import LambdaFunction

# Runs inside the child: import the handler from the package, call it once, write
# the outcome as JSON. The context offers what the Python runtime's context offers.
BOOTSTRAP = r"""
import importlib, json, os, sys, time, traceback
handler_name, task_root, outcome_path, deadline = sys.argv[1:5]
sys.path.insert(0, task_root)
deadline = float(deadline)

class Context:
    function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    function_version = os.environ["AWS_LAMBDA_FUNCTION_VERSION"]
    memory_limit_in_mb = os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]
    log_group_name = os.environ["AWS_LAMBDA_LOG_GROUP_NAME"]
    log_stream_name = os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
    invoked_function_arn = os.environ["_INVOKED_FUNCTION_ARN"]
    aws_request_id = os.environ["_AWS_REQUEST_ID"]

    def get_remaining_time_in_millis(self):
        return max(0, int((deadline - time.time()) * 1000))

event = json.load(sys.stdin)
try:
    module_name, _, attribute = handler_name.rpartition(".")
    handler = getattr(importlib.import_module(module_name), attribute)
    outcome = {"result": handler(event, Context())}
except Exception as error:
    traceback.print_exc()
    outcome = {"error": {"errorType": type(error).__name__, "errorMessage": str(error)}}
with open(outcome_path, "w") as stream:
    json.dump(outcome, stream, default=str)
"""

# Seconds a child may take beyond its time limit to write its outcome before it is killed.
_GRACE_SECONDS = 5.0


@dataclass
class Invocation:
    """One run of a function: its event, and once ``done`` is set, its outcome."""

    function_name: str
    event: Any
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    result: Any = None
    error: dict[str, str] | None = None
    logs: str = ""
    done: threading.Event = field(default_factory=threading.Event)

    def raise_for_error(self) -> None:
        if self.error is not None:
            raise LambdaInvocationError(f"{self.function_name}: {self.error}\n{self.logs}")


class LambdaInvocationError(RuntimeError):
    """A function ended with an error (see its logs)."""


class LocalRuntime:
    """Runs deployed functions in child processes; one per emulator."""

    def __init__(self) -> None:
        self.endpoint_url = ""
        self.time_limit_seconds: float | None = None
        self.extra_environment: dict[str, str] = {}
        self.invocations: list[Invocation] = []
        self._lock = threading.Lock()
        self._children: set[subprocess.Popen[bytes]] = set()
        self._threads: set[threading.Thread] = set()
        self._root: Path | None = None

    # Invoking ---------------------------------------------------------------------

    def run(self, function: LambdaFunction, event: Any) -> Invocation:
        """Invoke and wait for the outcome (``RequestResponse``)."""
        invocation = Invocation(function.function_name, event)
        with self._lock:
            self.invocations.append(invocation)
        try:
            self._run(function, invocation)
        finally:
            invocation.done.set()
        return invocation

    def start(self, function: LambdaFunction, event: Any) -> Invocation:
        """Invoke without waiting (``Event``), as EventBridge invokes its targets."""
        invocation = Invocation(function.function_name, event)
        with self._lock:
            self.invocations.append(invocation)

        def run() -> None:
            try:
                self._run(function, invocation)
            finally:
                invocation.done.set()
                with self._lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=f"lambda-{function.function_name}")
        with self._lock:
            self._threads.add(thread)
        thread.start()
        return invocation

    def wait_idle(self, timeout: float = 120.0) -> None:
        """Wait until no invocation is running (EventBridge deliveries included)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                threads = list(self._threads)
            if not threads:
                return
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                raise TimeoutError(f"Lambda invocations still running after {timeout} s")

    def clear(self) -> None:
        """Stop every running invocation and forget them all."""
        with self._lock:
            children = list(self._children)
        for child in children:
            child.kill()
        for thread in list(self._threads):
            thread.join(30)
        with self._lock:
            self.invocations.clear()
        self.time_limit_seconds = None
        self.extra_environment = {}

    def close(self) -> None:
        self.clear()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    # One run ------------------------------------------------------------------------

    def _run(self, function: LambdaFunction, invocation: Invocation) -> None:
        problem = self._unsupported(function)
        if problem:
            invocation.error = {"errorType": "Runtime.InvalidRuntime", "errorMessage": problem}
            return
        limit = float(function.timeout)
        if self.time_limit_seconds is not None:
            limit = min(limit, self.time_limit_seconds)
        task_root = self._unpack(function.code_bytes)
        with tempfile.TemporaryDirectory(prefix="lambda-outcome-") as scratch:
            outcome_path = Path(scratch) / "outcome.json"
            command = [
                sys.executable,
                "-I",
                "-S",
                "-c",
                BOOTSTRAP,
                function.handler,
                str(task_root),
                str(outcome_path),
                str(time.time() + limit),
            ]
            child = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self._environment(function, invocation, task_root),
                cwd=task_root,
            )
            with self._lock:
                self._children.add(child)
            try:
                output, _ = child.communicate(
                    json.dumps(invocation.event).encode(), timeout=limit + _GRACE_SECONDS
                )
            except subprocess.TimeoutExpired:
                child.kill()
                output, _ = child.communicate()
            finally:
                with self._lock:
                    self._children.discard(child)
            invocation.logs = output.decode(errors="replace")
            self._record(function, invocation, outcome_path, limit)

    @staticmethod
    def _record(
        function: LambdaFunction, invocation: Invocation, outcome_path: Path, limit: float
    ) -> None:
        if outcome_path.exists():
            outcome = json.loads(outcome_path.read_text())
            invocation.result = outcome.get("result")
            invocation.error = outcome.get("error")
        else:
            invocation.error = {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"Task timed out after {limit:.2f} seconds",
            }
        function.logs_backend.ensure_log_group(function.logs_group_name)
        function.save_logs(invocation.logs)

    @staticmethod
    def _unsupported(function: LambdaFunction) -> str | None:
        here = f"python{sys.version_info.major}.{sys.version_info.minor}"
        if function.run_time != here:
            return (
                f"the emulator runs {here} functions only (this interpreter); "
                f"{function.function_name} declares {function.run_time}"
            )
        if not function.code_bytes:
            return f"{function.function_name} has no code package"
        return None

    def _unpack(self, code: bytes) -> Path:
        """Unpack each distinct package once; invocations share it read-only."""
        with self._lock:
            if self._root is None:
                self._root = Path(tempfile.mkdtemp(prefix="runners-lambda-"))
            target = self._root / hashlib.sha256(code).hexdigest()[:16]
            if not target.exists():
                staging = Path(tempfile.mkdtemp(dir=self._root))
                with zipfile.ZipFile(io.BytesIO(code)) as package:
                    package.extractall(staging)
                staging.rename(target)
        return target

    def _environment(
        self, function: LambdaFunction, invocation: Invocation, task_root: Path
    ) -> dict[str, str]:
        """The function's variables, then the test's, then the runtime's reserved ones
        (which a function cannot override on AWS either)."""
        environment = {key: str(value) for key, value in function.environment_vars.items()}
        environment.update(self.extra_environment)
        environment.update(
            {
                "_HANDLER": function.handler,
                "_AWS_REQUEST_ID": invocation.request_id,
                "_INVOKED_FUNCTION_ARN": function.function_arn,
                "AWS_REGION": function.region,
                "AWS_DEFAULT_REGION": function.region,
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.run_time}",
                "AWS_LAMBDA_FUNCTION_NAME": function.function_name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_LOG_GROUP_NAME": function.logs_group_name,
                "AWS_LAMBDA_LOG_STREAM_NAME": f"local/{invocation.request_id}",
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_SESSION_TOKEN": "testing",
                "AWS_ENDPOINT_URL": self.endpoint_url,
                "LAMBDA_TASK_ROOT": str(task_root),
                "LANG": "en_US.UTF-8",
                "PATH": os.defpath,
                "TZ": ":UTC",
            }
        )
        return environment


RUNTIME = LocalRuntime()


def _invoke_lambda(self: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
    """moto's ``Invoke``: run the function here instead of in Docker."""
    invocation = RUNTIME.run(self, {} if event is None else event)
    if invocation.error is not None:
        return json.dumps(invocation.error), True, invocation.logs
    return json.dumps(invocation.result), False, invocation.logs


def install() -> None:
    LambdaFunction._invoke_lambda = _invoke_lambda
