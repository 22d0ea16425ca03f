"""Running conversations: turns in order, expectations checked, many conversations at once.

Provider-neutral: it speaks only the adapter protocol. A conversation whose provider failed in a
way a fresh session may cure (unavailable, rate limited, outcome unknown) is retried whole from a
new session; an expectation that does not hold is a verdict and is never retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from prefect_sessions.conversation.budget import BudgetGuard
from prefect_sessions.conversation.dataset import Conversation
from prefect_sessions.conversation.outputs import Taken, take_all
from prefect_sessions.conversation.results import (
    ConversationResult,
    ResultStore,
    Status,
    TurnRecord,
)
from prefect_sessions.errors import (
    OutcomeUnknownError,
    PrefectSessionsError,
    ProviderUnavailableError,
    RateLimitedError,
    RunStoppedError,
)
from prefect_sessions.http.tally import tallying
from prefect_sessions.seam.adapter import (
    ConversationAdapter,
    ConversationFailure,
    ReportsUsage,
)
from prefect_sessions.seam.turns import Reply

#: Failures a fresh session may cure, so the whole conversation is tried again.
RESTARTABLE = (OutcomeUnknownError, ProviderUnavailableError, RateLimitedError)


@dataclass
class RunCounters:
    """Verdicts of one batch (of one chunk task, or of a whole run when added up). Requests are
    counted by the engine's tallies (:mod:`prefect_sessions.http.tally`), not here."""

    passed: int = 0
    failed: int = 0
    errored: int = 0

    def add(self, other: RunCounters) -> None:
        self.passed += other.passed
        self.failed += other.failed
        self.errored += other.errored

    def count(self, result: ConversationResult) -> None:
        if result.status == "passed":
            self.passed += 1
        elif result.status == "failed":
            self.failed += 1
        else:
            self.errored += 1

    @property
    def conversations(self) -> int:
        return self.passed + self.failed + self.errored


@dataclass
class _Trail:
    """What the attempts of a conversation leave: the last attempt's turn records and replies,
    and the variables last read (for named outputs)."""

    records: list[TurnRecord] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    variables: dict[str, Any] | None = None


async def _attempt(
    adapter: ConversationAdapter,
    conversation: Conversation,
    trail: _Trail,
    usage: dict[str, float],
) -> tuple[Status, str | None]:
    trail.records.clear()
    trail.replies.clear()
    trail.variables = None
    session = await adapter.start(conversation.id, conversation.variables)
    try:
        for number, turn in enumerate(conversation.turns, start=1):
            try:
                reply = await adapter.turn(session, turn)
            except ConversationFailure as exc:
                trail.records.append(TurnRecord(turn=turn.describe(), failures=[str(exc)]))
                return "failed", f"turn {number} ({turn.describe()}): {exc}"
            trail.replies.append(reply)
            variables = await adapter.variables(session) if turn.needs_variables else None
            if variables is not None:
                trail.variables = variables
            failed = [
                (e.kind, failure)
                for e in turn.expect
                if (failure := e.failure(reply, variables)) is not None
            ]
            failures = [failure for _, failure in failed]
            trail.records.append(
                TurnRecord(
                    turn=turn.describe(),
                    messages=reply.messages,
                    trace_types=reply.trace_types,
                    buttons=reply.buttons,
                    latency_ms=round(reply.latency_ms, 1),
                    failures=failures,
                    failed_kinds=[kind for kind, _ in failed],
                )
            )
            if failures:
                # Later turns build on this one: stop at the first turn that went wrong.
                return "failed", f"turn {number} ({turn.describe()}): {failures[0]}"
        return "passed", None
    finally:
        # Outputs and cleanup are best effort; the verdict stands.
        if any(output.needs_variables for output in conversation.outputs.values()):
            with contextlib.suppress(PrefectSessionsError):
                trail.variables = await adapter.variables(session)
        with contextlib.suppress(PrefectSessionsError):
            await adapter.end(session)
        if _reports_usage(adapter):
            for name, amount in cast(ReportsUsage, adapter).usage(session).items():
                usage[name] = round(usage.get(name, 0.0) + amount, 4)


@functools.cache
def _usage_reporting(kind: type) -> bool:
    # A runtime-checkable protocol's isinstance walks its attributes each time: once per class.
    return issubclass(kind, ReportsUsage)


