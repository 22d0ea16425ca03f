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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from prefect_sessions.conversation.budget import BudgetGuard
from prefect_sessions.conversation.dataset import Conversation
from prefect_sessions.conversation.judging import Judge, JudgeFailedError, Line, goal_rubric
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
from prefect_sessions.seam.judged import Judgement, SimulateSpec
from prefect_sessions.seam.turns import Expectation, Reply, Turn

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
    the variables last read (for named outputs), the transcript judges read, the conversation's
    own judgements and why a simulated one stopped."""

    records: list[TurnRecord] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    variables: dict[str, Any] | None = None
    lines: list[Line] = field(default_factory=list)
    judgements: list[Judgement] = field(default_factory=list)
    stopped: str | None = None

    def clear(self) -> None:
        self.records.clear()
        self.replies.clear()
        self.variables = None
        self.lines.clear()
        self.judgements.clear()
        self.stopped = None


def user_line(turn: Turn) -> str:
    """What the user did in a turn, as a judge reads it."""
    if turn.kind == "text":
        return str(turn.value)
    if turn.kind == "button":
        return f"(presses the button {turn.value!r})"
    if turn.kind == "launch":
        return "(opens the conversation)"
    return f"({turn.describe()})"


@dataclass
class _Attempt:
    """One attempt at a conversation: its session, and the judge that checks judged
    expectations (None when the suite has none)."""

    adapter: ConversationAdapter
    conversation: Conversation
    trail: _Trail
    usage: dict[str, float]
    judge: Judge | None
    session: Any = None

    async def run(self) -> tuple[Status, str | None]:
        conversation, trail = self.conversation, self.trail
        trail.clear()
        self.session = await self.adapter.start(conversation.id, conversation.variables)
        try:
            for number, turn in enumerate(conversation.turns, start=1):
                failure = await self._turn(number, turn)
                if failure is not None:
                    return "failed", failure
            if conversation.simulate is not None:
                failure = await self._simulated(conversation.simulate, len(conversation.turns))
                if failure is not None:
                    return "failed", failure
            return await self._conversation_judged()
        finally:
            await self._end()

    async def _turn(self, number: int, turn: Turn, *, simulated: bool = False) -> str | None:
        """Take one turn and check it; why it failed, or None."""
        trail = self.trail
        try:
            reply = await self.adapter.turn(self.session, turn)
        except ConversationFailure as exc:
            trail.records.append(
                TurnRecord(turn=turn.describe(), failures=[str(exc)], simulated=simulated)
            )
            return f"turn {number} ({turn.describe()}): {exc}"
        trail.replies.append(reply)
        variables = await self.adapter.variables(self.session) if turn.needs_variables else None
        if variables is not None:
            trail.variables = variables
        failed: list[tuple[str, str]] = [
            (e.kind, failure)
            for e in turn.expect
            if not e.judged and (failure := e.failure(reply, variables)) is not None
        ]
        exchange: list[Line] = [("User", user_line(turn)), ("Agent", reply.text)]
        judgements = [] if failed else await self._judged(turn.judged, exchange, whole=False)
        failed += [(j.kind, line) for j in judgements if (line := j.failure()) is not None]
        trail.lines.extend(exchange)
        trail.records.append(
            TurnRecord(
                turn=turn.describe(),
                messages=reply.messages,
                trace_types=reply.trace_types,
                buttons=reply.buttons,
                latency_ms=round(reply.latency_ms, 1),
                failures=[failure for _, failure in failed],
                failed_kinds=[kind for kind, _ in failed],
                judgements=judgements,
                simulated=simulated,
            )
        )
        _raise_judge_errors(judgements, f"turn {number} ({turn.describe()})")
        if failed:
            # Later turns build on this one: stop at the first turn that went wrong.
            return f"turn {number} ({turn.describe()}): {failed[0][1]}"
        return None

    async def _judged(
        self, expectations: Sequence[Expectation], lines: Sequence[Line], *, whole: bool
    ) -> list[Judgement]:
        if not expectations:
            return []
        if self.judge is None:
            raise JudgeFailedError("judged expectations need the suite's judge_model")
        repetition = self.conversation.repetition
        return [
            await self.judge.check(
                e.value, lines, whole=whole, repetition=repetition, usage=self.usage
            )
            for e in expectations
        ]

    async def _simulated(self, spec: SimulateSpec, scripted: int) -> str | None:
        """The simulated user's turns: until the goal is met, the stop marker or the budget."""
        judge = self.judge
        if judge is None:
            raise JudgeFailedError("a simulated user needs the suite's judge_model")
        repetition = self.conversation.repetition
        goal = Expectation(kind="judge", value={"rubric": goal_rubric(spec.goal)})
        for count in range(1, spec.max_turns + 1):
            said = await judge.user_turn(
                spec, self.trail.lines, repetition=repetition, usage=self.usage
            )
            if spec.stop in said or not said:
                # The goal was checked after the agent's last turn and was not met.
                self.trail.stopped = "the user said the stop marker"
                return (
                    f"the simulated user stopped after {count - 1} turns without its goal met "
                    f"({spec.goal!r})"
                )
            number = scripted + count
            failure = await self._turn(number, Turn(kind="text", value=said), simulated=True)
            if failure is not None:
                self.trail.stopped = f"turn {number} failed"
                return failure
            (met,) = await self._judged([goal], self.trail.lines, whole=True)
            _raise_judge_errors([met], f"the goal check after turn {number}")
            if met.passed:
                self.trail.stopped = f"goal met after {count} user turns"
                return None
        self.trail.stopped = f"budget spent: {spec.max_turns} user turns"
        return f"the simulated user's goal was not met in {spec.max_turns} turns ({spec.goal!r})"

    async def _conversation_judged(self) -> tuple[Status, str | None]:
        judgements = await self._judged(self.conversation.expect, self.trail.lines, whole=True)
        self.trail.judgements = judgements
        _raise_judge_errors(judgements, "the conversation")
        failures = [line for j in judgements if (line := j.failure()) is not None]
        if failures:
            return "failed", f"the conversation: {failures[0]}"
        return "passed", None

    async def _end(self) -> None:
        # Outputs and cleanup are best effort; the verdict stands.
        adapter, session, trail = self.adapter, self.session, self.trail
        if any(output.needs_variables for output in self.conversation.outputs.values()):
            with contextlib.suppress(PrefectSessionsError):
                trail.variables = await adapter.variables(session)
        with contextlib.suppress(PrefectSessionsError):
            await adapter.end(session)
        if _reports_usage(adapter):
            for name, amount in cast(ReportsUsage, adapter).usage(session).items():
                self.usage[name] = round(self.usage.get(name, 0.0) + amount, 4)


