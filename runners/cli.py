"""Command line: ``python -m runners <command>``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any

from runners.errors import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run a sample flow on the embedded emulator")
    demo.add_argument(
        "--scenario",
        default="sales",
        choices=_Scenarios(),
        metavar="NAME",  # the names are listed only when help is shown
        help="which flow to run: %(choices)s (default: %(default)s)",
    )
    demo.add_argument("--verbose", action="store_true", help="show the worker's logs too")

    worker = commands.add_parser("worker", help="serve runners in one process until SIGTERM")
    source = worker.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--config",
        action="append",
        metavar="FILE",
        help="a runner config (JSON); repeat for several runners",
    )
    source.add_argument(
        "--from-env",
        action="store_true",
        help="serve the runners RUNNERS_SERVE names, configured by RUNNERS_* variables",
    )
    worker.add_argument(
        "--create-table", action="store_true", help="create the job tables if missing (local use)"
    )

    emulator = commands.add_parser(
        "emulator", help="run the embedded AWS emulator in the foreground"
    )
    emulator.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    emulator.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    emulator.add_argument(
        "--activity-poll-seconds",
        type=float,
        default=60.0,
        help="how long GetActivityTask waits for a task (default: 60, as on AWS)",
    )
    emulator.add_argument(
        "--fire-schedules",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="fire every scheduled EventBridge rule this often (default: never)",
    )
    _add_jobs(commands)
    _add_redrive(commands)
    args = parser.parse_args(argv)
    try:
        if args.command == "jobs":
            return run_jobs(args)
        if args.command == "redrive":
            return run_redrive(args)
        if args.command == "demo":
            from runners.demo import run_demo

            return run_demo(args.scenario, args.verbose)
        if args.command == "worker":
            return run_worker(args.config or [], args.from_env, args.create_table)
        return run_emulator(args.host, args.port, args.activity_poll_seconds, args.fire_schedules)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2


def _add_jobs(commands: Any) -> None:
    from runners.engine.records import Status

    jobs = commands.add_parser("jobs", help="list, show, release or fail tracked tasks")
    jobs.add_argument("--table", required=True, help="the runner's job table")
    jobs.add_argument(
        "--region",
        default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        help="the table's region (default: AWS_REGION / AWS_DEFAULT_REGION)",
    )
    jobs.add_argument("--json", action="store_true", help="JSON instead of a table")
    actions = jobs.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="tracked tasks, one page")
    listing.add_argument("--status", choices=[status.value for status in Status])
    listing.add_argument("--runner", help="only this runner's tasks")
    listing.add_argument("--limit", type=_positive_int, default=50, help="page size (50)")
    listing.add_argument("--after", metavar="TASK_ID", help="the page after this task")
    for name, text in (("show", "one task"), ("release", "expire its lease now")):
        actions.add_parser(name, help=text).add_argument("task_id")
    failing = actions.add_parser("fail", help="fail the task with a named error")
    failing.add_argument("task_id")
    failing.add_argument("--error", required=True, help="the error name its Catch matches")
    failing.add_argument("--cause", default="failed by an operator", help="why")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def run_jobs(args: argparse.Namespace) -> int:
    from runners.engine.records import Status
    from runners.operations import jobs

    if not args.region:
        raise ConfigError("--region: give the table's region (or set AWS_REGION)")

    async def act() -> tuple[list[jobs.Row], str | None]:
        async with jobs.open_store(args.table, args.region) as store:
            if args.action == "list":
                status = Status(args.status) if args.status else None
                return await jobs.list_tasks(store, status, args.runner, args.limit, args.after)
            if args.action == "show":
                return [await jobs.show_task(store, args.task_id)], None
            if args.action == "release":
                return [await jobs.release_task(store, args.task_id)], None
            return [await jobs.fail_task(store, args.task_id, args.error, args.cause)], None

    from botocore.exceptions import BotoCoreError, ClientError

    try:
        rows, next_key = asyncio.run(act())
    except (ClientError, BotoCoreError) as error:  # AWS said no: one line, not a traceback
        print(f"AWS error: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"tasks": [row.as_dict() for row in rows], "next": next_key}))
    else:
        print(jobs.table_text(rows))
        if next_key:
            print(f"more: --after {next_key}")
    return 0


def _add_redrive(commands: Any) -> None:
    redrive = commands.add_parser(
        "redrive", help="redrive failed executions (or start them again with the same input)"
    )
    source = redrive.add_mutually_exclusive_group(required=True)
    source.add_argument("--queue", metavar="URL", help="the failure queue's URL")
    source.add_argument(
        "--state-machine",
        action="append",
        metavar="ARN",
        help="executions of this state machine that stopped in the window; repeatable",
    )
    redrive.add_argument(
        "--since",
        type=_age,
        default="24h",
        metavar="AGE",
        help="with --state-machine: stopped at most this long ago (30m, 24h, 7d; default 24h)",
    )
    redrive.add_argument(
        "--max-redrives",
        type=_positive_int,
        default=1,
        help="leave a failure that has been run again this often to a person (default 1)",
    )
    redrive.add_argument(
        "--include-aborted",
        action="store_true",
        help="redrive ABORTED executions too (default: they were stopped on purpose)",
    )
    redrive.add_argument("--dry-run", action="store_true", help="say what would be done")
    redrive.add_argument("--json", action="store_true", help="JSON instead of lines")
    redrive.add_argument(
        "--region",
        default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        help="the region (default: AWS_REGION / AWS_DEFAULT_REGION)",
    )


def _age(text: str) -> float:
    """``30m``, ``24h``, ``7d``: seconds."""
    units = {"m": 60, "h": 3600, "d": 86400}
    try:
        value = float(text[:-1]) * units[text[-1]]
    except (KeyError, ValueError, IndexError) as error:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give minutes, hours or days: 30m, 24h, 7d"
        ) from error
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def run_redrive(args: argparse.Namespace) -> int:
    """Exit 0 when every failure was dealt with, 1 when AWS could not be asked about some
    (they are tried again on the next run), 2 for bad arguments."""
    import datetime

    from botocore.exceptions import BotoCoreError, ClientError

    from runners import logs
    from runners.operations import redrive

    logs.configure(os.environ.get("RUNNERS_LOG_LEVEL", "WARNING"), json_output=False)
    sfn, sqs = redrive.clients(args.region)
    redriver = redrive.Redriver(sfn, args.max_redrives, args.dry_run, args.include_aborted)
    try:
        if args.queue:
            outcomes = redriver.from_queue(sqs, args.queue)
        else:
            now = datetime.datetime.now(tz=datetime.UTC)
            since = now - datetime.timedelta(seconds=args.since)
            outcomes = redriver.from_listing(args.state_machine, since, now)
    except (ClientError, BotoCoreError) as error:  # the queue or listing itself failed
        print(f"AWS error: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"dry_run": args.dry_run, "outcomes": [o.as_dict() for o in outcomes]}))
    else:
        print(redrive.table_text(outcomes))
    return 1 if any(o.action is redrive.Action.ERROR for o in outcomes) else 0


class _Scenarios:
    """The demo's flows, looked up only when the demo command needs them: the demo loads
    moto, which a worker process must not carry (it would triple the worker's memory).
    None where the demo is not installed (the container image)."""

    def _names(self) -> list[str]:
        try:
            from runners.demo.scenarios import SCENARIOS
        except ImportError:
            return []
        return list(SCENARIOS)

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())


def run_worker(config_files: Sequence[str], from_env: bool, create_table: bool) -> int:
    """Serve until SIGTERM/SIGINT, then drain polls, hand over held tasks and exit 0;
    exit 1 if that took longer than the grace period (what was left is logged)."""
    from runners import logs, settings
    from runners.engine.worker import Worker
    from runners.runtime import open_engines

    logs.configure(os.environ.get("RUNNERS_LOG_LEVEL", "INFO"))
    grace = settings.shutdown_grace_seconds(os.environ)
    if from_env:
        configs = settings.served_from_environment(os.environ)
    else:
        configs = [settings.load_file(path, os.environ) for path in config_files]

    async def serve() -> dict[str, Any]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with open_engines(configs, create_tables=create_table) as engines:
            return await Worker(engines, shutdown_grace_seconds=grace).run(stop)

    summary = asyncio.run(serve())
    if "left_behind" in summary:
        # A table call that never answers still holds a thread, which the interpreter
        # would wait for at exit: leave now, as the stop timeout would.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    return 0


def run_emulator(
    host: str, port: int, activity_poll_seconds: float, fire_schedules_seconds: float = 0.0
) -> int:
    """Serve until SIGINT or SIGTERM; the endpoint URL is the first line printed. With
    ``fire_schedules_seconds``, scheduled rules (runner Lambdas) fire on that period."""
    from runners.local import Emulator

    stop = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    with Emulator(port=port, host=host, activity_poll_seconds=activity_poll_seconds) as emu:
        print(emu.endpoint_url, flush=True)
        print(f"export AWS_ENDPOINT_URL={emu.endpoint_url}", file=sys.stderr)
        print(
            "export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing "
            "AWS_DEFAULT_REGION=us-east-1",
            file=sys.stderr,
        )
        print("Serving until interrupted (Ctrl-C).", file=sys.stderr, flush=True)
        if fire_schedules_seconds > 0:
            while not stop.wait(fire_schedules_seconds):
                try:
                    emu.fire_schedules()
                except Exception as error:  # an emulator bug must not stop the endpoint
                    print(f"firing schedules failed: {error!r}", file=sys.stderr, flush=True)
        else:
            stop.wait()
    return 0
