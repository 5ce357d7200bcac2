"""Spark step for the mixed pipeline: revenue by segment and region from the sales file.

Run on an EMR cluster as ``spark-submit sales_by_segment.py --input s3://... --output
s3://...``; the mixed sample state machine adds it as a step through the emrstep runner.
"""

import argparse

from pyspark.sql import SparkSession, functions


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()

    spark = SparkSession.builder.appName("sales-by-segment").getOrCreate()
    sales = spark.read.option("header", "true").option("inferSchema", "true").csv(args.input)
    (
        sales.groupBy(functions.col("Segment").alias("segment"), functions.col("Region").alias("region"))
        .agg(
            functions.sum("Forecasted Monthly Revenue").alias("forecasted_revenue"),
            functions.sum("Weighted Revenue").alias("weighted_revenue"),
            functions.count("*").alias("opportunities"),
        )
        .write.mode("overwrite")
        .parquet(args.output)
    )
    spark.stop()


if __name__ == "__main__":
    main()
