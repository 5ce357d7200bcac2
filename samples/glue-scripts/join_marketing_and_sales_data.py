"""Join Marketing And Sales Data (Glue 4.0, PySpark).

Reads the outputs of the two processing jobs, joins them (inner) on the date, sorts by
date ascending, and writes the joined dataset as compressed Parquet, overwriting earlier
output.

Job arguments: --s3_sales_path, --s3_marketing_path, --s3_output_path
"""

import sys

from awsglue.context import GlueContext
from awsglue.job import Job
from awsglue.utils import getResolvedOptions
from pyspark.context import SparkContext

args = getResolvedOptions(
    sys.argv, ["JOB_NAME", "s3_sales_path", "s3_marketing_path", "s3_output_path"]
)
glue_context = GlueContext(SparkContext.getOrCreate())
spark = glue_context.spark_session
job = Job(glue_context)
job.init(args["JOB_NAME"], args)

sales = spark.read.parquet(args["s3_sales_path"])
marketing = spark.read.parquet(args["s3_marketing_path"])

(
    sales.join(marketing, on="date", how="inner")
    .orderBy("date")
    .coalesce(1)
    .write.mode("overwrite")
    .option("compression", "snappy")
    .parquet(args["s3_output_path"])
)
job.commit()
