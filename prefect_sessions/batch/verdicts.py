"""From the results of a run's conversation runs to one verdict per conversation, and the run's
latency figures.

A conversation run once has the verdict of its run. A repeated one (``repeat: 5``) passes when
the share of its runs that passed reaches its ``pass_rate``; one with some passes and some
failures is *flaky*, whatever its verdict.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from statistics import median
from typing import Any

from pydantic import BaseModel

from prefect_sessions.conversation.results import ConversationResult, Status


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (``share`` 0.95 for p95) of ``values``; 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return round(ordered[rank - 1], 1)


@dataclass(slots=True)
class Verdict:
    """One conversation's verdict over its runs, with what a person triages by.

    A plain slotted class, not a model: a run of 100,000 conversations holds one of each until its
    summary and reports are made (a model held about four times the memory).
    """

    id: str
    status: Status
    runs: int = 1
    passes: int = 0
    #: The share of runs that had to pass.
    pass_rate: float = 1.0
    #: Some runs passed and some did not.
    flaky: bool = False
    tags: tuple[str, ...] = ()
    #: Attempts over all runs (restarts included).
    attempts: int = 1
    #: Turns taken in its last run.
    turns: int = 0
    #: Median duration of its runs.
    duration_ms: float = 0.0
    turn_p95_ms: float = 0.0
    requests: int = 0
    rate_limited: int = 0
    #: The first failure, for a non-pass.
    reason: str | None = None
    #: What kind of failure, for grouping.
    cause: str | None = None
    usage: dict[str, float] = field(default_factory=dict)
    #: The lowest score its judged expectations got over its runs (None: none).
    judge_score: float | None = None

    @property
    def observed_pass_rate(self) -> float:
        return self.passes / self.runs if self.runs else 0.0

    def as_json(self) -> dict[str, Any]:
        """Its fields, as the JSON report writes them."""
        return {**asdict(self), "tags": list(self.tags)}


def cause_of(result: ConversationResult) -> str | None:
    """What kind of failure a result is: ``expectation 'contains'``, ``step``, or the error's
    type (``error ProviderUnavailableError``); None for a pass."""
    if result.status == "passed":
        return None
    if result.status == "errored":
        return f"error {result.error_type or 'unknown'}"
    for turn in result.turns:
        if turn.failed_kinds:
            return f"expectation '{turn.failed_kinds[0]}'"
    return "step could not be taken"


def _verdict(runs: list[ConversationResult]) -> Verdict:
    last = runs[-1]
    passes = sum(1 for run in runs if run.status == "passed")
    threshold = last.pass_rate
    status: Status
    if passes / len(runs) >= threshold:
        status = "passed"
    elif any(run.status == "failed" for run in runs):
        status = "failed"
    else:
        status = "errored"
    first_bad = next((run for run in runs if run.status != "passed"), None)
    latencies = [turn.latency_ms for run in runs for turn in run.turns if turn.latency_ms > 0]
    return Verdict(
        id=last.id,
        status=status,
        runs=len(runs),
        passes=passes,
        pass_rate=threshold,
        flaky=0 < passes < len(runs),
        tags=tuple(sys.intern(tag) for tag in last.tags),  # a few tags, shared by many
        attempts=sum(run.attempts for run in runs),
        turns=len(last.turns),
        duration_ms=round(median(run.duration_ms for run in runs), 1),
        turn_p95_ms=percentile(latencies, 0.95),
        requests=sum(run.requests for run in runs),
        rate_limited=sum(run.rate_limited for run in runs),
        reason=first_bad.reason if first_bad is not None and status != "passed" else None,
        cause=cause_of(first_bad) if first_bad is not None and status != "passed" else None,
        usage=summed_usage(run.usage for run in runs),
        judge_score=lowest_score(runs),
    )


def lowest_score(runs: Iterable[ConversationResult]) -> float | None:
    """The lowest score of the judged expectations of ``runs`` (its weakest point), if any."""
    scores = [
        judgement.score
        for run in runs
        for judgement in [*run.judgements, *(j for t in run.turns for j in t.judgements)]
        if judgement.score is not None
    ]
    return min(scores) if scores else None


def summed_usage(amounts: Iterable[dict[str, float]]) -> dict[str, float]:
    """Named usage amounts added up (a conversation's runs, a run's conversations)."""
    total: dict[str, float] = {}
    for usage in amounts:
        for name, amount in usage.items():
            total[name] = round(total.get(name, 0.0) + amount, 4)
    return total


class LatencyFigures(BaseModel):
    """How long turns and whole conversations took, over every run."""

    turn_p50_ms: float = 0.0
    turn_p95_ms: float = 0.0
    conversation_p50_ms: float = 0.0
    conversation_p95_ms: float = 0.0

    @classmethod
    def of(cls, turns: Sequence[float], conversations: Sequence[float]) -> LatencyFigures:
        return cls(
            turn_p50_ms=percentile(turns, 0.5),
            turn_p95_ms=percentile(turns, 0.95),
            conversation_p50_ms=percentile(conversations, 0.5),
            conversation_p95_ms=percentile(conversations, 0.95),
        )


def verdicts(results: Iterable[ConversationResult]) -> list[Verdict]:
    """One verdict per conversation, in the order conversations first appear in ``results``
    (the latest result of each run counts: a resumed run may have retried one)."""
    latest: dict[str, ConversationResult] = {}
    for result in results:
        latest[result.key] = result
    return digest(latest.values()).verdicts


@dataclass
class Digest:
    """What a run's summary and reports read from its results: a verdict per conversation, the
    latency figures, and for each conversation that did not pass, the first of its runs that did
    not pass (the transcript a person reads). Passed transcripts are not kept."""

    verdicts: list[Verdict]
    latency: LatencyFigures
    failing: list[ConversationResult]


def digest(latest: Iterable[ConversationResult]) -> Digest:
    """The :class:`Digest` of ``latest`` (each conversation run once: its latest result), read in
    one pass: only a repeated conversation's runs are held, until its last one is read, so a run
    of 100,000 conversations is never in memory at once."""
    judged: list[Verdict | None] = []
    failing: list[ConversationResult] = []
    waiting: dict[str, tuple[int, list[ConversationResult]]] = {}  # a repeated one's runs
    turns, conversations = array("d"), array("d")

    def judge(slot: int, runs: list[ConversationResult]) -> None:
        runs.sort(key=lambda run: run.repetition)
        judged[slot] = verdict = _verdict(runs)
        if verdict.status != "passed":
            failing.append(next(run for run in runs if run.status != "passed"))

    for result in latest:
        conversations.append(result.duration_ms)
        turns.extend(turn.latency_ms for turn in result.turns if turn.latency_ms > 0)
        slot, runs = waiting.pop(result.id, (len(judged), []))
        if slot == len(judged):
            judged.append(None)
        runs.append(result)
        if len(runs) < result.repeats:
            waiting[result.id] = (slot, runs)
        else:
            judge(slot, runs)
    for slot, runs in waiting.values():  # a stopped run's repeated ones, part done
        judge(slot, runs)
    return Digest(
        verdicts=[verdict for verdict in judged if verdict is not None],
        latency=LatencyFigures.of(turns, conversations),
        failing=failing,
    )
