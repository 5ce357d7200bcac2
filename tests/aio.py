"""Drive aiobotocore clients from synchronous test code.

An event loop runs in a background thread; ``AioClient`` forwards each call to it and
waits for the result, so one test body exercises both boto3 and aiobotocore, and
several test threads can share one async client as concurrent coroutines do.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session


class AioLoop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._open: list[Any] = []

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 120.0) -> Any:
        """The coroutine's result; a call never outlives the test by hanging forever."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def client(self, service: str, endpoint_url: str, env: dict[str, str]) -> AioClient:
        context = self._context(service, endpoint_url, env)
        return AioClient(self, context, self.run(context.__aenter__()))

    def sdk_client(self, service: str, endpoint_url: str, env: dict[str, str]) -> Any:
        """An aiobotocore client itself, for code that awaits it on this loop; closed
        with the loop."""
        context = self._context(service, endpoint_url, env)
        self._open.append(context)
        return self.run(context.__aenter__())

    @staticmethod
    def _context(service: str, endpoint_url: str, env: dict[str, str]) -> Any:
        return get_session().create_client(  # type: ignore[call-overload]
            service,
            endpoint_url=endpoint_url,
            region_name=env["AWS_DEFAULT_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            config=AioConfig(read_timeout=70, max_pool_connections=50),
        )

    def close(self) -> None:
        for context in self._open:
            self.run(context.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


class AioClient:
    """Looks like a boto3 client; every operation runs on the aiobotocore client."""

    def __init__(self, loop: AioLoop, context: Any, client: Any) -> None:
        self._loop, self._context, self._client = loop, context, client
        self.exceptions = client.exceptions
        self.meta = client.meta

    def close(self) -> None:
        self._loop.run(self._context.__aexit__(None, None, None))

    def __getattr__(self, operation: str) -> Callable[..., Any]:
        method = getattr(self._client, operation)

        def call(**kwargs: Any) -> Any:
            return self._loop.run(method(**kwargs))

        return call
