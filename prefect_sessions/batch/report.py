"""What a run tells people: a summary, a JSON report, JUnit XML, a per-conversation table and a
markdown page of failures grouped by cause."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from pydantic import BaseModel, Field

from prefect_sessions.batch.comparison import Comparison, RunRecord
from prefect_sessions.batch.verdicts import LatencyFigures, Verdict
from prefect_sessions.conversation.results import ConversationResult
from prefect_sessions.run_options import FailOn
from prefect_sessions.seam.judged import Judgement

#: Failures shown with their transcript in the markdown report; the JSONL file has them all.
MAX_TRANSCRIPTS = 50


class RunSummary(BaseModel):
    """The totals of one run of a suite (a resumed run counts what earlier attempts finished)."""

    suite: str
    provider: str
    run_key: str
    conversations: int = Field(description="Conversations the run took (its selection).")
    passed: int
    failed: int
    errored: int
    runs: int = Field(default=0, description="Conversation runs, repeats included.")
    flaky: list[str] = Field(default_factory=list, description="Some runs passed, some not.")
    resumed: int = 0
    requests: int
    rate_limited: int
    duration_s: float
    results_path: str
    shards: int = 1
    latency: LatencyFigures = Field(default_factory=LatencyFigures)
    usage: dict[str, float] = Field(
        default_factory=dict, description="What the provider reports the run cost, in total."
    )
    selection: str = "every conversation"
    fail_on: FailOn = "any"
    comparison: Comparison | None = None
    flow_run_id: str | None = None
    output_path: str | None = Field(default=None, description="Where the output dataset is.")
    output_rows: int | None = Field(default=None, description="Rows in the output dataset.")

    @property
    def ok(self) -> bool:
        """Whether every conversation passed."""
        return self.failed == 0 and self.errored == 0 and self.passed == self.conversations

    @property
    def failing(self) -> bool:
        """Whether the run fails by its ``fail_on`` rule (with no baseline, every failure is a
        regression)."""
        if self.fail_on == "never":
            return False
        if self.fail_on == "regressions" and self.comparison is not None:
            return bool(self.comparison.regressions)
        return not self.ok

    @property
    def requests_per_conversation(self) -> float:
        runs = self.runs or self.conversations
        return round(self.requests / runs, 2) if runs else 0.0

    def figures(self) -> dict[str, float]:
        """The run's numbers, flat: what a later run is compared with."""
        return {
            "conversations": self.conversations,
            "passed": self.passed,
            "failed": self.failed,
            "errored": self.errored,
            "runs": self.runs,
            "flaky": len(self.flaky),
            "requests": self.requests,
            "rate_limited": self.rate_limited,
            "requests_per_conversation": self.requests_per_conversation,
            "duration_s": self.duration_s,
            **self.latency.model_dump(),
            **{f"usage_{name}": amount for name, amount in self.usage.items()},
        }

    def record(self, verdicts: Iterable[Verdict]) -> RunRecord:
        return RunRecord(
            run_key=self.run_key,
            flow_run_id=self.flow_run_id,
            statuses={verdict.id: verdict.status for verdict in verdicts},
            figures=self.figures(),
            scores={v.id: v.judge_score for v in verdicts if v.judge_score is not None},
        )

    def line(self) -> str:
        """One line for a terminal or a log."""
        share = self.rate_limited / self.requests if self.requests else 0.0
        flaky = f", {len(self.flaky)} flaky" if self.flaky else ""
        return (
            f"{self.suite}: {self.passed}/{self.conversations} passed, {self.failed} failed, "
            f"{self.errored} errored{flaky} in {self.duration_s:.1f} s; {self.requests} "
            f"requests, {self.rate_limited} answered 429 ({share:.1%})"
        )


def json_report(
    summary: RunSummary,
    results: Iterable[ConversationResult],
    verdicts: Iterable[Verdict] = (),
) -> dict[str, Any]:
    """The CLI's ``--report`` format: ``summary``, ``comparison`` (or null), ``latency``,
    ``verdicts`` (one per conversation) and ``conversations`` (every run's result)."""
    comparison = summary.comparison
    return {
        "summary": summary.model_dump(mode="json"),
        "comparison": comparison.model_dump(mode="json") if comparison else None,
        "latency": summary.latency.model_dump(mode="json"),
        "verdicts": [verdict.as_json() for verdict in verdicts],
        "conversations": [result.model_dump(mode="json") for result in results],
    }


