"""Service events: Glue and Athena state changes reach EventBridge rules' targets when
they happen, as on AWS.

References:
- AWS Glue, "Automating AWS Glue with EventBridge"
  (https://docs.aws.amazon.com/glue/latest/dg/automating-awsglue-with-cloudwatch-events.html)
  and its example events, "AWS Glue events" in the CloudWatch Events event types
  (https://docs.aws.amazon.com/AmazonCloudWatch/latest/events/EventTypes.html#glue-event-types);
- Amazon Athena, "Monitor Athena query events with EventBridge"
  (https://docs.aws.amazon.com/athena/latest/ug/athena-events.html);
- EventBridge, "AWS Glue events" / "Amazon Athena events": "Delivery type: Best effort"
  (https://docs.aws.amazon.com/eventbridge/latest/ref/events-ref-glue.html).
"""

from __future__ import annotations

import calendar
import json
import time
from typing import Any

from runners.local import ACCOUNT_ID, REGION, Emulator, RunBehaviour
from runners.local.service_events import ServiceEvent, ServiceEvents
from tests.helpers import run_python, wait_until

OUTPUT = {"OutputLocation": "s3://athena-results/"}
JOB_EVENTS = {"source": ["aws.glue"], "detail-type": ["Glue Job State Change"]}
CRAWLER_EVENTS = {"source": ["aws.glue"], "detail-type": ["Glue Crawler State Change"]}
QUERY_EVENTS = {"source": ["aws.athena"], "detail-type": ["Athena Query State Change"]}


