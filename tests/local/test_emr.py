"""Amazon EMR steps on the emulator, through boto3 and aiobotocore.

Quotes are from the Amazon EMR API reference
(https://docs.aws.amazon.com/emr/latest/APIReference/).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from runners.local import Emulator, RunBehaviour
from tests.conftest import ClientFactory
from tests.helpers import error_code, wait_until


def make_cluster(emr: Any, **settings: Any) -> str:
    """A long-running cluster, WAITING for steps."""
    cluster_id: str = emr.run_job_flow(
        Name="analytics",
        ReleaseLabel="emr-7.0.0",
        LogUri="s3://logs/emr/",
        Instances={
            "MasterInstanceType": "m5.xlarge",
            "SlaveInstanceType": "m5.xlarge",
            "InstanceCount": 3,
            "KeepJobFlowAliveWhenNoSteps": True,
        },
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
        **settings,
    )["JobFlowId"]
    return cluster_id


def step(name: str, *args: str, action: str = "CONTINUE") -> dict[str, Any]:
    return {
        "Name": name,
        "ActionOnFailure": action,
        "HadoopJarStep": {"Jar": "command-runner.jar", "Args": list(args)},
    }


@pytest.fixture
def emr(client: ClientFactory) -> Any:
    return client("emr")


def states(emr: Any, cluster_id: str, *step_ids: str) -> list[str]:
    listed = {
        s["Id"]: s for s in emr.list_steps(ClusterId=cluster_id, StepIds=list(step_ids))["Steps"]
    }
    return [listed[step_id]["Status"]["State"] for step_id in step_ids]


def test_steps_run_one_at_a_time_in_the_order_they_were_added(aws: Emulator, emr: Any) -> None:
    """AddJobFlowSteps: "Amazon EMR executes each step in the order listed." StepTimeline:
    CreationDateTime, StartDateTime, EndDateTime ("The date and time when the cluster
    step execution started" / "completed or failed")."""
    aws.emr_steps.add("etl", RunBehaviour(duration=0.8))
    cluster_id = make_cluster(emr)
    first, second = emr.add_job_flow_steps(
        JobFlowId=cluster_id, Steps=[step("etl-1"), step("etl-2")]
    )["StepIds"]

    assert states(emr, cluster_id, second) == ["PENDING"]
    wait_until(lambda: states(emr, cluster_id, first) == ["RUNNING"])
    assert states(emr, cluster_id, second) == ["PENDING"]
    wait_until(lambda: states(emr, cluster_id, first, second) == ["COMPLETED", "RUNNING"])
    wait_until(lambda: states(emr, cluster_id, second) == ["COMPLETED"])
    one = emr.describe_step(ClusterId=cluster_id, StepId=first)["Step"]["Status"]["Timeline"]
    two = emr.describe_step(ClusterId=cluster_id, StepId=second)["Step"]["Status"]["Timeline"]

    assert one["CreationDateTime"] <= one["StartDateTime"] < one["EndDateTime"]
    assert two["StartDateTime"] >= one["EndDateTime"]  # it waited for the first


def test_steps_of_a_cluster_with_step_concurrency_run_side_by_side(aws: Emulator, emr: Any) -> None:
    """StepConcurrencyLevel: "Specifies the number of steps that can be executed
    concurrently." StepConfig: with a level above 1, a CANCEL_AND_WAIT or
    TERMINATE_CLUSTER step "is not submitted and the action fails with a message that
    the ActionOnFailure setting is not valid"."""
    aws.emr_steps.add("wide", RunBehaviour(duration=2))
    cluster_id = make_cluster(emr, StepConcurrencyLevel=2)
    ids = emr.add_job_flow_steps(
        JobFlowId=cluster_id, Steps=[step("wide-1"), step("wide-2"), step("wide-3")]
    )["StepIds"]

    wait_until(lambda: states(emr, cluster_id, *ids) == ["RUNNING", "RUNNING", "PENDING"])
    with pytest.raises(ClientError) as refused:
        emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[step("halt", action="CANCEL_AND_WAIT")])
    assert error_code(refused.value) == "ValidationException"
    assert "ActionOnFailure" in str(refused.value)


