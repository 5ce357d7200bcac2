"""Process Marketing Data (Glue 4.0, PySpark).

Reads the daily marketing metrics CSV, renames every field replacing white space with
underscores, and writes compressed Parquet, overwriting earlier output.

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


marketing = spark.read.option("header", "true").option("inferSchema", "true").csv(
    args["s3_input_path"]
)
marketing = marketing.toDF(*(underscored(column) for column in marketing.columns))
marketing = marketing.withColumn("date", F.to_date(F.col("date"), "M/d/yyyy"))

(
    marketing.coalesce(1)
    .write.mode("overwrite")
    .option("compression", "snappy")
    .parquet(args["s3_output_path"])
)
job.commit()