def write_json_report(
    path: str | Path,
    summary: RunSummary,
    results: Iterable[ConversationResult],
    verdicts: Iterable[Verdict] = (),
) -> None:
    report = json_report(summary, results, verdicts)
    Path(path).write_text(json.dumps(report, indent=2), encoding="utf-8")


def conversation_row(verdict: Verdict) -> dict[str, Any]:
    """A conversation's row of the per-conversation table: what a person scans, and what a later
    run compares with (``id``, ``status``, ``judge_score``). Empty cells are left out (a run's
    table holds a row per conversation: 100,000 of them for a large run)."""
    row: dict[str, Any] = {"id": verdict.id, "status": verdict.status}
    if verdict.runs > 1:
        row["runs"] = f"{verdict.passes}/{verdict.runs} passed"
    row.update(
        attempts=verdict.attempts,
        turns=verdict.turns,
        duration_ms=verdict.duration_ms,
        turn_p95_ms=verdict.turn_p95_ms,
        requests=verdict.requests,
    )
    if verdict.tags:
        row["tags"] = ", ".join(verdict.tags)
    if verdict.reason:
        row["first_failure"] = _cut(verdict.reason, 300)
    if verdict.judge_score is not None:
        row["judge_score"] = verdict.judge_score
    return row


def conversation_table_json(verdicts: Iterable[Verdict]) -> str:
    """The per-conversation table as the JSON text of a table artifact, made a row at a time:
    the rows of a 100,000-conversation run, held as objects (and copied twice by Prefect's
    ``TableArtifact``), would take about ten times the memory."""
    return "[" + ",".join(json.dumps(conversation_row(verdict)) for verdict in verdicts) + "]"


def causes(verdicts: Iterable[Verdict]) -> list[tuple[str, int, list[str]]]:
    """Failures grouped by cause (the expectation kind, or the error type), most common first:
    ``(cause, count, first few ids)``."""
    ids: dict[str, list[str]] = {}
    counts: Counter[str] = Counter()
    for verdict in verdicts:
        if verdict.status != "passed" and verdict.cause:
            counts[verdict.cause] += 1
            ids.setdefault(verdict.cause, []).append(verdict.id)
    return [(cause, count, ids[cause][:5]) for cause, count in counts.most_common()]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def write_junit(
    path: str | Path, summary: RunSummary, results: Iterable[ConversationResult]
) -> None:
    """JUnit XML: one test case per conversation, failures and errors with their reason."""
    suite = ElementTree.Element(
        "testsuite",
        name=summary.suite,
        tests=str(summary.conversations),
        failures=str(summary.failed),
        errors=str(summary.errored),
        time=f"{summary.duration_s:.3f}",
    )
    for result in results:
        case = ElementTree.SubElement(
            suite,
            "testcase",
            classname=f"{summary.provider}.{summary.suite}",
            name=result.id,
            time=f"{result.duration_ms / 1000:.3f}",
        )
        if result.status != "passed":
            tag = "failure" if result.status == "failed" else "error"
            node = ElementTree.SubElement(case, tag, message=result.reason or result.status)
            node.text = transcript(result)
    root = ElementTree.Element("testsuites")
    root.append(suite)
    tree = ElementTree.ElementTree(root)
    ElementTree.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)


def transcript(result: ConversationResult) -> str:
    """The conversation as a person would read it: each turn, what the agent said, what failed."""
    lines = []
    for number, turn in enumerate(result.turns, start=1):
        who = "user* " if turn.simulated else "user  "  # *: a simulated user wrote it
        lines.append(f"{number}. {who}> {turn.turn}")
        for message in turn.messages:
            lines.append(f"   agent < {message}")
        if turn.buttons:
            lines.append(f"   buttons: {', '.join(turn.buttons)}")
        lines += [f"   {_judged_line(j)}" for j in turn.judgements if j.failure() is None]
        for failure in turn.failures:
            lines.append(f"   FAILED: {failure}")
    if result.stopped:
        lines.append(f"simulated user stopped: {result.stopped}")
    for judgement in result.judgements:
        said = judgement.failure()
        lines.append(f"FAILED: {said}" if said else _judged_line(judgement))
    if result.status == "errored" and result.reason:
        lines.append(f"ERROR: {result.reason}")
    return "\n".join(lines)


