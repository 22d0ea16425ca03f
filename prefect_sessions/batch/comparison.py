"""A run compared with a baseline run of the same suite: what broke, what was fixed, what moved.

Both sides are :class:`RunRecord`: each conversation's verdict and the run's figures (latency
percentiles, requests, 429s, usage). A record is what a run publishes to Prefect
(:mod:`.history`), so the baseline may have run on another worker.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field

from prefect_sessions.conversation.results import Status

#: How far a judged conversation's lowest score must move to be shown as a change.
SCORE_CHANGE = 0.05

#: The figures a comparison shows, in this order, when both runs have them.
COMPARED_FIGURES = (
    "turn_p50_ms",
    "turn_p95_ms",
    "conversation_p50_ms",
    "conversation_p95_ms",
    "requests",
    "rate_limited",
    "requests_per_conversation",
)


class RunRecord(BaseModel):
    """What one run leaves for the next to be compared with."""

    run_key: str
    flow_run_id: str | None = None
    statuses: dict[str, Status] = Field(description="Each conversation's verdict, by id.")
    figures: dict[str, float] = Field(default_factory=dict)
    scores: dict[str, float] = Field(
        default_factory=dict, description="The lowest judged score of each judged conversation."
    )

    def failing(self) -> set[str]:
        return {id_ for id_, status in self.statuses.items() if status != "passed"}


class Change(BaseModel):
    """A figure in the baseline and now."""

    baseline: float
    current: float

    @property
    def change(self) -> float:
        return round(self.current - self.baseline, 3)

    @property
    def relative(self) -> float | None:
        """The change as a share of the baseline (None when the baseline is 0)."""
        return None if self.baseline == 0 else round(self.change / self.baseline, 4)

    def describe(self) -> str:
        relative = self.relative
        share = f" ({relative:+.0%})" if relative is not None else ""
        return f"{self.baseline:g} -> {self.current:g}{share}"


class Comparison(BaseModel):
    """A run against its baseline. Lists hold conversation ids."""

    baseline_run_key: str
    baseline_flow_run_id: str | None = None
    newly_failing: list[str] = Field(
        default_factory=list, description="Passed in the baseline, fail or error now."
    )
    fixed: list[str] = Field(default_factory=list, description="Failed before, pass now.")
    still_failing: list[str] = Field(default_factory=list)
    added: list[str] = Field(default_factory=list, description="Not in the baseline.")
    removed: list[str] = Field(default_factory=list, description="In the baseline, not now.")
    added_failing: list[str] = Field(
        default_factory=list, description="Added conversations that fail or error."
    )
    figures: dict[str, Change] = Field(default_factory=dict)
    score_changes: dict[str, Change] = Field(
        default_factory=dict,
        description=(
            "Judged conversations whose lowest score moved by SCORE_CHANGE or more (one that "
            "fell past its threshold is in newly_failing too)."
        ),
    )

    #: The conversation lists a person reads, in the order reports show them.
    LISTS: ClassVar[tuple[str, ...]] = (
        "newly_failing",
        "fixed",
        "still_failing",
        "added",
        "removed",
    )

    def lists(self) -> list[tuple[str, list[str]]]:
        """``(name, ids)`` of each list in :attr:`LISTS`."""
        return [(name, getattr(self, name)) for name in self.LISTS]

    @property
    def regressions(self) -> list[str]:
        """What this run broke: newly failing conversations, and added ones that fail."""
        return self.newly_failing + self.added_failing

    def line(self) -> str:
        return (
            f"against run {self.baseline_run_key}: {len(self.newly_failing)} newly failing, "
            f"{len(self.fixed)} fixed, {len(self.still_failing)} still failing, "
            f"{len(self.added)} added, {len(self.removed)} removed"
        )


def compare(baseline: RunRecord, current: RunRecord, *, partial: bool = False) -> Comparison:
    """``current`` against ``baseline``; ids in suite order (the current run's, then the
    baseline's for removed ones). A ``partial`` run (a selection: ``--tag``, ``--only-failed``)
    leaves conversations out on purpose, so none counts as removed."""
    before, now = baseline.statuses, current.statuses
    failing_before = baseline.failing()
    usage = sorted(name for name in current.figures if name.startswith("usage_"))
    figures = {
        name: Change(baseline=baseline.figures[name], current=current.figures[name])
        for name in (*COMPARED_FIGURES, *usage)
        if name in baseline.figures and name in current.figures
    }
    return Comparison(
        baseline_run_key=baseline.run_key,
        baseline_flow_run_id=baseline.flow_run_id,
        newly_failing=[i for i, s in now.items() if s != "passed" and before.get(i) == "passed"],
        fixed=[i for i, s in now.items() if s == "passed" and i in failing_before],
        still_failing=[i for i, s in now.items() if s != "passed" and i in failing_before],
        added=[i for i in now if i not in before],
        removed=[] if partial else [i for i in before if i not in now],
        added_failing=[i for i, s in now.items() if s != "passed" and i not in before],
        figures=figures,
        score_changes={
            i: Change(baseline=baseline.scores[i], current=score)
            for i, score in current.scores.items()
            if i in baseline.scores and abs(score - baseline.scores[i]) >= SCORE_CHANGE
        },
    )
