"""``prefect-sessions validate``: a suite checked, and its cost forecast, without Prefect.

Validation reads the suite, its datasets and the provider registry's capabilities only; Prefect
is loaded only for ``--estimate`` without ``--rate``, to learn the rate of the suite's last run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

from pydantic import ValidationError

from prefect_sessions.cli.exits import EXIT_INVALID, EXIT_PASSED
from prefect_sessions.cli.parser import budget_of
from prefect_sessions.conversation.selection import EVERYTHING, Selection, selection_of
from prefect_sessions.conversation.suite import LoadedSuite, SuiteError
from prefect_sessions.conversation.suite_file import load_suite

T = TypeVar("T")


def load_or_report(path: str, selection: Selection = EVERYTHING) -> LoadedSuite | None:
    """The suite, or None after printing every problem found in it."""
    try:
        return load_suite(path, selection=selection)
    except SuiteError as exc:
        print(exc, file=sys.stderr)
        return None


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable


def quietly(awaitable: Awaitable[T]) -> T | None:
    """Run a Prefect API read; None when the API cannot answer it (a report goes on without)."""
    try:
        return asyncio.run(_as_coroutine(awaitable))
    except Exception:
        return None


def _learned_rate(suite_name: str) -> tuple[float, str] | None:
    """The rate the suite's last run reached, from the Prefect API it names, if any."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return None
    from prefect_sessions.batch.history import find_record

    last = quietly(find_record(suite_name))
    figures = last.figures if last is not None else {}
    if last is None or not figures.get("duration_s") or not figures.get("requests"):
        return None
    return round(figures["requests"] / figures["duration_s"], 1), f"learned from run {last.run_key}"


def validate_command(args: argparse.Namespace) -> int:
    loaded = load_or_report(args.suite, selection_of(args.tags, args.ids))
    if loaded is None:
        return EXIT_INVALID
    count, provider = loaded.conversation_count, loaded.suite.provider
    print(f"{args.suite}: valid; {count} conversations against {provider}")
    if args.estimate:
        if args.rate is not None and args.rate <= 0:
            print("prefect-sessions validate: --rate must be above 0", file=sys.stderr)
            return EXIT_INVALID
        from prefect_sessions.batch.estimate import estimate
        from prefect_sessions.conversation.budget import Budget
        from prefect_sessions.run_options import invalid_options

        try:
            caps = Budget.model_validate(budget_of(args)) if budget_of(args) else None
        except ValidationError as exc:
            print(f"prefect-sessions validate: budget: {invalid_options(exc)}", file=sys.stderr)
            return EXIT_INVALID
        rate, source = args.rate, "given"
        if rate is None:
            rate, source = _learned_rate(loaded.suite.name) or (None, source)
        for line in estimate(loaded, rate, source, caps).lines():
            print(line)
    return EXIT_PASSED
