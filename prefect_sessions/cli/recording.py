"""``prefect-sessions record``, ``crawl`` and ``run --update-expectations``: suites written from
what an agent said, without Prefect (nothing here is a batch run to keep or compare).

Each connects as the suite given does. A problem with the options, the suite or the key is one
line and exit 2; a provider that goes away is one line and exit 3, with what was read kept.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from datetime import datetime, time, timezone
from pathlib import Path
from typing import Any

from prefect_sessions.cli.exits import EXIT_INVALID, EXIT_PASSED, EXIT_STOPPED
from prefect_sessions.cli.validate import load_or_report
from prefect_sessions.conversation.selection import selection_of
from prefect_sessions.errors import AuthenticationError, ConfigurationError, ProviderError


def _say(command: str, line: str) -> None:
    print(f"prefect-sessions {command}: {line}", file=sys.stderr, flush=True)


def _date(value: str | None, *, end: bool) -> datetime | None:
    """``2026-12-01`` (the whole day) or an ISO 8601 time; UTC unless it says otherwise."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigurationError(
            f"{value!r} is not a date: give 2026-12-01 or 2026-12-01T18:00:00Z"
        ) from None
    if len(value) == 10 and end:
        parsed = datetime.combine(parsed.date(), time.max)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _writable(path: str, force: bool) -> Path:
    out = Path(path)
    if out.exists() and not force:
        raise ConfigurationError(
            f"{out} exists: choose another --out, or add --force to replace it"
        )
    if not out.parent.is_dir():
        raise ConfigurationError(
            f"{out.parent} is not a directory: create it, or choose another --out"
        )
    return out


def _guarded(command: str, work: Callable[[], Coroutine[Any, Any, int]]) -> int:
    try:
        return asyncio.run(work())
    except AuthenticationError as exc:
        _say(command, f"the provider refused the credentials: {exc}")
        return EXIT_INVALID
    except ProviderError as exc:
        _say(command, f"{exc}; nothing was written, run it again once the provider is back")
        return EXIT_STOPPED
    except ConfigurationError as exc:
        _say(command, str(exc))
        return EXIT_INVALID


def record_command(args: argparse.Namespace) -> int:
    from prefect_sessions.recording.record import record
    from prefect_sessions.recording.source import source_of
    from prefect_sessions.seam.transcripts import TranscriptQuery

    loaded = load_or_report(args.suite)
    if loaded is None:
        return EXIT_INVALID

    async def work() -> int:
        out = _writable(args.out, args.force)
        query = TranscriptQuery(
            start=_date(args.since, end=False),
            end=_date(args.until, end=True),
            environment=args.environment,
            tag=args.tag,
            limit=args.max,
            unredacted=args.unredacted,
        )
        source = source_of(loaded.suite, max_share=args.max_share)
        name = args.name or f"{loaded.suite.name}-recorded"
        made = await record(source, query, name=name, threshold=args.threshold)
        for note in made.notes:
            _say("record", note)
        for skipped in made.skipped:
            print(f"skipped {skipped.source_id}: {skipped.reason}")
        if not made.conversations:
            _say("record", "no conversation matched: widen --since/--until, --tag or --environment")
            return EXIT_INVALID
        await asyncio.to_thread(out.write_text, made.text, encoding="utf-8")
        print(
            f"Recorded {made.conversations} conversations from {source.provider.name} into {out} "
            f"({made.folded} duplicates folded, {len(made.skipped)} skipped)"
            + ("; text as said (--unredacted)" if args.unredacted else "; text redacted")
        )
        print(f"Review it, then run it: prefect-sessions run {out}")
        return EXIT_PASSED

    return _guarded("record", work)


def crawl_command(args: argparse.Namespace) -> int:
    from prefect_sessions.recording.crawl import CrawlLimits, crawl
    from prefect_sessions.recording.source import source_of

    loaded = load_or_report(args.suite)
    if loaded is None:
        return EXIT_INVALID

    async def work() -> int:
        out = _writable(args.out, args.force)
        limits = CrawlLimits(
            depth=args.depth,
            max_paths=args.max_paths,
            ignore=tuple(args.ignore or ()),
            exit_on=tuple(args.exit_on or ()),
            concurrency=args.concurrency,
        )
        source = source_of(loaded.suite, max_share=args.max_share)
        name = args.name or f"{loaded.suite.name}-crawled"
        found = await crawl(source, limits, name=name, threshold=args.threshold)
        for path, why in found.unfinished:
            shown = " > ".join(path) or "(the launch)"
            print(f"could not finish {shown}: {why}")
        for line in found.capped:
            _say("crawl", line)
        if not found.text:
            _say("crawl", "no path could be finished: see the lines above")
            return EXIT_STOPPED
        await asyncio.to_thread(out.write_text, found.text, encoding="utf-8")
        print(
            f"Crawled {len(found.paths)} button paths into {out} ({found.loops} led back to a "
            f"state already seen, {len(found.unfinished)} could not be finished)"
        )
        return EXIT_PASSED

    return _guarded("crawl", work)


def update_command(args: argparse.Namespace) -> int:
    from prefect_sessions.recording.source import source_of
    from prefect_sessions.recording.update import refuse_in_ci, update_expectations

    refusal = refuse_in_ci()
    if refusal is not None:
        _say("run", refusal)
        return EXIT_INVALID
    loaded = load_or_report(args.suite, selection_of(args.tags, args.ids))
    if loaded is None:
        return EXIT_INVALID

    async def work() -> int:
        before = await asyncio.to_thread(Path(args.suite).read_text, encoding="utf-8")
        source = source_of(loaded.suite, max_share=args.max_share, rate=args.rate)
        made = await update_expectations(loaded, source, before, threshold=args.threshold)
        for line in made.failed:
            print(f"not updated, it could not run: {line}")
        for left in made.left:
            print(f"left as written (dataset, templates or simulated user): {left}")
        if made.diff:
            print(made.diff, end="" if made.diff.endswith("\n") else "\n")
            await asyncio.to_thread(Path(args.suite).write_text, made.text, encoding="utf-8")
        for removed in made.removed:
            print(f"removed: {removed}")
        print(
            f"{args.suite}: {made.line()}"
            + ("" if made.diff else " (nothing changed)")
            + "; review the diff, then commit it"
        )
        return EXIT_PASSED

    return _guarded("run", work)
