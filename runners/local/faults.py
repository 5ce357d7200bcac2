"""Fault injection and call accounting in front of the emulator's HTTP endpoint.

A WSGI middleware sees every request before moto does. Tests use it to make chosen
operations fail the way AWS fails (throttling, HTTP 500, a hung connection, an outage),
to count the calls a worker makes, and to act right after a call was served (for
example, kill a worker process once its ``StartJobRun`` succeeded) without any hook in
production code.

Operations are named ``"<service>:<Operation>"`` with the SigV4 signing name as the
service (``states``, ``glue``, ``athena``, ``dynamodb``, ``s3``, ...); patterns use
shell wildcards: ``"states:SendTask*"``, ``"glue:*"``, ``"*"``. A REST-JSON call
(``emr-serverless``, ``lambda``) is named by the operation whose method and URI
template in the service's API model (botocore) match it; S3's REST-XML calls keep
their HTTP method (``"s3:GET"``).
"""

from __future__ import annotations

import fnmatch
import functools
import io
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs

import botocore.session
from botocore.exceptions import UnknownServiceError

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
FaultKind = Literal["throttle", "error", "hang", "lost", "deny"]

_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")


@dataclass(frozen=True)
class Call:
    """One request the emulator served, as an after-call hook sees it."""

    service: str
    operation: str
    body: bytes
    status: int
    response: bytes = b""

    @property
    def name(self) -> str:
        return f"{self.service}:{self.operation}"

    def json(self) -> dict[str, Any]:
        """The request body of a JSON-protocol call (empty for other protocols)."""
        return _json_object(self.body)

    def response_json(self) -> dict[str, Any]:
        """The response body of a JSON-protocol call (empty for other protocols)."""
        return _json_object(self.response)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


@dataclass
class Fault:
    """Answer matching calls with an AWS-style failure instead of serving them.

    ``throttle`` answers ``ThrottlingException`` (S3: ``SlowDown``), ``deny`` answers
    ``AccessDeniedException`` (a role whose policy lacks the action), ``error`` answers
    HTTP 500, ``hang`` holds the request for ``seconds`` and then serves it, ``lost``
    serves it and then answers HTTP 500 (the call took effect, the client cannot know:
    "InternalFailure ... an unknown error"). ``rate`` is the share of matching calls
    affected; ``limit`` caps how many are affected in all.
    """

    pattern: str
    kind: FaultKind
    rate: float = 1.0
    seconds: float = 0.0
    limit: int | None = None
    affected: int = field(default=0, init=False)

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.pattern)


AfterCallHook = Callable[[Call], None]


