"""The emulator keeps HTTP/1.1 connections open between requests, as AWS endpoints do
(RFC 9112 section 9.3: an HTTP/1.1 connection persists unless "close" is sent), so the
SDKs' connection pools are used as in production."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlparse

from runners.local import Emulator
from tests.helpers import run_python

LIST_QUEUES = {
    "Content-Type": "application/x-amz-json-1.0",
    "X-Amz-Target": "AmazonSQS.ListQueues",
    "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20261204/us-east-1/sqs/aws4_request,"
    " SignedHeaders=host, Signature=0",
}


def _connection(aws: Emulator) -> http.client.HTTPConnection:
    url = urlparse(aws.endpoint_url)
    return http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)


def _list_queues(connection: http.client.HTTPConnection, **headers: str) -> bool:
    """One ListQueues call; whether the emulator keeps the connection open after it."""
    connection.request("POST", "/", body=b"{}", headers={**LIST_QUEUES, **headers})
    response = connection.getresponse()
    assert response.status == 200, response.read()
    assert "Error" not in json.loads(response.read())
    return not response.will_close


def test_one_connection_carries_many_requests(aws: Emulator) -> None:
    connection = _connection(aws)
    connection.connect()
    first = connection.sock

    kept = [_list_queues(connection) for _ in range(5)]

    assert kept == [True] * 5
    assert connection.sock is first  # never reconnected


def test_a_client_that_asks_to_close_gets_its_connection_closed(aws: Emulator) -> None:
    connection = _connection(aws)

    assert _list_queues(connection, Connection="close") is False


def test_a_body_the_service_did_not_read_is_skipped_not_taken_for_the_next_request(
    aws: Emulator,
) -> None:
    """A GET with a body (no service reads it): the next request on the connection is
    still understood."""
    connection = _connection(aws)
    connection.request("GET", "/moto-api/", body=b"x" * 5000)
    connection.getresponse().read()

    assert _list_queues(connection) is True


def test_open_connections_end_when_the_emulator_stops() -> None:
    """No client keeps talking to a stopped emulator (its own process: one emulator
    runs per process)."""
    printed = run_python(
        """
        from tests.local.test_connections import _connection, _list_queues
        from runners.local import Emulator

        aws = Emulator().start()
        connection = _connection(aws)
        print(_list_queues(connection))
        aws.stop()
        connection.sock.settimeout(5)
        print(connection.sock.recv(1))
        """
    )

    assert printed.split() == ["True", "b''"]
