"""Every public task is a pair: ``astart_session`` for async flows, ``start_session`` for sync.

One async implementation serves both. The sync task runs it with Prefect's ``run_coro_as_sync``
(which also works when a loop is already running), so nothing depends on Prefect's private
``async_dispatch`` and both names show the same parameters in the UI.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, cast

from prefect import Task, task
from prefect.utilities.asyncutils import run_coro_as_sync

P = ParamSpec("P")
R = TypeVar("R")


def task_pair(
    fn: Callable[P, Coroutine[Any, Any, R]], *, name: str, **options: Any
) -> tuple[Task[P, Coroutine[Any, Any, R]], Task[P, R]]:
    """Make an async task and its sync twin from one coroutine function.

    Args:
        fn: the implementation; its signature and docstring become both tasks'.
        name: the task name shown in the Prefect UI.
        options: ``@task`` options shared by both (``cache_policy``, ``persist_result``, ...).

    Returns:
        ``(async_task, sync_task)``.
    """
    async_task: Task[P, Coroutine[Any, Any, R]] = task(name=name, **options)(fn)

    @functools.wraps(fn)
    def run_sync(*args: P.args, **kwargs: P.kwargs) -> R:
        return cast(R, run_coro_as_sync(fn(*args, **kwargs)))

    sync_task: Task[P, R] = task(name=name, **options)(run_sync)
    return async_task, sync_task
