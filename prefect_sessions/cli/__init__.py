"""The ``prefect-sessions`` command: run, validate or compare conversation suites, write suites
from real conversations (record, crawl, run --update-expectations), or serve the emulator.

Exit status of ``run``: 0 when the run passed by its ``--fail-on`` rule (by default: every
conversation passed), 1 when it did not, 2 when the suite, the settings, a run key or the
credentials are invalid, or no Prefect API can be had (nothing was run, or the provider refused
the key), 3 when the run stopped because something it depends on went away (the provider, the
Prefect API): what finished is kept, and ``--run-key`` resumes the rest. ``compare`` exits 1
when the later run has regressions.

Each command imports what it needs when it runs: ``--help`` and ``validate`` load no Prefect.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from prefect_sessions.cli.exits import EXIT_FAILED, EXIT_INVALID, EXIT_PASSED, EXIT_STOPPED


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``prefect-sessions`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["blocks"]:
        from prefect_sessions.block_setup import main as blocks_main

        return blocks_main(argv[1:])
    if argv[:1] == ["emulator"]:
        from prefect_sessions.emulator.cli import main as emulator_main

        return emulator_main(argv[1:])
    from prefect_sessions.cli.parser import parser

    args = parser().parse_args(argv)
    if args.command == "validate":
        from prefect_sessions.cli.validate import validate_command

        return validate_command(args)
    if args.command in ("record", "crawl"):
        from prefect_sessions.cli.recording import crawl_command, record_command

        return record_command(args) if args.command == "record" else crawl_command(args)
    if args.command == "run" and args.update_expectations:
        from prefect_sessions.cli.recording import update_command

        return update_command(args)
    if args.command == "compare":
        from prefect_sessions.cli.compare import compare_command

        return compare_command(args)
    from prefect_sessions.cli.run import run_command

    return run_command(args)


__all__ = ["EXIT_FAILED", "EXIT_INVALID", "EXIT_PASSED", "EXIT_STOPPED", "main"]
