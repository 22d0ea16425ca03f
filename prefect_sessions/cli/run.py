"""``prefect-sessions run``: a suite through the ``batch-conversations`` flow, with a progress bar,
reports, and one line for each way a run cannot start or stops.

The options and the suite are checked before Prefect is loaded; the Prefect API is chosen (or a
temporary server launched, :mod:`.prefect_api`) before the flow is imported, so the server boots
while the flow's modules load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from prefect_sessions.api_watch import ApiWatch
from prefect_sessions.cli.exits import EXIT_FAILED, EXIT_INVALID, EXIT_PASSED, EXIT_STOPPED
from prefect_sessions.cli.parser import budget_of
from prefect_sessions.cli.prefect_api import PrefectApi, PrefectApiError, prefect_api
from prefect_sessions.cli.validate import load_or_report, quietly
from prefect_sessions.run_options import LAST, RunOptions, invalid_options

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

    from prefect_sessions.batch.report import RunSummary
    from prefect_sessions.conversation.results import ConversationResult
    from prefect_sessions.conversation.suite import LoadedSuite

T = TypeVar("T")

#: Errors that mean "the credentials are wrong", not "the agent misbehaved".
_CREDENTIAL_ERRORS = {"AuthenticationError", "SessionKeyRejectedError"}


def _say(line: str) -> None:
    print(f"prefect-sessions run: {line}", file=sys.stderr, flush=True)


#: Conversations that did not pass, listed under the summary line.
SHOWN_FAILURES = 10


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
            judged = [j for t in result.turns for j in t.judgements] + list(result.judgements)
            for judgement in judged:  # each judged expectation: score, threshold, reason
                score = "no score" if judgement.score is None else f"{judgement.score:.2f}"
                print(
                    f"  {judgement.describe}: {score} against {judgement.threshold:g}: "
                    f"{judgement.error or judgement.reason}",
                    flush=True,
                )
            if result.stopped:
                print(f"  simulated user stopped: {result.stopped}", flush=True)


def _ui_link(api: PrefectApi, flow_run_id: Any) -> str:
    from prefect.settings import PREFECT_UI_URL

    ui = PREFECT_UI_URL.value() or ""
    if api.temporary or not ui:
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


def _options(args: argparse.Namespace) -> RunOptions:
    return RunOptions.of(
        suite_path=args.suite,
        run_key=args.run_key,
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
        output_path=args.output,
        budget=budget_of(args),
        judge_cache=args.judge_cache,
    )


def _flag_names(line: str) -> str:
    """An options error in the command line's words (``--max-share``, not ``max_share``)."""
    for name in RunOptions.model_fields:
        if name != "suite_path":
            line = line.replace(f"{name}:", f"--{name.replace('_', '-')}:")
    return line


def run_command(args: argparse.Namespace) -> int:
    try:
        options = _options(args)
    except ValidationError as exc:
        _say(_flag_names(invalid_options(exc)))
        return EXIT_INVALID
    loaded = load_or_report(args.suite, options.selection())
    if loaded is None:
        return EXIT_INVALID
    if options.output_path is not None:
        from prefect_sessions.batch.output_files import check_output_path
        from prefect_sessions.errors import ConfigurationError

        try:
            check_output_path(options.output_path)
        except ConfigurationError as exc:
            _say(str(exc))
            return EXIT_INVALID
    from prefect_sessions.batch.chunks import new_run_key

    options = options.keyed(options.run_key or new_run_key())
    try:
        with prefect_api(announce=_say) as api:
            return _run_on(api, args, options, loaded)
    except PrefectApiError as exc:
        _say(str(exc))
        return EXIT_INVALID


@contextlib.contextmanager
def _watching(
    api: PrefectApi, args: argparse.Namespace, options: RunOptions, suite: str
) -> Iterator[None]:
    """Stop the process with one line when the Prefect API goes silent for good (its own
    retries would hang every later call); quiet Prefect's complaints while it is silent."""
    from prefect_sessions.batch.chunks import WHOLE_SUITE, results_file

    if api.temporary:  # it lives and dies with this process
        yield
        return
    quiet = _QuietWhileSilent()
    kept_in = results_file(options.results_dir, suite, options.key, WHOLE_SUITE)

    def lost(line: str) -> None:
        # Every verdict is already in the results file.
        print(
            f"\nprefect-sessions run: {line}. Conversations with a verdict are kept in "
            f"{kept_in}; once the API is back, resume with: prefect-sessions run {args.suite} "
            f"--run-key {options.key}",
            file=sys.stderr,
            flush=True,
        )
        sys.stdout.flush()
        os._exit(EXIT_STOPPED)

    def changed(line: str) -> None:
        quiet.attach()
        _say(line)

    quiet.watch = ApiWatch(api.url, lost, on_change=changed)
    try:
        with quiet.watch:
            yield
    finally:
        quiet.detach()


