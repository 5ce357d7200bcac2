"""Benchmarks: our worker against the original sample's algorithm, on the embedded emulator.

    python benchmarks/run.py                  # the full run (about 50 minutes)
    python benchmarks/run.py --quick          # every scenario, small and short (CI's smoke run)
    python benchmarks/run.py --runners-only   # only the per-runner section (about 8 minutes)
    python benchmarks/run.py --events-only    # only the completion-events section

Prints one table: each figure for runners, the same for the baseline, and how many times
better runners does; then the per-runner section, our worker alone (the baseline only
knows Glue and Athena): every job runner's status calls per task and per check.
``--runners-only`` runs just that section (full size; small with ``--quick``). Last, the
completion-events section (``benchmarks/events.py``): the Glue and Athena flows with
completion events on (one worker, three sharing the queue, 30% of events dropped) and
a saturation run; ``--events-only`` runs just that one.
``--json FILE`` also writes the raw figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script

from benchmarks.events import (
    EVENTS_FULL,
    EVENTS_QUICK,
    EventFlowResult,
    EventSizes,
    SaturationResult,
    event_scenarios,
    flow_summary,
    render_events,
    run_event_flow,
    saturate,
    saturation_summary,
)
from benchmarks.runners_table import RUNNERS, RunnerResult, run_runner
from benchmarks.scenarios import (
    FULL,
    HEARTBEAT,
    QUICK,
    STATUS_OPERATIONS,
    FlowResult,
    ScaleResult,
    Sizes,
    emulator_ceiling,
    median,
    percentile,
    run_flow,
    track_many,
)
from runners.local import Emulator

Row = tuple[str, ...]
T = TypeVar("T")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    sizes = QUICK if args.quick else FULL
    event_sizes = EVENTS_QUICK if args.quick else EVENTS_FULL
    if args.executions:
        sizes = replace(sizes, executions=args.executions)
    if args.tracked_jobs:
        sizes = replace(sizes, tracked_jobs=args.tracked_jobs)

    figures: dict[str, Any] = {"sizes": asdict(sizes), "machine": machine()}
    began = time.monotonic()
    flows: dict[str, FlowResult] = {}
    scale: ScaleResult | None = None
    runners: dict[str, RunnerResult] = {}
    event_flows: dict[str, EventFlowResult] = {}
    saturation: SaturationResult | None = None
    main_tables = not (args.runners_only or args.events_only or args.saturation_only)
    with (
        tempfile.TemporaryDirectory() as workdir,
        Emulator(activity_poll_seconds=sizes.poll_seconds) as aws,
    ):
        os.environ.update(aws.client_env())
        # Metrics documents on stdout would mix with the figures (one per check cycle
        # costs nothing measurable).
        os.environ.setdefault("RUNNERS_METRICS", "off")
        if main_tables:
            figures["ceiling"] = emulator_ceiling(aws)
            flows = run_flows(aws, sizes, Path(workdir))
            scale = progress(
                f"{sizes.tracked_jobs} tracked jobs",
                partial(track_many, aws, sizes, Path(workdir)),
            )
        if not (args.events_only or args.saturation_only):
            runners = {
                name: progress(
                    f"{name}, {sizes.runner_executions} executions, runners alone",
                    partial(run_runner, aws, name, sizes, Path(workdir)),
                )
                for name in RUNNERS
            }
        if not args.runners_only:
            event_flows, saturation = run_events(
                aws, sizes, event_sizes, Path(workdir), flows=not args.saturation_only
            )
    figures["flows"] = {name: summary(flow) for name, flow in flows.items()}
    if scale is not None:
        figures["scale"] = asdict(scale)
    figures["runners"] = {name: runner_summary(result) for name, result in runners.items()}
    figures["events"] = {
        "sizes": asdict(event_sizes),
        "flows": {name: flow_summary(flow) for name, flow in event_flows.items()},
        **({"saturation": saturation_summary(saturation)} if saturation else {}),
    }
    figures["seconds"] = time.monotonic() - began
    print()
    if scale is not None:
        print(render(sizes, figures, flows, scale))
        print()
    if runners:
        print(render_runners(sizes, runners))
    if event_flows or saturation:
        if runners:
            print()
        print(render_events(sizes, event_sizes, event_flows, saturation, table))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    results: list[FlowResult | RunnerResult | EventFlowResult | SaturationResult] = [
        *flows.values(),
        *runners.values(),
        *event_flows.values(),
        *([saturation] if saturation else []),
    ]
    complete = all(result.succeeded == result.executions for result in results)
    return 0 if complete else 1


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and short waits")
    parser.add_argument("--executions", type=int, help="executions per flow (default 500)")
    parser.add_argument("--tracked-jobs", type=int, help="jobs one worker tracks (default 10000)")
    parser.add_argument("--runners-only", action="store_true", help="only the per-runner section")
    parser.add_argument(
        "--events-only", action="store_true", help="only the completion-events section"
    )
    parser.add_argument(
        "--saturation-only", action="store_true", help="only the saturation run (events on)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def run_flows(aws: Emulator, sizes: Sizes, workdir: Path) -> dict[str, FlowResult]:
    """Both sides on the Glue and Athena flows, then on the polls flow."""
    flows: dict[str, FlowResult] = {}
    for runner in ("glue", "athena"):
        for side in ("runners", "baseline"):
            flows[f"{runner}/{side}"] = progress(
                f"{runner}, {sizes.executions} executions, {side}",
                partial(run_flow, aws, side, runner, sizes, workdir),
            )
    for side in ("runners", "baseline"):
        flows[f"polls/{side}"] = progress(
            f"{sizes.polled_executions} tasks, {side}",
            partial(
                run_flow,
                aws,
                side,
                "glue",
                sizes,
                workdir,
                executions=sizes.polled_executions,
                pollers=sizes.open_polls if side == "runners" else None,
            ),
        )
    return flows


def run_events(
    aws: Emulator, sizes: Sizes, events: EventSizes, workdir: Path, flows: bool = True
) -> tuple[dict[str, EventFlowResult], SaturationResult]:
    """The completion-events section: each flow's scenarios (unless ``flows`` is
    false), then the saturation run."""
    results = {
        key: progress(
            f"{label}, {sizes.executions} executions, events on",
            partial(run_event_flow, aws, sizes=sizes, workdir=workdir, label=label, **options),
        )
        for key, label, options in (event_scenarios(sizes, events) if flows else [])
    }
    saturation = progress(
        f"saturation, {events.saturation_executions} executions at once, events on",
        partial(saturate, aws, sizes, events, workdir),
    )
    return results, saturation


def progress(label: str, run: Callable[[], T]) -> T:
    print(f"  running: {label} ...", file=sys.stderr, flush=True)
    began = time.monotonic()
    result = run()
    print(f"  done in {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
    return result


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.machine()}",
    }


def summary(flow: FlowResult) -> dict[str, Any]:
    return {
        "executions": flow.executions,
        "succeeded": flow.succeeded,
        "seconds": round(flow.seconds, 2),
        "per_second": round(flow.per_second, 3),
        "dispatch_p50": percentile(flow.dispatch, 0.5),
        "dispatch_p95": percentile(flow.dispatch, 0.95),
        "completion_p50": percentile(flow.completion, 0.5),
        "completion_p95": percentile(flow.completion, 0.95),
        "open_polls": flow.open_polls,
        "calls": dict(flow.calls),
    }


def runner_summary(result: RunnerResult) -> dict[str, Any]:
    return {
        **asdict(result),
        "status_per_task": round(result.per_task(result.status_calls), 3),
        "status_per_task_per_check": round(result.per_task_per_check, 3),
        "heartbeats_per_task": round(result.per_task(result.heartbeats), 3),
    }


# The table ------------------------------------------------------------------------


def render(
    sizes: Sizes, figures: dict[str, Any], flows: dict[str, FlowResult], scale: ScaleResult
) -> str:
    host = figures["machine"]
    ceiling = figures["ceiling"]
    low, high = sizes.job_seconds
    lines = [
        f"runners benchmark: {host['cpus']} CPUs, {host['system']}, Python {host['python']}; "
        f"emulator ceiling {ceiling[1]:.0f} requests/s (1 client), "
        f"{ceiling[16]:.0f}/s (16 clients)",
        f"long poll {sizes.poll_seconds:g} s, jobs {low:g}-{high:g} s, executions started "
        f"within {sizes.start_window_seconds:g} s; ratio = how many times better runners is",
        "",
    ]
    rows: list[Row] = [("Figure", "runners", "baseline", "ratio")]
    for runner in ("glue", "athena"):
        rows += flow_rows(f"{runner.capitalize()}, {sizes.executions} executions", flows, runner)
    ours, base = flows["polls/runners"], flows["polls/baseline"]
    rows += [
        ("Polls: long polls open at once", f"{ours.open_polls}", f"{base.open_polls}", "-"),
        (
            f"  {sizes.polled_executions} tasks meanwhile: completion p50 / p95 (s)",
            pair(ours.completion),
            pair(base.completion),
            ratio(percentile(base.completion, 0.5), percentile(ours.completion, 0.5)),
        ),
        (
            f"Scale: {scale.tracked:,} tracked jobs, peak RSS (MiB)",
            f"{scale.peak_rss_mb:.0f} (idle {scale.idle_rss_mb:.0f})",
            "n/a",
            "-",
        ),
        (
            "  one check cycle over all of them (s, median of 3)",
            f"{median(scale.cycle_seconds):.2f}",
            "checks 50 a round",
            "-",
        ),
    ]
    return "\n".join(lines + table(rows))


def flow_rows(title: str, flows: dict[str, FlowResult], runner: str) -> list[Row]:
    ours, base = flows[f"{runner}/runners"], flows[f"{runner}/baseline"]
    status = [*STATUS_OPERATIONS, HEARTBEAT]
    return [
        (
            f"{title}: executions/s",
            f"{ours.per_second:.2f}",
            f"{base.per_second:.2f}",
            ratio(ours.per_second, base.per_second),
        ),
        (
            "  succeeded / end to end (s)",
            f"{ours.succeeded} / {ours.seconds:.0f}",
            f"{base.succeeded} / {base.seconds:.0f}",
            "-",
        ),
        (
            "  dispatch latency p50 / p95 (s)",
            pair(ours.dispatch),
            pair(base.dispatch),
            ratio(percentile(base.dispatch, 0.5), percentile(ours.dispatch, 0.5)),
        ),
        (
            "  completion latency p50 / p95 (s)",
            pair(ours.completion),
            pair(base.completion),
            ratio(percentile(base.completion, 0.5), percentile(ours.completion, 0.5)),
        ),
        (
            "  status calls per task (checks + heartbeats)",
            f"{ours.per_task(status):.3f}",
            f"{base.per_task(status):.3f}",
            ratio(base.per_task(status), ours.per_task(status)),
        ),
        (
            "    checks / heartbeats",
            f"{ours.per_task(STATUS_OPERATIONS):.3f} / {ours.per_task([HEARTBEAT]):.3f}",
            f"{base.per_task(STATUS_OPERATIONS):.3f} / {base.per_task([HEARTBEAT]):.3f}",
            "-",
        ),
        (
            "    DynamoDB / polls per task",
            f"{ours.per_task_where('dynamodb:'):.2f} / "
            f"{ours.per_task(['states:GetActivityTask']):.2f}",
            f"{base.per_task_where('dynamodb:'):.2f} / "
            f"{base.per_task(['states:GetActivityTask']):.2f}",
            "-",
        ),
    ]


def pair(values: Sequence[float]) -> str:
    return f"{percentile(values, 0.5):.2f} / {percentile(values, 0.95):.2f}"


def ratio(ours_better: float, theirs: float) -> str:
    """``ours_better / theirs``: callers put the figure where more is better on top."""
    if not theirs or math.isnan(theirs) or math.isnan(ours_better):
        return "-"
    return f"{ours_better / theirs:.1f}x"


def render_runners(sizes: Sizes, results: dict[str, RunnerResult]) -> str:
    """The per-runner section. "Per check" divides status calls by the check cycles
    the tasks were tracked through (see ``tracked_cycles``): 1.0 is what checking every
    job on its own would cost."""
    low, high = sizes.job_seconds
    lines = [
        f"Per runner, our worker alone: {sizes.runner_executions} executions each, jobs "
        f"{low:g}-{high:g} s, checks every {sizes.check_seconds:g} s",
        "",
    ]
    rows: list[Row] = [
        (
            "Runner",
            "succeeded",
            "checks / task",
            "status calls / task",
            "per task per check",
            "heartbeats / task",
        )
    ]
    for name, result in results.items():
        rows.append(
            (
                name,
                f"{result.succeeded} / {result.executions}",
                f"{result.per_task(result.check_cycles):.2f}",
                f"{result.per_task(result.status_calls):.3f}",
                f"{result.per_task_per_check:.3f}",
                f"{result.per_task(result.heartbeats):.3f}",
            )
        )
    notes = [
        "",
        "checks / task: each task's tracked time (received -> reported, from its history)",
        "  over the check interval; per check: status calls / those checks, all tasks'",
        "  (1.0 = one call per job per check).",
    ]
    if "dms" in results:
        dms = results["dms"]
        notes.append(
            f"dms: not counted, the describe each start makes first (for its start type): "
            f"{dms.per_task(dms.start_calls):.2f} per task."
        )
    return "\n".join(lines + table(rows) + notes)


def table(rows: list[Row]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


if __name__ == "__main__":
    sys.exit(main())
