"""``runners.handlers.crawlerrunner.handler``: the Glue crawler runner as a scheduled
Lambda."""

from typing import Any

from runners.handlers.tick import LambdaContext, lambda_tick


def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    return lambda_tick("crawler", context)
