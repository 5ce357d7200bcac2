"""AWS Step Functions activity workers for Glue jobs, Glue crawlers, Athena queries and S3 waits."""
