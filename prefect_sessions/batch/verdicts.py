"""From the results of a run's conversation runs to one verdict per conversation, and the run's
latency figures.

A conversation run once has the verdict of its run. A repeated one (``repeat: 5``) passes when
the share of its runs that passed reaches its ``pass_rate``; one with some passes and some
failures is *flaky*, whatever its verdict.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from statistics import median

from pydantic import BaseModel, Field

from prefect_sessions.conversation.results import ConversationResult, Status


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (``share`` 0.95 for p95) of ``values``; 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return round(ordered[rank - 1], 1)


class Verdict(BaseModel):
    """One conversation's verdict over its runs, with what a person triages by."""

    id: str
    status: Status
    runs: int = 1
    passes: int = 0
    pass_rate: float = Field(default=1.0, description="The share of runs that had to pass.")
    flaky: bool = Field(default=False, description="Some runs passed and some did not.")
    tags: list[str] = Field(default_factory=list)
    attempts: int = Field(default=1, description="Attempts over all runs (restarts included).")
    turns: int = Field(default=0, description="Turns taken in its last run.")
    duration_ms: float = Field(default=0.0, description="Median duration of its runs.")
    turn_p95_ms: float = 0.0
    requests: int = 0
    rate_limited: int = 0
    reason: str | None = Field(default=None, description="The first failure, for a non-pass.")
    cause: str | None = Field(default=None, description="What kind of failure, for grouping.")
    usage: dict[str, float] = Field(default_factory=dict)
    judge_score: float | None = Field(
        default=None,
        description="The lowest score its judged expectations got over its runs (None: none).",
    )

    @property
    def observed_pass_rate(self) -> float:
        return self.passes / self.runs if self.runs else 0.0


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
        tags=last.tags,
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


def verdicts(results: Iterable[ConversationResult]) -> list[Verdict]:
    """One verdict per conversation, in the order conversations first appear in ``results``
    (the latest result of each run counts: a resumed run may have retried one)."""
    latest: dict[str, ConversationResult] = {}
    for result in results:
        latest[result.key] = result
    grouped: dict[str, list[ConversationResult]] = {}
    for result in latest.values():
        grouped.setdefault(result.id, []).append(result)
    return [_verdict(sorted(runs, key=lambda run: run.repetition)) for runs in grouped.values()]


class LatencyFigures(BaseModel):
    """How long turns and whole conversations took, over every run."""

    turn_p50_ms: float = 0.0
    turn_p95_ms: float = 0.0
    conversation_p50_ms: float = 0.0
    conversation_p95_ms: float = 0.0


def latency_figures(results: Iterable[ConversationResult]) -> LatencyFigures:
    turns: list[float] = []
    conversations: list[float] = []
    for result in results:
        conversations.append(result.duration_ms)
        turns.extend(turn.latency_ms for turn in result.turns if turn.latency_ms > 0)
    return LatencyFigures(
        turn_p50_ms=percentile(turns, 0.5),
        turn_p95_ms=percentile(turns, 0.95),
        conversation_p50_ms=percentile(conversations, 0.5),
        conversation_p95_ms=percentile(conversations, 0.95),
    )
