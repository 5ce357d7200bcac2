from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from runners.engine.store import DynamoStore, create_job_table
from runners.local import REGION, Emulator
from tests.aio import AioClient, AioLoop

# Long polls end after this many seconds in tests (AWS: 60).
POLL_SECONDS = 1.0

ClientFactory = Callable[[str], Any]


@pytest.fixture(autouse=True)
def _unconfigured_logging() -> Iterator[None]:
    """A handler called in-process configures structlog for the whole process, bound to
    that test's captured stream: undo it, so no test's logs depend on the ones before."""
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    with Emulator(activity_poll_seconds=POLL_SECONDS) as emu:
        yield emu


@pytest.fixture
def aws(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """The session's emulator, as an empty account for this test, exported through the
    standard AWS variables as a deployment would be."""
    emulator.reset()
    for name, value in emulator.client_env().items():
        monkeypatch.setenv(name, value)
    yield emulator
    emulator.reset()


@pytest.fixture(scope="session")
def aio_loop() -> Iterator[AioLoop]:
    loop = AioLoop()
    yield loop
    loop.close()


@pytest.fixture
def job_store(aws: Emulator, aio_loop: AioLoop) -> Callable[..., DynamoStore]:
    """``job_store(table, retention_seconds=..., page_size=...)``: the job store of a
    new table on the emulator, its client on the test's loop (``aio_loop.run`` its
    calls)."""
    dynamodb = aio_loop.sdk_client("dynamodb", aws.endpoint_url, aws.client_env())

    def make(table: str, retention_seconds: float = 3600, page_size: int = 100) -> DynamoStore:
        create_job_table(table, REGION)
        return DynamoStore(table, REGION, retention_seconds, client=dynamodb, page_size=page_size)

    return make


@pytest.fixture(params=["boto3", "aiobotocore"])
def client(
    request: pytest.FixtureRequest, aws: Emulator, aio_loop: AioLoop
) -> Iterator[ClientFactory]:
    """``client("glue")``: a client of the parametrised SDK bound to the emulator."""
    made: dict[str, Any] = {}

    def factory(service: str) -> Any:
        if service not in made:
            made[service] = (
                aws.client(service)
                if request.param == "boto3"
                else aio_loop.client(service, aws.endpoint_url, aws.client_env())
            )
        return made[service]

    yield factory
    for made_client in made.values():
        if isinstance(made_client, AioClient):
            made_client.close()