def test_a_failed_step_says_why_and_where_its_log_is(aws: Emulator, emr: Any) -> None:
    """FailureDetails: Reason ("In the case where the service cannot successfully
    determine the root cause of the failure, it returns "Unknown Error" as a reason"),
    Message ("text from an error log that describes the root cause"), LogFile ("The path
    to the log file where the step failure root cause was originally recorded")."""
    aws.emr_steps.add(
        "broken.py",
        RunBehaviour(duration=0.3, final_state="FAILED", error_message="No module named x"),
    )
    cluster_id = make_cluster(emr)
    [step_id] = emr.add_job_flow_steps(
        JobFlowId=cluster_id, Steps=[step("nightly", "spark-submit", "s3://code/broken.py")]
    )["StepIds"]

    wait_until(lambda: states(emr, cluster_id, step_id) == ["FAILED"])
    status = emr.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]["Status"]

    assert status["FailureDetails"] == {
        "Reason": "Unknown Error",
        "Message": "No module named x",
        "LogFile": f"s3://logs/emr/{cluster_id}/steps/{step_id}/stderr.gz",
    }
    assert "EndDateTime" in status["Timeline"]


def test_a_failed_cancel_and_wait_step_cancels_the_pending_ones(aws: Emulator, emr: Any) -> None:
    """StepConfig.ActionOnFailure: "CANCEL_AND_WAIT - Cancels any pending steps and
    returns the cluster to the WAITING state." CONTINUE: "Continues to the next step in
    the queue.\""""
    aws.emr_steps.add("fails", RunBehaviour(duration=0.4, final_state="FAILED"))
    aws.emr_steps.add("fine", RunBehaviour(duration=0.3))
    cluster_id = make_cluster(emr)
    ids = emr.add_job_flow_steps(
        JobFlowId=cluster_id,
        Steps=[
            step("fails-1"),
            step("fine-1"),
            step("fails-2", action="CANCEL_AND_WAIT"),
            step("fine-2"),
            step("fine-3"),
        ],
    )["StepIds"]

    wait_until(
        lambda: (
            states(emr, cluster_id, *ids)
            == ["FAILED", "COMPLETED", "FAILED", "CANCELLED", "CANCELLED"]
        )
    )
    cancelled = emr.describe_step(ClusterId=cluster_id, StepId=ids[3])["Step"]["Status"]
    assert "StartDateTime" not in cancelled["Timeline"]  # it never ran


def test_cancel_steps_cancels_pending_and_running_steps_and_answers_each_id(
    aws: Emulator, emr: Any
) -> None:
    """CancelSteps: "you can cancel steps that are in a PENDING or RUNNING state";
    CancelStepsInfo.Status: "The value may be SUBMITTED or FAILED", Reason: "The reason
    for the failure if the CancelSteps request fails." StepCancellationOption "By
    default, the value is SEND_INTERRUPT"."""
    aws.emr_steps.add("quick", RunBehaviour(duration=0.2))
    aws.emr_steps.add("slow", RunBehaviour(duration=30))
    cluster_id = make_cluster(emr)
    done, running, pending = emr.add_job_flow_steps(
        JobFlowId=cluster_id, Steps=[step("quick"), step("slow"), step("slow-next")]
    )["StepIds"]
    wait_until(lambda: states(emr, cluster_id, done, running) == ["COMPLETED", "RUNNING"])

    answer = emr.cancel_steps(
        ClusterId=cluster_id,
        StepIds=[done, running, pending, "s-UNKNOWN"],
        StepCancellationOption="SEND_INTERRUPT",
    )["CancelStepsInfoList"]

    assert [(info["StepId"], info["Status"]) for info in answer] == [
        (done, "FAILED"),
        (running, "SUBMITTED"),
        (pending, "SUBMITTED"),
        ("s-UNKNOWN", "FAILED"),
    ]
    assert "COMPLETED" in answer[0]["Reason"]
    assert states(emr, cluster_id, pending) == ["CANCELLED"]  # at once
    assert states(emr, cluster_id, running)[0] in ("CANCEL_PENDING", "CANCELLED")
    wait_until(lambda: states(emr, cluster_id, running) == ["CANCELLED"])
    again = emr.cancel_steps(ClusterId=cluster_id, StepIds=[running])["CancelStepsInfoList"]
    assert again[0]["Status"] == "SUBMITTED"  # "CancelSteps is idempotent"


