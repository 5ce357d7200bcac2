"""``runners.handlers.s3waitrunner.handler``: the S3 wait runner as a scheduled Lambda.

It picks up wait tasks and records them where ``ons3objectcreated`` releases them (or
succeeds them at once when the object is already there). ``RUNNERS_S3WAIT_ACTIVITY_ARN``
may list several wait activities, comma-separated.
"""

from typing import Any

from runners.handlers.tick import LambdaContext, lambda_tick


def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    return lambda_tick("s3wait", context)