def _raise_judge_errors(judgements: Sequence[Judgement], where: str) -> None:
    """A judged expectation without a verdict errors the conversation: never a pass."""
    for judgement in judgements:
        if judgement.error is not None:
            raise JudgeFailedError(f"{where}: {judgement.failure()}")


@functools.cache
def _usage_reporting(kind: type) -> bool:
    # A runtime-checkable protocol's isinstance walks its attributes each time: once per class.
    return issubclass(kind, ReportsUsage)


def _reports_usage(adapter: ConversationAdapter) -> bool:
    return _usage_reporting(type(adapter))


async def run_conversation(
    adapter: ConversationAdapter,
    conversation: Conversation,
    *,
    restarts: int = 1,
    judge: Judge | None = None,
) -> ConversationResult:
    """Run one conversation to a verdict. Never raises for provider or data problems: they
    become an ``errored`` result with the reason. ``judge`` checks judged expectations and
    plays simulated users; a judged expectation without a verdict errors the conversation.

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
                attempt = _Attempt(adapter, conversation, trail, usage, judge)
                status, reason = await attempt.run()
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
            stopped=trail.stopped,
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
        judgements=trail.judgements,
        stopped=trail.stopped,
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
    judge: Judge | None = None,
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
                    result = await run_conversation(
                        adapter, conversation, restarts=restarts, judge=judge
                    )
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
