"""Process Sales Data (Glue 4.0, PySpark).

Reads the sales pipeline CSV, groups opportunities by day summing the forecasted monthly
revenue, renames every field replacing white space with underscores, and writes
compressed Parquet, overwriting earlier output.

Job arguments: --s3_input_path, --s3_output_path
"""

import re
import sys

from awsglue.context import GlueContext
from awsglue.job import Job
from awsglue.utils import getResolvedOptions
from pyspark.context import SparkContext
from pyspark.sql import functions as F

args = getResolvedOptions(sys.argv, ["JOB_NAME", "s3_input_path", "s3_output_path"])
glue_context = GlueContext(SparkContext.getOrCreate())
spark = glue_context.spark_session
job = Job(glue_context)
job.init(args["JOB_NAME"], args)


def underscored(name: str) -> str:
    return re.sub(r"\s+", "_", name.strip()).lower()


sales = spark.read.option("header", "true").option("inferSchema", "true").csv(
    args["s3_input_path"]
)
daily = (
    sales.withColumn("Date", F.to_date(F.col("Date"), "M/d/yyyy"))
    .groupBy("Date")
    .agg(
        F.sum("Forecasted Monthly Revenue").alias("Forecasted Monthly Revenue"),
        F.count(F.lit(1)).alias("Opportunities"),
        F.sum(F.when(F.col("Opportunity Stage") == "Lead", 1).otherwise(0)).alias("Leads"),
    )
)
daily = daily.toDF(*(underscored(column) for column in daily.columns))

(
    daily.orderBy("date")
    .coalesce(1)
    .write.mode("overwrite")
    .option("compression", "snappy")
    .parquet(args["s3_output_path"])
)
job.commit()
