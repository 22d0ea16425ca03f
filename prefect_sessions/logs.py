"""Where tasks log: the Prefect run logger inside a run, the package logger outside one."""

from __future__ import annotations

import logging
from typing import Any

from prefect import get_run_logger
from prefect.exceptions import MissingContextError


def run_logger() -> logging.Logger | logging.LoggerAdapter[Any]:
    """The run logger when called inside a flow or task run, else ``prefect_sessions``'s logger
    (so ``task.fn(...)`` works in scripts and tests)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("prefect_sessions")