def _judged_line(judgement: Judgement) -> str:
    """A judged expectation that held: its score against its threshold, and the reason."""
    cached = ", cached" if judgement.cached else ""
    return (
        f"ok: {judgement.describe}: score {judgement.score or 0:.2f} against "
        f"{judgement.threshold:g}{cached}: {judgement.reason}"
    )


def comparison_markdown(comparison: Comparison) -> str:
    """The comparison with the baseline as markdown (its own artifact, and part of the report)."""
    parts = [f"Compared with run `{comparison.baseline_run_key}`.", ""]
    parts += ["| | conversations |", "|---|---|"]
    for name, listed in comparison.lists():
        shown = ", ".join(f"`{i}`" for i in listed[:20]) + (" ..." if len(listed) > 20 else "")
        parts.append(f"| {name.replace('_', ' ')} ({len(listed)}) | {shown} |")
    if comparison.score_changes:
        parts += ["", "| judged conversation | lowest score then | now | change |"]
        parts.append("|---|---|---|---|")
        for name, change in comparison.score_changes.items():
            then, now = f"{change.baseline:.2f}", f"{change.current:.2f}"
            parts.append(f"| `{name}` | {then} | {now} | {change.change:+.2f} |")
    if comparison.figures:
        parts += ["", "| figure | baseline | now | change |", "|---|---|---|---|"]
        for name, change in comparison.figures.items():
            relative = f" ({change.relative:+.0%})" if change.relative is not None else ""
            parts.append(
                f"| {name} | {change.baseline:g} | {change.current:g} | "
                f"{change.change:+g}{relative} |"
            )
    return "\n".join(parts)


def markdown_report(
    summary: RunSummary,
    failures: Iterable[ConversationResult],
    verdicts: Iterable[Verdict] = (),
) -> str:
    """A markdown page: the totals, the comparison, latency, failures grouped by cause, then the
    transcript of each failure (up to a limit)."""
    share = summary.rate_limited / summary.requests if summary.requests else 0.0
    latency = summary.latency
    parts = [
        f"# {summary.suite}: {summary.passed}/{summary.conversations} passed",
        "",
        "| conversations | passed | failed | errored | flaky | requests | answered 429 "
        "| duration |",
        "|---|---|---|---|---|---|---|---|",
        f"| {summary.conversations} | {summary.passed} | {summary.failed} | {summary.errored} "
        f"| {len(summary.flaky)} | {summary.requests} | {summary.rate_limited} ({share:.1%}) "
        f"| {summary.duration_s:.1f} s |",
        "",
        f"Run key `{summary.run_key}` ({summary.selection}); every result is in "
        f"`{summary.results_path}`.",
        "",
        "| latency | p50 | p95 |",
        "|---|---|---|",
        f"| turn | {latency.turn_p50_ms:g} ms | {latency.turn_p95_ms:g} ms |",
        f"| conversation | {latency.conversation_p50_ms:g} ms "
        f"| {latency.conversation_p95_ms:g} ms |",
    ]
    if summary.comparison is not None:
        parts += ["", "## Compared with the baseline", "", comparison_markdown(summary.comparison)]
    if summary.flaky:
        parts += ["", f"**Flaky** ({len(summary.flaky)}): " + ", ".join(summary.flaky[:50])]
    grouped = causes(verdicts)
    if grouped:
        parts += [
            "",
            "## Failures by cause",
            "",
            "| cause | conversations | e.g. |",
            "|---|---|---|",
        ]
        parts += [f"| {cause} | {count} | {', '.join(ids)} |" for cause, count, ids in grouped]
    for shown, result in enumerate(failures):
        if shown == MAX_TRANSCRIPTS:
            parts.append(f"\n_Only the first {MAX_TRANSCRIPTS} failures are shown here._")
            break
        parts += [
            "",
            f"## {result.id}: {result.status}",
            "",
            f"{result.reason or ''}",
            "",
            "```",
            transcript(result),
            "```",
        ]
    return "\n".join(parts)
