"""Object-created events in every shape S3 delivers them."""

from __future__ import annotations

import json

from runners.waits.model import Arrival, Matcher, arrivals_in, convention_name

NOTIFICATION = {
    "eventVersion": "2.1",
    "eventSource": "aws:s3",
    "eventTime": "2024-05-01T10:00:00.000Z",
    "eventName": "ObjectCreated:Put",
    "s3": {
        "bucket": {"name": "data"},
        "object": {
            "key": "in/Sales+data+%C3%A9/file+1.csv",
            "size": 3,
            "eTag": "abc",
            "versionId": "v1",
            "sequencer": "0055AED6DCD90281E5",
        },
    },
}


def test_a_notification_key_is_decoded() -> None:
    [arrival] = arrivals_in({"Records": [NOTIFICATION]})

    assert arrival == Arrival(
        bucket="data",
        key="in/Sales data é/file 1.csv",
        event_time=1714557600.0,
        size=3,
        etag="abc",
        version_id="v1",
        sequencer="0055AED6DCD90281E5",
    )


def test_sqs_and_sns_wrapping_and_many_records() -> None:
    two = {"Records": [NOTIFICATION, NOTIFICATION]}
    sqs = {
        "Records": [
            {"eventSource": "aws:sqs", "body": json.dumps(two)},
            {
                "eventSource": "aws:sqs",
                "body": json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"}),
            },
        ]
    }
    sns = {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": json.dumps(two)}}]}

    assert len(list(arrivals_in(sqs))) == 2
    assert len(list(arrivals_in(sns))) == 2


def test_an_eventbridge_key_is_not_decoded() -> None:
    event = {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "time": "2024-05-01T10:00:00Z",
        "detail": {
            "bucket": {"name": "data"},
            "object": {"key": "in/a+b %.csv", "size": 1, "etag": "e", "sequencer": "1"},
        },
    }

    [arrival] = arrivals_in(event)

    assert (arrival.key, arrival.etag, arrival.sequencer) == ("in/a+b %.csv", "e", "1")


def test_other_events_are_ignored() -> None:
    removed = {**NOTIFICATION, "eventName": "ObjectRemoved:Delete"}
    assert list(arrivals_in({"Records": [removed]})) == []
    assert list(arrivals_in({"source": "aws.s3", "detail-type": "Object Deleted"})) == []
    assert list(arrivals_in({"Records": [{"eventSource": "aws:sqs", "body": "not json"}]})) == []


def test_sequencers_order_events_of_one_key() -> None:
    older = Arrival("b", "k", 10.0, sequencer="0055AED6DCD90281E5")
    newer = Arrival("b", "k", 9.0, sequencer="0055AED6DCD90281E6")
    longer = Arrival("b", "k", 9.0, sequencer="10055AED6DCD90281E5")

    assert newer.newer_than(older)
    assert longer.newer_than(newer)
    assert not older.newer_than(older)


def test_matchers() -> None:
    assert convention_name("data", "in/2024/SalesPipeline.csv") == "data-SalesPipeline.csv"
    assert Matcher("data", convention="data-SalesPipeline.csv").matches(
        "data", "any/where/SalesPipeline.csv"
    )
    assert not Matcher("data", convention="data-SalesPipeline.csv").matches(
        "other", "SalesPipeline.csv"
    )
    rule = Matcher("data", prefix="daily/", suffix=".csv")
    assert rule.matches("data", "daily/x.csv")
    assert not rule.matches("data", "daily/x.json")
    assert Matcher("data", glob="in/*/part-*.parquet").matches("data", "in/2024/part-1.parquet")
    assert Matcher("data", key="a b").key_prefix == "a b"