class FaultInjector:
    """The middleware's shared, thread-safe state: faults, hooks and call counts."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._hooks: list[tuple[str, AfterCallHook]] = []
        self._random = random.Random(seed)
        self.calls: Counter[str] = Counter()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def remove(self, fault: Fault) -> None:
        with self._lock:
            if fault in self._faults:
                self._faults.remove(fault)

    def outage(self, seconds: float, pattern: str = "*") -> Fault:
        """Hold every call (or those ``pattern`` names, e.g. ``dynamodb:*``) until
        ``seconds`` from now have passed, as an outage would."""
        return self.add(_Outage(pattern=pattern, kind="hang", until=time.monotonic() + seconds))

    def on_call(self, pattern: str, hook: AfterCallHook) -> None:
        """Run ``hook`` after a matching call was served, before its response is sent."""
        with self._lock:
            self._hooks.append((pattern, hook))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._hooks.clear()
            self.calls.clear()

    def count(self, pattern: str = "*") -> int:
        with self._lock:
            return sum(n for name, n in self.calls.items() if fnmatch.fnmatchcase(name, pattern))

    def service_calls(self, service: str) -> Counter[str]:
        """The calls served to one service, by operation."""
        prefix = f"{service}:"
        with self._lock:
            return Counter(
                {
                    name.removeprefix(prefix): n
                    for name, n in self.calls.items()
                    if name.startswith(prefix)
                }
            )

    def _pick_fault(self, name: str) -> Fault | None:
        with self._lock:
            self.calls[name] += 1
            for fault in self._faults:
                if not fault.matches(name) or _exhausted(fault):
                    continue
                if self._random.random() < fault.rate:
                    fault.affected += 1
                    return fault
        return None

    def _hooks_for(self, name: str) -> list[AfterCallHook]:
        with self._lock:
            return [hook for pattern, hook in self._hooks if fnmatch.fnmatchcase(name, pattern)]

    def wrap(self, app: WSGIApp) -> WSGIApp:
        return _Middleware(app, self)


@dataclass
class _Outage(Fault):
    until: float = 0.0

    def matches(self, name: str) -> bool:
        return time.monotonic() < self.until and super().matches(name)


def _exhausted(fault: Fault) -> bool:
    return fault.limit is not None and fault.affected >= fault.limit


class _Middleware:
    def __init__(self, app: WSGIApp, injector: FaultInjector) -> None:
        self._app = app
        self._injector = injector

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        body = _read_body(environ)
        service, operation, is_json = _identify(environ, body)
        name = f"{service}:{operation}"
        fault = self._injector._pick_fault(name)
        if fault is not None and fault.kind in ("throttle", "error", "deny"):
            return _failure(fault.kind, service, is_json, start_response)
        if fault is not None and fault.kind == "hang":
            _hang(fault)
        hooks = self._injector._hooks_for(name)
        if not hooks and fault is None:
            return self._app(environ, start_response)
        captured, chunks = self._serve(environ, Call(service, operation, body, 0), hooks)
        if fault is not None and fault.kind == "lost":
            return _failure("error", service, is_json, start_response)
        start_response(captured["status"], captured["headers"], captured["exc_info"])
        return iter(chunks)

    def _serve(
        self, environ: dict[str, Any], request: Call, hooks: list[AfterCallHook]
    ) -> tuple[dict[str, Any], list[bytes]]:
        """Serve the call, then run the hooks on what was served."""
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured.update(status=status, headers=headers, exc_info=exc_info)
            return lambda _data: None

        chunks = list(self._app(environ, capture))
        status = int(str(captured["status"]).split()[0])
        call = Call(request.service, request.operation, request.body, status, b"".join(chunks))
        for hook in hooks:
            hook(call)
        return captured, chunks


def _hang(fault: Fault) -> None:
    if isinstance(fault, _Outage):
        time.sleep(max(0.0, fault.until - time.monotonic()))
    else:
        time.sleep(fault.seconds)


def _read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body: bytes = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


def _identify(environ: dict[str, Any], body: bytes) -> tuple[str, str, bool]:
    """(service, operation, uses the JSON protocol) of a signed AWS request."""
    scope = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    service = scope.group(1) if scope else "unknown"
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return service, target.rsplit(".", 1)[-1], True
    action = _query_action(environ.get("QUERY_STRING", "")) or _query_action(
        body.decode("utf-8", "replace") if _is_form(environ) else ""
    )
    if action:
        return service, action, False
    method = environ.get("REQUEST_METHOD", "GET")
    for route_method, path, operation in _rest_json_routes(service):
        if route_method == method and path.fullmatch(environ.get("PATH_INFO", "")):
            return service, operation, True
    return service, method, False


@functools.cache
def _rest_json_routes(service: str) -> tuple[tuple[str, re.Pattern[str], str], ...]:
    """(method, path pattern, operation) of a REST-JSON service's operations, the most
    literal templates first (``/jobruns/{id}`` before ``/{any+}``)."""
    try:
        model = botocore.session.get_session().get_service_model(service)
    except UnknownServiceError:
        return ()
    if model.protocol != "rest-json":
        return ()
    routes = []
    for name in model.operation_names:
        http = model.operation_model(name).http
        template = str(http["requestUri"]).split("?", 1)[0]
        pattern = re.sub(r"\\\{\w+\\\+\\\}", ".+", re.escape(template))
        pattern = re.sub(r"\\\{\w+\\\}", "[^/]+", pattern)
        literal = len(re.sub(r"\{[^}]+\}", "", template))
        routes.append((literal, str(http["method"]), re.compile(pattern), name))
    routes.sort(key=lambda route: -route[0])
    return tuple((method, path, name) for _, method, path, name in routes)


def _is_form(environ: dict[str, Any]) -> bool:
    return "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", "")


def _query_action(query: str) -> str | None:
    values = parse_qs(query).get("Action")
    return values[0] if values else None


def _failure(
    kind: Literal["throttle", "error", "deny"],
    service: str,
    is_json: bool,
    start_response: Callable[..., Any],
) -> list[bytes]:
    status, code, message = {
        "throttle": ("400 Bad Request", "ThrottlingException", "Rate exceeded"),
        "error": ("500 Internal Server Error", "InternalFailure", "Injected internal failure"),
        "deny": (
            "400 Bad Request",
            "AccessDeniedException",
            "User is not authorized to perform this action (injected)",
        ),
    }[kind]
    if is_json:
        payload = json.dumps({"__type": code, "message": message}).encode()
        content_type = "application/x-amz-json-1.0"
    elif service == "s3":
        if kind == "throttle":
            status, code = "503 Slow Down", "SlowDown"
        elif kind == "deny":
            status, code = "403 Forbidden", "AccessDenied"
        payload = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
        content_type = "application/xml"
    else:
        code = {"throttle": "Throttling", "deny": "AccessDenied"}.get(kind, code)
        payload = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
            f"<Message>{message}</Message></Error><RequestId>injected</RequestId></ErrorResponse>"
        ).encode()
        content_type = "text/xml"
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(payload)))])
    return [payload]
