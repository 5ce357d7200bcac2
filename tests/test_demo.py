"""``python -m runners demo`` as a user runs it: a process that exits 0 and leaves
nothing behind."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def run_demo(*arguments: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    began = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "runners", "demo", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    stdout, stderr = process.communicate(timeout=120)
    elapsed = time.monotonic() - began
    assert not children_of(process.pid)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), elapsed


def port_is_closed(output: str) -> bool:
    port = int(re.search(r"emulator at http://127\.0\.0\.1:(\d+)", output).group(1))  # type: ignore[union-attr]
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_the_default_demo_succeeds_with_every_job_shown() -> None:
    result, elapsed = run_demo()

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "execution SUCCEEDED" in out
    for state in (
        "Wait For Sales Data",
        "Wait For Marketing Data",
        "Process Sales Data",
        "Process Marketing Data",
        "Join Marketing And Sales Data",
    ):
        assert re.search(rf"<- {state}\s+\S+", out), state
    assert len(re.findall(r"glue\s+run jr_\w+\.\.\.\s+SUCCEEDED", out)) == 6  # lines + table
    assert "uploaded s3://etl-demo-source-data/SalesPipeline_QuickSightSample.csv" in out
    assert elapsed < 60
    assert port_is_closed(out)
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        (
            "glue-failure",
            [
                "x  Process Marketing Data           failed   AnalysisException",
                "execution failed",
                "redriven  demo-glue-failure-",
                "execution redriven (redrive 1)",
                "<- Join Marketing And Sales Data    glue",
                "the redrive ran only what had not succeeded",
            ],
        ),
        ("athena", ["Revenue By Region", "Top Salespeople", "B scanned"]),
        ("crawler", ["Crawl Processed Sales", "tables +1"]),
        (
            "mixed",
            [
                "FULL_LOAD_ONLY_FINISHED",
                "glue     run jr_",
                "emrstep  step s-",
                "<- Build Sales Mart                 redshift",
                "5 succeeded, 0 failed",
            ],
        ),
        ("mixed-failure", ["DmsTaskFailedError", "Notify Failure", "handled it"]),
    ],
)
def test_other_scenarios(scenario: str, expected: list[str]) -> None:
    result, _ = run_demo("--scenario", scenario)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "execution SUCCEEDED" in result.stdout
    for text in expected:
        assert text in result.stdout
    assert port_is_closed(result.stdout)