def test_list_steps_is_newest_first_paged_by_50_and_filtered(aws: Emulator, emr: Any) -> None:
    """ListSteps: "Provides a list of steps for the cluster in reverse order ... You can
    specify a maximum of 10 stepIDs." Marker: "The maximum number of steps that a single
    ListSteps action returns is 50." StepStates: "The filter to limit the step list based
    on certain states.\""""
    aws.emr_steps.default = RunBehaviour(duration=30)
    cluster_id = make_cluster(emr)
    ids = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[step(f"s{n}") for n in range(55)])[
        "StepIds"
    ]

    first = emr.list_steps(ClusterId=cluster_id)
    rest = emr.list_steps(ClusterId=cluster_id, Marker=first["Marker"])
    chosen = emr.list_steps(ClusterId=cluster_id, StepIds=ids[:10])["Steps"]
    wait_until(lambda: states(emr, cluster_id, ids[0]) == ["RUNNING"])
    running = emr.list_steps(ClusterId=cluster_id, StepStates=["RUNNING"])["Steps"]
    with pytest.raises(ClientError) as too_many:
        emr.list_steps(ClusterId=cluster_id, StepIds=ids[:11])

    assert [s["Id"] for s in first["Steps"] + rest["Steps"]] == ids[::-1]
    assert (len(first["Steps"]), "Marker" in rest) == (50, False)
    assert sorted(s["Id"] for s in chosen) == sorted(ids[:10])
    assert [s["Id"] for s in running] == [ids[0]]
    assert error_code(too_many.value) == "ValidationException"


def test_steps_are_refused_on_an_unknown_or_ended_cluster(aws: Emulator, emr: Any) -> None:
    """AddJobFlowSteps: "You can only add steps to a cluster that is in one of the
    following states: STARTING, BOOTSTRAPPING, RUNNING, or WAITING." EMR answers a
    ValidationException, "A job flow that is shutting down, terminated, or finished may
    not be modified." (and "Specified job flow ID does not exist." for an unknown id);
    ListSteps an InvalidRequestException ("something wrong with user input")."""
    cluster_id = make_cluster(emr)
    emr.terminate_job_flows(JobFlowIds=[cluster_id])

    with pytest.raises(ClientError) as ended:
        emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[step("late")])
    with pytest.raises(ClientError) as unknown:
        emr.add_job_flow_steps(JobFlowId="j-UNKNOWN", Steps=[step("lost")])
    with pytest.raises(ClientError) as unlisted:
        emr.list_steps(ClusterId="j-UNKNOWN")

    assert error_code(ended.value) == "ValidationException"
    assert "terminated, or finished may not be modified" in str(ended.value)
    assert error_code(unknown.value) == "ValidationException"
    assert "does not exist" in str(unknown.value)
    assert error_code(unlisted.value) == "InvalidRequestException"


def test_a_cluster_holds_at_most_256_active_steps(aws: Emulator, emr: Any) -> None:
    """AddJobFlowSteps: "A maximum of 256 steps are allowed in each job flow"; EMR counts
    the active ones: "Maximum number of active steps(State = 'Running', 'Pending' or
    'Cancel_Pending') for cluster exceeded.\""""
    aws.emr_steps.default = RunBehaviour(duration=30)
    cluster_id = make_cluster(emr)
    ids = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[step(f"s{n}") for n in range(256)])[
        "StepIds"
    ]

    with pytest.raises(ClientError) as full:
        emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[step("one-more")])
    emr.cancel_steps(ClusterId=cluster_id, StepIds=ids[-1:])
    time.sleep(0.05)
    emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[step("one-more")])

    assert error_code(full.value) == "ValidationException"
    assert str(full.value).endswith(
        "Maximum number of active steps(State = 'Running', 'Pending' or 'Cancel_Pending') "
        "for cluster exceeded."
    )
