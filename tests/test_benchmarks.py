"""The benchmark's smoke run, as a user starts it (``python benchmarks/run.py --quick``):
every scenario end to end, small and short, so the script cannot rot."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.runners_table import RUNNERS
from benchmarks.scenarios import HEARTBEAT, STATUS_OPERATIONS
from tests.test_demo import children_of

ROOT = Path(__file__).resolve().parent.parent


def test_the_quick_benchmark_prints_every_figure(tmp_path: Path) -> None:
    figures_file = tmp_path / "figures.json"
    out, err, returncode, pid = run_benchmark("--quick", "--json", str(figures_file), timeout=600)

    assert returncode == 0, out + err
    assert not children_of(pid)
    for label in (
        "Glue, 30 executions: executions/s",
        "Athena, 30 executions: executions/s",
        "dispatch latency p50 / p95 (s)",
        "completion latency p50 / p95 (s)",
        "status calls per task (checks + heartbeats)",
        "Polls: long polls open at once",
        "Scale: 300 tracked jobs, peak RSS (MiB)",
        "one check cycle over all of them",
        "Per runner, our worker alone: 12 executions each",
        "status calls / task",
        "per task per check",
        "heartbeats / task",
        "Completion events: 30 executions a flow",
        "Saturation: 100 Glue executions started at once",
    ):
        assert label in out, label
    assert re.search(r"emulator ceiling \d+ requests/s", out)
    figures = json.loads(figures_file.read_text())
    for name, flow in figures["flows"].items():
        assert flow["succeeded"] == flow["executions"], name
        assert flow["calls"], name
    # What the targets are about, at smoke size: runners reports within a check
    # cycle and checks in batches, where the baseline spends a call on every job. (Which
    # side ends first at this size depends on where the 5 s check falls against jobs of
    # 1-3 s, so throughput is compared by the full run only.)
    flows = figures["flows"]
    assert flows["glue/runners"]["completion_p50"] < 5.0
    for runner in ("glue", "athena"):
        ours, theirs = flows[f"{runner}/runners"], flows[f"{runner}/baseline"]
        assert status_calls(ours) < status_calls(theirs) / 2, runner
    assert figures["flows"]["polls/runners"]["open_polls"] >= 20
    assert figures["scale"]["tracked"] == 300
    assert len(figures["scale"]["cycle_seconds"]) == 3
    # Every job runner checks in batches: well under one status call per task per check.
    assert set(figures["runners"]) == set(RUNNERS)
    for name, runner in figures["runners"].items():
        assert re.search(rf"^{name} +12 / 12 ", out, re.MULTILINE), name
        assert runner["succeeded"] == runner["executions"] == 12, name
        assert runner["status_calls"] > 0, name
        assert runner["status_per_task_per_check"] < 1.0, name
    assert figures["runners"]["dms"]["start_calls"] >= 12  # one describe before each start


def test_the_quick_events_section_prints_every_figure(tmp_path: Path) -> None:
    """``--events-only``: the completion-events section alone, at smoke size (about a
    minute): each flow with one worker, three sharing the queue, and 30% of events
    dropped; then the saturation run."""
    figures_file = tmp_path / "figures.json"
    out, err, returncode, pid = run_benchmark(
        "--quick", "--events-only", "--json", str(figures_file), timeout=300
    )

    assert returncode == 0, out + err
    assert not children_of(pid)
    assert "Per runner" not in out  # the other sections did not run
    assert "baseline" not in out
    for label in (
        "Completion events: 30 executions a flow, started within 2 s, jobs 1-3 s; checks "
        "every 30 s (with events dropped: every 1 s)",
        "targets: completion p50 < 0.5 s and p95 < 1.5 s with events; no duplicated report",
        "completion p50 / p95 (s)",
        "status calls / task",
        "API calls / task",
        "duplicated reports",
        "Saturation: 100 Glue executions started at once",
        "executions/s",
        "API calls per task (the worker's)",
        "worker CPU per task (ms)",
        "share of the ceiling used",
    ):
        assert label in out, label
    for flow in ("Glue", "Athena"):
        for scenario in ("1 worker", "3 workers, one queue", "1 worker, 30% of events dropped"):
            assert re.search(rf"^{flow}, {scenario} +30 / 30 ", out, re.MULTILINE), (flow, scenario)
    events = json.loads(figures_file.read_text())["events"]
    assert set(events["flows"]) == {
        f"{runner}/{scenario}"
        for runner in ("glue", "athena")
        for scenario in ("1", "3", "dropped")
    }
    for name, flow in events["flows"].items():
        assert flow["succeeded"] == flow["executions"] == 30, name
        assert flow["duplicated"] == 0, name
        assert flow["reports"] == 30, name
        assert flow["status_per_task"] > 0, name
        assert flow["calls_per_task"] > 0, name
        assert flow["emitted"] > 0, name
        if name.endswith("/dropped"):
            assert flow["dropped"] > 0, name
        else:
            # Checks every 30 s: a task reported within seconds was reported by its event.
            assert flow["dropped"] == 0, name
            assert flow["completion_p95"] < 10.0, name
    saturation = events["saturation"]
    assert saturation["succeeded"] == saturation["executions"] == 100
    assert saturation["duplicated"] == 0
    assert saturation["per_second"] > 0
    assert saturation["calls_per_task"] > 0
    assert saturation["cpu_ms_per_task"] > 0
    assert saturation["ceiling_share"] > 0
    assert re.search(r"emulator requests/s \(all\) / ceiling +\d+ / \d+", out)


def run_benchmark(*args: str, timeout: float) -> tuple[str, str, int, int]:
    """``benchmarks/run.py`` as a user starts it, out of any AWS environment: its
    output, errors, exit code and process id."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    process = subprocess.Popen(
        [sys.executable, "benchmarks/run.py", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    out, err = process.communicate(timeout=timeout)
    return out, err, process.returncode, process.pid


def status_calls(flow: dict[str, Any]) -> int:
    return sum(flow["calls"].get(name, 0) for name in [*STATUS_OPERATIONS, HEARTBEAT])
