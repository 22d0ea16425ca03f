"""The ``prefect-sessions`` command: run, validate or compare conversation suites, or serve the
emulator.

Exit status of ``run``: 0 when the run passed by its ``--fail-on`` rule (by default: every
conversation passed), 1 when it did not, 2 when the suite, the settings, a run key or the
credentials are invalid (nothing was run, or the provider refused the key), 3 when the run
stopped because something it depends on went away (the provider, the Prefect API): what finished
is kept, and ``--run-key`` resumes the rest. ``compare`` exits 1 when the later run has
regressions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, get_args

from prefect.exceptions import ParameterTypeError
from prefect.settings import PREFECT_API_URL

from prefect_sessions.api_watch import ApiWatch, unreachable
from prefect_sessions.batch.chunks import WHOLE_SUITE, results_file
from prefect_sessions.batch.comparison import RunRecord, compare
from prefect_sessions.batch.estimate import estimate
from prefect_sessions.batch.history import find_record, recent_runs, require_record
from prefect_sessions.batch.html_report import write_html_report
from prefect_sessions.batch.report import FailOn, RunSummary, write_json_report, write_junit
from prefect_sessions.batch.run import DEFAULT_RESULTS_DIR, LAST, listening, new_run_key
from prefect_sessions.batch.verdicts import verdicts
from prefect_sessions.conversation.results import ConversationResult, ResultStore
from prefect_sessions.conversation.selection import EVERYTHING, Selection, selection_of
from prefect_sessions.conversation.suite import LoadedSuite, SuiteError
from prefect_sessions.conversation.suite_file import load_suite
from prefect_sessions.errors import ConfigurationError, RunStoppedError

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

T = TypeVar("T")

EXIT_PASSED, EXIT_FAILED, EXIT_INVALID, EXIT_STOPPED = 0, 1, 2, 3

#: Errors that mean "the credentials are wrong", not "the agent misbehaved".
_CREDENTIAL_ERRORS = {"AuthenticationError", "SessionKeyRejectedError"}


def _parser() -> argparse.ArgumentParser:
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


def _validate(path: str, selection: Selection = EVERYTHING) -> LoadedSuite | None:
    try:
        return load_suite(path, selection=selection)
    except SuiteError as exc:
        print(exc, file=sys.stderr)
        return None


class _Progress:
    """A progress bar on a terminal, a line per finished conversation, or nothing."""

    def __init__(self, total: int, mode: str) -> None:
        self._bar: Any = None
        self._lines = mode == "lines"
        if mode == "bar" or (mode == "auto" and sys.stdout.isatty()):
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self._bar = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            self._task = self._bar.add_task("conversations", total=total)

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance(self, result: ConversationResult) -> None:
        if self._bar is not None:
            self._bar.advance(self._task)
        elif self._lines:
            print(f"{result.status} {result.id}", flush=True)


def _ui_link(flow_run_id: Any) -> str:
    from prefect.settings import PREFECT_UI_URL

    ui = PREFECT_UI_URL.value() or ""
    if not PREFECT_API_URL.value() or not ui:
        return "Prefect ran on a temporary local server; set PREFECT_API_URL to keep runs in a UI"
    return f"Prefect UI: {ui.rstrip('/')}/runs/flow-run/{flow_run_id}"


class _QuietWhileSilent(logging.Filter):
    """While the Prefect API is silent, its client's complaints (event-worker errors, the flow's
    own traceback) say nothing the watch's one line does not: keep them off the terminal."""

    def __init__(self) -> None:
        super().__init__()
        self.watch: ApiWatch | None = None
        self._handlers: set[logging.Handler] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        return self.watch is None or not self.watch.silent

    def attach(self) -> None:
        """Filter every handler Prefect's logging set up (it does so lazily, at the first run)."""
        loggers = [logging.getLogger()] + [
            logger
            for name, logger in list(logging.Logger.manager.loggerDict.items())
            if name.startswith("prefect") and isinstance(logger, logging.Logger)
        ]
        for handler in (h for logger in loggers for h in logger.handlers):
            handler.addFilter(self)
            self._handlers.add(handler)

    def detach(self) -> None:
        for handler in self._handlers:
            handler.removeFilter(self)


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _run(args: argparse.Namespace) -> int:
    loaded = _validate(args.suite, selection_of(args.tags, args.ids))
    if loaded is None:
        return EXIT_INVALID
    from prefect_sessions.flows import batch_conversations

    run_key = args.run_key or new_run_key()
    api_url = PREFECT_API_URL.value()
    if api_url and (reason := unreachable(api_url)) is not None:
        print(
            f"prefect-sessions run: the Prefect API at {api_url} did not answer ({reason}): "
            "start it (prefect server start) or fix PREFECT_API_URL; nothing was run",
            file=sys.stderr,
        )
        return EXIT_INVALID
    kept_in = results_file(args.results_dir, loaded.suite.name, run_key, WHOLE_SUITE)

    def api_lost(line: str) -> None:
        # The flow's own calls to the API would each wait out a minute of retries: stop here.
        # Every verdict is already in the results file.
        print(
            f"\nprefect-sessions run: {line}. Conversations with a verdict are kept in "
            f"{kept_in}; once the API is back, resume with: prefect-sessions run {args.suite} "
            f"--run-key {run_key}",
            file=sys.stderr,
            flush=True,
        )
        sys.stdout.flush()
        os._exit(EXIT_STOPPED)

    quiet = _QuietWhileSilent()

    def api_change(line: str) -> None:
        quiet.attach()
        print(f"prefect-sessions run: {line}", file=sys.stderr, flush=True)

    quiet.watch = ApiWatch(api_url, api_lost, on_change=api_change) if api_url else None
    with (
        _Progress(loaded.run_count, args.progress) as progress,
        quiet.watch or contextlib.nullcontext(),
        contextlib.ExitStack() as undo,
        listening(progress.advance),
    ):
        undo.callback(quiet.detach)
        state: State[RunSummary] = asyncio.run(
            _as_coroutine(
                batch_conversations(
                    suite_path=args.suite,
                    run_key=run_key,
                    base_url=args.base_url,
                    concurrency=args.concurrency,
                    rate=args.rate,
                    max_share=args.max_share,
                    results_dir=args.results_dir,
                    fail_on=args.fail_on,
                    baseline=args.baseline,
                    tags=args.tags,
                    ids=args.ids,
                    only_failed=args.only_failed,
                    return_state=True,
                )
            )
        )
    try:
        outcome = state.result(raise_on_failure=False)
        if isinstance(outcome, BaseException):
            raise outcome
        if not isinstance(outcome, RunSummary):  # a failure Prefect made, not a verdict
            state.result()
        summary = RunSummary.model_validate(outcome)
    except (ConfigurationError, ParameterTypeError) as exc:
        # An invalid option (``--rate -1``) fails the flow before any request, like a bad suite.
        print(f"prefect-sessions run: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except RunStoppedError as exc:
        print(f"prefect-sessions run: {state.message or exc}", file=sys.stderr)
        print(f"Resume: prefect-sessions run {args.suite} --run-key {run_key}", file=sys.stderr)
        return EXIT_STOPPED
    latest = ResultStore(summary.results_path).latest()
    results = list(latest.values())
    judged = verdicts(results)
    if args.report:
        write_json_report(args.report, summary, results, judged)
    if args.junit:
        write_junit(args.junit, summary, results)
    print(summary.line())
    if summary.comparison is not None:
        print(f"Compared {summary.comparison.line()}")
    elif args.baseline == LAST:
        print("No earlier run of this suite to compare with; the next run compares with this one")
    print(f"Results: {summary.results_path}" + (f"; report: {args.report}" if args.report else ""))
    link = _ui_link(state.state_details.flow_run_id)
    print(link)
    if args.html:
        history = _quietly(recent_runs(summary.suite, exclude_run_key=run_key)) or []
        url = link.removeprefix("Prefect UI: ") if link.startswith("Prefect UI: ") else None
        path = write_html_report(args.html, summary, judged, results, history=history, run_url=url)
        print(f"HTML report: {path.resolve()}")
    if not summary.failing:
        return EXIT_PASSED
    errored = [r for r in results if r.status == "errored"]
    nothing_ran = errored and summary.passed == 0 and summary.failed == 0
    if nothing_ran and all(r.error_type in _CREDENTIAL_ERRORS for r in errored):
        print("prefect-sessions run: the provider refused the credentials", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``prefect-sessions`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["blocks"]:
        from prefect_sessions.block_setup import main as blocks_main

        return blocks_main(argv[1:])
    if argv[:1] == ["emulator"]:
        from prefect_sessions.emulator.cli import main as emulator_main

        return emulator_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "validate":
        return _validate_command(args)
    if args.command == "compare":
        return _compare(args)
    return _run(args)


def _quietly(awaitable: Awaitable[T]) -> T | None:
    """Run a Prefect API read; None when the API cannot answer it (a report goes on without)."""
    try:
        return asyncio.run(_as_coroutine(awaitable))
    except Exception:
        return None


def _validate_command(args: argparse.Namespace) -> int:
    loaded = _validate(args.suite, selection_of(args.tags, args.ids))
    if loaded is None:
        return EXIT_INVALID
    count, provider = loaded.conversation_count, loaded.suite.provider
    print(f"{args.suite}: valid; {count} conversations against {provider}")
    if args.estimate:
        if args.rate is not None and args.rate <= 0:
            print("prefect-sessions validate: --rate must be above 0", file=sys.stderr)
            return EXIT_INVALID
        rate, source = args.rate, "given"
        if rate is None and PREFECT_API_URL.value():
            last = _quietly(find_record(loaded.suite.name))
            figures = last.figures if last is not None else {}
            if last is not None and figures.get("duration_s") and figures.get("requests"):
                rate = round(figures["requests"] / figures["duration_s"], 1)
                source = f"learned from run {last.run_key}"
        for line in estimate(loaded, rate, source).lines():
            print(line)
    return EXIT_PASSED


def _compare(args: argparse.Namespace) -> int:
    suite_name = args.suite
    if Path(args.suite).is_file():
        loaded = _validate(args.suite)
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


if __name__ == "__main__":
    raise SystemExit(main())
