"""Wait-for-data: shared by the S3 wait runner and the object-created Lambda."""
