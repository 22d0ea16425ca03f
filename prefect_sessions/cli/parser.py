"""The command line's arguments (argparse only: ``--help`` loads nothing else)."""

from __future__ import annotations

import argparse
from typing import Any, get_args

from prefect_sessions.run_options import DEFAULT_RESULTS_DIR, LAST, FailOn


def _budget_arguments(command: argparse.ArgumentParser) -> None:
    caps = command.add_argument_group(
        "budget",
        "caps on what the run spends (over the suite's budget); the run stops before "
        "the next conversation could cross one, and is resumable",
    )
    caps.add_argument("--budget-requests", type=int, metavar="N", help="HTTP requests")
    caps.add_argument("--budget-credits", type=float, metavar="N", help="LiveAvatar credits")
    caps.add_argument(
        "--budget-minutes", type=float, metavar="N", help="LiveAvatar session minutes"
    )
    caps.add_argument("--budget-tokens", type=int, metavar="N", help="tokens reported")


def budget_of(args: argparse.Namespace) -> dict[str, float] | None:
    """The budget flags given, as the budget's fields (None when none is given)."""
    caps = {
        "requests": args.budget_requests,
        "credits": args.budget_credits,
        "session_minutes": args.budget_minutes,
        "tokens": args.budget_tokens,
    }
    given = {name: value for name, value in caps.items() if value is not None}
    return given or None


#: The ``similar`` threshold of what record, crawl and update write (the suite_text default).
DEFAULT_THRESHOLD = 0.8


def _writing(command: argparse.ArgumentParser, what: str) -> None:
    command.add_argument(
        "--suite", required=True, help="connect as this suite does (its provider and connection)"
    )
    command.add_argument("--out", required=True, metavar="FILE", help=f"write the {what} here")
    command.add_argument("--force", action="store_true", help="replace --out if it exists")
    command.add_argument("--name", help="the written suite's name (default: the suite's, suffixed)")
    command.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"the similar threshold of free-text expectations (default {DEFAULT_THRESHOLD})",
    )
    command.add_argument(
        "--max-share",
        type=float,
        metavar="SHARE",
        help="use at most this share of the key's limit, e.g. 0.5",
    )


def _recording_commands(commands: Any) -> None:
    record = commands.add_parser(
        "record",
        help="write a suite from a provider's past conversations",
        description="Write a suite from past conversations: Voiceflow's transcripts (Analytics "
        "API, or the legacy API), Vectara's session events, LiveAvatar's transcripts.",
    )
    _writing(record, "recorded suite")
    record.add_argument("--since", metavar="DATE", help="conversations from this date (UTC)")
    record.add_argument("--until", metavar="DATE", help="conversations up to this date")
    record.add_argument("--environment", help="only this environment (Voiceflow)")
    record.add_argument("--tag", help="only conversations with this tag")
    record.add_argument(
        "--max", type=int, default=100, metavar="N", help="the most conversations (default 100)"
    )
    record.add_argument(
        "--unredacted",
        action="store_true",
        help="keep text as said; by default emails, card and phone numbers are redacted",
    )

    crawl = commands.add_parser(
        "crawl",
        help="explore an agent's buttons and write a suite of the paths",
        description="Explore an agent's buttons breadth-first, a fresh session per path, and "
        "write every path as a conversation.",
    )
    _writing(crawl, "crawled suite")
    crawl.add_argument("--depth", type=int, default=3, help="button presses per path (default 3)")
    crawl.add_argument(
        "--max-paths", type=int, default=200, metavar="N", help="the most paths (default 200)"
    )
    crawl.add_argument(
        "--ignore", action="append", metavar="PREFIX", help="never press buttons starting so"
    )
    crawl.add_argument(
        "--exit-on",
        action="append",
        metavar="REGEX",
        help="a reply that matches ends its path (repeatable)",
    )
    crawl.add_argument(
        "--concurrency", type=int, default=4, help="paths explored at once (default 4)"
    )


