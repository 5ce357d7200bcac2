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
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    figures_file = tmp_path / "figures.json"
    process = subprocess.Popen(
        [sys.executable, "benchmarks/run.py", "--quick", "--json", str(figures_file)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    out, err = process.communicate(timeout=600)

    assert process.returncode == 0, out + err
    assert not children_of(process.pid)
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


def status_calls(flow: dict[str, Any]) -> int:
    return sum(flow["calls"].get(name, 0) for name in [*STATUS_OPERATIONS, HEARTBEAT])
