"""What each demo scenario runs: a sample flow, how its jobs behave, when data lands."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from runners.demo.resources import CRM_TASK, MARKETING_FILE, SALES_CRAWLER, SALES_FILE
from runners.local import Emulator, RunBehaviour


@dataclass(frozen=True)
class Upload:
    """A sample file landing in the source bucket ``at`` seconds into the execution
    (negative: before it starts)."""

    file: str
    at: float
    key: str | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    machine: str
    behaviours: Callable[[Emulator], None]
    uploads: tuple[Upload, ...] = ()
    handled_failure: bool = False  # the flow must end through its Catch path
    # The flow fails; then this fixes the cause and the failure is redriven.
    fix: Callable[[Emulator], None] | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def _sales_jobs(failing: str | None = None) -> Callable[[Emulator], None]:
    def configure(aws: Emulator) -> None:
        aws.glue_runs.set("ProcessSalesData", RunBehaviour(duration=2.5))
        aws.glue_runs.set("ProcessMarketingData", RunBehaviour(duration=2.0))
        aws.glue_runs.set("JoinMarketingAndSalesData", RunBehaviour(duration=2.0))
        if failing:
            aws.glue_runs.set(
                failing,
                RunBehaviour(
                    duration=3.0,  # after its sibling has succeeded
                    final_state="FAILED",
                    error_message="AnalysisException: Path does not exist: "
                    "s3://etl-demo-artifacts/output/marketing/",
                ),
            )

    return configure


def _athena_queries(aws: Emulator) -> None:
    aws.athena_queries.add("CREATE EXTERNAL TABLE", RunBehaviour(duration=0.8))
    aws.athena_queries.add(
        "BY region", RunBehaviour(duration=2.0, metrics={"DataScannedInBytes": 1_999_805})
    )
    aws.athena_queries.add(
        "BY salesperson", RunBehaviour(duration=1.6, metrics={"DataScannedInBytes": 1_999_805})
    )


def _job_then_crawler(aws: Emulator) -> None:
    aws.glue_runs.set("ProcessSalesData", RunBehaviour(duration=2.5))
    aws.glue_crawls.set(
        SALES_CRAWLER, RunBehaviour(duration=2.0, metrics={"TablesCreated": 1, "TablesUpdated": 0})
    )


def _mixed(dms_fails: bool = False) -> Callable[[Emulator], None]:
    def configure(aws: Emulator) -> None:
        aws.glue_runs.set("ProcessSalesData", RunBehaviour(duration=2.5))
        aws.dms_tasks.add(CRM_TASK, RunBehaviour(duration=3.0, metrics={"TablesLoaded": 1}))
        if dms_fails:
            aws.dms_tasks.add(
                CRM_TASK,
                RunBehaviour(
                    duration=2.0,
                    final_state="failed",
                    error_message="Last Error Cannot connect to ODBC provider ODBC general "
                    "error. Task error notification received from subtask 0",
                ),
            )
        aws.emr_steps.add("aggregate-sales-by-segment", RunBehaviour(duration=3.5))
        aws.redshift_statements.add(
            "INSERT INTO mart.daily_sales",
            RunBehaviour(duration=1.5, metrics={"ResultRows": 1_180}),
        )

    return configure


SCENARIOS = {
    scenario.name: scenario
    for scenario in (
        Scenario(
            "sales",
            "the original sample's flow: wait for both datasets, process each, join them",
            "marketing_and_sales_etl",
            _sales_jobs(),
            uploads=(Upload(SALES_FILE, 1.0), Upload(MARKETING_FILE, 2.0)),
        ),
        Scenario(
            "files-first",
            "the same flow with both files already in the bucket when it starts",
            "marketing_and_sales_etl",
            _sales_jobs(),
            uploads=(Upload(MARKETING_FILE, -1.0), Upload(SALES_FILE, -0.5)),
        ),
        Scenario(
            "glue-failure",
            "a Glue job fails and fails the execution; once the job is fixed, the redrive "
            "runs only the failed branch again, and the join",
            "marketing_and_sales_etl",
            _sales_jobs(failing="ProcessMarketingData"),
            uploads=(Upload(SALES_FILE, 1.0), Upload(MARKETING_FILE, 1.5)),
            fix=_sales_jobs(),
        ),
        Scenario(
            "athena",
            "Athena: declare a table over the sales data, then two reports in parallel",
            "athena_reports",
            _athena_queries,
            uploads=(Upload(SALES_FILE, -0.5, key=f"sales/{SALES_FILE}"),),
        ),
        Scenario(
            "crawler",
            "a Glue job, then a crawler over its output, each one Task state",
            "job_then_crawler",
            _job_then_crawler,
        ),
        Scenario(
            "mixed",
            "wait for data, then a DMS full load, a Glue job and an EMR step in parallel, "
            "then a Redshift statement over the results",
            "mixed_pipeline",
            _mixed(),
            uploads=(Upload(SALES_FILE, 1.0),),
        ),
        Scenario(
            "mixed-failure",
            "the mixed pipeline with its DMS load failing; the Catch path notifies",
            "mixed_pipeline",
            _mixed(dms_fails=True),
            uploads=(Upload(SALES_FILE, 1.0),),
            handled_failure=True,
        ),
    )
}