class Queue:
    """An SQS queue that a rule on the default bus feeds; records when each event came."""

    def __init__(self, aws: Emulator, pattern: dict[str, Any], name: str = "service-events"):
        self.sqs = aws.client("sqs")
        self.url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])
        rules = aws.client("events")
        rules.put_rule(Name=name, EventPattern=json.dumps(pattern))
        rules.put_targets(
            Rule=name, Targets=[{"Id": "queue", "Arn": arn["Attributes"]["QueueArn"]}]
        )
        self.received: list[tuple[float, dict[str, Any]]] = []

    def receive(self, count: int, timeout: float = 10.0) -> list[tuple[float, dict[str, Any]]]:
        """Wait for ``count`` events in all; return ``(arrival time, event)`` pairs."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            self.poll(wait=1)
        assert len(self.received) >= count, f"{len(self.received)} of {count} events came"
        return self.received

    def poll(self, wait: int = 0) -> list[tuple[float, dict[str, Any]]]:
        messages = self.sqs.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=wait
        ).get("Messages", [])
        now = time.time()
        for message in messages:
            self.received.append((now, json.loads(message["Body"])))
            self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        return self.received


def create_job(glue: Any, name: str, max_concurrent: int = 1) -> str:
    glue.create_job(
        Name=name,
        Role="arn:aws:iam::123456789012:role/Glue",
        Command={"Name": "glueetl", "ScriptLocation": "s3://scripts/process.py"},
        ExecutionProperty={"MaxConcurrentRuns": max_concurrent},
    )
    return name


def completed_at(glue: Any, job: str, run_id: str) -> float:
    def probe() -> float | None:
        run = glue.get_job_run(JobName=job, RunId=run_id)["JobRun"]
        return run["CompletedOn"].timestamp() if "CompletedOn" in run else None

    return wait_until(probe, timeout=10)


def assert_envelope(event: dict[str, Any], source: str, detail_type: str) -> None:
    assert event["version"] == "0"
    assert event["id"]
    assert event["detail-type"] == detail_type
    assert event["source"] == source
    # moto's default input template for SQS targets leaves "account" out (AWS sends it).
    assert event.get("account", ACCOUNT_ID) == ACCOUNT_ID
    assert event["region"] == REGION
    assert event["resources"] == []
    time.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ")


# Glue job runs ---------------------------------------------------------------------


def test_a_succeeded_and_a_failed_run_each_send_one_event_within_a_second(
    aws: Emulator,
) -> None:
    """ "Events for "detail-type":"Glue Job State Change" are generated for SUCCEEDED,
    FAILED, TIMEOUT, and STOPPED." The examples: {"version":"0", "detail-type":"Glue
    Job State Change", "source":"aws.glue", "account":"123456789012",
    "time":"2017-09-07T18:57:21Z", "region":"us-west-2", "resources":[],
    "detail":{"jobName":"MyJob", "severity":"INFO", "state":"SUCCEEDED",
    "jobRunId":"jr_abcdef01...", "message":"Job run succeeded"}} and, for a failure,
    "severity":"ERROR", "state":"FAILED" with the error as "message"."""
    glue, queue = aws.client("glue"), Queue(aws, JOB_EVENTS)
    good, bad = create_job(glue, "LoadSales"), create_job(glue, "LoadMarketing")
    aws.glue_runs.set(good, RunBehaviour(duration=0.6))
    aws.glue_runs.set(
        bad, RunBehaviour(duration=0.9, final_state="FAILED", error_message="SystemExit: 1")
    )
    good_run = glue.start_job_run(JobName=good)["JobRunId"]
    bad_run = glue.start_job_run(JobName=bad)["JobRunId"]

    received = queue.receive(2)
    time.sleep(0.5)  # and no more come

    assert len(queue.poll()) == 2
    by_run = {event["detail"]["jobRunId"]: (at, event) for at, event in received}
    for job, run_id, severity, state, message in [
        (good, good_run, "INFO", "SUCCEEDED", "Job run succeeded"),
        (bad, bad_run, "ERROR", "FAILED", "SystemExit: 1"),
    ]:
        arrived, event = by_run[run_id]
        assert_envelope(event, "aws.glue", "Glue Job State Change")
        assert event["detail"] == {
            "jobName": job,
            "severity": severity,
            "state": state,
            "jobRunId": run_id,
            "message": message,
        }
        ended = completed_at(glue, job, run_id)
        assert ended - 0.05 <= arrived < ended + 1.0
    assert aws.service_events.emitted["Glue Job State Change"] == 2


def test_a_timed_out_run_sends_a_warning_and_an_error_run_sends_nothing(aws: Emulator) -> None:
    """The TIMEOUT example: "detail":{"jobName":"MyJob", "severity":"WARN",
    "state":"TIMEOUT", "jobRunId":"jr_abc0123...", "message":"Job run timed out"}. No
    event is documented for ERROR (Job run statuses: "A workflow, schedule trigger, or
    event trigger attempted to run a deleted job"), so none is sent."""
    glue, queue = aws.client("glue"), Queue(aws, JOB_EVENTS)
    job = create_job(glue, "Slow", max_concurrent=2)
    aws.glue_runs.set(
        job,
        lambda args: RunBehaviour(duration=0.3, final_state=args["--end"], error_message="x"),
    )
    timed_out = glue.start_job_run(JobName=job, Arguments={"--end": "TIMEOUT"})["JobRunId"]
    glue.start_job_run(JobName=job, Arguments={"--end": "ERROR"})

    (_, event), *more = queue.receive(1)
    time.sleep(0.5)

    assert more == []
    assert len(queue.poll()) == 1
    assert event["detail"]["jobRunId"] == timed_out
    assert event["detail"]["severity"] == "WARN"
    assert event["detail"]["state"] == "TIMEOUT"
    assert event["detail"]["message"] == "Job run timed out"


def test_a_stopped_run_sends_stopped_when_it_stops(aws: Emulator) -> None:
    """The STOPPED example: "detail":{"jobName":"MyJob", "severity":"INFO",
    "state":"STOPPED", "jobRunId":"jr_abc0123...", "message":"Job run stopped"}; the
    event comes when the run stops (BatchStopJobRun), not when it would have ended."""
    glue, queue = aws.client("glue"), Queue(aws, JOB_EVENTS)
    job = create_job(glue, "Endless")
    aws.glue_runs.set(job, RunBehaviour(duration=60))
    run_id = glue.start_job_run(JobName=job)["JobRunId"]
    time.sleep(0.3)

    glue.batch_stop_job_run(JobName=job, JobRunIds=[run_id])
    [(arrived, event)] = queue.receive(1, timeout=5)

    assert event["detail"] == {
        "jobName": job,
        "severity": "INFO",
        "state": "STOPPED",
        "jobRunId": run_id,
        "message": "Job run stopped",
    }
    ended = completed_at(glue, job, run_id)
    assert ended - 0.05 <= arrived < ended + 1.0


# Glue crawls -----------------------------------------------------------------------


def create_crawler(glue: Any, name: str) -> str:
    glue.create_crawler(
        Name=name,
        Role="arn:aws:iam::123456789012:role/Glue",
        DatabaseName="sales",
        Targets={"S3Targets": [{"Path": "s3://d/sales/"}]},
    )
    return name


def test_a_crawl_sends_started_then_succeeded(aws: Emulator) -> None:
    """ "Events for "detail-type":"Glue Crawler State Change" are generated for Started,
    Succeeded, and Failed." Crawler Started: "detail":{"accountId":"561226563745",
    "crawlerName":"S3toS3AcceptanceTestCrawler...", "startTime":"2017-11-11T21:00:42Z",
    "state":"Started", "message":"Crawler Started"}. Crawler Succeeded:
    "detail":{"tablesCreated":"0", "warningMessage":"N/A", "partitionsUpdated":"0",
    "tablesUpdated":"0", "message":"Crawler Succeeded", "partitionsDeleted":"0",
    "accountId":"561226563745", "runningTime (sec)":"7", "tablesDeleted":"0",
    "crawlerName":"SchedulerTestCrawler...", "completionDate":"2017-11-11T01:25:00Z",
    "state":"Succeeded", "partitionsCreated":"0", "cloudWatchLogLink":"https://console.aws.
    amazon.com/cloudwatch/home?region=us-east-1#logEventViewer:group=/aws-glue/crawlers;
    stream=SchedulerTestCrawler..."}."""
    glue, queue = aws.client("glue"), Queue(aws, CRAWLER_EVENTS)
    name = create_crawler(glue, "SalesCrawler")
    aws.glue_crawls.set(name, RunBehaviour(duration=1.2, metrics={"TablesCreated": 2}))

    glue.start_crawler(Name=name)
    (started_at, started), (ended_at, ended) = queue.receive(2)

    assert_envelope(started, "aws.glue", "Glue Crawler State Change")
    assert started["detail"] == {
        "accountId": ACCOUNT_ID,
        "crawlerName": name,
        "startTime": started["time"],
        "state": "Started",
        "message": "Crawler Started",
    }
    assert ended["detail"] == {
        "accountId": ACCOUNT_ID,
        "crawlerName": name,
        "state": "Succeeded",
        "message": "Crawler Succeeded",
        "tablesCreated": "2",
        "tablesUpdated": "0",
        "tablesDeleted": "0",
        "partitionsCreated": "0",
        "partitionsUpdated": "0",
        "partitionsDeleted": "0",
        "warningMessage": "N/A",
        "runningTime (sec)": "1",
        "completionDate": ended["time"],
        "cloudWatchLogLink": "https://console.aws.amazon.com/cloudwatch/home?region="
        f"{REGION}#logEventViewer:group=/aws-glue/crawlers;stream={name}",
    }
    assert started_at < ended_at
    assert glue.get_crawler(Name=name)["Crawler"]["State"] == "READY"


def test_a_failed_crawl_sends_failed(aws: Emulator) -> None:
    """Crawler Failed: "detail":{"crawlerName":"test-crawler-notification",
    "errorMessage":"Internal Service Exception", "accountId":"1234",
    "cloudWatchLogLink":"https://console.aws.amazon.com/cloudwatch/home?region=us-east-1#
    logEventViewer:group=/aws-glue/crawlers;stream=test-crawler-notification",
    "state":"Failed", "message":"Crawler Failed"}."""
    glue, queue = aws.client("glue"), Queue(aws, CRAWLER_EVENTS)
    name = create_crawler(glue, "BrokenCrawler")
    aws.glue_crawls.set(
        name,
        RunBehaviour(
            duration=0.3, final_state="FAILED", error_message="Internal Service Exception"
        ),
    )

    glue.start_crawler(Name=name)
    _, (_, failed) = queue.receive(2)

    assert failed["detail"] == {
        "accountId": ACCOUNT_ID,
        "crawlerName": name,
        "errorMessage": "Internal Service Exception",
        "cloudWatchLogLink": "https://console.aws.amazon.com/cloudwatch/home?region="
        f"{REGION}#logEventViewer:group=/aws-glue/crawlers;stream={name}",
        "state": "Failed",
        "message": "Crawler Failed",
    }


# Athena queries --------------------------------------------------------------------


def start_query(aws: Emulator, query: str) -> str:
    query_id: str = aws.client("athena").start_query_execution(
        QueryString=query, ResultConfiguration=OUTPUT
    )["QueryExecutionId"]
    return query_id


def states(received: list[tuple[float, dict[str, Any]]], query_id: str) -> list[dict[str, Any]]:
    details = [e["detail"] for _, e in received if e["detail"]["queryExecutionId"] == query_id]
    return sorted(details, key=lambda detail: int(detail["sequenceNumber"]))


def test_a_query_sends_each_state_change_with_a_growing_sequence_number(aws: Emulator) -> None:
    """ "When a query you have submitted transitions states, Athena publishes an event to
    EventBridge containing information about that query state transition." The example:
    {"version":"0", "detail-type":"Athena Query State Change", "source":"aws.athena",
    "account":"123456789012", "time":"2019-10-06T09:30:10Z", "region":"us-east-1",
    "resources":[ ], "detail":{"versionId":"0", "currentState":"SUCCEEDED",
    "previousState":"RUNNING", "statementType":"DDL",
    "queryExecutionId":"01234567-0123-0123-0123-012345678901", "workgroupName":"primary",
    "sequenceNumber":"3"}}."""
    queue = Queue(aws, QUERY_EVENTS)
    aws.athena_queries.add("CREATE TABLE", RunBehaviour(duration=0.6))
    query_id = start_query(aws, "CREATE TABLE sales (id int)")

    received = queue.receive(3)
    time.sleep(0.3)

    assert len(queue.poll()) == 3
    for _, event in received:
        assert_envelope(event, "aws.athena", "Athena Query State Change")
    succeeded = states(received, query_id)[-1]
    assert succeeded == {
        "versionId": "0",
        "currentState": "SUCCEEDED",
        "previousState": "RUNNING",
        "statementType": "DDL",
        "queryExecutionId": query_id,
        "workgroupName": "primary",
        "sequenceNumber": "3",
    }
    assert [(d.get("previousState"), d["currentState"]) for d in states(received, query_id)] == [
        (None, "QUEUED"),
        ("QUEUED", "RUNNING"),
        ("RUNNING", "SUCCEEDED"),
    ]


def test_a_query_retried_after_a_transient_error_and_a_failed_one(aws: Emulator) -> None:
    """QueryExecutionStatus: "For queries that experience certain transient errors, the
    state transitions from RUNNING back to QUEUED. The FAILED state is always terminal";
    each transition is an event: "sequenceNumber" grows with every one of them."""
    queue = Queue(aws, QUERY_EVENTS)
    aws.athena_queries.add(
        "FROM flaky",
        RunBehaviour(phases=(("QUEUED", 0.1), ("RUNNING", 0.2), ("QUEUED", 0.1), ("RUNNING", 0.2))),
    )
    aws.athena_queries.add(
        "FROM missing", RunBehaviour(duration=0.3, final_state="FAILED", error_message="no table")
    )
    flaky = start_query(aws, "SELECT * FROM flaky")
    failed = start_query(aws, "SELECT * FROM missing")

    received = queue.receive(5 + 3)

    assert [d["currentState"] for d in states(received, flaky)] == [
        "QUEUED",
        "RUNNING",
        "QUEUED",
        "RUNNING",
        "SUCCEEDED",
    ]
    assert [d["sequenceNumber"] for d in states(received, flaky)] == ["1", "2", "3", "4", "5"]
    last = states(received, failed)[-1]
    assert (last["previousState"], last["currentState"]) == ("RUNNING", "FAILED")
    assert last["statementType"] == "DML"
    assert last["athenaError"]["errorMessage"] == "no table"


def test_a_cancelled_query_sends_cancelled_when_stopped(aws: Emulator) -> None:
    """QueryExecutionStatus: "CANCELLED indicates that a user input interrupted query
    execution"; the transition is published when StopQueryExecution makes it."""
    queue = Queue(aws, {**QUERY_EVENTS, "detail": {"currentState": ["CANCELLED"]}})
    aws.athena_queries.default = RunBehaviour(duration=60)
    query_id = start_query(aws, "SELECT 1")
    time.sleep(0.4)

    stopped_at = time.time()
    aws.client("athena").stop_query_execution(QueryExecutionId=query_id)
    [(arrived, event)] = queue.receive(1, timeout=5)

    assert event["detail"]["queryExecutionId"] == query_id
    assert event["detail"]["previousState"] == "RUNNING"
    assert event["detail"]["sequenceNumber"] == "3"
    assert arrived - stopped_at < 1.0


# Best-effort delivery: faults and counts -------------------------------------------


def run_jobs(aws: Emulator, count: int, seconds: float = 0.2) -> list[str]:
    glue = aws.client("glue")
    job = create_job(glue, "Many", max_concurrent=count)
    aws.glue_runs.set(job, RunBehaviour(duration=seconds))
    return [glue.start_job_run(JobName=job)["JobRunId"] for _ in range(count)]


def test_dropped_events_never_arrive_and_are_counted(aws: Emulator) -> None:
    """ "Delivery type: Best effort": ``drop(rate=1.0)`` loses every matching event,
    ``rate=0`` none; both are counted by detail-type."""
    queue = Queue(aws, JOB_EVENTS)
    lost = aws.service_events.drop(rate=1.0, detail_type="Glue Job State Change")
    run_jobs(aws, 4)
    wait_until(lambda: aws.service_events.dropped["Glue Job State Change"] == 4, timeout=5)

    assert queue.poll(wait=1) == []
    assert aws.service_events.emitted["Glue Job State Change"] == 0
    assert lost.affected == 4

    aws.service_events.remove(lost)
    aws.service_events.drop(rate=0.0)
    glue = aws.client("glue")
    run_ids = [glue.start_job_run(JobName="Many")["JobRunId"] for _ in range(4)]

    received = queue.receive(4)
    assert sorted(e["detail"]["jobRunId"] for _, e in received) == sorted(run_ids)
    assert aws.service_events.count("Glue*") == 4
    assert aws.service_events.dropped["Glue Job State Change"] == 4


def test_a_delayed_event_arrives_late_with_the_time_it_happened(aws: Emulator) -> None:
    """``delay(seconds)`` holds matching events back; the event's "time" stays the time
    of the state change."""
    glue, queue = aws.client("glue"), Queue(aws, JOB_EVENTS)
    aws.service_events.delay(seconds=1.5)
    [run_id] = run_jobs(aws, 1)
    ended = completed_at(glue, "Many", run_id)

    [(arrived, event)] = queue.receive(1)

    assert arrived >= ended + 1.5
    assert abs(calendar.timegm(time.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ")) - ended) < 1
    assert aws.service_events.delayed["Glue Job State Change"] == 1


def test_faults_pick_the_same_events_under_the_same_seed() -> None:
    """A seeded share is repeatable, like the fault injector's."""

    def dropped_pattern(seed: int) -> list[int]:
        events = ServiceEvents(seed=seed)
        events.drop(rate=0.5)
        outcome = []
        for n in range(40):
            events.put(ServiceEvent(ACCOUNT_ID, REGION, "aws.test", "Test", {"n": n}, 0.0))
            outcome.append(events.dropped["Test"])
        return outcome

    assert dropped_pattern(7) == dropped_pattern(7)
    assert 0 < dropped_pattern(7)[-1] < 40


def test_a_reset_forgets_pending_events(aws: Emulator) -> None:
    """Nothing scheduled before a reset reaches the account after it."""
    run_jobs(aws, 3, seconds=0.5)
    assert aws.service_events.pending >= 3

    aws.reset()

    assert aws.service_events.pending == 0
    time.sleep(0.8)
    assert aws.service_events.count() == 0


def test_the_thread_ends_with_the_emulator_and_can_be_left_off() -> None:
    """One thread per emulator, joined when it stops (here with a run still pending);
    ``Emulator(service_events=False)`` starts none and sends nothing."""
    printed = run_python(
        """
        import threading
        from runners.local import Emulator, RunBehaviour

        def names():
            return [t.name for t in threading.enumerate()]

        for enabled in (True, False):
            with Emulator(service_events=enabled) as aws:
                glue = aws.client("glue")
                glue.create_job(Name="J", Role="r", Command={"Name": "glueetl"})
                aws.glue_runs.set("J", RunBehaviour(duration=60))
                glue.start_job_run(JobName="J")
                print(enabled, aws.service_events.running, aws.service_events.pending,
                      "emulator-service-events" in names())
            print("after", "emulator-service-events" in names())
        """
    )

    assert printed.split("\n")[:4] == [
        "True True 1 True",
        "after False",
        "False False 0 False",
        "after False",
    ]


def test_a_timeline_lists_the_changes_it_shows_and_a_stop_rewrites_the_rest() -> None:
    """The changes the events are made of: each state ``state()`` shows, from when it
    shows it; a stop keeps the past and ends with the stopped state."""
    timeline = RunBehaviour(
        phases=(("QUEUED", 1.0), ("RUNNING", 0.0), ("RUNNING", 2.0)), final_state="SUCCEEDED"
    ).timeline("QUEUED", started_at=100.0)
    stops: list[str] = []
    timeline.on_stop = lambda: stops.append(timeline.final_state)

    assert timeline.changes() == [(100.0, "QUEUED"), (101.0, "RUNNING"), (103.0, "SUCCEEDED")]
    assert [timeline.state(at + 0.01) for at, _ in timeline.changes()] == [
        "QUEUED",
        "RUNNING",
        "SUCCEEDED",
    ]
    assert timeline.stop("CANCELLED") is False  # long over (started at 100 s epoch)
    assert stops == []

    live = RunBehaviour(duration=60).timeline("QUEUED")
    live.on_stop = lambda: stops.append(live.final_state)
    assert live.stop("CANCELLED") is True
    assert [state for _, state in live.changes()] == ["QUEUED", "CANCELLED"]
    assert stops == ["CANCELLED"]