def parser() -> argparse.ArgumentParser:
    """The ``prefect-sessions`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="prefect-sessions",
        description="Run scripted conversations against conversational-agent APIs with Prefect.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run", help="run a suite as a Prefect flow", description="Run a conversation suite."
    )
    run.add_argument("suite", help="the suite file (YAML)")
    run.add_argument("--base-url", help="send requests here (a private cloud, the emulator)")
    run.add_argument("--concurrency", type=int, help="conversations in flight at once")
    run.add_argument("--rate", type=float, help="requests per second to stay under, if known")
    run.add_argument(
        "--max-share",
        type=float,
        metavar="SHARE",
        help="use at most this share of the key's limit, e.g. 0.5 to leave half to live users",
    )
    run.add_argument("--report", metavar="FILE", help="write a JSON report here")
    run.add_argument("--junit", metavar="FILE", help="write JUnit XML here")
    run.add_argument(
        "--html", metavar="FILE", help="write a self-contained HTML report here (opens offline)"
    )
    run.add_argument(
        "--baseline",
        default=LAST,
        metavar="last|RUN_KEY|none",
        help="compare with this run: the suite's latest earlier run (default), a run key, or none",
    )
    run.add_argument(
        "--fail-on",
        choices=get_args(FailOn),
        default="any",
        help="exit 1 (and end the flow run Failed) when any conversation fails (default), only "
        "on regressions against the baseline, or never",
    )
    run.add_argument(
        "--tag",
        action="append",
        dest="tags",
        metavar="TAG",
        help="run conversations with this tag (repeatable: any of them)",
    )
    run.add_argument(
        "--id",
        action="append",
        dest="ids",
        metavar="GLOB",
        help="run conversations whose id matches this glob, e.g. 'refund-*' (repeatable)",
    )
    run.add_argument(
        "--only-failed", metavar="RUN_KEY", help="rerun only what failed or errored in that run"
    )
    run.add_argument(
        "--output",
        metavar="FILE",
        help="write the output dataset here (.csv, .jsonl or .parquet): a row per conversation "
        "with its input columns, the suite's named outputs, the status and the reason",
    )
    _budget_arguments(run)
    run.add_argument(
        "--no-judge-cache",
        dest="judge_cache",
        action="store_false",
        help="ask the judge model again instead of reusing its answer to the same question",
    )
    run.add_argument(
        "--update-expectations",
        action="store_true",
        help="take each conversation's turns once and rewrite its expectations from the "
        "answers (similar for free text, exact for buttons and variables), in place, with a "
        "diff to review; never when CI is set",
    )
    run.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"the similar threshold of expectations written (default {DEFAULT_THRESHOLD})",
    )
    run.add_argument("--run-key", help="resume the run with this key (default: a new run)")
    run.add_argument("--results-dir", default=DEFAULT_RESULTS_DIR, help="where results are kept")
    run.add_argument(
        "--progress",
        choices=("auto", "bar", "lines", "none"),
        default="auto",
        help="a bar on a terminal (auto), one line per finished conversation (lines), or none",
    )

    validate = commands.add_parser(
        "validate", help="check a suite without running it", description="Validate a suite."
    )
    validate.add_argument("suite", help="the suite file (YAML)")
    validate.add_argument(
        "--estimate",
        action="store_true",
        help="forecast the requests the suite needs and how long they take",
    )
    validate.add_argument(
        "--rate", type=float, help="requests per second for the forecast (default: learned)"
    )
    for flag, dest, meta in (("--tag", "tags", "TAG"), ("--id", "ids", "GLOB")):
        validate.add_argument(flag, action="append", dest=dest, metavar=meta, help="as for run")
    _budget_arguments(validate)

    compare = commands.add_parser(
        "compare",
        help="compare two runs of a suite",
        description="Compare run RUN_KEY with run BASELINE_KEY, both found in the Prefect API. "
        "Exits 1 when RUN_KEY has regressions.",
    )
    compare.add_argument("baseline", metavar="BASELINE_KEY")
    compare.add_argument("run_key", metavar="RUN_KEY")
    compare.add_argument("--suite", required=True, help="the suite file, or the suite's name")
    compare.add_argument("--report", metavar="FILE", help="write the comparison as JSON here")

    _recording_commands(commands)

    # Listed for --help only: main() hands `blocks ...` and `emulator ...` to their own commands
    # before parsing; validating or running a suite never loads the emulator (FastAPI, uvicorn).
    commands.add_parser(
        "blocks",
        help="register the block types and save credentials blocks (blocks --help)",
        add_help=False,
    )
    commands.add_parser(
        "emulator",
        help="serve the providers' APIs locally, emulated (emulator --help)",
        add_help=False,
    )
    return parser
