"""Running a suite's conversations in this process: chunk tasks, shared slots, a results file.

Granularity decides speed (design.md): a Prefect task runs a *chunk* of conversations, never a
turn. Turns are plain coroutines paced by the HTTP engine; at most ``concurrency`` conversations
are in flight across all chunks. Results stream to a JSONL file as conversations finish, so memory
does not grow with the suite and a re-run with the same run key resumes where the last one stopped.

The whole suite is one :class:`Share`; a sharded run (:mod:`.shards`) gives each work-pool worker
one share of it.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import cast
from uuid import UUID

from prefect import task
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.context import FlowRunContext
from prefect.states import Failed
from prefect.utilities.annotations import quote
from pydantic import SecretStr

from prefect_sessions.batch.estimate import conversation_requests
from prefect_sessions.conversation.budget import BudgetGuard
from prefect_sessions.conversation.dataset import (
    FINGERPRINT_PREFIX,
    Conversation,
    PlannedRun,
    iter_planned,
)
from prefect_sessions.conversation.judging import Judge, open_judge
from prefect_sessions.conversation.results import ConversationResult, ResultStore
from prefect_sessions.conversation.runner import RunCounters, run_conversations
from prefect_sessions.conversation.suite import LoadedSuite, Suite
from prefect_sessions.errors import RunStoppedError
from prefect_sessions.http.pacers import Pacers
from prefect_sessions.http.tally import Tally, tallying
from prefect_sessions.providers import get_provider
from prefect_sessions.run_options import RunOptions
from prefect_sessions.seam.adapter import ConnectionSettings, ConversationAdapter

#: Chunks whose conversations wait for a slot at once. A chunk counts until every conversation
#: of it has started, not until they all end: while a chunk finishes its last conversations, the
#: next ones already take the slots these free, so slots never idle at a chunk's tail.
PARALLEL_CHUNKS = 2
#: The judge's answers, beside the run's results (every run of the results folder shares it).
JUDGE_CACHE = "judge-cache.sqlite"
#: Chunks held at once (in memory, in flight), whatever their state.
MAX_CHUNKS = 4

ResultListener = Callable[[ConversationResult], None]
# Passed in through the caller's context, not kept in a process-wide table: Prefect's task runner
# copies the context into the threads that run the chunk tasks.
_listener: ContextVar[ResultListener | None] = ContextVar("result_listener", default=None)


@contextmanager
def listening(listener: ResultListener) -> Iterator[None]:
    """Call ``listener`` for each result of the runs started inside the block, in this process
    (the CLI's progress bar)::

        with listening(progress.advance):
            batch_conversations(suite_path="suite.yaml")
    """
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def in_a_run() -> bool:
    """Whether this code runs inside a flow run (the pipeline step may be called outside one:
    then it publishes no artifacts, which Prefect keeps only for runs)."""
    return FlowRunContext.get() is not None


def slug(text: str) -> str:
    """Lowercase letters, digits and dashes (what Prefect artifact keys accept)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "suite"


def new_run_key() -> str:
    # The time for people, a random suffix so two runs started in the same second never share
    # a results file (the second would "resume" the first and skip its conversations).
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def connection_settings(
    suite: Suite,
    options: RunOptions | None = None,
    *,
    pacers: Pacers | None = None,
    environ: dict[str, str] | None = None,
) -> ConnectionSettings:
    """How this run reaches the provider: a block given to the run, the suite's saved block, or
    the suite's inline connection with the key read from the environment; the run's base URL,
    rate and share on top (none without ``options``), and the run's pacers."""
    environ = dict(os.environ) if environ is None else environ
    options = options or RunOptions(suite_path=suite.name)
    connection = suite.connection
    api_key = None
    if connection is not None and connection.api_key_env:
        value = environ.get(connection.api_key_env)
        api_key = SecretStr(value) if value else None
    return ConnectionSettings(
        credentials_block=suite.credentials,
        block=options.credentials,
        base_url=options.base_url or (connection.base_url if connection else None),
        api_key=api_key,
        fields=connection.provider_fields if connection else {},
        rate=options.rate,
        max_share=options.max_share or suite.max_share,
        cleanup=suite.cleanup,
        pacers=pacers,
    )


@dataclass(frozen=True)
class Share:
    """The conversations whose position in the suite is ``index`` modulo ``of``.

    Every ``of``-th conversation, rather than a contiguous block, so each share gets a like mix of
    the suite's datasets and a like running time.
    """

    index: int = 0
    of: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.of:
            raise ValueError(f"shard must be between 0 and {self.of - 1}, not {self.index}")

    def holds(self, position: int) -> bool:
        return position % self.of == self.index

    def size(self, total: int) -> int:
        """How many of ``total`` conversations fall in this share."""
        return len(range(self.index, total, self.of))

    def label(self) -> str:
        return f"shard {self.index + 1} of {self.of}"


WHOLE_SUITE = Share()


def results_file(results_dir: str | Path, suite_name: str, run_key: str, share: Share) -> Path:
    """Where the results of one run (or of one share of it) are kept."""
    part = "" if share == WHOLE_SUITE else f".shard-{share.index + 1}-of-{share.of}"
    return Path(results_dir) / slug(suite_name) / f"{slug(run_key)}{part}.jsonl"


@dataclass
class ShareOutcome:
    """What running a share of a suite did: its size, what an earlier attempt had finished, the
    verdicts and the requests of this attempt."""

    conversations: int
    resumed: int
    store: ResultStore
    counters: RunCounters = field(default_factory=RunCounters)
    sent: Tally = field(default_factory=Tally)


_heap_settled = False


def _settle_heap() -> None:
    """Once per process, as the first chunk starts: freeze what is alive (Prefect's modules and
    ours, about 300,000 objects), so that the collector's full passes skip it. A full pass over
    that heap took 130 to 220 ms with the event loop stopped, two to five times per 1,000
    conversations; after the freeze it takes under 10 ms. There is no collection first: it would
    be one more such pass, and the garbage it finds then is a few hundred objects (0.1 MB), kept
    for the process's life. So are cycles among the frozen objects that later become garbage
    (reference counting frees the rest)."""
    global _heap_settled
    if not _heap_settled:
        _heap_settled = True
        gc.freeze()


@task(name="run-conversations", cache_policy=NO_CACHE, persist_result=False)
async def run_conversation_chunk(
    adapter: ConversationAdapter,
    conversations: list[Conversation],
    results_path: str,
    concurrency: int,
    run_key: str,
    slots: asyncio.Semaphore | None = None,
    dispatched: asyncio.Event | None = None,
    budget: BudgetGuard | None = None,
    judge: Judge | None = None,
) -> RunCounters:
    """Run a chunk of conversations through an open provider adapter; append each result to the
    results file as it finishes; ask ``budget`` before each starts; ``judge`` checks judged
    expectations.

    ``adapter``, ``slots`` and ``dispatched`` belong to the flow's event loop, which this task
    runs on when awaited: the chunks of a run share one connection pool and cap conversations in
    flight together, and the next chunk starts once every conversation of this one has.
    """
    _settle_heap()
    try:
        with ResultStore(results_path).appending() as store:
            return await run_conversations(
                adapter,
                conversations,
                concurrency=min(concurrency, len(conversations)),
                store=store,
                on_result=_listener.get(),
                slots=slots,
                dispatched=dispatched,
                budget=budget,
                judge=judge,
            )
    except RunStoppedError as exc:
        # The task run fails with the cause as its one-line message, not a traceback; awaiting
        # it raises ``exc`` again for the flow.
        stopped: RunCounters = Failed(message=str(exc), data=exc)  # type: ignore[assignment]
        return stopped


def _chunk_name(chunk: list[Conversation]) -> str:
    """The chunk's task run name. Prefect formats it with the task's parameters: braces in an id
    are doubled so they stay text."""
    if len(chunk) == 1:
        name = f"conversation {chunk[0].key}"
    else:
        name = f"{len(chunk)} conversations: {chunk[0].key} to {chunk[-1].key}"
    return name[:200].replace("{", "{{").replace("}", "}}")


def _chunks(conversations: Iterator[Conversation], size: int) -> Iterator[list[Conversation]]:
    chunk: list[Conversation] = []
    for conversation in conversations:
        chunk.append(conversation)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


#: A resumed run holds up to this many of the conversations it has left from its counting pass,
#: so that it need not walk the suite a second time (a resume usually has few left).
HELD_FROM_COUNTING = 2_000


@dataclass
class _Plan:
    """What a share of a suite has left to run, after what an earlier attempt finished."""

    total: int
    resumed: int
    to_run: Iterator[Conversation]

    @classmethod
    def of(cls, loaded: LoadedSuite, share: Share, store: ResultStore) -> _Plan:
        finished = store.finished()

        def mine() -> Iterator[PlannedRun]:
            for position, planned in enumerate(iter_planned(loaded)):
                if share.holds(position):
                    yield planned

        def done(planned: PlannedRun) -> bool:
            earlier = finished.get(planned.key)
            if earlier is None or earlier == planned.fingerprint:
                return earlier is not None
            # A run an earlier version started holds the older fingerprint of the templated
            # turns: template this one to compare.
            legacy = not earlier.startswith(FINGERPRINT_PREFIX)
            return legacy and earlier == planned.conversation().legacy_fingerprint

        total = share.size(loaded.run_count)
        if not finished:
            return cls(total=total, resumed=0, to_run=(p.conversation() for p in mine()))
        # Only a resumed run needs the pass that counts what is already done. It templates no
        # turn of what is done (the fingerprint is the spec's and the row's); what is left is
        # kept from it when it is small, else taken from a second pass.
        resumed, left = 0, list[PlannedRun]()
        for planned in mine():
            if done(planned):
                resumed += 1
            elif len(left) <= HELD_FROM_COUNTING:
                left.append(planned)
        if len(left) <= HELD_FROM_COUNTING:
            return cls(total=total, resumed=resumed, to_run=(p.conversation() for p in left))
        to_run = (p.conversation() for p in mine() if not done(p))
        return cls(total=total, resumed=resumed, to_run=to_run)


class _Progress:
    """The progress artifact, moved as chunks end without holding them: one update in flight at
    a time, the latest figure sent when it ends (ten chunks' updates each held a chunk's slot
    for the API's round trip, about 30 ms, and the last one held the run's end)."""

    def __init__(self, artifact_id: UUID) -> None:
        self.artifact_id = artifact_id
        self._latest: float | None = None
        self._sending: asyncio.Future[None] | None = None

    def move(self, progress: float) -> None:
        """Send ``progress`` (percent) after what is in flight.

        Raises:
            Exception: the update before it failed (the API went away: the run stops).
        """
        self._latest = progress
        if self._sending is not None and self._sending.done():
            self._sending.result()  # raises what the last update met
            self._sending = None
        if self._sending is None:
            self._sending = asyncio.ensure_future(self._send())

    async def _send(self) -> None:
        while self._latest is not None:
            progress, self._latest = self._latest, None
            await aupdate_progress_artifact(self.artifact_id, progress=progress)

    async def settle(self) -> None:
        """Wait for the last update (raising what it met)."""
        if self._sending is not None:
            await self._sending


class _Chunks:
    """The chunk tasks of one share on this event loop, sharing one adapter and the run's slots.

    A chunk starts when fewer than :data:`PARALLEL_CHUNKS` chunks still have conversations
    waiting to start and fewer than :data:`MAX_CHUNKS` are held. The progress artifact moves as
    each chunk ends (:class:`_Progress`); the first failure stops new chunks, and those in flight
    end first.
    """

    def __init__(
        self,
        adapter: ConversationAdapter,
        options: RunOptions,
        concurrency: int,
        results_path: Path,
        plan: _Plan,
        budget: BudgetGuard | None = None,
        judge: Judge | None = None,
    ) -> None:
        self.adapter, self.options, self.results_path = adapter, options, results_path
        self.budget, self.judge = budget, judge
        self.concurrency = concurrency
        self.total, self.done = plan.total, plan.resumed
        self.slots = asyncio.Semaphore(concurrency)
        self.waiting = asyncio.Semaphore(PARALLEL_CHUNKS)
        self.held = asyncio.Semaphore(MAX_CHUNKS)
        self.counters = RunCounters()
        self.failures: list[BaseException] = []
        self.progress: _Progress | None = None

    async def run_all(self, conversations: Iterator[Conversation]) -> None:
        pending: set[asyncio.Task[None]] = set()
        for chunk in _chunks(conversations, self.options.chunk_size):
            await self.held.acquire()
            await self.waiting.acquire()
            if self.failures:  # a chunk failed: start no more, and let those in flight end
                self.waiting.release()
                self.held.release()
                break
            job = asyncio.ensure_future(self._run(chunk))
            pending.add(job)
            job.add_done_callback(pending.discard)
        if pending:
            # Every chunk ends before the adapter closes: a chunk still running must never meet
            # a closed client and report that echo instead of the cause.
            await asyncio.gather(*pending)
        if self.progress is not None:
            try:
                await self.progress.settle()
            except Exception as exc:
                self.failures.append(exc)

    async def _run(self, chunk: list[Conversation]) -> None:
        dispatched = asyncio.Event()
        releaser = asyncio.ensure_future(self._release_when(dispatched))
        try:
            # quote(): Prefect would otherwise walk every conversation of the chunk looking for
            # futures, on this loop, stalling the conversations in flight.
            # Named by what it runs, so the UI's task list says which conversations are where.
            named = run_conversation_chunk.with_options(task_run_name=_chunk_name(chunk))
            ended: object = await named(
                quote(self.adapter),
                quote(chunk),
                str(self.results_path),
                self.concurrency,
                self.options.key,
                quote(self.slots),
                quote(dispatched),
                quote(self.budget),
                quote(self.judge),
                return_state=False,  # selects the typed overload that takes quoted arguments
            )
            if isinstance(ended, State):  # a stopped chunk returns its Failed state
                await ended.aresult()  # raises the cause kept in it
            self.counters.add(cast(RunCounters, ended))
            self.done += len(chunk)
            if self.progress is not None:
                self.progress.move(100.0 * self.done / self.total)
        except Exception as exc:
            self.failures.append(exc)
        finally:
            dispatched.set()
            await releaser
            self.held.release()

    async def _release_when(self, dispatched: asyncio.Event) -> None:
        await dispatched.wait()
        self.waiting.release()


def _budget_guard(
    loaded: LoadedSuite, options: RunOptions, store: ResultStore
) -> BudgetGuard | None:
    """The run's budget (the suite's, with the options' caps on top), counting what earlier
    attempts of the run spent (every line of its results file: each attempt spent quota)."""
    suite = loaded.suite
    budget = suite.budget.with_(options.budget) if suite.budget is not None else options.budget
    if budget is None or not budget.caps():
        return None
    provider = get_provider(suite.provider)

    def forecast(conversation: object) -> int:
        assert isinstance(conversation, Conversation)
        return conversation_requests(provider, conversation, suite.cleanup)

    return BudgetGuard(budget, forecast, earlier=store.spending())


async def run_share(
    loaded: LoadedSuite,
    options: RunOptions,
    *,
    results_path: Path,
    pacers: Pacers,
    share: Share = WHOLE_SUITE,
    progress_key: str | None = None,
    on_resume: Callable[[int, int], None] | None = None,
) -> ShareOutcome:
    """Run the conversations of ``share`` that no earlier attempt with this results file finished.

    Chunk tasks are awaited on this event loop (not submitted to threads), sharing the run's
    concurrency slots (:class:`_Chunks`). A progress artifact is updated after each chunk.

    Raises:
        RunStoppedError: what the run depends on went away; the results stored stay.
    """
    suite = loaded.suite
    store = ResultStore(results_path)
    plan = _Plan.of(loaded, share, store)
    if plan.resumed and on_resume is not None:
        on_resume(plan.resumed, plan.total)
    outcome = ShareOutcome(conversations=plan.total, resumed=plan.resumed, store=store)
    # One adapter (one connection pool) for every chunk: a new one per chunk would open new
    # connections and pay the client's set-up each time.
    settings = connection_settings(suite, options, pacers=pacers)
    cache = results_path.parent / JUDGE_CACHE if options.judge_cache else None
    async with (
        open_judge(suite, pacers=pacers, cache_path=cache) as judge,
        get_provider(suite.provider).adapter(settings) as adapter,
    ):
        concurrency = options.concurrency_for(suite.concurrency)
        budget = _budget_guard(loaded, options, store)
        chunks = _Chunks(adapter, options, concurrency, results_path, plan, budget, judge)
        where = "" if share == WHOLE_SUITE else f", {share.label()}"
        if in_a_run():
            progress_id = await acreate_progress_artifact(
                progress=100.0 * plan.resumed / plan.total if plan.total else 100.0,
                key=progress_key,
                description=f"Conversations of {suite.name} done (run {options.key}{where})",
            )
            chunks.progress = _Progress(progress_id)
        with tallying(outcome.sent):
            await chunks.run_all(plan.to_run)
    outcome.counters = chunks.counters
    if chunks.failures:
        stopped = [f for f in chunks.failures if isinstance(f, RunStoppedError)]
        raise (stopped or chunks.failures)[0]
    return outcome