def _reports_usage(adapter: ConversationAdapter) -> bool:
    return _usage_reporting(type(adapter))


async def run_conversation(
    adapter: ConversationAdapter, conversation: Conversation, *, restarts: int = 1
) -> ConversationResult:
    """Run one conversation to a verdict. Never raises for provider or data problems: they
    become an ``errored`` result with the reason.

    Raises:
        RunStoppedError: what the run depends on went away (the provider stopped answering);
            this conversation gets no verdict, so a resume runs it again.
    """
    started = time.perf_counter()
    attempts = 0
    usage: dict[str, float] = {}  # what every attempt cost, restarts included
    trail = _Trail()
    with tallying() as tally:  # this conversation's requests, among all those in flight
        while True:
            attempts += 1
            error: Exception | None = None
            try:
                status, reason = await _attempt(adapter, conversation, trail, usage)
            except RunStoppedError:
                raise
            except RESTARTABLE as exc:
                if attempts <= restarts:
                    continue
                status, reason, error = "errored", str(exc), exc
            except PrefectSessionsError as exc:
                status, reason, error = "errored", str(exc), exc
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                # A provider answer we could not make sense of must fail this conversation only.
                reason = f"unexpected answer ({type(exc).__name__}: {exc})"
                status, error = "errored", exc
            break
    outputs, notes = take_all(
        conversation.outputs,
        Taken(
            replies=trail.replies,
            variables=trail.variables,
            status=status,
            reason=reason,
            counts={"requests": tally.requests, "rate_limited": tally.rate_limited},
            usage=usage,
        ),
    )
    return ConversationResult(
        id=conversation.id,
        status=status,
        reason=reason,
        error_type=type(error).__name__ if error is not None else None,
        origin=conversation.origin,
        fingerprint=conversation.fingerprint,
        tags=list(conversation.tags),
        repetition=conversation.repetition,
        repeats=conversation.repeats,
        pass_rate=conversation.pass_rate,
        attempts=attempts,
        requests=tally.requests,
        rate_limited=tally.rate_limited,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
        turns=trail.records,
        usage=usage,
        position=conversation.position,
        row=dict(conversation.row),
        outputs=outputs,
        output_notes=notes,
    )


async def run_conversations(
    adapter: ConversationAdapter,
    conversations: Iterable[Conversation],
    *,
    concurrency: int,
    store: ResultStore,
    on_result: Callable[[ConversationResult], None] | None = None,
    restarts: int = 1,
    slots: asyncio.Semaphore | None = None,
    dispatched: asyncio.Event | None = None,
    budget: BudgetGuard | None = None,
) -> RunCounters:
    """Run ``conversations`` with at most ``concurrency`` at once; append each result to
    ``store`` as it finishes. Conversations are pulled lazily from the iterable.

    ``slots``, shared by several calls on one event loop, caps the conversations in flight across
    all of them: when one call's last conversations leave slots idle, another call takes them.
    ``dispatched`` is set once every conversation has been taken (the last ones may still be in
    flight), so that a caller can start the next batch while these finish. ``budget`` is asked
    before each conversation starts and told what each spent.

    Raises:
        RunStoppedError: the provider went away. No new conversation starts; those in flight end
            first, and every result already stored stays.
    """
    counters = RunCounters()
    source: Iterator[Conversation] = iter(conversations)
    gate: contextlib.AbstractAsyncContextManager[object] = slots or contextlib.nullcontext()
    stopped: list[RunStoppedError] = []

    async def worker() -> None:
        while not stopped:
            async with gate:  # take a slot before a conversation, so none waits holding one
                if stopped:
                    return
                conversation = next(source, None)  # shared: each conversation to one worker
                if conversation is None:
                    if dispatched is not None:
                        dispatched.set()
                    return
                try:
                    if budget is not None:
                        budget.admit(conversation)  # never started: a resume runs it
                    result = await run_conversation(adapter, conversation, restarts=restarts)
                except RunStoppedError as exc:
                    # No verdict for this one; the others in flight finish (or stop the same way).
                    if budget is not None:
                        budget.release(conversation)
                    stopped.append(exc)
                    return
                if budget is not None:
                    budget.count(conversation, result.requests, result.usage)
            store.append(result)
            counters.count(result)
            if on_result is not None:
                on_result(result)

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        if dispatched is not None:
            dispatched.set()
    if stopped:
        raise stopped[0]
    return counters
