"""Structured logs: JSON when not on a terminal, readable console output otherwise.

Task tokens are bearer secrets: log ``token_hash(token)``, never the token.
"""

from __future__ import annotations

import hashlib
import logging
import sys

import structlog


def token_hash(token: str) -> str:
    """A short, stable, non-reversible name for a task token."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def configure(level: str = "INFO", json_output: bool | None = None) -> None:
    """Set up structlog (and the stdlib root logger it renders through) once."""
    as_json = not sys.stderr.isatty() if json_output is None else json_output
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    numeric_level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # botocore and friends log through the stdlib; keep them at warnings.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")


def configure_once(level: str = "INFO", json_output: bool | None = None) -> None:
    """For Lambda handlers: configure on a cold start, keep whatever is set after (a
    host process such as the demo may have configured logging already)."""
    if not structlog.is_configured():
        configure(level, json_output)


def get_logger(**bound: object) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger("runners").bind(**bound)
    return logger
