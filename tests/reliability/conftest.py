"""The reliability suite's score sheet: each attack adds a row; the session prints them
as the README's "Reliability" table (and writes JSON where RUNNERS_RELIABILITY_REPORT
says)."""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Row:
    attack: str
    executions: int
    lost: int
    duplicated_jobs: int
    duplicated_reports: int
    recovery_seconds: float | None


class Report:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(
        self,
        attack: str,
        executions: int,
        lost: int,
        duplicated_jobs: int,
        duplicated_reports: int,
        recovery_seconds: float | None = None,
    ) -> None:
        self.rows.append(
            Row(attack, executions, lost, duplicated_jobs, duplicated_reports, recovery_seconds)
        )

    def table(self) -> list[str]:
        grouped: dict[str, list[Row]] = {}
        for row in self.rows:
            grouped.setdefault(row.attack, []).append(row)
        lines = [
            "| Attack | Executions | Lost | Duplicated jobs | Duplicated reports "
            "| Recovery (median / max) |",
            "|---|---|---|---|---|---|",
        ]
        for attack, rows in grouped.items():
            recoveries = [r.recovery_seconds for r in rows if r.recovery_seconds is not None]
            recovery = (
                f"{statistics.median(recoveries):.1f} s / {max(recoveries):.1f} s"
                if recoveries
                else "-"
            )
            lines.append(
                f"| {attack} | {sum(r.executions for r in rows)} | {sum(r.lost for r in rows)} "
                f"| {sum(r.duplicated_jobs for r in rows)} "
                f"| {sum(r.duplicated_reports for r in rows)} | {recovery} |"
            )
        return lines


_REPORT = Report()


@pytest.fixture(scope="session")
def report() -> Iterator[Report]:
    yield _REPORT
    target = os.environ.get("RUNNERS_RELIABILITY_REPORT")
    if target and _REPORT.rows:
        Path(target).write_text(json.dumps([asdict(row) for row in _REPORT.rows], indent=2))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _REPORT.rows:
        terminalreporter.section("reliability")
        for line in _REPORT.table():
            terminalreporter.write_line(line)
