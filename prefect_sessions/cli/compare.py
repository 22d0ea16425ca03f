"""``prefect-sessions compare``: two runs of a suite, found through the Prefect API."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from prefect_sessions.cli.exits import EXIT_FAILED, EXIT_INVALID, EXIT_PASSED
from prefect_sessions.cli.validate import load_or_report


def compare_command(args: argparse.Namespace) -> int:
    from prefect_sessions.batch.comparison import RunRecord, compare
    from prefect_sessions.batch.history import require_record
    from prefect_sessions.errors import ConfigurationError

    suite_name = args.suite
    if Path(args.suite).is_file():
        loaded = load_or_report(args.suite)
        if loaded is None:
            return EXIT_INVALID
        suite_name = loaded.suite.name

    async def both() -> tuple[RunRecord, RunRecord]:
        return (
            await require_record(suite_name, args.baseline, "BASELINE_KEY"),
            await require_record(suite_name, args.run_key, "RUN_KEY"),
        )

    try:
        baseline, current = asyncio.run(both())
    except ConfigurationError as exc:
        print(f"prefect-sessions compare: {exc}", file=sys.stderr)
        return EXIT_INVALID
    comparison = compare(baseline, current)
    print(f"Run {args.run_key} {comparison.line()}")
    for name, listed in comparison.lists():
        if listed:
            print(f"  {name.replace('_', ' ')}: {', '.join(listed)}")
    for name, change in comparison.figures.items():
        print(f"  {name}: {change.describe()}")
    if args.report:
        Path(args.report).write_text(comparison.model_dump_json(indent=2), encoding="utf-8")
    return EXIT_FAILED if comparison.regressions else EXIT_PASSED
