"""Wall-clock run timelines: the state depends on the time, never on how often it is read."""

from __future__ import annotations

from runners.local import RunBehaviour
from runners.local.timeline import Timeline

T0 = 1_000_000.0


def timeline() -> Timeline:
    return Timeline([("STARTING", 1.0), ("RUNNING", 4.0)], "SUCCEEDED", T0)


def test_state_follows_elapsed_time() -> None:
    run = timeline()

    assert [run.state(T0 + t) for t in (0, 0.9, 1.0, 4.9, 5.0, 500)] == [
        "STARTING",
        "STARTING",
        "RUNNING",
        "RUNNING",
        "SUCCEEDED",
        "SUCCEEDED",
    ]


def test_completion_and_last_change() -> None:
    run = timeline()

    assert run.completed_at(T0 + 4) is None
    assert run.completed_at(T0 + 9) == T0 + 5
    assert run.last_change_at(T0 + 0.5) == T0
    assert run.last_change_at(T0 + 3) == T0 + 1
    assert run.last_change_at(T0 + 9) == T0 + 5
    assert run.seconds_in("RUNNING", T0 + 3) == 2.0
    assert run.seconds_in("RUNNING", T0 + 9) == 4.0


def test_stopping_ends_a_running_run() -> None:
    run = RunBehaviour(duration=60).timeline("STARTING")

    assert run.stop("STOPPED", stopping=("STOPPING", 0.2))
    assert run.state() == "STOPPING"
    assert run.state(run.started_at + 61) == "STOPPED"
    assert run.completed_at(run.started_at + 61) is not None


def test_a_finished_run_cannot_be_stopped() -> None:
    run = Timeline([("RUNNING", 1.0)], "SUCCEEDED", T0)

    assert not run.stop("STOPPED")
    assert run.state() == "SUCCEEDED"


def test_default_phases_start_then_run() -> None:
    run = RunBehaviour(duration=2.0).timeline("QUEUED", started_at=T0)

    assert run.phases == [("QUEUED", 0.2), ("RUNNING", 1.8)]
    assert run.final_state == "SUCCEEDED"