def _run_on(
    api: PrefectApi, args: argparse.Namespace, options: RunOptions, loaded: LoadedSuite
) -> int:
    from prefect import tags
    from prefect.exceptions import ParameterTypeError

    from prefect_sessions.batch.chunks import listening
    from prefect_sessions.batch.history import run_tags
    from prefect_sessions.batch.report import RunSummary
    from prefect_sessions.errors import ConfigurationError, RunStoppedError
    from prefect_sessions.flows.batch import batch_conversations

    api.ready()  # a temporary server booted while the flow's modules loaded
    with (
        _Progress(loaded.run_count, args.progress) as progress,
        _watching(api, args, options, loaded.suite.name),
        listening(progress.advance),
        tags(*run_tags(loaded.suite.name, options.key)),  # so the run needs no tagging request
    ):
        state: State[RunSummary] = asyncio.run(
            _as_coroutine(batch_conversations(**options.flow_parameters(), return_state=True))
        )
    try:
        outcome = state.result(raise_on_failure=False)
        if isinstance(outcome, BaseException):
            raise outcome
        if not isinstance(outcome, RunSummary):  # a failure Prefect made, not a verdict
            state.result()
        summary = RunSummary.model_validate(outcome)
    except (ConfigurationError, ParameterTypeError) as exc:
        # An option the flow refused, like a bad suite: nothing was run.
        _say(str(exc))
        return EXIT_INVALID
    except RunStoppedError as exc:
        _say(state.message or str(exc))
        print(f"Resume: prefect-sessions run {args.suite} --run-key {options.key}", file=sys.stderr)
        return EXIT_STOPPED
    return _report(api, args, summary, state)


def _report(api: PrefectApi, args: argparse.Namespace, summary: RunSummary, state: Any) -> int:
    from prefect_sessions.batch.history import recent_runs
    from prefect_sessions.batch.html_report import write_html_report
    from prefect_sessions.batch.report import write_json_report, write_junit
    from prefect_sessions.batch.verdicts import digest
    from prefect_sessions.conversation.results import ResultStore

    # The report files hold every transcript: held only when one is asked for; the lines below
    # read the digest, which keeps no passed transcript.
    in_order = ResultStore(summary.results_path).in_order()
    results = list(in_order) if args.report or args.junit or args.html else []
    digested = digest(results or in_order)
    judged = digested.verdicts
    if args.report:
        write_json_report(args.report, summary, results, judged)
    if args.junit:
        write_junit(args.junit, summary, results)
    print(summary.line())
    failing = [verdict for verdict in judged if verdict.status != "passed"]
    for verdict in failing[:SHOWN_FAILURES]:  # a judged one's reason holds score and threshold
        print(f"  {verdict.status} {verdict.id}: {verdict.reason}")
    if len(failing) > SHOWN_FAILURES:
        print(f"  ... and {len(failing) - SHOWN_FAILURES} more (the reports have all)")
    if summary.comparison is not None:
        print(f"Compared {summary.comparison.line()}")
    elif args.baseline == LAST:
        print("No earlier run of this suite to compare with; the next run compares with this one")
    print(f"Results: {summary.results_path}" + (f"; report: {args.report}" if args.report else ""))
    if summary.output_path is not None:
        print(f"Output: {summary.output_path} ({summary.output_rows} rows)")
    link = _ui_link(api, state.state_details.flow_run_id)
    print(link)
    if args.html:
        history = quietly(recent_runs(summary.suite, exclude_run_key=summary.run_key)) or []
        url = link.removeprefix("Prefect UI: ") if link.startswith("Prefect UI: ") else None
        path = write_html_report(args.html, summary, judged, results, history=history, run_url=url)
        print(f"HTML report: {path.resolve()}")
    if not summary.failing:
        return EXIT_PASSED
    nothing_ran = summary.passed == 0 and summary.failed == 0 and summary.errored > 0
    if nothing_ran and all(r.error_type in _CREDENTIAL_ERRORS for r in digested.failing):
        _say("the provider refused the credentials")
        return EXIT_INVALID
    return EXIT_FAILED
